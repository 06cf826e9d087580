"""What can go wrong when the bot calls Jira, in a form a chat reply can explain.

A `JiraError` carries a `kind` the command handlers branch on and a `user_message()` that says
what to do next. It never holds a response body beyond Jira's own error messages, a URL, a
header or a token, so it is safe to log and to show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

JiraErrorKind = Literal[
    "auth", "forbidden", "not_found", "rate_limited", "unavailable", "timeout", "bad_request"
]

# Jira's error messages are shown on one line, cut to this length.
MAX_DETAIL_CHARS = 300


class JiraError(Exception):
    """A Jira call failed. `status` is the HTTP status when Jira answered; `retry_after` the
    seconds Jira asked to wait (429/503) when it said so; `detail` Jira's own error messages."""

    def __init__(
        self,
        kind: JiraErrorKind,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        self.kind: JiraErrorKind = kind
        self.status = status
        self.retry_after = retry_after
        self.detail = _one_line(detail)
        super().__init__(self._summary())

    def _summary(self) -> str:
        status = f" (HTTP {self.status})" if self.status else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"Jira request failed, {self.kind}{status}{detail}"

    def user_message(self) -> str:
        """One line for the user: what happened and what to do next."""
        if self.kind == "auth":
            return (
                "Jira did not accept your credentials (they may have expired or been revoked). "
                "Reconnect with `/jira connect`."
            )
        if self.kind == "forbidden":
            return "Your Jira account is not allowed to do this. Ask a Jira administrator for access."
        if self.kind == "not_found":
            return (
                "Jira could not find it, or your Jira account cannot see it. "
                "Check the issue key or project and try again."
            )
        if self.kind == "rate_limited":
            if self.retry_after:
                return f"Jira is receiving too many requests. Try again in {math.ceil(self.retry_after)} s."
            return "Jira is receiving too many requests. Try again in a minute."
        if self.kind == "timeout":
            return "Jira did not answer in time. Try again later."
        if self.kind == "bad_request":
            if self.detail:
                return f"Jira refused the request: {self.detail}"
            return "Jira refused the request. Check what you entered and try again."
        return "Jira is not reachable right now. Try again later."


def is_outage(error: JiraError) -> bool:
    """Whether a failure says the Jira site as a whole is unavailable (5xx but 501, 429, no
    answer in time, no connection) rather than refusing this one request: what opens a site's
    circuit breaker."""
    if error.status is not None:
        return error.status == 429 or (error.status >= 500 and error.status != 501)
    return error.kind in ("timeout", "unavailable", "rate_limited")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > MAX_DETAIL_CHARS:
        flat = flat[: MAX_DETAIL_CHARS - 1].rstrip() + "…"
    return flat


def jira_error_detail(body: Any) -> str:
    """Jira's `{"errorMessages": [...], "errors": {"field": "message"}}` joined into one line."""
    if not isinstance(body, Mapping):
        return ""
    parts: list[str] = []
    messages = body.get("errorMessages")
    if isinstance(messages, list):
        parts.extend(str(m) for m in messages if m)
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        parts.extend(f"{field}: {message}" for field, message in errors.items() if message)
    # Some gateways and old Jira versions answer {"message": "..."} instead.
    if not parts and isinstance(body.get("message"), str):
        parts.append(body["message"])
    return "; ".join(parts)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for_status(status: int, *, detail: str = "", retry_after: float | None = None) -> JiraError:
    """The JiraError for an HTTP error status Jira answered with."""
    kind: JiraErrorKind
    if status == 401:
        kind = "auth"
    elif status == 403:
        kind = "forbidden"
    elif status == 404:
        kind = "not_found"
    elif status == 429:
        kind = "rate_limited"
    elif status >= 500:
        kind = "unavailable"
    else:
        kind = "bad_request"
    return JiraError(kind, status=status, retry_after=retry_after, detail=detail)
