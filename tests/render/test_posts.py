"""Rendering of hand-built IssueEvents into posts worded as the Mattermost Jira plugin words them."""

from __future__ import annotations

from typing import Any

import pytest

from bot.jira.events import (
    EVENT_CREATED,
    EVENT_CREATED_COMMENT,
    EVENT_DELETED,
    EVENT_DELETED_COMMENT,
    EVENT_DELETED_UNRESOLVED,
    EVENT_UPDATED_ASSIGNEE,
    EVENT_UPDATED_ATTACHMENT,
    EVENT_UPDATED_COMMENT,
    EVENT_UPDATED_DESCRIPTION,
    EVENT_UPDATED_LABELS,
    EVENT_UPDATED_PRIORITY,
    EVENT_UPDATED_RANK,
    EVENT_UPDATED_REOPENED,
    EVENT_UPDATED_RESOLVED,
    EVENT_UPDATED_STATUS,
    EVENT_UPDATED_SUMMARY,
    Comment,
    FieldChange,
    IssueEvent,
    IssueSnapshot,
    JiraUser,
    NamedValue,
)
from bot.render.markup import ZERO_WIDTH_JOINER
from bot.render.posts import (
    RenderedPost,
    RenderOptions,
    go_quote,
    md_user,
    post_headline,
    post_text,
    render_event,
    title_case,
)
from tests.render.test_markup import mattermost_mentions

ZWJ = ZERO_WIDTH_JOINER
BASE = "https://acme.atlassian.net"
ALICE = JiraUser(display_name="Alice Smith", account_id="acc-alice", email="alice@acme.io")
BOB = JiraUser(display_name="Bob Jones", name="bob", key="JIRAUSER1")
LINK = f"bug [ABC-1: Fix login]({BASE}/browse/ABC-1)"


def snapshot(**fields: Any) -> IssueSnapshot:
    values: dict[str, Any] = {
        "id": "10001",
        "key": "ABC-1",
        "self_url": f"{BASE}/rest/api/2/issue/10001",
        "summary": "Fix login",
        "issue_type": NamedValue(id="1", name="Bug"),
    }
    values.update(fields)
    return IssueSnapshot(**values)


def event(
    *kinds: str,
    changes: tuple[FieldChange, ...] = (),
    comment: Comment | None = None,
    actor: JiraUser | None = ALICE,
    webhook_event: str = "jira:issue_updated",
    **issue_fields: Any,
) -> IssueEvent:
    return IssueEvent(
        webhook_event=webhook_event,
        issue_event_type="",
        kinds=frozenset(kinds or {change.kind for change in changes}),
        issue=snapshot(**issue_fields),
        actor=actor,
        changes=changes,
        comment=comment,
    )


def change(kind: str, field: str, before: str = "", after: str = "", field_id: str = "") -> FieldChange:
    return FieldChange(
        kind=kind, field=field, field_id=field_id or field, from_string=before, to_string=after
    )


def note(body: str, author: JiraUser = BOB) -> Comment:
    return Comment(id="100", body=body, author=author, update_author=author)


def render(
    ev: IssueEvent, options: RenderOptions | None = None, connected: dict[str, str] | None = None
) -> RenderedPost:
    post = render_event(ev, options or RenderOptions(), (connected or {}).get)
    assert post is not None
    return post


def attachment(post: RenderedPost) -> dict[str, Any]:
    assert post.message == ""
    (only,) = post.props["attachments"]
    return dict(only)


