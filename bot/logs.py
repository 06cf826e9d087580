"""Logging: one line per record, secrets redacted and control characters escaped before anything
is written, so a value from outside (a user id, an issue key, a URL) can neither hide a secret
nor forge a log line.

Text format: the message is one line; a control character in it is shown escaped (`\\n`, `\\r`,
`\\x1b`, `\\u2028`, …) and a backslash as `\\\\`, so what is shown maps back to exactly one text.
A traceback stays multi-line for reading, but each of its lines is prefixed with `  | ` and
escaped the same way: exception texts often quote outside input (`invalid literal: '…'`), and
with the prefix none of their lines can pass for a record, as every record starts at column 0.

JSON format (`logging.format: json`): one object per line; json.dumps escapes every control
character and non-ASCII character, and redaction is applied to the values before they are
serialised, so it can never cut a JSON string in half.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Webhook URLs carry the secret in the query; tokens may appear in error texts.
_SECRET_PATTERNS = (
    re.compile(r"(?i)([?&](?:secret|token|access_token)=)[^&\s\"']+"),
    re.compile(r"(?i)(authorization:\s*(?:bearer|token)\s+)\S+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
)

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators (some viewers break
# lines there too); the backslash, so that an escape in the output is never ambiguous.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
TRACEBACK_PREFIX = "  | "


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


def _escape_char(match: re.Match[str]) -> str:
    c = match.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape(text: str) -> str:
    """`text` on one line: control characters and backslashes shown as escapes."""
    return _UNSAFE.sub(_escape_char, text)


def _block(text: str) -> str:
    """A multi-line text (traceback, stack) whose lines cannot pass for records."""
    return "\n".join(TRACEBACK_PREFIX + escape(line) for line in text.rstrip("\n").split("\n"))


class RedactingFormatter(logging.Formatter):
    """The text format: one escaped line per record, then any traceback as prefixed lines."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = escape(redact(self.formatMessage(record)))
        # Not cached on the record (as logging.Formatter does in exc_text): other handlers of
        # the same record expect the plain traceback.
        exc_text = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exc_text:
            text += "\n" + _block(redact(exc_text))
        if record.stack_info:
            text += "\n" + _block(redact(self.formatStack(record.stack_info)))
        return text


# Attributes every LogRecord has; anything else came in through `extra=` and is kept as a field.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record with the fields log pipelines read: `time` (UTC, ISO 8601 with
    milliseconds), `level`, `logger`, `message`, `module`, `function`, `line`, `process`, and
    `exception`/`stack` when present; `extra=` fields are added as they are."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
            "process": record.process,
        }
        exc_text = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exc_text:
            entry["exception"] = redact(exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = _redacted(value)
        # ensure_ascii (the default) also escapes U+2028/U+2029, which some readers split on.
        return json.dumps(entry)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library request logs would repeat URLs and headers; ours say what matters.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "mattermostautodriver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
