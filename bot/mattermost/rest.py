"""REST helpers: site URL parsing, JSON bodies, error bodies, outage classification, Retry-After."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from mattermostautodriver.client import BaseClient

from bot.mattermost.models import DeliveryError

API = "/api/v4"


def is_outage(error: DeliveryError) -> bool:
    """Whether a failure says Mattermost as a whole is unavailable (5xx but 501, 429, a timeout,
    no connection), as opposed to a refusal of this one request (4xx)."""
    if not error.retryable:
        return False
    return error.status == 0 or error.status == 429 or (error.status >= 500 and error.status != 501)


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After of the response behind a driver error (a 503 from a proxy may carry one;
    the driver keeps it only for 429), found through the exception's causes."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, httpx.HTTPStatusError):
            wait = BaseClient._parse_retry_after(seen.response)
            return float(wait) if wait is not None else None
        seen = seen.__cause__ or seen.__context__
    return None


def split_base_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, base path) from a site URL such as https://chat.example.com/mm/."""
    raw = url.strip()
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"Mattermost URL must be http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError(f"Mattermost URL has no host: {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    base_path = parts.path.rstrip("/")
    if base_path.endswith(API):  # tolerate a URL copied from an API call
        base_path = base_path[: -len(API)]
    return scheme, parts.hostname, port, base_path


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def plain(value: Any) -> Any:
    """JSON-ready copy: mappings (frozen ones included) become dicts, sequences become lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def error_message(body: bytes) -> tuple[str, str | None]:
    """Message and id of a Mattermost AppError body; a shortened text for anything else."""
    try:
        data = json.loads(body)
    except ValueError:
        return shorten(body.decode("utf-8", "replace")), None
    if not isinstance(data, dict):
        return shorten(str(data)), None
    error_id = data.get("id")
    return str(data.get("message", "")), str(error_id) if error_id else None


def shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