class TestHelpers:
    def test_md_user_prefers_display_name_then_ids(self) -> None:
        assert md_user(ALICE) == "Alice Smith"
        assert md_user(JiraUser(name="bob")) == "bob"
        assert md_user(JiraUser(account_id="acc-1", key="k")) == "acc-1"
        assert md_user(JiraUser(email="x@y.z")) == "x@y.z"
        assert md_user(JiraUser(display_name="  ")) == "Someone"
        assert md_user(None) == "Someone"

    def test_go_quote(self) -> None:
        assert go_quote("v1") == '"v1"'
        assert go_quote('say "hi"\\\n') == '"say \\"hi\\"\\\\\\n"'
        assert go_quote("é\x07") == '"é\\x07"'

    def test_title_case_keeps_the_rest_of_each_word(self) -> None:
        assert title_case("fix Version") == "Fix Version"
        assert title_case("status") == "Status"
        assert title_case("QA steps") == "QA Steps"


class TestCreated:
    def test_headline_description_and_fields(self) -> None:
        ev = event(
            EVENT_CREATED,
            webhook_event="jira:issue_created",
            description="*Steps*: log in",
            assignee=BOB,
            priority=NamedValue(id="2", name="High"),
        )
        post = render(ev)
        assert attachment(post) == {
            "color": "#95b7d0",
            "fallback": "Alice Smith created bug ABC-1: Fix login",
            "pretext": f"Alice Smith **created** {LINK}",
            "text": "**Steps**: log in",
            "fields": [
                {"title": "Assignee", "value": "Bob Jones", "short": True},
                {"title": "Priority", "value": "High", "short": True},
            ],
        }
        assert post_headline(post) == f"Alice Smith **created** {LINK}"

    def test_nothing_but_the_headline_makes_a_plain_message(self) -> None:
        post = render(event(EVENT_CREATED, webhook_event="jira:issue_created"))
        assert post == RenderedPost(message=f"Alice Smith **created** {LINK}")

    def test_hide_description_keeps_the_fields(self) -> None:
        ev = event(EVENT_CREATED, description="secret plan", priority=NamedValue(name="Low"))
        att = attachment(render(ev, RenderOptions(hide_description=True)))
        assert att["text"] == ""
        assert att["fields"] == [{"title": "Priority", "value": "Low", "short": True}]

    def test_hide_description_without_fields_is_a_plain_message(self) -> None:
        post = render(event(EVENT_CREATED, description="secret plan"), RenderOptions(hide_description=True))
        assert post.message == f"Alice Smith **created** {LINK}"
        assert "secret" not in post_text(post)

    def test_summary_cut_at_80(self) -> None:
        summary = "S" * 79 + "TAIL"
        headline = post_headline(render(event(EVENT_CREATED, summary=summary)))
        assert f"[ABC-1: {'S' * 77}...]" in headline
        assert "TAIL" not in headline

    def test_description_cut_at_3000(self) -> None:
        att = attachment(render(event(EVENT_CREATED, description="word " * 1000)))
        assert len(att["text"]) == 3000
        assert att["text"].endswith("...")

    def test_issue_without_browse_url_or_type(self) -> None:
        ev = event(EVENT_CREATED, self_url="", issue_type=NamedValue())
        assert render(ev).message == "Alice Smith **created** ABC-1: Fix login"

    def test_unknown_actor_is_someone(self) -> None:
        assert render(event(EVENT_CREATED, actor=None)).message == f"Someone **created** {LINK}"

    def test_brackets_in_summary_do_not_break_the_link(self) -> None:
        headline = render(event(EVENT_CREATED, summary="[UI] button]")).message
        assert f"[ABC-1: \\[UI\\] button\\]]({BASE}/browse/ABC-1)" in headline


class TestDeleted:
    def test_deleted_is_headline_only(self) -> None:
        ev = event(
            EVENT_DELETED, EVENT_DELETED_UNRESOLVED, webhook_event="jira:issue_deleted", description="x"
        )
        assert render(ev) == RenderedPost(message=f"Alice Smith **deleted** {LINK}")


