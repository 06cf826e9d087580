import logging

from bot.logs import RedactingFormatter, redact


def test_redacts_webhook_secrets_and_tokens() -> None:
    line = redact(
        "POST /plugins/jira/webhook?secret=abc123&team=t GET x?token=zzz Authorization: Bearer abcdefghijkl"
    )
    assert "abc123" not in line and "zzz" not in line and "abcdefghijkl" not in line
    assert "team=t" in line


def test_formatter_redacts() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", ("/a?secret=hunter2",), None)
    assert "hunter2" not in RedactingFormatter("%(message)s").format(record)
