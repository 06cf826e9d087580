"""Partial matching of transitions and assignees."""

from __future__ import annotations

import random

import pytest

from bot.commands.registry import tokenize
from bot.commands.resolve import (
    AssigneeQuery,
    JiraUserCandidate,
    ResolveResult,
    Transition,
    match_transitions,
    parse_assignee_argument,
    rank_users,
)

TO_DO = Transition("11", "To Do", "To Do")
START = Transition("21", "Start Progress", "In Progress")
REVIEW = Transition("31", "Send to review", "In Review")
DONE = Transition("41", "Done", "Done")
WONT = Transition("51", "Won't Do", "Won't Do")
WORKFLOW = (TO_DO, START, REVIEW, DONE, WONT)


def ids(result: ResolveResult[Transition]) -> list[str]:
    return [t.id for t in result.candidates]


# -- transitions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Done", "41"),
        ("done", "41"),
        ("DONE", "41"),
        ("in progress", "21"),
        ("In  Progress", "21"),
        ("inprogress", "21"),
        ("in-progress", "21"),
        ("wont do", "51"),
        ("won't", "51"),
        ("to do", "11"),
        ("todo", "11"),
        ("start", "21"),  # prefix of the transition's name
        ("review", "31"),  # substring of both, in one transition only
        ("rev", "31"),
        ("progress", "21"),
    ],
)
def test_one_transition_is_chosen(query: str, expected: str) -> None:
    result = match_transitions(query, WORKFLOW, issue_key="ABC-1")
    assert result.kind == "one"
    assert result.chosen is not None and result.chosen.id == expected
    assert result.total == 1


def test_exact_beats_prefix() -> None:
    review = Transition("1", "Review", "Review")
    passed = Transition("2", "Review passed", "Review Passed")
    assert match_transitions("review", [passed, review]).chosen == review
    assert match_transitions("review p", [passed, review]).chosen == passed


def test_prefix_beats_substring() -> None:
    start = Transition("1", "Start Progress", "In Progress")  # "progress" only inside
    report = Transition("2", "Report", "Progress Report")  # "progress" starts the status
    assert match_transitions("progress", [start, report]).chosen == report


def test_exact_name_beats_prefix_of_a_status() -> None:
    close = Transition("1", "Close", "Closed")
    closure = Transition("2", "Request closure", "Close Requested")
    assert match_transitions("close", [closure, close]).chosen == close


def test_several_matches_in_the_best_tier_are_offered_in_workflow_order() -> None:
    result = match_transitions("in", WORKFLOW, issue_key="ABC-1")
    assert result.kind == "several"
    assert ids(result) == ["21", "31"]
    assert result.chosen is None
    assert result.message == (
        'Please be more specific: "in" matches several transitions of ABC-1: '
        "Start Progress → In Progress, Send to review → In Review."
    )


def test_several_transitions_to_the_same_state() -> None:
    resolve = Transition("1", "Resolve", "Done")
    close = Transition("2", "Close", "Done")
    result = match_transitions("done", [resolve, close])
    assert result.kind == "several"
    assert result.candidates == (resolve, close)
    assert [t.label for t in result.candidates] == ["Resolve → Done", "Close → Done"]
    assert result.message == (
        'Please be more specific: "done" matches several transitions: Resolve → Done, Close → Done.'
    )


def test_no_match_lists_the_valid_states_once_each() -> None:
    reopen = Transition("61", "Back to do", "To Do")
    result = match_transitions("dne", [*WORKFLOW, reopen], issue_key="ABC-1")
    assert result.kind == "none"
    assert result.candidates == ()
    assert result.message == (
        'No transition of ABC-1 matches "dne". Valid states: To Do, In Progress, In Review, Done, Won\'t Do.'
    )
    without_key = match_transitions("dne", [TO_DO, DONE])
    assert without_key.message == 'No transition matches "dne". Valid states: To Do, Done.'


def test_an_empty_query_applies_nothing_and_offers_every_transition() -> None:
    result = match_transitions("  ", [TO_DO, DONE], issue_key="ABC-1")
    assert result.kind == "several"
    assert result.candidates == (TO_DO, DONE)
    assert result.message == "Which state should ABC-1 move to? Valid states: To Do, Done."
    assert match_transitions("", [DONE]).kind == "several"


