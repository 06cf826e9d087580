"""Parsing of Jira webhook bodies into the lenient pydantic models."""

from __future__ import annotations

import json

import pytest

from bot.jira.models import JiraWebhook, WebhookParseError, parse_webhook
from tests.conftest import LOCAL_FIXTURES, load_shared_webhook, load_shared_webhook_bytes

OWN = LOCAL_FIXTURES / "webhooks"


def test_bytes_str_and_dict_give_the_same_model() -> None:
    raw = (OWN / "cloud-issue-updated-priority.json").read_bytes()
    from_bytes = parse_webhook(raw)
    from_str = parse_webhook(raw.decode("utf-8"))
    from_dict = parse_webhook(json.loads(raw))
    assert from_bytes == from_str == from_dict
    assert from_bytes.webhook_event == "jira:issue_updated"
    assert from_bytes.timestamp == 1718000000123


def test_json_names_map_to_snake_case_attributes() -> None:
    hook = parse_webhook((OWN / "cloud-issue-updated-priority.json").read_bytes())
    assert hook.issue is not None and hook.issue.fields is not None
    assert hook.issue.self_url == "https://acme.atlassian.net/rest/api/2/issue/20001"
    assert hook.user is not None
    assert (hook.user.account_id, hook.user.display_name) == ("5f00aa", "Ada Lovelace")
    assert hook.changelog is not None and hook.changelog.items
    item = hook.changelog.items[0]
    assert item is not None
    assert (item.field_id, item.from_, item.from_string, item.to, item.to_string) == (
        "priority",
        "3",
        "Medium",
        "1",
        "Highest",
    )
    fields = hook.issue.fields
    assert fields.security is not None and not isinstance(fields.security, str)
    assert fields.security.name == "Internal"
    assert [v.name for v in fields.versions or () if v] == ["2.4"]


def test_custom_fields_and_unknown_keys_are_kept_raw() -> None:
    hook = parse_webhook((OWN / "cloud-issue-updated-priority.json").read_bytes())
    assert hook.issue is not None and hook.issue.fields is not None
    extra = hook.issue.fields.model_extra or {}
    assert extra["customfield_10500"] == {"id": "10501", "value": "EMEA"}
    assert extra["customfield_10520"] is None
    assert extra["customfield_10530"] == 42
    # Unknown keys at the top level and in nested objects survive too.
    hook = parse_webhook({"webhookEvent": "x", "matchedWebhookIds": [1], "user": {"timeZone": "UTC"}})
    assert hook.model_extra == {"matchedWebhookIds": [1]}
    assert hook.user is not None and hook.user.model_extra == {"timeZone": "UTC"}


def test_numeric_ids_are_read_as_strings() -> None:
    hook = parse_webhook((OWN / "server-issue-updated-custom-field-no-user.json").read_bytes())
    assert hook.issue is not None and hook.issue.fields is not None and hook.issue.fields.project
    assert hook.issue.id == "30001"
    assert hook.issue.fields.project.id == "10000"


def test_security_may_be_a_bare_id() -> None:
    hook = parse_webhook(load_shared_webhook("webhook-issue-created-with-security-level.json"))
    assert hook.issue is not None and hook.issue.fields is not None
    assert hook.issue.fields.security == "10001"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"webhookEvent": None, "issue": None, "user": None, "changelog": None, "comment": None},
        {"issue": {"fields": None}},
        {"issue": {"fields": {"labels": [None], "fixVersions": [None], "project": None}}},
        {"changelog": {"items": [None, {"from": None, "to": None}]}},
        {"comment": {"body": None, "author": None, "updateAuthor": {}}},
        {"event": "some_jira_event"},
    ],
)
def test_nulls_and_missing_keys_are_accepted(body: dict[str, object]) -> None:
    assert isinstance(parse_webhook(body), JiraWebhook)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"\xff\xfe",
        b"[1, 2]",
        b'"a string"',
        b"null",
        "[]",
        b'{"issue": "TES-1"}',
        b'{"changelog": {"items": "status"}}',
        b'{"timestamp": "yesterday"}',
    ],
)
def test_bad_bodies_raise_one_error_type(body: bytes | str) -> None:
    with pytest.raises(WebhookParseError):
        parse_webhook(body)


def test_non_mapping_python_values_are_refused() -> None:
    for value in ([{"webhookEvent": "x"}], 3, None):
        with pytest.raises(WebhookParseError, match="not a JSON object"):
            parse_webhook(value)  # type: ignore[arg-type]


def test_parse_error_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError, match=r"issue: Input should be an object"):
        parse_webhook(b'{"issue": 5}')


def test_shared_payload_families_parse() -> None:
    # One of each family (Cloud, Server standalone comment, old Server); test_events parses all.
    for name in (
        "webhook-cloud-issue-created-many-fields.json",
        "webhook-server-comment-created.json",
        "webhook-server-old-issue-updated-no-event-type-commented.json",
    ):
        hook = parse_webhook(load_shared_webhook_bytes(name))
        assert hook.webhook_event
