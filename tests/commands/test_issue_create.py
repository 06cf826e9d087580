"""/jira create: choosing project and type, the form built from create metadata, submission,
Jira's field errors, the link to Jira for forms a dialog cannot show, the announcement."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.render.markup import ZERO_WIDTH_JOINER
from tests.commands.conftest import Harness


async def cloud_alice(harness: Harness) -> str:
    alice = harness.cloud.add_user("Alice Liddell", email="alice@example.com")
    await harness.connect_cloud("alice", alice)
    return alice


def elements(opened: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in opened["dialog"]["elements"]}


def link_in(text: str) -> str:
    return text.split("](", 1)[1].split(")", 1)[0]


async def test_pick_a_type_fill_the_form_and_the_channel_is_told(harness: Harness) -> None:
    alice = await cloud_alice(harness)
    harness.cloud.add_project("PROJ", "Project", issue_types=("Task", "Bug"))
    answer = await harness.command("alice", "create Fix the login")
    [picker] = answer["attachments"]
    assert "**Project** (`PROJ`)" in picker["text"] and "Summary: Fix the login" in picker["text"]
    assert [a["name"] for a in picker["actions"]] == ["Task", "Bug", "Another project"]

    status, body = await harness.click("alice", answer, "Bug")
    assert (status, body) == (200, {})
    opened = harness.mm.dialogs[-1]
    form = elements(opened)
    assert list(form) == ["summary", "description", "priority", "labels", "assignee"]
    assert form["summary"]["default"] == "Fix the login" and not form["summary"]["optional"]
    assert [o["text"] for o in form["priority"]["options"]][:2] == ["Highest", "High"]

    status, body = await harness.submit(
        "alice",
        {
            "summary": "Fix the login @all",
            "description": "It *fails*",
            "priority": "2",
            "labels": "auth, web",
            "assignee": "me",
        },
    )
    assert (status, body) == (200, {})
    issue = harness.cloud.issue("PROJ-1")
    assert (issue["summary"], issue["issuetype"], issue["priority"]) == ("Fix the login @all", "Bug", "High")
    assert issue["labels"] == ["auth", "web"] and issue["description"] == "It *fails*"
    assert issue["assignee"] == alice and issue["reporter"] == alice
    [post] = harness.mm.posts_in(harness.channels["dev"])
    assert post["message"] == (
        f"@{ZERO_WIDTH_JOINER}alice created a Jira issue "
        f"[PROJ-1: Fix the login @{ZERO_WIDTH_JOINER}all]({harness.cloud_url}/browse/PROJ-1)"
    )


async def test_options_open_the_form_at_once_and_a_named_assignee_is_set_after_creation(
    harness: Harness,
) -> None:
    alice = harness.server.add_user("Alice Liddell", name="alice")
    await harness.connect_server("alice", alice)
    harness.server.add_user("Bob Builder", name="bob", email="bob@example.com")
    harness.server.add_project("OPS", issue_types=("Task", "Bug"))
    answer = await harness.command("alice", "issue create --project ops --type=task Disk full --instance dc")
    assert answer.get("text", "") == "" and "attachments" not in answer
    assert elements(harness.mm.dialogs[-1])["summary"]["default"] == "Disk full"

    status, body = await harness.submit("alice", {"summary": "Disk full", "assignee": "Bob Builder"})
    assert (status, body) == (200, {})
    issue = harness.server.issue("OPS-1")
    assert issue["issuetype"] == "Task" and issue["assignee"] == "bob"
    assert "assignee" not in harness.server.requests_to("/rest/api/2/issue", "POST")[-1].body["fields"]
    assert harness.server.requests_to("/rest/api/2/issue/OPS-1/assignee", "PUT")[-1].body == {"name": "bob"}


async def test_an_ambiguous_assignee_is_offered_to_the_creator_after_creation(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    harness.cloud.add_user("Sam Adams", email="sam.adams@example.com")
    sam_b = harness.cloud.add_user("Sam Baker", email="sam.baker@example.com")
    await harness.command("alice", "create Tidy up")  # one project, one type: the form opens
    assert (await harness.submit("alice", {"summary": "Tidy up", "assignee": "sam"}))[1] == {}
    assert harness.cloud.issue("PROJ-1")["assignee"] is None
    dm = harness.mm.posts[-1]
    assert dm["channel_id"] != harness.channels["dev"]
    [choice] = dm["props"]["attachments"]
    assert "was created" in choice["text"]
    _, body = await harness.click("alice", dm["props"], "Sam Baker (sam.baker@example.com)")
    assert "`Sam Baker` assigned" in body["update"]["message"]
    assert harness.cloud.issue("PROJ-1")["assignee"] == sam_b


async def test_required_fields_the_form_can_show(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    custom = "com.atlassian.jira.plugin.system.customfieldtypes"
    harness.cloud.add_create_field(
        "PROJ",
        "customfield_10100",
        {
            "name": "Team",
            "required": True,
            "schema": {"type": "option", "custom": f"{custom}:select", "customId": 10100},
            "allowedValues": [{"id": "1", "value": "Red"}, {"id": "2", "value": "Blue"}],
        },
    )
    harness.cloud.add_create_field(
        "PROJ",
        "customfield_10101",
        {"name": "Story points", "required": True, "schema": {"type": "number", "custom": f"{custom}:float"}},
    )
    harness.cloud.add_create_field(
        "PROJ",
        "customfield_10102",
        {"name": "Due", "required": True, "schema": {"type": "date", "custom": f"{custom}:datepicker"}},
    )
    harness.cloud.add_create_field(
        "PROJ",
        "customfield_10103",
        {
            "name": "Platforms",
            "required": True,
            "schema": {"type": "array", "items": "option", "custom": f"{custom}:multiselect"},
            "allowedValues": [{"id": "a", "value": "iOS"}, {"id": "b", "value": "Android"}],
        },
    )
    harness.cloud.add_create_field(
        "PROJ",
        "customfield_10104",
        {
            "name": "Optional notes",
            "required": False,
            "schema": {"type": "string", "custom": f"{custom}:textarea"},
        },
    )
    await harness.command("alice", "create --type Task Ship it")
    form = elements(harness.mm.dialogs[-1])
    assert form["customfield_10100"]["type"] == "select"
    assert [o["value"] for o in form["customfield_10100"]["options"]] == ["1", "2"]
    assert form["customfield_10101"]["subtype"] == "number"
    assert form["customfield_10103"]["multiselect"] is True
    assert "customfield_10104" not in form  # only required custom fields are asked for

    values = {
        "summary": "Ship it",
        "customfield_10100": "2",
        "customfield_10101": "5",
        "customfield_10102": "May 1st",
        "customfield_10103": "a,b",
    }
    status, body = await harness.submit("alice", values)
    assert status == 200 and body == {"errors": {"customfield_10102": "Enter a date as YYYY-MM-DD."}}
    assert harness.cloud.issues == {}

    status, body = await harness.submit("alice", {**values, "customfield_10102": "2025-05-01"})
    assert (status, body) == (200, {})
    assert harness.cloud.issue("PROJ-1")["custom"] == {
        "customfield_10100": {"id": "2"},
        "customfield_10101": 5,
        "customfield_10102": "2025-05-01",
        "customfield_10103": [{"id": "a"}, {"id": "b"}],
    }


async def test_a_required_field_the_form_cannot_show_links_to_jira(harness: Harness) -> None:
    await cloud_alice(harness)
    project = harness.cloud.add_project("PROJ", issue_types=("Task", "Bug"))
    harness.cloud.add_create_field(
        "PROJ",
        "customfield_10200",
        {"name": "Approver", "required": True, "schema": {"type": "user", "custom": "x:userpicker"}},
        issue_types=("Bug",),
    )
    answer = await harness.command("alice", "create Crash on start")
    _, body = await harness.click("alice", answer, "Bug")
    message = body["update"]["message"]
    assert message.startswith("[Please create your Jira issue in Jira](") and "Approver" in message
    url = urlsplit(link_in(message))
    assert (
        f"{url.scheme}://{url.netloc}{url.path}" == f"{harness.cloud_url}/secure/CreateIssueDetails!init.jspa"
    )
    assert parse_qs(url.query) == {
        "pid": [project.id],
        "issuetype": [harness.cloud.issue_type_ids["Bug"]],
        "summary": ["Crash on start"],
    }
    assert "props" not in body["update"]  # the type buttons stay: Task has a form
    assert harness.mm.dialogs == []

    direct = await harness.command("alice", "create --type bug Crash")
    assert direct["text"].startswith("[Please create your Jira issue in Jira](")


async def test_jira_field_errors_come_back_to_the_form(harness: Harness) -> None:
    alice = await cloud_alice(harness)
    bob = harness.cloud.add_user("Bob Builder")
    await harness.connect_cloud("bob", bob)
    harness.cloud.add_project("PROJ", issue_types=("Task",), editors=[alice])
    await harness.command("alice", "create Something")
    status, body = await harness.submit("alice", {"summary": "Something", "assignee": "@bob"})
    assert status == 200 and body == {"errors": {"assignee": "User cannot be assigned issues."}}

    harness.cloud.fail_next(status=400, path="/rest/api/2/issue")
    status, body = await harness.submit("alice", {"summary": "Something", "labels": "a b"})
    assert status == 200 and body["error"].startswith(
        "Jira refused the issue: Injected failure 400. You can create"
    )
    link = body["error"].rsplit(" ", 1)[1]
    assert parse_qs(urlsplit(link).query)["labels"] == ["a", "b"]

    status, body = await harness.submit("alice", {"summary": "Something", "assignee": "@nobody"})
    assert "no Mattermost user" in body["errors"]["assignee"]
    assert harness.cloud.issues == {}


async def test_choose_a_project_then_it_is_the_default_next_time(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", "Project")
    harness.cloud.add_project("OPS", "Operations", issue_types=("Task", "Incident"))
    answer = await harness.command("alice", "create")
    [picker] = answer["attachments"]
    assert "Pick the project first" in picker["text"]
    assert [a["name"] for a in picker["actions"]] == ["Project"]

    status, body = await harness.click("alice", answer, "Project", selected="OPS")
    assert status == 200
    [switched] = body["update"]["props"]["attachments"]
    assert "(`OPS`)" in switched["text"]
    assert [a["name"] for a in switched["actions"]] == ["Task", "Incident", "Another project"]

    await harness.click("alice", body["update"]["props"], "Incident")
    assert (await harness.submit("alice", {"summary": "Pager went off"}))[1] == {}
    assert harness.cloud.issue("OPS-1")["issuetype"] == "Incident"

    [again] = (await harness.command("alice", "create"))["attachments"]
    assert "(`OPS`)" in again["text"]


async def test_an_expired_trigger_gives_a_button_that_opens_the_form(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    ttl = harness.mm.trigger_ttl
    harness.mm.trigger_ttl = 0
    answer = await harness.command("alice", "create Late")
    harness.mm.trigger_ttl = ttl
    assert "Open the form" in [a["name"] for a in answer["attachments"][0]["actions"]]
    assert harness.mm.dialogs == []
    status, body = await harness.click("alice", answer, "Open the form")
    assert (status, body) == (200, {})
    assert elements(harness.mm.dialogs[-1])["summary"]["default"] == "Late"


async def test_create_errors(harness: Harness) -> None:
    assert "not connected" in (await harness.command("alice", "create --instance cloud x"))["text"]
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task", "Bug"))
    harness.cloud.add_project("RO", editors=[])
    text = (await harness.command("alice", "create --project NOPE x"))["text"]
    assert "no project `NOPE`" in text and "`PROJ`" in text
    text = (await harness.command("alice", "create --project PROJ --type Epic x"))["text"]
    assert "no issue type `Epic`" in text and "`Task`, `Bug`" in text
    assert "needs a value" in (await harness.command("alice", "create --project"))["text"]
    assert "not allowed to do this" in (await harness.command("alice", "create --project RO x"))["text"]
    harness.cloud.fail_next(status=503)
    assert "not reachable" in (await harness.command("alice", "create x"))["text"]
    assert harness.mm.dialogs == []


async def test_the_form_cannot_be_submitted_by_someone_else_and_cancel_does_nothing(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    await harness.command("alice", "create Mine")
    status, _ = await harness.submit("bob", {"summary": "Hijacked"})
    assert status == 403
    url, body = harness.mm.dialog_submission(harness.mm.dialogs[-1], {}, cancelled=True)
    async with harness.http.post(url, json=body) as r:
        assert r.status == 200
    assert harness.cloud.issues == {} and harness.mm.posts == []


# -- one issue per form ---------------------------------------------------------------------------

ALREADY_SUBMITTED = {"error": "This form has already been submitted."}


def creations(harness: Harness) -> int:
    return len(harness.cloud.requests_to("/rest/api/2/issue", "POST"))


async def test_the_same_form_sent_again_creates_no_second_issue(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    await harness.command("alice", "create Once")
    assert await harness.submit("alice", {"summary": "Once"}) == (200, {})
    for _ in range(2):
        assert await harness.submit("alice", {"summary": "Once"}) == (200, ALREADY_SUBMITTED)
    assert list(harness.cloud.issues) == ["PROJ-1"] and creations(harness) == 1
    assert len(harness.mm.posts_in(harness.channels["dev"])) == 1


async def test_racing_submissions_of_one_form_create_one_issue(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    await harness.command("alice", "create Raced")
    answers = await asyncio.gather(*(harness.submit("alice", {"summary": "Raced"}) for _ in range(4)))
    assert sorted(answers, key=lambda a: len(a[1])) == [(200, {})] + [(200, ALREADY_SUBMITTED)] * 3
    assert list(harness.cloud.issues) == ["PROJ-1"] and creations(harness) == 1


async def test_a_form_jira_refused_can_be_corrected_and_then_creates_once(harness: Harness) -> None:
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    await harness.command("alice", "create Retry")
    harness.cloud.fail_next(status=503, path="/rest/api/2/issue")
    status, body = await harness.submit("alice", {"summary": "Retry"})
    assert status == 200 and "not reachable right now" in body["error"]
    assert harness.cloud.issues == {}

    assert await harness.submit("alice", {"summary": "Retry"}) == (200, {})
    assert await harness.submit("alice", {"summary": "Retry"}) == (200, ALREADY_SUBMITTED)
    assert list(harness.cloud.issues) == ["PROJ-1"]


async def test_a_create_jira_did_not_answer_in_time_closes_the_form(harness: Harness) -> None:
    """Jira may still create the issue after the bot stopped waiting: the form must not invite
    a second try, which could create a second issue."""
    await cloud_alice(harness)
    harness.cloud.add_project("PROJ", issue_types=("Task",))
    await harness.command("alice", "create Slow")
    gateway = harness.services.commands.deps.jira  # type: ignore[union-attr]
    gateway.timeout = 0.2
    harness.cloud.latency = 2.0

    assert await harness.submit("alice", {"summary": "Slow"}) == (200, {})
    assert await harness.submit("alice", {"summary": "Slow"}) == (200, ALREADY_SUBMITTED)
    [told] = [p for p in harness.mm.posts if "did not answer in time" in p["message"]]
    assert "**Slow** may or may not have been created in `PROJ`" in told["message"]
    # Jira did create it in the end, once.
    for _ in range(600):  # up to 30 s
        if harness.cloud.issues:
            break
        await asyncio.sleep(0.05)
    assert list(harness.cloud.issues) == ["PROJ-1"]
