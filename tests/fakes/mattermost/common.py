"""What every part of the fake Mattermost shares: request keys, the AppError shape and its
usual errors, JSON answers, and small helpers."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiohttp import web

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
# Typed request keys where aiohttp has them (3.14+), plain strings before.
_KeyFactory: Any = getattr(web, "RequestKey", None)
_USER: Any = _KeyFactory("user", dict) if _KeyFactory else "user"
_LATENCY_SPENT: Any = _KeyFactory("latency_spent", bool) if _KeyFactory else "latency_spent"


class _MattermostError(Exception):
    def __init__(self, status: int, error_id: str, message: str, detailed: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.detailed = detailed


def _permission_error() -> _MattermostError:
    return _MattermostError(
        403, "api.context.permissions.app_error", "You do not have the appropriate permissions."
    )


def _invalid_param(name: str) -> _MattermostError:
    return _MattermostError(400, "api.context.invalid_param.app_error", f"Invalid {name} parameter.")


def _invalid_body_param(name: str) -> _MattermostError:
    return _MattermostError(
        400, "api.context.invalid_body_param.app_error", f"Invalid or missing {name} in request body."
    )


def _invalid_url_param(name: str) -> _MattermostError:
    return _MattermostError(
        400, "api.context.invalid_url_param.app_error", f"Invalid or missing {name} parameter in request URL."
    )


def _user_not_found() -> _MattermostError:
    return _MattermostError(404, "app.user.missing_account.const", "Unable to find the user.")


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": the driver treats anything else (even with "; charset=utf-8") as raw.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _api_path(request: web.Request) -> str:
    """The path from /api/v4 on, so the app also works mounted under a site path (/mattermost/...)."""
    start = request.path.find("/api/v4")
    return request.path[start:] if start > 0 else request.path


def _is_admin(user: dict[str, Any]) -> bool:
    return "system_admin" in user["roles"].split()


def _check_name(name: str) -> None:
    # Mattermost keeps team and channel names as lowercase URL slugs.
    if not _NAME_RE.match(name):
        raise ValueError(f"not a Mattermost team/channel name (lowercase slug): {name!r}")


async def _read_json(request: web.Request, name: str) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError:
        raise _invalid_body_param(name) from None
