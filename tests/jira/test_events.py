"""Normalisation of Jira webhooks into IssueEvents, over the real shared payloads and own edge cases."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from bot.jira.events import (
    EVENT_CREATED,
    EVENT_CREATED_COMMENT,
    EVENT_DELETED,
    EVENT_DELETED_COMMENT,
    EVENT_DELETED_UNRESOLVED,
    EVENT_UPDATED_AFFECTS_VERSION,
    EVENT_UPDATED_ASSIGNEE,
    EVENT_UPDATED_ATTACHMENT,
    EVENT_UPDATED_COMMENT,
    EVENT_UPDATED_COMPONENTS,
    EVENT_UPDATED_DESCRIPTION,
    EVENT_UPDATED_FIX_VERSION,
    EVENT_UPDATED_ISSUE_TYPE,
    EVENT_UPDATED_LABELS,
    EVENT_UPDATED_PRIORITY,
    EVENT_UPDATED_RANK,
    EVENT_UPDATED_REOPENED,
    EVENT_UPDATED_REPORTER,
    EVENT_UPDATED_RESOLVED,
    EVENT_UPDATED_SPRINT,
    EVENT_UPDATED_STATUS,
    EVENT_UPDATED_SUMMARY,
    STANDARD_KINDS,
    FieldChange,
    IssueEvent,
    JiraUser,
    NamedValue,
    event_summary,
    is_custom_field_kind,
    normalise,
)
from bot.jira.models import WebhookParseError, parse_webhook
from tests.conftest import (
    LOCAL_FIXTURES,
    load_shared_webhook,
    load_shared_webhook_bytes,
    require_shared_fixtures,
    shared_webhook_names,
)

OWN = LOCAL_FIXTURES / "webhooks"

# Every shared payload -> the kinds it must produce, or None for "nothing postable".
EXPECTED_KINDS: dict[str, frozenset[str] | None] = {
    "webhook-cloud-comment-created-mention-user.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-cloud-comment-created.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-cloud-comment-deleted.json": frozenset({EVENT_DELETED_COMMENT}),
    "webhook-cloud-comment-updated.json": frozenset({EVENT_UPDATED_COMMENT}),
    "webhook-cloud-issue-created-many-fields.json": frozenset({EVENT_CREATED}),
    "webhook-cloud-issue-updated-custom-field.json": frozenset({"event_updated_customfield_10072"}),
    "webhook-issue-assigned-empty-changelog.json": None,
    "webhook-issue-comment-created-indentation.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-issue-created-no-description-nor-relevant-fields.json": frozenset({EVENT_CREATED}),
    "webhook-issue-created-no-description.json": frozenset({EVENT_CREATED}),
    "webhook-issue-created-no-relevant-fields.json": frozenset({EVENT_CREATED}),
    "webhook-issue-created-with-security-level.json": frozenset({EVENT_CREATED}),
    "webhook-issue-created.json": frozenset({EVENT_CREATED}),
    "webhook-issue-deleted.json": frozenset({EVENT_DELETED, EVENT_DELETED_UNRESOLVED}),
    "webhook-issue-updated-assigned-nobody.json": frozenset({EVENT_UPDATED_ASSIGNEE}),
    "webhook-issue-updated-assigned-on-server.json": frozenset({EVENT_UPDATED_ASSIGNEE}),
    "webhook-issue-updated-assigned.json": frozenset({EVENT_UPDATED_ASSIGNEE}),
    "webhook-issue-updated-attachments.json": frozenset({EVENT_UPDATED_ATTACHMENT}),
    "webhook-issue-updated-components.json": frozenset({EVENT_UPDATED_COMPONENTS}),
    "webhook-issue-updated-edited.json": frozenset({EVENT_UPDATED_DESCRIPTION}),
    "webhook-issue-updated-fix-version.json": frozenset({EVENT_UPDATED_FIX_VERSION}),
    "webhook-issue-updated-issue-type.json": frozenset({EVENT_UPDATED_ISSUE_TYPE}),
    "webhook-issue-updated-labels.json": frozenset({EVENT_UPDATED_LABELS}),
    "webhook-issue-updated-lowered-priority.json": frozenset({EVENT_UPDATED_PRIORITY}),
    "webhook-issue-updated-multiple-custom-fields.json": frozenset(
        {"event_updated_customfield_10001", "event_updated_customfield_10002"}
    ),
    "webhook-issue-updated-multiple-values.json": frozenset(
        {EVENT_UPDATED_FIX_VERSION, EVENT_UPDATED_ASSIGNEE, "event_updated_customfield_10072"}
    ),
    "webhook-issue-updated-raised-priority.json": frozenset({EVENT_UPDATED_PRIORITY}),
    "webhook-issue-updated-rank.json": frozenset({EVENT_UPDATED_RANK}),
    "webhook-issue-updated-renamed.json": frozenset({EVENT_UPDATED_SUMMARY}),
    "webhook-issue-updated-reopened-one-changelog.json": frozenset({EVENT_UPDATED_REOPENED}),
    "webhook-issue-updated-reopened.json": frozenset({EVENT_UPDATED_REOPENED, EVENT_UPDATED_STATUS}),
    "webhook-issue-updated-resolved-one-changelog.json": frozenset({EVENT_UPDATED_RESOLVED}),
    "webhook-issue-updated-resolved.json": frozenset({EVENT_UPDATED_RESOLVED, EVENT_UPDATED_STATUS}),
    "webhook-issue-updated-sprint.json": frozenset({EVENT_UPDATED_SPRINT}),
    "webhook-issue-updated-started-working.json": frozenset({EVENT_UPDATED_STATUS}),
    # Server/DC's standalone comment events lack the issue and duplicate issue_commented.
    "webhook-server-comment-created.json": None,
    "webhook-server-comment-deleted.json": None,
    "webhook-server-comment-updated.json": None,
    "webhook-server-issue-updated-closed.json": frozenset({EVENT_UPDATED_STATUS}),
    "webhook-server-issue-updated-comment-deleted.json": frozenset({EVENT_DELETED_COMMENT}),
    "webhook-server-issue-updated-comment-edited.json": frozenset({EVENT_UPDATED_COMMENT}),
    "webhook-server-issue-updated-commented-1.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-server-issue-updated-commented-2.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-server-issue-updated-commented-3.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-server-issue-updated-commented-mention-user.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-server-issue-updated-in-progress.json": frozenset({EVENT_UPDATED_STATUS}),
    "webhook-server-issue-updated-many-fields.json": frozenset({EVENT_UPDATED_LABELS}),
    "webhook-server-issue-updated-reopened.json": frozenset({EVENT_UPDATED_REOPENED, EVENT_UPDATED_STATUS}),
    "webhook-server-issue-updated-resolved.json": frozenset({EVENT_UPDATED_RESOLVED, EVENT_UPDATED_STATUS}),
    "webhook-server-old-issue-updated-no-event-type-assigned.json": frozenset({EVENT_UPDATED_ASSIGNEE}),
    "webhook-server-old-issue-updated-no-event-type-comment-deleted.json": None,
    "webhook-server-old-issue-updated-no-event-type-comment-edited.json": frozenset({EVENT_UPDATED_COMMENT}),
    "webhook-server-old-issue-updated-no-event-type-commented.json": frozenset({EVENT_CREATED_COMMENT}),
    "webhook-server-old-issue-updated-no-event-type-edited.json": frozenset({EVENT_UPDATED_DESCRIPTION}),
    # Server changelog items carry no fieldId: the field name makes the kind.
    "webhook-server-updated-custom-field.json": frozenset({"event_updated_numfield"}),
}


def shared_event(name: str) -> IssueEvent:
    event = normalise(parse_webhook(load_shared_webhook_bytes(name)))
    assert event is not None, name
    return event


def own_event(name: str) -> IssueEvent | None:
    return normalise(parse_webhook((OWN / name).read_bytes()))


def only_change(event: IssueEvent) -> FieldChange:
    assert len(event.changes) == 1, event.changes
    return event.changes[0]


# --- The shared payloads ----------------------------------------------------------------------


def test_table_covers_exactly_the_shared_payloads() -> None:
    require_shared_fixtures()
    names = shared_webhook_names()
    assert len(names) == 55
    assert set(names) == set(EXPECTED_KINDS)


@pytest.mark.parametrize("name", shared_webhook_names())
def test_kinds_of_each_shared_payload(name: str) -> None:
    event = normalise(parse_webhook(load_shared_webhook_bytes(name)))
    expected = EXPECTED_KINDS[name]
    if expected is None:
        assert event is None
        return
    assert event is not None
    assert event.kinds == expected
    # Changelog-driven events explain every kind by a change; created/deleted/comments have none.
    if expected & {EVENT_CREATED, EVENT_DELETED} or event.is_comment:
        assert event.changes == ()
    else:
        assert {change.kind for change in event.changes} == expected
    assert event.issue.key and event.issue.id
    assert event.timestamp_ms == load_shared_webhook(name)["timestamp"]


def test_summary_change_from_and_to() -> None:
    change = only_change(shared_event("webhook-issue-updated-renamed.json"))
    assert change == FieldChange(
        kind=EVENT_UPDATED_SUMMARY,
        field="summary",
        field_id="summary",
        from_string="Unit test summary",
        to_string="Unit test summary 1",
    )


def test_priority_change_keeps_ids() -> None:
    change = only_change(shared_event("webhook-issue-updated-lowered-priority.json"))
    assert (change.from_string, change.to_string, change.from_id, change.to_id) == ("High", "Low", "2", "4")


def test_assigned_to_nobody_has_empty_target() -> None:
    event = shared_event("webhook-issue-updated-assigned-nobody.json")
    change = only_change(event)
    assert (change.field_id, change.from_string, change.to_string) == ("assignee", "Test User", "")
    assert event.issue.assignee is None


def test_several_changes_make_one_event_in_changelog_order() -> None:
    event = shared_event("webhook-issue-updated-multiple-values.json")
    assert [(c.kind, c.field, c.field_id, c.to_string) for c in event.changes] == [
        (EVENT_UPDATED_FIX_VERSION, "Fix Version", "fixVersions", "v2"),
        (EVENT_UPDATED_ASSIGNEE, "assignee", "assignee", "Test User"),
        ("event_updated_customfield_10072", "QA Steps", "customfield_10072", "Make sure it does the thing."),
    ]


def test_resolution_items_give_resolved_and_reopened() -> None:
    resolved = shared_event("webhook-server-issue-updated-resolved.json")
    by_kind = {change.kind: change for change in resolved.changes}
    assert by_kind[EVENT_UPDATED_RESOLVED].to_string == "Done"
    assert by_kind[EVENT_UPDATED_STATUS].to_string == "Resolved"
    # Server items carry no fieldId: the name stands in.
    assert by_kind[EVENT_UPDATED_STATUS].field_id == "status"

    reopened = shared_event("webhook-issue-updated-reopened.json")
    change = next(c for c in reopened.changes if c.kind == EVENT_UPDATED_REOPENED)
    assert (change.from_string, change.to_string, change.field_id) == ("Done", "", "resolution")


def test_server_custom_field_uses_the_field_name() -> None:
    change = only_change(shared_event("webhook-server-updated-custom-field.json"))
    assert (change.field, change.field_id, change.from_string, change.to_string) == (
        "numfield",
        "numfield",
        "445455561",
        "44545556",
    )


def test_actor_is_the_webhook_user() -> None:
    event = shared_event("webhook-server-issue-updated-commented-1.json")
    assert event.actor == JiraUser(
        display_name="Lev Brouk", name="levbrouk", key="levbrouk", email="lev@mattermost.com"
    )


def test_cloud_comment_event_takes_actor_from_comment_author() -> None:
    event = shared_event("webhook-cloud-comment-created.json")
    assert event.webhook_event == "comment_created" and event.issue_event_type == ""
    assert event.actor is not None and event.actor.display_name == "Test User"
    assert event.actor.account_id
    assert event.comment is not None
    assert event.comment.body == "Added a comment"
    assert event.comment.update_author == event.actor
    # Cloud's standalone comment events carry only a few issue fields.
    assert event.issue.fields_partial
    assert event.issue.summary == "Unit test summary 1"


def test_comment_body_and_times_are_kept_as_sent() -> None:
    event = shared_event("webhook-issue-comment-created-indentation.json")
    assert event.comment is not None
    assert event.comment.body.startswith("[~Test] creating a test comment\r\n\r\na second line")
    assert event.comment.created == event.comment.updated == "2020-06-27T00:44:57.013+0000"
    assert event.comment.id == "10503"
    assert not event.issue.fields_partial


def test_edited_comment_on_old_server_is_recognised_by_its_dates() -> None:
    event = shared_event("webhook-server-old-issue-updated-no-event-type-comment-edited.json")
    assert event.issue_event_type == ""
    assert event.comment is not None and event.comment.body == "and higher eeven higher"
    assert event.comment.updated != event.comment.created


def test_server_comment_deletion_has_no_comment_object() -> None:
    event = shared_event("webhook-server-issue-updated-comment-deleted.json")
    assert event.comment is None
    assert event.actor is not None and event.actor.name == "levbrouk"


def test_non_comment_events_carry_no_comment() -> None:
    assert shared_event("webhook-issue-updated-renamed.json").comment is None


def test_security_level_given_as_bare_id() -> None:
    issue = shared_event("webhook-issue-created-with-security-level.json").issue
    assert issue.security_level == NamedValue(id="10001")
    assert issue.field_values["security"] == (NamedValue(id="10001"),)
    assert shared_event("webhook-issue-created.json").issue.security_level is None


def test_deleted_resolved_issue_is_not_unresolved() -> None:
    payload = load_shared_webhook("webhook-issue-deleted.json")
    payload["issue"]["fields"]["resolution"] = {"id": "10000", "name": "Done"}
    event = normalise(parse_webhook(payload))
    assert event is not None and event.kinds == frozenset({EVENT_DELETED})


def test_snapshot_of_a_cloud_issue() -> None:
    issue = shared_event("webhook-cloud-issue-created-many-fields.json").issue
    assert (issue.id, issue.key) == ("10509", "KT-22")
    assert issue.browse_url == "https://mmtest.atlassian.net/browse/KT-22"
    assert issue.summary == "Lots of fields selected"
    assert issue.description == "The good description"
    assert issue.project == NamedValue(id="10008", name="KT")
    assert issue.project_name == "Koch Testing"
    assert issue.issue_type == NamedValue(id="10002", name="Task")
    assert issue.priority == NamedValue(id="3", name="Medium")
    assert issue.status == NamedValue(id="10004", name="To Do")
    assert issue.resolution is None
    assert issue.assignee is not None and issue.assignee.account_id == "5cedcb4355a88a0fc86388ba"
    assert issue.reporter is not None and issue.reporter.display_name == "Sample User"
    assert issue.labels == ("Label1", "Label2")


def test_field_values_of_a_cloud_issue() -> None:
    values = shared_event("webhook-cloud-issue-created-many-fields.json").issue.field_values
    assert values["priority"] == (NamedValue(id="3", name="Medium"),)
    assert values["labels"] == (NamedValue("Label1", "Label1"), NamedValue("Label2", "Label2"))
    assert [v.id for v in values["fixVersions"]] == ["10000", "10001"]
    assert values["versions"] == () and values["security"] == () and values["resolution"] == ()
    assert values["assignee"] == (NamedValue(id="5cedcb4355a88a0fc86388ba", name="Sample User"),)
    # Single select (option object), multi select (array of options), number, text, user picker.
    assert values["customfield_10073"] == (NamedValue(id="10035", name="1"),)
    assert values["customfield_10075"] == (NamedValue(id="10037", name="1"), NamedValue(id="10038", name="2"))
    assert values["customfield_10071"] == (NamedValue(name="value1"), NamedValue(name="value2"))
    assert values["customfield_10072"] == (NamedValue(name="23"),)
    assert values["customfield_10077"] == (NamedValue(name="dwdwd"),)
    assert values["customfield_10080"] == (NamedValue(id="5cedcb4355a88a0fc86388ba", name="Sample User"),)
    # A sprint rendered as the Java object string gives its id and name.
    assert values["customfield_10021"] == (NamedValue(id="1", name="SCRUM1 Sprint 1"),)
    # Null custom fields stay keyed, with no value, so "empty" filters can tell.
    assert values["customfield_10001"] == ()


def test_partial_cloud_comment_payload_keys_only_the_custom_fields_it_carries() -> None:
    values = shared_event("webhook-cloud-comment-updated.json").issue.field_values
    assert not any(key.startswith("customfield_") for key in values)
    assert values["priority"] and values["status"]


def test_event_summary() -> None:
    event = shared_event("webhook-issue-updated-resolved.json")
    assert event_summary(event) == "TES-41 event_updated_resolved,event_updated_status"


# --- Own payloads: edge cases ---------------------------------------------------------------


def test_own_cloud_priority_change() -> None:
    event = own_event("cloud-issue-updated-priority.json")
    assert event is not None
    assert event.kinds == frozenset({EVENT_UPDATED_PRIORITY})
    assert event.actor == JiraUser(display_name="Ada Lovelace", account_id="5f00aa")
    assert event.timestamp_ms == 1718000000123
    issue = event.issue
    assert issue.security_level == NamedValue(id="10200", name="Internal")
    assert issue.priority == NamedValue(id="1", name="Highest")
    assert issue.assignee is None and issue.resolution is None
    assert issue.field_values["versions"] == (NamedValue(id="10300", name="2.4"),)
    assert issue.field_values["components"] == (NamedValue(id="10400", name="Checkout"),)
    assert issue.field_values["fixVersions"] == ()
    assert issue.field_values["assignee"] == ()
    assert issue.field_values["customfield_10500"] == (NamedValue(id="10501", name="EMEA"),)
    assert issue.field_values["customfield_10510"] == (
        NamedValue(id="10511", name="Web"),
        NamedValue(id="10512", name="iOS"),
    )
    assert issue.field_values["customfield_10520"] == ()
    assert issue.field_values["customfield_10530"] == (NamedValue(name="42"),)
    # Cascading select: the parent option and the chosen child.
    assert issue.field_values["customfield_10540"] == (
        NamedValue(id="10541", name="Hardware"),
        NamedValue(id="10542", name="Disk"),
    )
    # Cloud's sprint objects carry numeric ids.
    assert issue.field_values["customfield_10550"] == (NamedValue(id="7", name="Sprint 7"),)


def test_own_changelog_with_nulls_keeps_only_notable_changes() -> None:
    event = own_event("cloud-issue-updated-several-null-values.json")
    assert event is not None
    # Resolution replaced by another, sprint removal and time estimate give nothing; a custom
    # field named like a system field stays a custom field.
    assert event.kinds == frozenset({"event_updated_customfield_10600", "event_updated_customfield_10700"})
    tier = event.changes[0]
    assert (tier.field, tier.from_string, tier.from_id, tier.to_string, tier.to_id) == (
        "Customer Tier",
        "",
        "",
        "Gold",
        "10601",
    )
    assert event.changes[1].to_id == ""
    assert event.issue.field_values["customfield_10600"] == (NamedValue(id="10601", name="Gold"),)


def test_own_server_payload_without_user_or_event_type_names() -> None:
    event = own_event("server-issue-updated-custom-field-no-user.json")
    assert event is not None
    assert event.kinds == frozenset({"event_updated_Environment Tag"})
    assert is_custom_field_kind("event_updated_Environment Tag")
    assert event.actor is None
    issue = event.issue
    assert (issue.id, issue.project, issue.project_name) == (
        "30001",
        NamedValue("10000", "INF"),
        "Infrastructure",
    )
    assert issue.base_url == "https://jira.corp.example/jira"
    assert issue.labels == () and issue.field_values["labels"] == ()
    assert issue.assignee == JiraUser(display_name="John Doe", name="jdoe", key="JIRAUSER10100")
    assert issue.field_values["assignee"] == (NamedValue(id="jdoe", name="John Doe"),)
    assert issue.field_values["customfield_10100"] == (NamedValue(id="12", name="Infra, week 23"),)
    assert issue.field_values["customfield_10200"] == (NamedValue(name="urgent"),)


def test_unknown_webhook_event_is_not_postable() -> None:
    assert own_event("issue-updated-unknown-event.json") is None


@pytest.mark.parametrize(
    "body",
    [
        {"event": "some_jira_event"},
        {"webhookEvent": "foo"},
        {"webhookEvent": "jira:issue_created"},
        {"webhookEvent": "jira:issue_created", "issue": {"id": "1", "key": "A-1"}},
        {"webhookEvent": "jira:issue_created", "issue": {"fields": {"summary": "no id nor key"}}},
        {"webhookEvent": "jira:issue_updated", "issue": {"id": "1", "fields": {}}, "changelog": {}},
        {"webhookEvent": "jira:issue_updated", "issue": {"id": "1", "fields": {}}, "comment": {}},
        {"webhookEvent": "comment_created", "issue": {"key": "A-1", "fields": {}}, "comment": {"id": "2"}},
        {"webhookEvent": "comment_created", "issue": {"id": "1", "fields": {}}},
        {
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_commented",
            "issue": {"id": "1", "fields": {}},
        },
    ],
)
def test_payloads_without_anything_postable_give_none(body: dict[str, Any]) -> None:
    assert normalise(parse_webhook(body)) is None


def test_bad_json_raises_parse_error_before_normalising() -> None:
    with pytest.raises(WebhookParseError):
        parse_webhook(b'{"webhookEvent": "jira:issue_created", ')


def test_minimal_created_issue_fills_defaults() -> None:
    event = normalise(
        parse_webhook(
            {"webhookEvent": "jira:issue_created", "issue": {"id": "1", "key": "A-1", "fields": {}}}
        )
    )
    assert event is not None
    assert event.kinds == frozenset({EVENT_CREATED})
    assert event.actor is None and event.timestamp_ms is None and event.comment is None
    assert event.issue.self_url == "" and event.issue.browse_url == ""
    assert event.issue.priority is None and event.issue.issue_type == NamedValue()


def test_assigned_event_prefers_the_assignee_item_and_keeps_the_others() -> None:
    payload = load_shared_webhook("webhook-issue-updated-assigned.json")
    items = payload["changelog"]["items"]
    items.insert(0, {"field": "priority", "fieldtype": "jira", "fromString": "Low", "toString": "High"})
    event = normalise(parse_webhook(payload))
    assert event is not None
    assert [c.kind for c in event.changes] == [EVENT_UPDATED_ASSIGNEE, EVENT_UPDATED_PRIORITY]


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("Version", EVENT_UPDATED_AFFECTS_VERSION),
        ("reporter", EVENT_UPDATED_REPORTER),
        ("Status", EVENT_UPDATED_STATUS),
        ("Sprint", EVENT_UPDATED_SPRINT),
    ],
)
def test_other_system_fields(field: str, kind: str) -> None:
    payload = load_shared_webhook("webhook-issue-updated-renamed.json")
    payload["changelog"]["items"] = [
        {"field": field, "fieldtype": "jira", "fromString": "a", "toString": "b"}
    ]
    event = normalise(parse_webhook(payload))
    assert event is not None and event.kinds == frozenset({kind})


def test_rank_without_target_is_dropped() -> None:
    payload = load_shared_webhook("webhook-issue-updated-rank.json")
    payload["changelog"]["items"][0]["toString"] = ""
    assert normalise(parse_webhook(payload)) is None


def test_description_in_document_format_is_flattened_to_text() -> None:
    adf = {
        "type": "doc",
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "First"}]},
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "Second"},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "line"},
                ],
            },
        ],
    }
    body = {
        "webhookEvent": "jira:issue_created",
        "issue": {"id": "1", "key": "A-1", "fields": {"description": adf}},
    }
    event = normalise(parse_webhook(body))
    assert event is not None and event.issue.description == "First\nSecond\nline"


# --- Robustness -------------------------------------------------------------------------

ROBUSTNESS_SOURCES = (
    "webhook-cloud-issue-created-many-fields.json",
    "webhook-cloud-comment-updated.json",
    "webhook-issue-updated-multiple-values.json",
    "webhook-issue-updated-reopened.json",
    "webhook-issue-deleted.json",
    "webhook-server-issue-updated-comment-edited.json",
    "webhook-server-old-issue-updated-no-event-type-commented.json",
    "webhook-server-updated-custom-field.json",
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a JSON document (dict keys and list indices)."""
    found: list[tuple[Any, ...]] = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _mutate(document: dict[str, Any], rng: random.Random, count: int) -> dict[str, Any]:
    mutant = copy.deepcopy(document)
    for path in rng.sample(_paths(document), count):
        parent: Any = mutant
        for key in path[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                break  # an earlier mutation removed this branch
        else:
            last = path[-1]
            if isinstance(parent, dict) and last in parent and rng.random() < 0.5:
                del parent[last]
            elif isinstance(parent, dict | list) and (isinstance(parent, dict) or last < len(parent)):
                parent[last] = None
    return mutant


@pytest.mark.parametrize("name", ROBUSTNESS_SOURCES)
def test_normalise_survives_dropped_keys_and_nulls(name: str) -> None:
    document = load_shared_webhook(name)
    rng = random.Random(name)  # deterministic per payload
    for _ in range(40):
        mutant = _mutate(document, rng, rng.randint(1, 12))
        event = normalise(parse_webhook(json.dumps(mutant)))
        if event is not None:
            assert event.kinds
            assert all(kind in STANDARD_KINDS or is_custom_field_kind(kind) for kind in event.kinds)
            assert event_summary(event)


def test_browse_url_percent_encodes_what_would_ping_or_break_a_link() -> None:
    payload = json.loads((OWN / "cloud-issue-updated-priority.json").read_bytes())
    payload["issue"]["key"] = "@channel)![x]"
    event = normalise(parse_webhook(payload))
    assert event is not None
    url = event.issue.browse_url
    assert url.endswith("/browse/%40channel%29%21%5Bx%5D")
    assert "@" not in url and ")" not in url