def test_no_transitions_at_all() -> None:
    result = match_transitions("done", [], issue_key="ABC-1")
    assert (result.kind, result.message) == ("none", "No transitions of ABC-1 are available to you.")


def test_transition_from_rest() -> None:
    payload = {"id": "21", "name": "Start Progress", "to": {"id": "3", "name": "In Progress"}}
    assert Transition.from_rest(payload) == START
    assert Transition.from_rest({"id": 5, "name": "Odd"}) == Transition("5", "Odd", "")


def test_transition_label_names_the_state_and_a_differing_transition() -> None:
    assert DONE.label == "Done"
    assert WONT.label == "Won't Do"
    assert START.label == "Start Progress → In Progress"


# -- users ------------------------------------------------------------------------------------


def cloud(display: str, account: str, email: str = "") -> JiraUserCandidate:
    return JiraUserCandidate(display_name=display, account_id=account, email=email)


def server(display: str, name: str, email: str = "") -> JiraUserCandidate:
    return JiraUserCandidate(display_name=display, name=name, email=email)


ANN = cloud("Ann Lee", "acc-ann", "ann.lee@acme.com")
ANNABEL = cloud("Annabel Smith", "acc-annabel", "annabel@acme.com")
DANA = cloud("Dana Annett", "acc-dana", "dana@acme.com")
JOHN = cloud("John Smith", "acc-john", "john.smith@acme.com")
JOHNNY = cloud("Johnny Walker", "acc-johnny")  # email hidden by the user's privacy settings
KATE = cloud("Kate Blacksmith", "acc-kate", "kate@acme.com")
CLOUD_USERS = (ANN, ANNABEL, DANA, JOHN, JOHNNY, KATE)

JSMITH = server("John Smith", "jsmith", "jsmith@corp.example")
JSMITHERS = server("Jane Smithers", "jsmithers", "jane@corp.example")
OBRIEN = server("Ann O'Brien", "aobrien", "ann.obrien@corp.example")
SERVER_USERS = (JSMITH, JSMITHERS, OBRIEN)


@pytest.mark.parametrize(
    ("query", "users", "expected"),
    [
        ("ann lee", CLOUD_USERS, ANN),  # exact display name, although "ann" starts others
        ("ANN  LEE", CLOUD_USERS, ANN),
        ("john.smith@acme.com", CLOUD_USERS, JOHN),  # exact email
        ("jsmith", SERVER_USERS, JSMITH),  # exact username beats substring of "jsmithers"
        ("walk", CLOUD_USERS, JOHNNY),  # prefix of a last name
        ("jo sm", CLOUD_USERS, JOHN),  # every word starts a name
        ("smith jo", CLOUD_USERS, JOHN),  # in any order
        ("john smi", CLOUD_USERS, JOHN),
        ("nab", CLOUD_USERS, ANNABEL),  # substring
        ("lee@acme", CLOUD_USERS, ANN),  # substring of an email
        ("smithers", SERVER_USERS, JSMITHERS),
        ("ann o'brien", SERVER_USERS, OBRIEN),
        ("o'b", SERVER_USERS, OBRIEN),
    ],
)
def test_one_user_is_chosen(
    query: str, users: tuple[JiraUserCandidate, ...], expected: JiraUserCandidate
) -> None:
    result = rank_users(query, users)
    assert result.kind == "one"
    assert result.chosen == expected
    assert result.message == ""


def test_prefix_of_a_first_or_last_name_beats_substring() -> None:
    result = rank_users("smi", CLOUD_USERS)
    assert result.kind == "several"
    # Kate Blacksmith only contains "smi": a lower tier, left out.
    assert result.candidates == (ANNABEL, JOHN)
    assert result.message == '"smi" matches 2 users. Pick one:'


def test_several_users_are_sorted_by_name() -> None:
    result = rank_users("ann", CLOUD_USERS)
    assert result.kind == "several"
    assert result.candidates == (ANN, ANNABEL, DANA)
    assert result.total == 3


def test_the_same_display_name_twice_is_ambiguous_and_shows_emails() -> None:
    other_john = cloud("John Smith", "acc-john-2", "john.smith@other.example")
    result = rank_users("John Smith", [other_john, JOHN])
    assert result.kind == "several"
    assert result.candidates == (JOHN, other_john)
    assert [u.label for u in result.candidates] == [
        "John Smith (john.smith@acme.com)",
        "John Smith (john.smith@other.example)",
    ]


