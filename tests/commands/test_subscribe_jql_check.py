"""JQL the bot cannot answer, checked by Jira (`jql_check=jira`), and names learnt from Jira
(custom field names, the priority order) when subscriptions are saved, tested and routed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.commands.subscription_text import (
    SubscriptionTextError,
    check_jql,
    format_command,
    parse_command,
)
from bot.routing.jql import JiraNames
from bot.routing.model import Subscription, SubscriptionFilters
from tests.commands.conftest import Harness
from tests.commands.test_subscribe import dialog_fields, h, stored
from tests.pipeline.test_issue_fetch import processed, send, wait_until

__all__ = ["h"]

REMOTE = "project = WEB AND watcher = ada"


# -- the text form, pure -------------------------------------------------------------------------


def test_jql_check_is_an_option_of_the_one_line_form_and_formatted_back() -> None:
    draft = parse_command(["W", "events=event_created", f"jql='{REMOTE}'", "jql_check=JIRA"])
    filters = draft.apply()
    assert filters.jql == REMOTE and filters.jql_check == "jira"
    sub = Subscription(id="1", name="W", channel_id="c", instance_id="i", filters=filters)
    assert format_command(sub).endswith("jql_check=jira")
    words = format_command(sub).replace("'", '"').split()
    assert parse_command(words).apply() == filters
    with pytest.raises(SubscriptionTextError, match="`maybe` is not a choice; use `jira`"):
        parse_command(["W", "jql_check=maybe"])
    # Remote clauses pass the parse: whether they are allowed depends on jql_check.
    assert parse_command(["W", f"jql='{REMOTE}'"]).jql == REMOTE


def test_check_jql_refuses_remote_clauses_unless_jira_checks_them() -> None:
    local = SubscriptionFilters(jql=REMOTE)
    with pytest.raises(
        SubscriptionTextError, match=r"`watcher = ada` cannot be answered.*jql_check=jira"
    ) as e:
        check_jql(local, names=None, service_account=True)
    assert e.value.field == "jql"
    # Without a service account, Jira is not offered.
    with pytest.raises(SubscriptionTextError) as e:
        check_jql(local, names=None, service_account=False)
    assert "jql_check" not in e.value.problem
    jira = SubscriptionFilters(jql=REMOTE, jql_check="jira")
    check_jql(jira, names=None, service_account=True)
    with pytest.raises(SubscriptionTextError, match="this instance has none") as e:
        check_jql(jira, names=None, service_account=False)
    assert e.value.field == "jql_check"


def test_check_jql_uses_the_names_learnt_from_jira() -> None:
    names = JiraNames.of({"story points": "customfield_10016"}, ("Highest", "High", "Medium"))
    for jql in ('"Story Points" > 3', "priority > Medium"):
        with pytest.raises(SubscriptionTextError):
            check_jql(SubscriptionFilters(jql=jql), names=None, service_account=True)
        check_jql(SubscriptionFilters(jql=jql), names=names, service_account=True)


def test_names_nobody_could_learn_are_refused_with_the_reason() -> None:
    points = SubscriptionFilters(jql='project = WEB AND "Story Points" > 3')
    with pytest.raises(SubscriptionTextError) as e:
        check_jql(points, names=None, service_account=False)
    assert e.value.field == "jql" and e.value.problem.startswith('column 19: `"Story Points" > 3` cannot be')
    assert "by its id (`cf[10072]`)" in e.value.problem
    assert (
        "learnt from Jira with the instance's service account, and this instance has none" in e.value.problem
    )
    with pytest.raises(SubscriptionTextError) as e:
        check_jql(points, names=None, service_account=True)  # a name Jira's field list lacks
    assert "`cf[10072]`" in e.value.problem and "jql_check=jira" in e.value.problem
    with pytest.raises(SubscriptionTextError, match="priority order, which is not known here; list the"):
        check_jql(SubscriptionFilters(jql="priority > High"), names=None, service_account=False)


# -- the commands --------------------------------------------------------------------------------


async def test_one_line_add_with_jql_check_jira_is_stored_and_shown(h: Harness) -> None:
    refused = await h.command("alice", f'subscribe add W events=event_updated_status jql="{REMOTE}"')
    assert "`watcher = ada` cannot be answered by the bot" in refused["text"]
    assert "`jql_check=jira`" in refused["text"]
    assert await stored(h) == {}
    added = await h.command(
        "alice", f'subscribe add W events=event_updated_status jql="{REMOTE}" jql_check=jira'
    )
    assert added["text"] == "@alice added the subscription **W** to this channel."
    assert (await stored(h))["W"].filters.jql_check == "jira"
    listed = (await h.command("alice", "subscribe list"))["text"]
    assert f"JQL `{REMOTE}` (checked by Jira where the bot cannot)" in listed
    shown = (await h.command("alice", "subscribe show W"))["text"]
    assert "checked by Jira (service account)" in shown and "jql_check=jira" in shown
    # Back to local: the remote clause is refused again.
    back = await h.command("alice", "subscribe edit W jql_check=local")
    assert "`watcher = ada` cannot be answered by the bot" in back["text"]
    assert (await stored(h))["W"].filters.jql_check == "jira"


async def test_history_clauses_are_refused_or_checked_by_jira(h: Harness) -> None:
    jql = "project = WEB AND status CHANGED TO Done AFTER -1d"
    refused = (await h.command("alice", f'subscribe add H events=event_updated_status jql="{jql}"'))["text"]
    assert "`jql`: column 19: `status CHANGED TO Done AFTER -1d` cannot be answered by the bot" in refused
    assert "change history" in refused and "`jql_check=jira`" in refused
    added = await h.command(
        "alice", f'subscribe add H events=event_updated_status jql="{jql}" jql_check=jira'
    )
    assert added["text"] == "@alice added the subscription **H** to this channel."
    assert (await stored(h))["H"].filters.jql == jql


async def test_the_dialog_offers_jira_checks(h: Harness) -> None:
    await h.command("alice", "subscribe add")
    element = next(e for e in h.mm.dialogs[-1]["dialog"]["elements"] if e["name"] == "jql_check")
    assert element["type"] == "select" and [o["value"] for o in element["options"]] == ["local", "jira"]
    status, body = await h.submit("alice", dialog_fields(projects="", jql=REMOTE, jql_check="local"))
    assert status == 200 and "`watcher = ada` cannot be answered by the bot" in body["errors"]["jql"]
    status, body = await h.submit("alice", dialog_fields(projects="", jql=REMOTE, jql_check="jira"))
    assert (status, body) == (200, {})
    assert (await stored(h))["Bugs in WEB"].filters.jql_check == "jira"


async def test_subscribe_test_shows_what_jira_answered(h: Harness) -> None:
    await h.command("alice", f'subscribe add W events=event_updated_status jql="{REMOTE}" jql_check=jira')
    watched = h.cloud.add_issue("WEB", "Watched by Ada")
    other = h.cloud.add_issue("WEB", "Nobody watches this")
    h.cloud.jql_answers[REMOTE] = {watched}
    text = (await h.command("alice", f"subscribe test W {watched}"))["text"]
    assert f"**{watched}** would reach **W**" in text
    assert "* ✔ `project = WEB` (issue: WEB)" in text
    assert "* ⇄ `watcher = ada`: checked by Jira (Jira says the issue matches the whole JQL)" in text
    assert "* ✔ JQL as a whole (answered by Jira)" in text
    text = (await h.command("alice", f"subscribe test W {other}"))["text"]
    assert f"**{other}** would not reach **W**" in text
    assert "Jira says the issue does not match the whole JQL" in text
    asked = [r for r in h.cloud.requests_to("/rest/api/3/search/jql", "POST")]
    assert [r.body["jql"] for r in asked] == [
        f"({REMOTE}) AND issue = {h.cloud.issue(k)['id']}" for k in (watched, other)
    ]
    # Jira busy: the clause is shown as checked by Jira, the whole as undecided.
    h.cloud.fail_next(1, 503, retry_after=30, path="/rest/api/3/search/jql")
    text = (await h.command("alice", f"subscribe test W {watched}"))["text"]
    assert "⇄ `watcher = ada`: checked by Jira when an event comes" in text
    assert "? JQL as a whole: Jira decides" in text


async def test_custom_field_names_and_priorities_are_learnt_at_save(h: Harness) -> None:
    h.cloud.custom_fields = {"customfield_10016": "Story Points", "customfield_10072": "Team"}
    added = await h.command(
        "alice",
        "subscribe add P events=event_updated_status jql='\"Story Points\" > 3 AND priority > Medium'",
    )
    assert added["text"] == "@alice added the subscription **P** to this channel."
    [fields] = h.cloud.requests_to("/rest/api/2/field", "GET")
    [priorities] = h.cloud.requests_to("/rest/api/2/priority", "GET")
    service = next(u.id for u in h.cloud.users.values() if u.display_name == "Jira Service Account")
    assert fields.user == service and priorities.user == service
    unknown = await h.command("alice", "subscribe add Q events=event_updated_status jql='\"Nope Field\" = 1'")
    assert '`"Nope Field" = 1` cannot be answered by the bot' in unknown["text"]
    assert "a custom field name?" in unknown["text"]
    # An unknown name makes the save read the names again, but not within a minute of the last
    # read (tests/pipeline/test_jira_names.py): here they were read just now.
    assert len(h.cloud.requests_to("/rest/api/2/field", "GET")) == 1
    bad_priority = await h.command(
        "alice", "subscribe add R events=event_updated_status jql='priority > Blocker'"
    )
    assert '"Blocker" is not a priority of this instance' in bad_priority["text"]
    assert set(await stored(h)) == {"P"}


def story_webhook(h: Harness, key: str, points: float) -> dict[str, Any]:
    issue = h.cloud.issue(key)
    return {
        "timestamp": 1764057600000,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "issue": {
            "id": str(issue["id"]),
            "key": key,
            "self": f"{h.cloud_url}/rest/api/2/issue/{issue['id']}",
            "fields": {
                "summary": issue["summary"],
                "issuetype": {"id": "10001", "name": "Story"},
                "project": {"id": "10000", "key": "WEB", "name": "Web Site"},
                "status": {"id": "3", "name": "In Progress"},
                "priority": {"id": "2", "name": "High"},
                "security": None,
                "customfield_10016": points,
            },
        },
        "changelog": {"items": [{"field": "status", "fromString": "To Do", "toString": "In Progress"}]},
    }


async def test_events_are_routed_by_custom_field_name_and_priority_order(h: Harness) -> None:
    h.cloud.custom_fields = {"customfield_10016": "Story Points"}
    sub = Subscription(
        id="points",
        name="big stories",
        channel_id=h.channels["dev"],
        instance_id=h.cloud_url,
        filters=SubscriptionFilters(
            events={"event_updated_status"}, jql='"story points" >= 5 AND priority > Medium'
        ),
    )
    await h.services.db.subscriptions.upsert(sub, now=datetime.now(UTC))
    await h.services.subscriptions.changed()
    big = h.cloud.add_issue("WEB", "Big story", issue_type="Story")
    small = h.cloud.add_issue("WEB", "Small story", issue_type="Story")
    await send(h, story_webhook(h, small, 2))
    await send(h, story_webhook(h, big, 8))

    def posted(key: str) -> bool:
        return any(key in json.dumps(p) for p in h.mm.posts_in(h.channels["dev"]))

    await wait_until(lambda: posted(big), "the big story posted")
    await processed(h)
    assert not posted(small)
    # Learnt once, for both events.
    assert len(h.cloud.requests_to("/rest/api/2/field", "GET")) == 1
    assert len(h.cloud.requests_to("/rest/api/2/priority", "GET")) == 1
