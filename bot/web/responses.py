"""JSON answers with a Content-Type of exactly `application/json`.

aiohttp's `json_response` appends `; charset=utf-8`, and Mattermost (and its drivers) read any
other content type as plain text, so every JSON answer of the bot goes through here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """`data` serialised as JSON, or sent as is when it is already bytes."""
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return web.Response(
        status=status, body=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