class TestSingleChange:
    @pytest.mark.parametrize(
        ("field_change", "expected"),
        [
            (
                change(EVENT_UPDATED_PRIORITY, "priority", "Low", "High"),
                f'Alice Smith **updated** priority from "Low" to "High" on {LINK}',
            ),
            (
                change(EVENT_UPDATED_STATUS, "status", "", "Done"),
                f'Alice Smith **updated** status from "~~None~~" to "Done" on {LINK}',
            ),
            (
                change(EVENT_UPDATED_SUMMARY, "summary", 'Say "hi"', ""),
                f'Alice Smith **updated** summary from "Say \\"hi\\"" to "None" on {LINK}',
            ),
            (
                change(EVENT_UPDATED_RANK, "Rank", "", "Ranked higher"),
                f'Alice Smith **updated** Rank from "~~none~~" to "ranked higher" on {LINK}',
            ),
            (
                change("event_updated_customfield_10072", "Story Points", "3", "5", "customfield_10072"),
                f'Alice Smith **updated** Story Points from "3" to "5" on {LINK}',
            ),
            (change(EVENT_UPDATED_RESOLVED, "resolution", "", "Done"), f"Alice Smith **resolved** {LINK}"),
            (change(EVENT_UPDATED_REOPENED, "resolution", "Done", ""), f"Alice Smith **reopened** {LINK}"),
            (
                change(EVENT_UPDATED_ATTACHMENT, "Attachment", "", "shot.png"),
                f"Alice Smith **attached** [shot.png] to {LINK}",
            ),
            (
                change(EVENT_UPDATED_ATTACHMENT, "Attachment", "old.log", ""),
                f"Alice Smith **removed** attachments [old.log] from {LINK}",
            ),
            (
                change(EVENT_UPDATED_LABELS, "labels", "ui bad", "ui sad"),
                f"Alice Smith **added** labels [sad] to, **removed** labels [bad] from {LINK}",
            ),
        ],
    )
    def test_headline(self, field_change: FieldChange, expected: str) -> None:
        assert render(event(changes=(field_change,))) == RenderedPost(message=expected)

    def test_assigned_names_the_current_assignee(self) -> None:
        ev = event(changes=(change(EVENT_UPDATED_ASSIGNEE, "assignee", "", "Bob Jones"),), assignee=BOB)
        assert render(ev).message == f"Alice Smith **assigned** Bob Jones to {LINK}"

    def test_unassigned_is_nobody(self) -> None:
        ev = event(changes=(change(EVENT_UPDATED_ASSIGNEE, "assignee", "Bob Jones", ""),))
        assert render(ev).message == f"Alice Smith **assigned** _nobody_ to {LINK}"

    def test_description_edit_shows_the_new_description(self) -> None:
        ev = event(
            changes=(change(EVENT_UPDATED_DESCRIPTION, "description", "old", "new {{text}}"),),
            description="new {{text}}",
        )
        att = attachment(render(ev))
        assert att["pretext"] == f"Alice Smith **edited** the description of {LINK}"
        assert att["text"] == "new `text`"
        assert "fields" not in att

    def test_hide_description_drops_the_description_edit_text(self) -> None:
        ev = event(changes=(change(EVENT_UPDATED_DESCRIPTION, "description", "a", "b"),), description="b")
        post = render(ev, RenderOptions(hide_description=True))
        assert post == RenderedPost(message=f"Alice Smith **edited** the description of {LINK}")

    def test_hide_comments_hides_free_text_values(self) -> None:
        long_text = "line one\nline two"
        ev = event(changes=(change("event_updated_environment", "environment", "", long_text),))
        shown = render(ev).message
        hidden = render(ev, RenderOptions(hide_comments=True)).message
        assert "line one" in shown
        assert hidden == f"Alice Smith **updated** environment on {LINK}"

    def test_no_change_no_post(self) -> None:
        assert render_event(event(EVENT_UPDATED_STATUS)) is None
        assert render_event(event(changes=())) is None


