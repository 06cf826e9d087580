"""JSON in and out of the bot's endpoints.

Answers have a Content-Type of exactly `application/json`: aiohttp's `json_response` appends
`; charset=utf-8`, and Mattermost (and its drivers) read any other content type as plain text,
so every JSON answer of the bot goes through here. Request bodies are parsed by `parse_json`,
which turns every way a body can fail to be JSON into one BadJson (answered 400), including
nesting deep enough to exhaust the decoder's recursion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """`data` serialised as JSON, or sent as is when it is already bytes."""
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return web.Response(
        status=status, body=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


# Far deeper than anything Mattermost or a pipeline sends, and far from the recursion limit, so
# that code walking a parsed value (validation, canonical JSON for signatures) never hits it.
MAX_JSON_DEPTH = 64


class BadJson(ValueError):
    """The body is not UTF-8 JSON, or is nested too deeply."""


def parse_json(body: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadJson("the body is not valid JSON") from None
    if _depth_over(value, max_depth):
        raise BadJson(f"the body is nested deeper than {max_depth} levels")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep; iterative, so any depth is safe."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class RepeatedParameter(ValueError):
    """A query parameter that must appear once came several times."""


def single_query_value(query: MultiMapping[str], name: str) -> str:
    """The value of query parameter `name` ("" when absent). A secret or token given twice is
    refused rather than one copy picked: a proxy or log filter in front of the bot may read
    (and check or redact) another copy than the bot would."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise RepeatedParameter(f"the {name} parameter is given more than once")
    return values[0] if values else ""
