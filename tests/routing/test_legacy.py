"""Legacy per-channel webhooks: which kinds the `updated_*` query parameters turn on."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bot.jira import events as ev
from bot.jira.events import IssueEvent, IssueSnapshot, NamedValue, normalise
from bot.jira.models import parse_webhook
from bot.routing.legacy import DEFAULT_KINDS, LegacyOptions, legacy_matches
from tests.conftest import load_shared_webhook_bytes

DEFAULT_POSTED = [
    ev.EVENT_CREATED,
    ev.EVENT_UPDATED_RESOLVED,
    ev.EVENT_UPDATED_REOPENED,
    ev.EVENT_DELETED_UNRESOLVED,
    ev.EVENT_UPDATED_ASSIGNEE,
]
CUSTOM_KIND = "event_updated_customfield_10072"


def make_event(kinds: Iterable[str]) -> IssueEvent:
    issue = IssueSnapshot(
        id="10100",
        key="TES-1",
        self_url="https://acme.atlassian.net/rest/api/2/issue/10100",
        project=NamedValue(id="10000", name="TES"),
    )
    return IssueEvent("jira:issue_updated", "issue_generic", frozenset(kinds), issue)


def posts(params: dict[str, str], *kinds: str) -> bool:
    return legacy_matches(LegacyOptions.from_query(params), make_event(kinds))


@pytest.mark.parametrize("kind", DEFAULT_POSTED)
def test_default_kinds_are_posted(kind: str) -> None:
    assert posts({}, kind)


@pytest.mark.parametrize(
    "kind", sorted((ev.STANDARD_KINDS | {CUSTOM_KIND}) - set(DEFAULT_POSTED)), ids=lambda k: k
)
def test_other_kinds_are_not_posted_by_default(kind: str) -> None:
    assert not posts({}, kind)


def test_default_kinds_constant_is_the_documented_set() -> None:
    assert set(DEFAULT_POSTED) == DEFAULT_KINDS


@pytest.mark.parametrize(
    ("param", "turned_on"),
    [
        ("updated_attachment", {ev.EVENT_UPDATED_ATTACHMENT}),
        ("updated_description", {ev.EVENT_UPDATED_DESCRIPTION}),
        ("updated_labels", {ev.EVENT_UPDATED_LABELS}),
        ("updated_priority", {ev.EVENT_UPDATED_PRIORITY}),
        ("updated_prioity", {ev.EVENT_UPDATED_PRIORITY}),  # the plugin's misspelt name
        ("updated_rank", {ev.EVENT_UPDATED_RANK}),
        ("updated_sprint", {ev.EVENT_UPDATED_SPRINT}),
        ("updated_status", {ev.EVENT_UPDATED_STATUS}),
        ("updated_summary", {ev.EVENT_UPDATED_SUMMARY}),
        (
            "updated_comments",
            {ev.EVENT_CREATED_COMMENT, ev.EVENT_UPDATED_COMMENT, ev.EVENT_DELETED_COMMENT},
        ),
    ],
)
def test_each_param_turns_on_its_kinds_only(param: str, turned_on: set[str]) -> None:
    options = LegacyOptions.from_query({param: "1"})
    assert options.kinds == DEFAULT_KINDS | turned_on
    for kind in sorted(ev.STANDARD_KINDS | {CUSTOM_KIND}):
        expected = kind in turned_on or kind in DEFAULT_KINDS
        assert legacy_matches(options, make_event({kind})) is expected, kind


@pytest.mark.parametrize("kind", sorted(ev.STANDARD_KINDS | {CUSTOM_KIND, "event_updated_Story Points"}))
def test_updated_all_posts_every_kind(kind: str) -> None:
    assert posts({"updated_all": "1"}, kind)


def test_updated_all_does_not_post_an_event_without_kinds() -> None:
    assert not posts({"updated_all": "1"})


def test_params_combine() -> None:
    params = {"updated_status": "1", "updated_comments": "true"}
    assert posts(params, ev.EVENT_UPDATED_STATUS)
    assert posts(params, ev.EVENT_UPDATED_COMMENT)
    assert not posts(params, ev.EVENT_UPDATED_SUMMARY)


def test_event_with_several_kinds_is_posted_when_one_is_selected() -> None:
    assert posts({}, ev.EVENT_UPDATED_SUMMARY, ev.EVENT_UPDATED_ASSIGNEE)
    assert not posts({}, ev.EVENT_UPDATED_SUMMARY, ev.EVENT_UPDATED_LABELS)


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("0", True), ("", False)])
def test_any_non_empty_value_turns_a_param_on(value: str, on: bool) -> None:
    # As in the plugin, which only checks that the value is non-empty.
    assert posts({"updated_status": value}, ev.EVENT_UPDATED_STATUS) is on


def test_param_names_are_case_sensitive() -> None:
    assert not posts({"Updated_Status": "1"}, ev.EVENT_UPDATED_STATUS)


def test_team_and_channel_are_kept_and_other_params_ignored() -> None:
    options = LegacyOptions.from_query(
        {"secret": "s3cr3t", "team": "contributors", "channel": "town-square", "unknown": "1"}
    )
    assert (options.team, options.channel) == ("contributors", "town-square")
    assert options.kinds == DEFAULT_KINDS
    assert not options.all_kinds


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("webhook-issue-created.json", {}, True),
        ("webhook-issue-updated-assigned.json", {}, True),
        ("webhook-issue-updated-resolved.json", {}, True),
        ("webhook-server-issue-updated-reopened.json", {}, True),
        ("webhook-issue-deleted.json", {}, True),
        ("webhook-issue-updated-labels.json", {}, False),
        ("webhook-issue-updated-labels.json", {"updated_labels": "1"}, True),
        ("webhook-server-issue-updated-commented-1.json", {}, False),
        ("webhook-server-issue-updated-commented-1.json", {"updated_comments": "1"}, True),
        ("webhook-issue-updated-raised-priority.json", {"updated_prioity": "1"}, True),
        ("webhook-cloud-issue-updated-custom-field.json", {"updated_status": "1"}, False),
        ("webhook-cloud-issue-updated-custom-field.json", {"updated_all": "1"}, True),
    ],
)
def test_real_payloads(name: str, params: dict[str, str], expected: bool) -> None:
    event = normalise(parse_webhook(load_shared_webhook_bytes(name)))
    assert event is not None
    assert legacy_matches(LegacyOptions.from_query(params), event) is expected
