"""The one-line subscription form and the dialog field parsers."""

from __future__ import annotations

import pytest

from bot.commands.registry import tokenize
from bot.commands.subscription_text import (
    EVENT_CHOICES,
    SubscriptionDraft,
    SubscriptionTextError,
    check_complete,
    format_command,
    parse_command,
    parse_events,
    parse_field_filter,
    parse_field_filters,
    parse_issue_types,
    parse_name,
    parse_projects,
)
from bot.jira.events import EVENT_UPDATED_ANY, STANDARD_KINDS
from bot.routing.model import FieldFilter, Inclusion, Subscription, SubscriptionFilters


def parse(text: str) -> SubscriptionDraft:
    return parse_command(tokenize(text))


def test_the_documented_example() -> None:
    draft = parse(
        '"Bugs in WEB" projects=WEB events=event_created,event_updated_status issue_types=Bug '
        'fields="priority include_any High,Highest"'
    )
    assert draft.name == "Bugs in WEB"
    assert draft.projects == ("WEB",)
    assert draft.events == ("event_created", "event_updated_status")
    assert draft.issue_types == ("Bug",)
    assert draft.fields == (
        FieldFilter(key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("High", "Highest")),
    )


def test_event_choices_are_the_whole_vocabulary() -> None:
    assert set(EVENT_CHOICES) == STANDARD_KINDS | {EVENT_UPDATED_ANY}
    assert len(EVENT_CHOICES) == len(set(EVENT_CHOICES))


def test_unquoted_name_options_in_any_order_and_singular_keys() -> None:
    draft = parse("Release train event=event_created project=web,api types=Story")
    assert draft.name == "Release train"
    assert draft.projects == ("WEB", "API")
    assert draft.issue_types == ("Story",)


def test_repeated_options_merge() -> None:
    draft = parse('x projects=WEB projects=API,WEB fields="labels empty" fields="priority exclude_any Low"')
    assert draft.projects == ("WEB", "API")
    assert draft.fields is not None and [f.key for f in draft.fields] == ["labels", "priority"]


def test_semicolon_separates_field_filters_and_typographic_quotes_work() -> None:
    draft = parse("x fields=“priority include_any High; fixVersions empty”")
    assert draft.fields == (
        FieldFilter(key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("High",)),
        FieldFilter(key="fixVersions", inclusion=Inclusion.EMPTY),
    )


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(SubscriptionTextError) as e:
        parse("x project=WEB status=Done")
    assert e.value.field == "status"
    assert "projects, events, issue_types, fields" in e.value.message


def test_words_after_options_are_refused() -> None:
    with pytest.raises(SubscriptionTextError, match="comes after the options"):
        parse("x projects=WEB, API")


def test_unclosed_quote() -> None:
    with pytest.raises(SubscriptionTextError) as e:
        parse('x fields="priority include_any High')
    assert e.value.field == "fields" and "not closed" in e.value.problem


def test_unknown_event_lists_the_valid_ones_and_suggests_a_prefix() -> None:
    with pytest.raises(SubscriptionTextError) as e:
        parse_events("created, event_nope")
    message = e.value.message
    assert "`events`" in message
    assert "`created` (did you mean `event_created`?)" in message and "`event_nope`" in message
    assert "event_updated_status" in message and "event_updated_customfield_NNNNN" in message


def test_events_accept_custom_fields_and_any_case() -> None:
    assert parse_events("EVENT_CREATED event_updated_customfield_10072\nevent_updated_any") == (
        "event_created",
        "event_updated_customfield_10072",
        "event_updated_any",
    )
    with pytest.raises(SubscriptionTextError):
        parse_events("event_updated_customfield_abc")


def test_projects_are_upper_cased_and_checked() -> None:
    assert parse_projects("web, api  ops") == ("WEB", "API", "OPS")
    with pytest.raises(SubscriptionTextError, match="not a project key"):
        parse_projects("WEB-1")


def test_issue_types_keep_spaces_inside_names() -> None:
    assert parse_issue_types("Bug, New  Feature,10004") == ("Bug", "New Feature", "10004")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("priority", "needs a field, an inclusion and values"),
        ("priority include_some High", "include_any, include_all, exclude_any, empty, include_or_empty"),
        ("priority include_any", "needs values"),
        ("labels empty x", "takes no values"),
        ("priority incude_any x", "is not an inclusion (did you mean `include_any`?)"),
        ("pri ority include_any x", "unknown field `pri`"),
        ("prio=rity include_any x", "unknown field `prio=rity` (did you mean `priority`?)"),
    ],
)
def test_field_filter_errors(text: str, problem: str) -> None:
    with pytest.raises(SubscriptionTextError) as e:
        parse_field_filter(text)
    assert problem in e.value.problem


def test_field_filter_lines_and_inclusion_spellings() -> None:
    filters = parse_field_filters(
        "status Include-Any In Progress, Done\n\ncustomfield_10072 include_or_empty a"
    )
    assert filters[0] == FieldFilter(
        key="status", inclusion=Inclusion.INCLUDE_ANY, values=("In Progress", "Done")
    )
    assert filters[1].inclusion is Inclusion.INCLUDE_OR_EMPTY


def test_name_rules() -> None:
    assert parse_name("  Bugs   in WEB ") == "Bugs in WEB"
    with pytest.raises(SubscriptionTextError, match="give the subscription a name"):
        parse_name("  ")
    with pytest.raises(SubscriptionTextError, match="at most 64"):
        parse_name("x" * 65)


def test_complete_needs_projects_and_events() -> None:
    with pytest.raises(SubscriptionTextError) as e:
        check_complete(SubscriptionFilters(events={"event_created"}))
    assert e.value.field == "projects"
    with pytest.raises(SubscriptionTextError) as e:
        check_complete(SubscriptionFilters(projects={"WEB"}))
    assert e.value.field == "events"


def test_apply_replaces_only_given_options() -> None:
    base = SubscriptionFilters(projects={"WEB"}, events={"event_created"}, issue_types={"Bug"})
    changed = parse("x events=event_deleted name=Renamed").apply(base)
    assert changed.events == frozenset({"event_deleted"})
    assert changed.projects == frozenset({"WEB"}) and changed.issue_types == frozenset({"Bug"})
    assert parse("x name=Renamed").rename == "Renamed"
    assert not parse("just a name").has_options


def test_format_reads_back_to_the_same_filters() -> None:
    sub = Subscription(
        id="1",
        name='Team "A" bugs',
        channel_id="c",
        instance_id="https://jira.example.com",
        filters=SubscriptionFilters(
            projects={"WEB", "API"},
            events={"event_updated_customfield_10072", "event_created", "event_updated_status"},
            issue_types={"Bug", "New Feature"},
            fields=(
                FieldFilter(key="priority", inclusion=Inclusion.INCLUDE_ANY, values=("High", "Highest")),
                FieldFilter(key="fixVersions", inclusion=Inclusion.EMPTY),
            ),
        ),
    )
    line = format_command(sub)
    assert line.startswith("'Team \"A\" bugs' projects=API,WEB events=event_created,event_updated_status,")
    draft = parse(line)
    assert draft.name == sub.name
    assert draft.apply() == sub.filters
