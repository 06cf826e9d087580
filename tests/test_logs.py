import json
import logging
import re
import sys

from hypothesis import given
from hypothesis import strategies as st

from bot.logs import TRACEBACK_PREFIX, JsonFormatter, RedactingFormatter, redact


def test_redacts_webhook_secrets_and_tokens() -> None:
    line = redact(
        "POST /plugins/jira/webhook?secret=abc123&team=t GET x?token=zzz Authorization: Bearer abcdefghijkl"
    )
    assert "abc123" not in line and "zzz" not in line and "abcdefghijkl" not in line
    assert "team=t" in line


def test_formatter_redacts() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", ("/a?secret=hunter2",), None)
    assert "hunter2" not in RedactingFormatter("%(message)s").format(record)


FORGED = "2025-01-01 00:00:00,000 ERROR bot: FORGED"
HOSTILE = f"u1\n{FORGED}\r\n{FORGED}\x1b[2K\x00\x7f\x85\u2028{FORGED}\\n"
TEXT = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad value {HOSTILE}")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("bot.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_text_format_escapes_control_characters_in_the_message() -> None:
    line = TEXT.format(record("user %s refused", HOSTILE))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "u1\\n2025-01-01" in line and "\\r\\n" in line and "\\x1b[2K\\x00\\x7f\\x85\\u2028" in line
    # A backslash is escaped too, so an escape in the log always means a control character.
    assert line.endswith("FORGED\\\\n refused")


def test_text_format_keeps_tracebacks_multiline_but_prefixed_and_escaped() -> None:
    text = TEXT.format(record("failed for %s", "?secret=hunter2", exc=True))
    first, *rest = text.split("\n")
    assert "hunter2" not in text and "failed for ?secret=[redacted]" in first
    assert rest and all(line.startswith(TRACEBACK_PREFIX) for line in rest)
    assert rest[0] == TRACEBACK_PREFIX + "Traceback (most recent call last):"
    assert not any(line.startswith("2025") for line in text.split("\n"))
    assert "\r" not in text and "\x1b" not in text
    # The exception text's own line breaks become prefixed lines; other controls are escaped.
    assert f"{TRACEBACK_PREFIX}ValueError: bad value u1" in rest
    assert f"{TRACEBACK_PREFIX}{FORGED}\\r" in rest


def test_text_format_leaves_the_record_as_other_handlers_need_it() -> None:
    r = record("x", exc=True)
    TEXT.format(r)
    assert r.exc_text is None  # not cached in the prefixed form


def test_json_format_escapes_carries_the_usual_fields_and_redacts() -> None:
    r = record("url %s from %s", '/hook?secret=abc"def', HOSTILE, exc=True)
    r.__dict__["issue_key"] = f"TES-1\n{FORGED}"
    line = JsonFormatter().format(r)
    assert "\n" not in line and "\u2028" not in line and "\x1b" not in line
    entry = json.loads(line)  # still valid JSON: redaction never cuts a string in half
    assert set(entry) >= {"time", "level", "logger", "message", "module", "function", "line", "process"}
    assert entry["level"] == "WARNING" and entry["logger"] == "bot.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert "abc" not in entry["message"] and "secret=[redacted]" in entry["message"]
    assert HOSTILE in entry["message"]  # kept exactly, escaped only by JSON
    assert entry["exception"].startswith("Traceback") and "ValueError: bad value" in entry["exception"]
    assert entry["issue_key"] == f"TES-1\n{FORGED}"


def test_json_format_redacts_tokens_in_tracebacks_and_extra_fields() -> None:
    try:
        raise RuntimeError("Authorization: Bearer sekrit-token-123")
    except RuntimeError:
        r = logging.LogRecord("bot", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    r.__dict__["url"] = "https://h/x?token=abcdef"
    entry = json.loads(JsonFormatter().format(r))
    assert "sekrit" not in entry["exception"] and "abcdef" not in entry["url"]


@given(st.text(), st.text())
def test_no_text_can_break_a_record_into_lines(arg: str, exc_text: str) -> None:
    try:
        raise ValueError(exc_text)
    except ValueError:
        r = logging.LogRecord("bot", logging.ERROR, __file__, 1, "value %s", (arg,), sys.exc_info())
    first, *rest = TEXT.format(r).split("\n")
    assert first.splitlines() == [first]  # no \r, \x0b, \x1c, \x85, \u2028… either
    assert all(line.startswith(TRACEBACK_PREFIX) and line.splitlines() == [line] for line in rest)
    line = JsonFormatter().format(r)
    assert line.splitlines() == [line] and json.loads(line)["level"] == "ERROR"