def test_candidates_are_capped_at_five_and_deterministic() -> None:
    alexes = [cloud(f"Alex {surname}", f"acc-{i}") for i, surname in enumerate("GFEDCBA")]
    shuffled = list(alexes)
    random.Random(7).shuffle(shuffled)
    result = rank_users("alex", shuffled)
    assert result.kind == "several"
    assert [u.display_name for u in result.candidates] == [f"Alex {c}" for c in "ABCDE"]
    assert result.total == 7
    assert (
        result.message == '"alex" matches 7 users; here are the first 5. Pick one, or type more of the name.'
    )
    assert rank_users("alex", alexes) == result
    assert len(rank_users("alex", alexes, limit=2).candidates) == 2


def test_the_same_user_returned_twice_is_one_candidate() -> None:
    assert rank_users("ann", [ANN, ANN]).chosen == ANN


def test_no_match_says_why_and_what_jira_suggested() -> None:
    result = rank_users("zed", [JSMITHERS, JSMITH], issue_key="ABC-1")
    assert result.kind == "none"
    assert result.candidates == ()
    assert result.message == (
        'No Jira user who can be assigned to ABC-1 matches "zed". '
        "Jira suggested: Jane Smithers (jsmithers, jane@corp.example), "
        "John Smith (jsmith, jsmith@corp.example). "
        "Try a full name, username or email address."
    )
    nobody = rank_users("zed", [])
    assert (
        nobody.message
        == 'No Jira user who can be assigned matches "zed". Try a full name, username or email address.'
    )


def test_an_empty_user_query() -> None:
    result = rank_users("  ", CLOUD_USERS)
    assert (result.kind, result.candidates) == ("none", ())
    assert result.message == "Please name the assignee: a Jira user, `me` or `@mattermost-user`."


def test_cloud_and_server_candidates_are_assigned_by_their_own_identifier() -> None:
    assert ANN.identifier == "acc-ann"
    assert ANN.assignee_field() == {"accountId": "acc-ann"}
    assert JSMITH.identifier == "jsmith"
    assert JSMITH.assignee_field() == {"name": "jsmith"}
    assert JOHNNY.label == "Johnny Walker"
    assert JSMITH.label == "John Smith (jsmith, jsmith@corp.example)"


def test_candidates_from_rest() -> None:
    cloud_payload = {
        "accountId": "5b10a2844c20165700ede21g",
        "accountType": "atlassian",
        "displayName": "Mia Krystof",
        "emailAddress": "mia@example.com",
        "active": True,
    }
    server_payload = {
        "name": "fred",
        "key": "JIRAUSER10100",
        "displayName": "Fred F. User",
        "emailAddress": None,
    }
    assert JiraUserCandidate.from_rest(cloud_payload) == cloud(
        "Mia Krystof", "5b10a2844c20165700ede21g", "mia@example.com"
    )
    assert JiraUserCandidate.from_rest(server_payload) == server("Fred F. User", "fred")


# -- the assign argument ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["me"], AssigneeQuery("me")),
        (["ME"], AssigneeQuery("me")),
        (["@John.Doe"], AssigneeQuery("mattermost_user", "john.doe")),
        (["Ann", "Lee"], AssigneeQuery("search", "Ann Lee")),
        (["Ann Lee"], AssigneeQuery("search", "Ann Lee")),
        (["me", "too"], AssigneeQuery("search", "me too")),
        (["@"], AssigneeQuery("search", "@")),
        (["jsmith@corp.example"], AssigneeQuery("search", "jsmith@corp.example")),
        ([], AssigneeQuery("missing")),
        (["", "  "], AssigneeQuery("missing")),
    ],
)
def test_parse_assignee_argument(words: list[str], expected: AssigneeQuery) -> None:
    assert parse_assignee_argument(words) == expected


def test_a_quoted_name_with_an_apostrophe_reaches_the_ranking_whole() -> None:
    words = tokenize("'Ann O'Brien'")
    query = parse_assignee_argument(words)
    assert query == AssigneeQuery("search", "Ann O'Brien")
    assert rank_users(query.text, SERVER_USERS).chosen == OBRIEN