class TestMergedChanges:
    def test_one_post_with_one_line_per_change(self) -> None:
        ev = event(
            changes=(
                change(EVENT_UPDATED_STATUS, "status", "In Progress", "Done"),
                change(EVENT_UPDATED_RESOLVED, "resolution", "", "Done"),
                change(EVENT_UPDATED_ASSIGNEE, "assignee", "", "Bob Jones"),
                change("event_updated_customfield_1", "QA steps", "", "Run it"),
                change(EVENT_UPDATED_LABELS, "labels", "", "ui"),
            ),
            assignee=BOB,
        )
        att = attachment(render(ev))
        assert att["pretext"] == f"Alice Smith **updated** {LINK}"
        assert [f["value"] for f in att["fields"]] == [
            "**Status:** ~~In Progress~~ Done",
            "**Resolved:** ~~Open~~ Done",
            "**Assignee:** ~~_nobody_~~ Bob Jones",
            "**QA Steps:** ~~None~~ Run it",
            "**Labels:** ~~None~~ ui",
        ]
        assert {f["title"] for f in att["fields"]} == {""}
        assert {f["short"] for f in att["fields"]} == {False}
        assert att["text"] == ""

    def test_description_diff_cut_at_500_and_not_struck(self) -> None:
        ev = event(
            changes=(
                change(EVENT_UPDATED_DESCRIPTION, "description", "a" * 600, "*b*"),
                change(EVENT_UPDATED_PRIORITY, "priority", "Low", "High"),
            )
        )
        first = attachment(render(ev))["fields"][0]["value"]
        assert first == f"**Description:** \n**From:** {'a' * 497}... \n**To:** **b**"

    def test_hide_description_drops_the_diff(self) -> None:
        ev = event(
            changes=(
                change(EVENT_UPDATED_DESCRIPTION, "description", "secret", "more secret"),
                change(EVENT_UPDATED_PRIORITY, "priority", "Low", "High"),
            )
        )
        att = attachment(render(ev, RenderOptions(hide_description=True)))
        assert [f["value"] for f in att["fields"]] == ["**Priority:** ~~Low~~ High"]
        assert "secret" not in post_text(render(ev, RenderOptions(hide_description=True)))

    def test_hide_comments_hides_free_text_lines(self) -> None:
        ev = event(
            changes=(
                change("event_updated_customfield_2", "Notes", "", "x" * 300, "customfield_2"),
                change(EVENT_UPDATED_PRIORITY, "priority", "Low", "High"),
            )
        )
        att = attachment(render(ev, RenderOptions(hide_comments=True)))
        assert [f["value"] for f in att["fields"]] == [
            "**Notes:** (text hidden)",
            "**Priority:** ~~Low~~ High",
        ]


class TestComments:
    def test_created_comment_is_quoted_markdown(self) -> None:
        ev = event(EVENT_CREATED_COMMENT, comment=note("*Done*\nsee [log|https://x.io/l]"))
        att = attachment(render(ev))
        assert att["pretext"] == f"Bob Jones **commented** on {LINK}"
        assert att["text"] == "> **Done**\n> see [log](https://x.io/l)"

    def test_edited_comment(self) -> None:
        att = attachment(render(event(EVENT_UPDATED_COMMENT, comment=note("fixed typo"))))
        assert att["pretext"] == f"Bob Jones **edited comment** in {LINK}"
        assert att["text"] == "> fixed typo"

    def test_deleted_comment_names_the_server_user(self) -> None:
        ev = event(EVENT_DELETED_COMMENT, actor=BOB, comment=note("gone", author=ALICE))
        assert render(ev) == RenderedPost(message=f"Bob Jones **deleted comment** in {LINK}")

    def test_deleted_comment_on_cloud_names_the_comment_author(self) -> None:
        # Cloud users carry no key: the plugin names the comment's update author.
        ev = event(EVENT_DELETED_COMMENT, actor=ALICE, comment=note("gone", author=BOB))
        assert render(ev).message == f"Bob Jones **deleted comment** in {LINK}"

    def test_comment_cut_at_3000(self) -> None:
        text = attachment(render(event(EVENT_CREATED_COMMENT, comment=note("z" * 4000))))["text"]
        assert len(text) == 3000
        assert text.startswith("> zz")
        assert text.endswith("...")

    def test_hide_comments_keeps_the_headline_only(self) -> None:
        ev = event(EVENT_CREATED_COMMENT, comment=note("internal detail"))
        post = render(ev, RenderOptions(hide_comments=True))
        assert post == RenderedPost(message=f"Bob Jones **commented** on {LINK}")

    def test_blank_comment_gives_a_plain_message(self) -> None:
        assert render(event(EVENT_CREATED_COMMENT, comment=note("  "))).message.startswith("Bob Jones")

    def test_connected_users_are_mentioned_others_named(self) -> None:
        body = "[~accountid:acc-alice] and [~bob], also [~accountid:acc-zed]"
        post = render(event(EVENT_CREATED_COMMENT, comment=note(body)), connected={"acc-alice": "alice"})
        text = attachment(post)["text"]
        # Bob is not connected: his display name (known from the comment), never "@".
        assert text == "> @alice and Bob Jones, also acc-zed"
        assert mattermost_mentions(text) == {"alice"}


