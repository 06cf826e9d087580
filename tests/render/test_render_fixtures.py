"""The post made for each real Jira payload of ../shared/fixtures, as the Jira plugin would post it.

Expectations come from the plugin's wording rules (webhook_parser.go, webhook_jira.go) applied to
each payload by hand; where the plugin's own HTTP tests cover a payload, they agree with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from bot.jira.events import normalise
from bot.jira.models import parse_webhook
from bot.render.posts import RenderedPost, RenderOptions, post_headline, render_event, render_once
from tests.conftest import load_shared_webhook, require_shared_fixtures, shared_webhook_names

TES41 = "story [TES-41: Unit test summary 1](https://some-instance-test.atlassian.net/browse/TES-41)"
TES41_NEW = "story [TES-41: Unit test summary](https://some-instance-test.atlassian.net/browse/TES-41)"
TES4 = "bug [TES-4: Unit test summary 1](http://some-instance-test.centralus.cloudapp.azure.com:8080/browse/TES-4)"
# The summary is longer than 80 characters: cut at 77 plus "...".
PRJX14 = (
    "story [PRJX-14: As a user, I can find important items on the board by using the customisable ...]"
    "(http://sales-jira.centralus.cloudapp.azure.com:8080/browse/PRJX-14)"
)
PRJA42 = "improvement [PRJA-42: test for notifications](http://test-server.azure.com:8080/browse/PRJA-42)"
COMMENT_42 = "> This is a test comment. We should act on it right away."


@dataclass(frozen=True)
class Expected:
    headline: str
    text: str = ""
    fields: tuple[tuple[str, str, bool], ...] = ()


def merged(*lines: str) -> tuple[tuple[str, str, bool], ...]:
    return tuple(("", line, False) for line in lines)


EXPECTED: dict[str, Expected | None] = {
    # Cloud comment events carry the full issue; [~user] is not a connected user: its id is shown.
    "webhook-cloud-comment-created-mention-user.json": Expected(
        f"Test User **commented** on {TES41}", "> Added a comment with mentioned user user"
    ),
    "webhook-cloud-comment-created.json": Expected(
        f"Test User **commented** on {TES41}", "> Added a comment"
    ),
    "webhook-cloud-comment-deleted.json": Expected(
        "Test User **deleted comment** in task [KT-7: s](https://mmtest.atlassian.net/browse/KT-7)"
    ),
    "webhook-cloud-comment-updated.json": Expected(
        f"Test User **edited comment** in {TES41}", "> Added a comment, then edited it"
    ),
    # On creation the changelog is ignored: description, assignee and priority tell the story.
    "webhook-cloud-issue-created-many-fields.json": Expected(
        "Sample User **created** task [KT-22: Lots of fields selected](https://mmtest.atlassian.net/browse/KT-22)",
        "The good description",
        (("Assignee", "Sample User", True), ("Priority", "Medium", True)),
    ),
    "webhook-cloud-issue-updated-custom-field.json": Expected(
        'Sample User **updated** MJK - Number Field from "1" to "12" on '
        "story [TES-14: v](https://mmtest.atlassian.net/browse/TES-14)"
    ),
    "webhook-issue-assigned-empty-changelog.json": None,
    # [~Test] is the reporter, whose display name is "user".
    "webhook-issue-comment-created-indentation.json": Expected(
        "User **commented** on story [TEST-4: unit testing](http://localhost:8082/browse/TEST-4)",
        "> user creating a test comment\r\n> \r\n> a second line for the test comment",
    ),
    "webhook-issue-created-no-description-nor-relevant-fields.json": Expected(
        f"Test User **created** {TES41_NEW}"
    ),
    "webhook-issue-created-no-description.json": Expected(
        f"Test User **created** {TES41_NEW}", "", (("Priority", "High", True),)
    ),
    "webhook-issue-created-no-relevant-fields.json": Expected(
        f"Test User **created** {TES41_NEW}", "Unit test description, not that long"
    ),
    "webhook-issue-created-with-security-level.json": Expected(
        f"Test User **created** {TES41_NEW}",
        "Unit test description, not that long",
        (("Priority", "High", True),),
    ),
    "webhook-issue-created.json": Expected(
        f"Test User **created** {TES41_NEW}",
        "Unit test description, not that long",
        (("Priority", "High", True),),
    ),
    "webhook-issue-deleted.json": Expected(
        "Test User **deleted** task [IDT-19: hey](https://some-instance-test.atlassian.net/browse/IDT-19)"
    ),
    "webhook-issue-updated-assigned-nobody.json": Expected(f"Test User **assigned** _nobody_ to {TES41}"),
    "webhook-issue-updated-assigned-on-server.json": Expected(
        "Test User **assigned** Test User to improvement "
        "[PRJA-37: test](http://some-instance-test.centralus.cloudapp.azure.com:8080/browse/PRJA-37)"
    ),
    "webhook-issue-updated-assigned.json": Expected(f"Test User **assigned** Test User to {TES41}"),
    "webhook-issue-updated-attachments.json": Expected(
        f"Test User **attached** [test.gif] to, **removed** attachments [test.json] from {TES41}"
    ),
    "webhook-issue-updated-components.json": Expected(
        'Test User **updated** Component from "~~None~~" to "Special Component" on '
        "task [TES-10: wewe](https://some-instance-test.atlassian.net/browse/TES-10)"
    ),
    "webhook-issue-updated-edited.json": Expected(
        f"Test User **edited** the description of {TES41}",
        "Unit test description, not that long, a little longer now",
    ),
    "webhook-issue-updated-fix-version.json": Expected(
        f'Test User **updated** Fix Version from "v1" to "v2" on {TES41}'
    ),
    "webhook-issue-updated-issue-type.json": Expected(
        f'Test User **updated** issuetype from "Task" to "Bug" on {TES41}'
    ),
    "webhook-issue-updated-labels.json": Expected(
        f"Test User **added** labels [sad] to, **removed** labels [bad] from {TES41}"
    ),
    "webhook-issue-updated-lowered-priority.json": Expected(
        f'Test User **updated** priority from "High" to "Low" on {TES41}'
    ),
    # Two custom fields that happen to share their name: one line each.
    "webhook-issue-updated-multiple-custom-fields.json": Expected(
        f"Test User **updated** {TES41}",
        "",
        merged("**Field Name:** ~~Value 1~~ Value 2", "**Field Name:** ~~Value 1~~ Value 2"),
    ),
    "webhook-issue-updated-multiple-values.json": Expected(
        f"Test User **updated** {TES41}",
        "",
        merged(
            "**Fix Version:** ~~v1~~ v2",
            "**Assignee:** ~~_nobody_~~ Test User",
            "**QA Steps:** ~~None~~ Make sure it does the thing.",
        ),
    ),
    "webhook-issue-updated-raised-priority.json": Expected(
        f'Test User **updated** priority from "Low" to "High" on {TES41}'
    ),
    "webhook-issue-updated-rank.json": Expected(
        f'Test User **updated** Rank from "~~none~~" to "ranked higher" on {TES41}'
    ),
    "webhook-issue-updated-renamed.json": Expected(
        f'Test User **updated** summary from "Unit test summary" to "Unit test summary 1" on {TES41}'
    ),
    "webhook-issue-updated-reopened-one-changelog.json": Expected(f"Test User **reopened** {TES41}"),
    "webhook-issue-updated-reopened.json": Expected(
        f"Test User **updated** {TES41}",
        "",
        merged("**Reopened:** ~~Done~~ Open", "**Status:** ~~Done~~ To Do"),
    ),
    "webhook-issue-updated-resolved-one-changelog.json": Expected(f"Test User **resolved** {TES41}"),
    "webhook-issue-updated-resolved.json": Expected(
        f"Test User **updated** {TES41}",
        "",
        merged("**Resolved:** ~~Open~~ Done", "**Status:** ~~In Progress~~ Done"),
    ),
    "webhook-issue-updated-sprint.json": Expected(
        f'Test User **updated** Sprint from "Sprint 1" to "Sprint 2" on {TES41}'
    ),
    "webhook-issue-updated-started-working.json": Expected(
        f'Test User **updated** status from "To Do" to "In Progress" on {TES41}'
    ),
    # Server's standalone comment events duplicate its issue_commented events: no second post.
    "webhook-server-comment-created.json": None,
    "webhook-server-comment-deleted.json": None,
    "webhook-server-comment-updated.json": None,
    "webhook-server-issue-updated-closed.json": Expected(
        f'Test User **updated** status from "Resolved" to "Closed" on {TES4}'
    ),
    "webhook-server-issue-updated-comment-deleted.json": Expected(
        f"Lev Brouk **deleted comment** in {PRJX14}"
    ),
    "webhook-server-issue-updated-comment-edited.json": Expected(
        f"Lev Brouk **edited comment** in {PRJX14}", "> and higher eeven higher"
    ),
    "webhook-server-issue-updated-commented-1.json": Expected(
        f"Lev Brouk **commented** on {PRJX14}", "> unik"
    ),
    "webhook-server-issue-updated-commented-2.json": Expected(
        f"Test User **commented** on {PRJA42}", COMMENT_42
    ),
    "webhook-server-issue-updated-commented-3.json": Expected(
        f"Test User **commented** on {PRJA42}", f"{COMMENT_42} cc: SomeOtherUser"
    ),
    "webhook-server-issue-updated-commented-mention-user.json": Expected(
        f"Lev Brouk **commented** on {PRJX14}", "> unik with mentioned user user"
    ),
    "webhook-server-issue-updated-in-progress.json": Expected(
        f'Test User **updated** status from "Reopened" to "In Progress" on {TES4}'
    ),
    # Labels "oh dc ee h s yeah" -> "oh dc ee h yeah": only "s" went; the actor's display name is
    # an e-mail address, which stays as is.
    "webhook-server-issue-updated-many-fields.json": Expected(
        "user@example.com **removed** labels [s] from task [HEY-15: ddgdg](http://localhost:8080/browse/HEY-15)"
    ),
    "webhook-server-issue-updated-reopened.json": Expected(
        f"Test User **updated** {TES4}",
        "",
        merged("**Reopened:** ~~Done~~ Open", "**Status:** ~~Resolved~~ Reopened"),
    ),
    "webhook-server-issue-updated-resolved.json": Expected(
        f"Test User **updated** {TES4}",
        "",
        merged("**Status:** ~~In Progress~~ Resolved", "**Resolved:** ~~Open~~ Done"),
    ),
    "webhook-server-old-issue-updated-no-event-type-assigned.json": Expected(
        f"Test User **assigned** Test User to {TES41}"
    ),
    "webhook-server-old-issue-updated-no-event-type-comment-deleted.json": None,
    "webhook-server-old-issue-updated-no-event-type-comment-edited.json": Expected(
        f"Lev Brouk **edited comment** in {PRJX14}", "> and higher eeven higher"
    ),
    "webhook-server-old-issue-updated-no-event-type-commented.json": Expected(
        f"Lev Brouk **commented** on {PRJX14}", "> unik"
    ),
    "webhook-server-old-issue-updated-no-event-type-edited.json": Expected(
        f"Test User **edited** the description of {TES41}",
        "Unit test description, not that long, a little longer now",
    ),
    # Server changelog items carry no field id: the field's name stands in.
    "webhook-server-updated-custom-field.json": Expected(
        'test@example.com **updated** numfield from "445455561" to "44545556" on '
        "task [TES-8: 3](http://localhost:8080/browse/TES-8)"
    ),
}


def plain_headline(headline: str) -> str:
    """The headline as Mattermost's plain-text fallback shows it: no bold, links as their text
    (the fixtures' summaries hold no Markdown specials, so nothing is unescaped)."""
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", headline).replace("**", "")


def render_payload(
    name: str, options: RenderOptions | None = None, connected: dict[str, str] | None = None
) -> RenderedPost | None:
    event = normalise(parse_webhook(load_shared_webhook(name)))
    if event is None:
        return None
    return render_event(event, options or RenderOptions(), (connected or {}).get)


def test_shared_folder_holds_every_payload() -> None:
    require_shared_fixtures()
    assert len(EXPECTED) == 55
    assert set(shared_webhook_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", shared_webhook_names())
def test_post_for_payload(name: str) -> None:
    expected = EXPECTED[name]
    post = render_payload(name)
    if expected is None:
        assert post is None
        return
    assert post is not None
    if not expected.text and not expected.fields:
        assert post == RenderedPost(message=expected.headline)
        return
    assert post.message == ""
    (attachment,) = post.props["attachments"]
    assert attachment["pretext"] == expected.headline
    assert attachment["fallback"] == plain_headline(expected.headline)
    assert attachment["color"] == "#95b7d0"
    assert attachment["text"] == expected.text
    fields = tuple((f["title"], f["value"], f["short"]) for f in attachment.get("fields", ()))
    assert fields == expected.fields


@pytest.mark.parametrize("name", [name for name in shared_webhook_names() if EXPECTED.get(name)])
def test_options_hide_text_and_name_the_subscription(name: str) -> None:
    expected = EXPECTED[name]
    assert expected is not None
    options = RenderOptions(hide_description=True, hide_comments=True, subscription_name="All bugs")
    post = render_payload(name, options)
    assert post is not None
    assert post_headline(post) == f"{expected.headline}\nSubscription: **All bugs**"
    attachments = post.props.get("attachments") or [{}]
    assert attachments[0].get("text", "") == ""


@pytest.mark.parametrize("name", [name for name in shared_webhook_names() if EXPECTED.get(name)])
def test_one_rendering_makes_each_channel_its_own_post(name: str) -> None:
    expected = EXPECTED[name]
    assert expected is not None
    event = normalise(parse_webhook(load_shared_webhook(name)))
    assert event is not None
    rendering = render_once(event)
    assert rendering is not None
    named, bare = rendering.post("All bugs"), rendering.post(None)
    assert post_headline(named) == f"{expected.headline}\nSubscription: **All bugs**"
    assert bare == render_event(event)
    assert post_headline(bare) == expected.headline
    # Posts share nothing a later change to one could spill into another.
    for attachment in named.props.get("attachments") or ():
        for item in attachment.get("fields") or ():
            item["value"] = "changed"
    assert rendering.post(None) == bare


@pytest.mark.parametrize(
    ("name", "connected", "text"),
    [
        (
            "webhook-cloud-comment-created-mention-user.json",
            {"user": "mm.user"},
            "> Added a comment with mentioned user @mm.user",
        ),
        (
            "webhook-server-issue-updated-commented-mention-user.json",
            {"user": "mm.user"},
            "> unik with mentioned user @mm.user",
        ),
        (
            "webhook-server-issue-updated-commented-3.json",
            {"SomeOtherUser": "other"},
            f"{COMMENT_42} cc: @other",
        ),
    ],
)
def test_connected_users_are_mentioned(name: str, connected: dict[str, str], text: str) -> None:
    post = render_payload(name, connected=connected)
    assert post is not None
    assert post.props["attachments"][0]["text"] == text
