"""The intake's quick look at a webhook: refuses what the full parse refuses at the top level, and
calls unpostable only what `normalise` would turn into nothing."""

from __future__ import annotations

import json

import pytest

from bot.jira.events import normalise, unpostable_reason
from bot.jira.models import WebhookParseError, parse_webhook, peek_webhook
from tests.conftest import load_shared_webhook_bytes, require_shared_fixtures, shared_webhook_names


def test_every_shared_payload_peeks_as_the_full_parse_reads_it() -> None:
    require_shared_fixtures()
    names = shared_webhook_names()
    assert len(names) == 55
    screened = 0
    for name in names:
        body = load_shared_webhook_bytes(name)
        peek = peek_webhook(body)
        event = normalise(parse_webhook(body))
        reason = unpostable_reason(peek)
        if reason is not None:
            screened += 1
            assert event is None, (name, reason)
        if event is not None:
            assert peek.base_url == event.issue.base_url, name
    # Server's standalone comment events are the ones a quick look can tell apart.
    assert screened >= 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b'"a string"',
        b"[1,2]",
        b'{"issue": "x"}',
        b'{"issue": {"fields": "x"}}',
        b'{"webhookEvent": 5, "issue": {"id": {}}}',
        b'{"changelog": []}',
        b'{"comment": "text"}',
        b'{"user": 1}',
        b'{"timestamp": "soon"}',
    ],
)
def test_bodies_the_full_parse_refuses_at_the_top_level_are_refused(body: bytes) -> None:
    with pytest.raises(WebhookParseError):
        parse_webhook(body)
    with pytest.raises(WebhookParseError):
        peek_webhook(body)


ISSUE = {"id": "10", "key": "A-1", "self": "https://j.example/rest/api/2/issue/10", "fields": {}}


@pytest.mark.parametrize(
    ("doc", "unpostable"),
    [
        ({"event": "some_jira_event"}, True),  # the probe from the Mattermost guide
        ({"webhookEvent": "jira:issue_created"}, True),  # no issue
        ({"webhookEvent": "jira:issue_created", "issue": {"id": "1", "key": "A-1"}}, True),  # no fields
        ({"webhookEvent": "jira:issue_created", "issue": {"fields": {}}}, True),  # no id nor key
        ({"webhookEvent": "jira:worklog_updated", "issue": ISSUE}, True),
        ({"webhookEvent": "comment_created", "issue": {**ISSUE, "id": None}, "comment": {}}, True),
        ({"webhookEvent": "comment_created", "issue": ISSUE}, True),  # no comment
        ({"webhookEvent": "comment_deleted", "issue": ISSUE}, False),
        ({"webhookEvent": "jira:issue_created", "issue": ISSUE}, False),
        ({"webhookEvent": "jira:issue_updated", "issue": ISSUE}, False),  # the changelog decides
    ],
)
def test_unpostable_at_a_glance(doc: dict[str, object], unpostable: bool) -> None:
    body = json.dumps(doc).encode()
    assert (unpostable_reason(peek_webhook(body)) is not None) is unpostable
    if unpostable:
        assert normalise(parse_webhook(body)) is None


def test_base_url_comes_from_the_issue_rest_url() -> None:
    peek = peek_webhook(json.dumps({"issue": ISSUE}))
    assert peek.base_url == "https://j.example"
    assert peek_webhook(b'{"issue": {"self": "https://j.example/browse/A-1"}}').base_url == ""
    assert peek_webhook(b"{}").base_url == ""