class TestMentionSafety:
    def test_channel_mentions_from_jira_never_notify(self) -> None:
        ev = event(
            changes=(
                change(EVENT_UPDATED_SUMMARY, "summary", "old", "@channel now"),
                change("event_updated_customfield_9", "Team", "", "<!here> @ALL"),
            ),
            summary="@channel now",
            actor=JiraUser(display_name="@here Mallory"),
        )
        everything = post_text(render(ev))
        assert mattermost_mentions(everything) == set()
        assert f"@{ZWJ}channel now" in everything

    def test_comment_and_description_mentions_are_defused(self) -> None:
        comment_post = render(event(EVENT_CREATED_COMMENT, comment=note("@ALL please, and @bob.mm")))
        created_post = render(event(EVENT_CREATED, description="<!channel> hello @someone"))
        assert mattermost_mentions(post_text(comment_post)) == set()
        assert mattermost_mentions(post_text(created_post)) == set()

    def test_only_our_own_mentions_survive(self) -> None:
        body = "[~bob] fixed it @channel, thanks @bob.mm and @eve"
        post = render(event(EVENT_CREATED_COMMENT, comment=note(body)), connected={"bob": "bob.mm"})
        assert mattermost_mentions(post_text(post)) == {"bob.mm"}

    def test_emails_stay_readable(self) -> None:
        post = render(event(EVENT_CREATED, description="mail ops@acme.io"))
        assert "mail ops@acme.io" in post_text(post)


class TestSubscriptionName:
    def test_plain_message_gets_the_subscription_line(self) -> None:
        post = render(event(EVENT_DELETED), RenderOptions(subscription_name="Backend bugs"))
        assert post.message == f"Alice Smith **deleted** {LINK}\nSubscription: **Backend bugs**"

    def test_attachment_pretext_gets_the_subscription_line(self) -> None:
        ev = event(EVENT_CREATED_COMMENT, comment=note("hi"))
        att = attachment(render(ev, RenderOptions(subscription_name="Ops")))
        assert att["pretext"].endswith("\nSubscription: **Ops**")
        # The fallback is plain text: no Markdown, the same words.
        assert att["fallback"] == "Bob Jones commented on bug ABC-1: Fix login\nSubscription: Ops"

    def test_subscription_name_cannot_mention(self) -> None:
        post = render(event(EVENT_DELETED), RenderOptions(subscription_name="@channel alerts"))
        assert mattermost_mentions(post.message) == set()


class TestPostHelpers:
    def test_post_text_lists_everything_shown(self) -> None:
        ev = event(EVENT_CREATED, description="body", priority=NamedValue(name="High"))
        assert post_text(render(ev)) == f"Alice Smith **created** {LINK}\nbody\nPriority: High"

    def test_post_headline_of_empty_post(self) -> None:
        assert post_headline(RenderedPost(message="")) == ""
