"""The names a subscription may use, and the one sentence each entry point gives for a wrong one."""

from __future__ import annotations

from typing import Any

import pytest

from bot.jira.events import normalise
from bot.jira.models import parse_webhook
from bot.routing.matcher import subscription_matches
from bot.routing.model import FieldFilter, Inclusion, Subscription, SubscriptionFilters
from bot.routing.vocabulary import (
    FIELD_KEY_CHOICES,
    INCLUSION_CHOICES,
    KnownInstance,
    bad_project_keys,
    canonical_field_key,
    canonical_inclusion,
    find_known_instance,
    unknown_field_keys,
    unknown_inclusion,
    unknown_instance,
)

JIRA = "https://acme.atlassian.net"


def _ref(id_: str, name: str) -> dict[str, str]:
    return {"id": id_, "name": name}


def _issue_with_every_standard_field() -> dict[str, Any]:
    """A created issue whose every standard field, and one custom field, has a value."""
    user = {"accountId": "u1", "displayName": "Ann"}
    fields = {
        "summary": "s",
        "project": {"id": "10000", "key": "WEB", "name": "Web"},
        "issuetype": _ref("10004", "Bug"),
        "priority": _ref("2", "High"),
        "status": {**_ref("3", "In Progress"), "statusCategory": {"id": 4, "key": "indeterminate"}},
        "resolution": _ref("1", "Done"),
        "security": _ref("10100", "Staff"),
        "labels": ["customer"],
        "components": [_ref("10", "API")],
        "fixVersions": [_ref("20", "1.0")],
        "versions": [_ref("21", "0.9")],
        "assignee": user,
        "reporter": user,
        "creator": user,
        "parent": {"id": "9", "key": "WEB-9"},
        "duedate": "2026-02-01",
        "created": "2026-01-01T10:00:00.000+0000",
        "updated": "2026-01-02T10:00:00.000+0000",
        "resolutiondate": "2026-01-03T10:00:00.000+0000",
        "customfield_10072": {"id": "7", "value": "Gold"},
    }
    return {
        "webhookEvent": "jira:issue_created",
        "timestamp": 1767261600000,
        "issue": {"id": "1", "key": "WEB-1", "self": f"{JIRA}/rest/api/2/issue/1", "fields": fields},
    }


def _matches_when_empty(key: str) -> bool:
    event = normalise(parse_webhook(_issue_with_every_standard_field()))
    assert event is not None
    sub = Subscription(
        id="s",
        name="s",
        channel_id="c",
        instance_id=JIRA,
        filters=SubscriptionFilters(
            events=frozenset({"event_created"}),
            projects=frozenset({"WEB"}),
            # The security rule: an issue with a level reaches only subscriptions on `security`.
            fields=(
                FieldFilter(key=key, inclusion=Inclusion.EMPTY),
                FieldFilter(key="security", inclusion=Inclusion.INCLUDE_ANY, values=("Staff",)),
            ),
        ),
    )
    return subscription_matches(sub, event)


@pytest.mark.parametrize("key", [*FIELD_KEY_CHOICES, "customfield_10072", "FIXVERSIONS"])
def test_every_accepted_field_key_is_one_the_matcher_reads(key: str) -> None:
    # `KEY empty` fails on an issue that has a value there: the matcher found that value.
    assert canonical_field_key(key) is not None
    assert not _matches_when_empty(key)


@pytest.mark.parametrize("key", ["commentVisibility", "teamField", "sprint"])
def test_refused_field_keys_are_ones_the_matcher_cannot_read(key: str) -> None:
    # The matcher sees nothing there, so an `include_any` filter on it would never match.
    assert _matches_when_empty(key)
    assert unknown_field_keys([key]) is not None


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("prority", "(did you mean `priority`?)"),
        ("fixVersion", "(did you mean `fixVersions`?)"),
        ("affectedVersions", "(did you mean `versions`?)"),
        ("lables", "(did you mean `labels`?)"),
        ("cf[10072]", "(did you mean `customfield_10072`?)"),
        ("customfield_abc", "(a custom field id is `customfield_` and digits, such as `customfield_10072`)"),
        ("sprint", "(a custom field: use its id, such as `customfield_10020`)"),
        ("commentVisibility", "(a filter of the Mattermost Jira plugin that this bot cannot evaluate)"),
    ],
)
def test_unknown_field_keys_say_what_was_meant(typed: str, hint: str) -> None:
    problem = unknown_field_keys([typed])
    assert problem is not None
    assert problem.startswith(f"unknown field `{typed}` {hint}. Valid fields: priority, status")
    assert problem.endswith("and customfield_NNNNN for a custom field.")


def test_field_keys_are_canonical_whatever_their_case() -> None:
    assert canonical_field_key("fixversions") == "fixVersions"
    assert canonical_field_key("CustomField_10072") == "customfield_10072"
    assert canonical_field_key("securitylevel") == "securitylevel"
    assert unknown_field_keys(["priority", "Labels", "customfield_1"]) is None


def test_inclusions() -> None:
    assert tuple(i.value for i in Inclusion) == INCLUSION_CHOICES
    assert canonical_inclusion("Include-Any") == "include_any"
    assert unknown_inclusion("exclude_any") is None
    assert unknown_inclusion("incude_any") == (
        "`incude_any` is not an inclusion (did you mean `include_any`?); use one of: "
        "include_any, include_all, exclude_any, empty, include_or_empty."
    )


def test_project_keys() -> None:
    assert bad_project_keys(["web", "API_2"]) is None
    assert bad_project_keys(["WEB-1"]) == (
        "`WEB-1` is not a project key "
        "(a key is letters and digits, such as `WEB`; separate keys with commas)."
    )
    assert (bad_project_keys(["1X", "a b"]) or "").startswith("`1X`, `A B` are not project keys")


KNOWN = (KnownInstance(JIRA, "acme"), KnownInstance("https://jira.corp.example"))


@pytest.mark.parametrize("name", ["acme", "ACME", f"{JIRA}/", JIRA.upper(), "https://JIRA.corp.example"])
def test_an_instance_is_named_by_alias_or_url_in_any_case(name: str) -> None:
    assert find_known_instance(name, KNOWN) is not None
    assert unknown_instance(name, KNOWN) is None


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("acmee", "acme"),
        ("acme.atlassian.net", "acme"),
        ("jira.corp.example", "https://jira.corp.example"),
        ("https://jira.corp.exampel", "https://jira.corp.example"),
    ],
)
def test_an_unknown_instance_gets_the_nearest_name(typed: str, meant: str) -> None:
    assert unknown_instance(typed, KNOWN) == (
        f"There is no Jira instance `{typed}` (did you mean `{meant}`?). "
        f"Known instances: `acme` ({JIRA}), `https://jira.corp.example`."
    )


def test_an_unknown_instance_with_nothing_near_or_nothing_configured() -> None:
    assert unknown_instance("nowhere", KNOWN) == (
        f"There is no Jira instance `nowhere`. Known instances: `acme` ({JIRA}), `https://jira.corp.example`."
    )
    assert unknown_instance("acme", ()) == "There is no Jira instance `acme`: none is configured yet."
