"""Wording parity with the Mattermost Jira plugin's own HTTP test table.

Every case of the plugin's `TestWebhookHTTP` (server/webhook_http_test.go: a legacy webhook URL
with `updated_all=1`) is transcribed below as the plugin's test states it: payload file, then the
expected headline, attachment text and fields. Each payload from ../shared/fixtures goes through
this project's legacy path (bot.routing.legacy with `updated_all=1`, then render_event) and the
post must say exactly that.

The plugin's test connects every Jira user to one Mattermost user, `test-mm-username` (its user
store answers every lookup with the same user); the mention lookup here does the same.

Where this project deliberately reads better, the case is listed in `EXCEPTIONS` with the reason,
and the project's own wording is asserted instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.jira.events import normalise
from bot.jira.models import parse_webhook
from bot.render.posts import RenderedPost, RenderOptions, render_event
from bot.routing.legacy import LegacyOptions, legacy_matches
from tests.conftest import load_shared_webhook

# The query of the plugin's test request (testWebhookRequest).
LEGACY_QUERY = {"team": "theteam", "channel": "thechannel", "secret": "thesecret", "updated_all": "1"}
MM_USERNAME = "test-mm-username"


@dataclass(frozen=True)
class Case:
    file: str
    headline: str = ""
    text: str = ""
    attachment: bool = False  # ExpectedSlackAttachment
    fields: tuple[tuple[str, str, bool], ...] = ()
    ignored: bool = False  # ExpectedIgnored: nothing is posted


TES41 = "story [TES-41: Unit test summary](https://some-instance-test.atlassian.net/browse/TES-41)"
TES41_2 = "story [TES-41: Unit test summary 1](https://some-instance-test.atlassian.net/browse/TES-41)"
PRJA37 = (
    "improvement [PRJA-37: test](http://some-instance-test.centralus.cloudapp.azure.com:8080/browse/PRJA-37)"
)
TES4 = (
    "bug [TES-4: Unit test summary 1]"
    "(http://some-instance-test.centralus.cloudapp.azure.com:8080/browse/TES-4)"
)
KT7 = "task [KT-7: s](https://mmtest.atlassian.net/browse/KT-7)"
PRJX14 = (
    "story [PRJX-14: As a user, I can find important items on the board by using the customisable ...]"
    "(http://sales-jira.centralus.cloudapp.azure.com:8080/browse/PRJX-14)"
)
TEST4 = "story [TEST-4: unit testing](http://localhost:8082/browse/TEST-4)"
PRJA42 = "improvement [PRJA-42: test for notifications](http://test-server.azure.com:8080/browse/PRJA-42)"

# The plugin's table, case by case, in its order.
PLUGIN_CASES: dict[str, Case] = {
    "issue created": Case(
        "webhook-issue-created.json",
        f"Test User **created** {TES41}",
        text="Unit test description, not that long",
        attachment=True,
        fields=(("Priority", "High", True),),
    ),
    "issue created no fields": Case(
        "webhook-issue-created-no-relevant-fields.json",
        f"Test User **created** {TES41}",
        text="Unit test description, not that long",
        attachment=True,
    ),
    "issue created no description": Case(
        "webhook-issue-created-no-description.json",
        f"Test User **created** {TES41}",
        attachment=True,
        fields=(("Priority", "High", True),),
    ),
    "issue created no description nor fields": Case(
        "webhook-issue-created-no-description-nor-relevant-fields.json",
        f"Test User **created** {TES41}",
    ),
    "issue edited": Case(
        "webhook-issue-updated-edited.json",
        f"Test User **edited** the description of {TES41_2}",
        text="Unit test description, not that long, a little longer now",
        attachment=True,
    ),
    "SERVER (old version) issue edited (no issue_event_type_name)": Case(
        "webhook-server-old-issue-updated-no-event-type-edited.json",
        f"Test User **edited** the description of {TES41_2}",
        text="Unit test description, not that long, a little longer now",
        attachment=True,
    ),
    "issue renamed": Case(
        "webhook-issue-updated-renamed.json",
        f'Test User **updated** summary from "Unit test summary" to "Unit test summary 1" on {TES41_2}',
    ),
    "issue assigned nobody": Case(
        "webhook-issue-updated-assigned-nobody.json",
        f"Test User **assigned** _nobody_ to {TES41_2}",
    ),
    "issue assigned": Case(
        "webhook-issue-updated-assigned.json",
        f"Test User **assigned** Test User to {TES41_2}",
    ),
    "issue assigned with empty changelog": Case("webhook-issue-assigned-empty-changelog.json", ignored=True),
    "SERVER (old version) issue assigned (no issue_event_type_name)": Case(
        "webhook-server-old-issue-updated-no-event-type-assigned.json",
        f"Test User **assigned** Test User to {TES41_2}",
    ),
    "issue assigned on server": Case(
        "webhook-issue-updated-assigned-on-server.json",
        f"Test User **assigned** Test User to {PRJA37}",
    ),
    "issue attachments": Case(
        "webhook-issue-updated-attachments.json",
        f"Test User **attached** [test.gif] to, **removed** attachments [test.json] from {TES41_2}",
    ),
    "issue fix version": Case(
        "webhook-issue-updated-fix-version.json",
        f'Test User **updated** Fix Version from "v1" to "v2" on {TES41_2}',
    ),
    "issue issue type": Case(
        "webhook-issue-updated-issue-type.json",
        f'Test User **updated** issuetype from "Task" to "Bug" on {TES41_2}',
    ),
    "issue labels": Case(
        "webhook-issue-updated-labels.json",
        f"Test User **added** labels [sad] to, **removed** labels [bad] from {TES41_2}",
    ),
    "issue lowered priority": Case(
        "webhook-issue-updated-lowered-priority.json",
        f'Test User **updated** priority from "High" to "Low" on {TES41_2}',
    ),
    "issue multiple values": Case(
        "webhook-issue-updated-multiple-values.json",
        f"Test User **updated** {TES41_2}",
        attachment=True,
        fields=(
            ("", "**Fix Version:** ~~v1~~ v2", False),
            ("", "**Assignee:** ~~_nobody_~~ Test User", False),
            ("", "**QA Steps:** ~~None~~ Make sure it does the thing.", False),
        ),
    ),
    "issue raised priority": Case(
        "webhook-issue-updated-raised-priority.json",
        f'Test User **updated** priority from "Low" to "High" on {TES41_2}',
    ),
    "issue rank": Case(
        "webhook-issue-updated-rank.json",
        f'Test User **updated** Rank from "~~none~~" to "ranked higher" on {TES41_2}',
    ),
    "issue reopened": Case(
        "webhook-issue-updated-reopened.json",
        f"Test User **updated** {TES41_2}",
        attachment=True,
        fields=(("", "**Reopened:** ~~Done~~ Open", False), ("", "**Status:** ~~Done~~ To Do", False)),
    ),
    "issue resolved": Case(
        "webhook-issue-updated-resolved.json",
        f"Test User **updated** {TES41_2}",
        attachment=True,
        fields=(("", "**Resolved:** ~~Open~~ Done", False), ("", "**Status:** ~~In Progress~~ Done", False)),
    ),
    "SERVER issue resolved": Case(
        "webhook-server-issue-updated-resolved.json",
        f"Test User **updated** {TES4}",
        attachment=True,
        fields=(
            ("", "**Status:** ~~In Progress~~ Resolved", False),
            ("", "**Resolved:** ~~Open~~ Done", False),
        ),
    ),
    "SERVER issue reopened": Case(
        "webhook-server-issue-updated-reopened.json",
        f"Test User **updated** {TES4}",
        attachment=True,
        fields=(("", "**Reopened:** ~~Done~~ Open", False), ("", "**Status:** ~~Resolved~~ Reopened", False)),
    ),
    "SERVER issue in progress": Case(
        "webhook-server-issue-updated-in-progress.json",
        f'Test User **updated** status from "Reopened" to "In Progress" on {TES4}',
    ),
    "SERVER issue closed": Case(
        "webhook-server-issue-updated-closed.json",
        f'Test User **updated** status from "Resolved" to "Closed" on {TES4}',
    ),
    "issue sprint": Case(
        "webhook-issue-updated-sprint.json",
        f'Test User **updated** Sprint from "Sprint 1" to "Sprint 2" on {TES41_2}',
    ),
    "issue started working": Case(
        "webhook-issue-updated-started-working.json",
        f'Test User **updated** status from "To Do" to "In Progress" on {TES41_2}',
    ),
    "CLOUD comment created": Case(
        "webhook-cloud-comment-created.json",
        f"Test User **commented** on {TES41_2}",
        text="> Added a comment",
        attachment=True,
    ),
    "CLOUD comment updated": Case(
        "webhook-cloud-comment-updated.json",
        f"Test User **edited comment** in {TES41_2}",
        text="> Added a comment, then edited it",
        attachment=True,
    ),
    "CLOUD comment deleted": Case(
        "webhook-cloud-comment-deleted.json",
        f"Test User **deleted comment** in {KT7}",
    ),
    "SERVER issue commented": Case(
        "webhook-server-issue-updated-commented-1.json",
        f"Lev Brouk **commented** on {PRJX14}",
        text="> unik",
        attachment=True,
    ),
    "SERVER issue comment created indentation": Case(
        "webhook-issue-comment-created-indentation.json",
        f"User **commented** on {TEST4}",
        text="> [~Test] creating a test comment\r\n> \r\n> a second line for the test comment",
        attachment=True,
    ),
    "SERVER (old version) issue commented (no issue_event_type_name)": Case(
        "webhook-server-old-issue-updated-no-event-type-commented.json",
        f"Lev Brouk **commented** on {PRJX14}",
        text="> unik",
        attachment=True,
    ),
    "SERVER issue comment deleted": Case(
        "webhook-server-issue-updated-comment-deleted.json",
        f"Lev Brouk **deleted comment** in {PRJX14}",
    ),
    "SERVER (old version) issue comment deleted (no issue_event_type_name)": Case(
        "webhook-server-old-issue-updated-no-event-type-comment-deleted.json", ignored=True
    ),
    "SERVER issue comment edited": Case(
        "webhook-server-issue-updated-comment-edited.json",
        f"Lev Brouk **edited comment** in {PRJX14}",
        text="> and higher eeven higher",
        attachment=True,
    ),
    "SERVER (old version) issue comment edited (no issue_event_type_name)": Case(
        "webhook-server-old-issue-updated-no-event-type-comment-edited.json",
        f"Lev Brouk **edited comment** in {PRJX14}",
        text="> and higher eeven higher",
        attachment=True,
    ),
    "SERVER issue commented notify": Case(
        "webhook-server-issue-updated-commented-2.json",
        f"Test User **commented** on {PRJA42}",
        text="> This is a test comment. We should act on it right away.",
        attachment=True,
    ),
    "SERVER: ignored comment created": Case("webhook-server-comment-created.json", ignored=True),
    "SERVER: ignored comment updated": Case("webhook-server-comment-updated.json", ignored=True),
    "SERVER: ignored comment deleted": Case("webhook-server-comment-deleted.json", ignored=True),
    "issue created - no Instance": Case(
        "webhook-issue-created.json",
        f"Test User **created** {TES41}",
        text="Unit test description, not that long",
        attachment=True,
        fields=(("Priority", "High", True),),
    ),
    "issue created no fields - no Instance": Case(
        "webhook-issue-created-no-relevant-fields.json",
        f"Test User **created** {TES41}",
        text="Unit test description, not that long",
        attachment=True,
    ),
    "issue created no description - no Instance": Case(
        "webhook-issue-created-no-description.json",
        f"Test User **created** {TES41}",
        attachment=True,
        fields=(("Priority", "High", True),),
    ),
    "issue created no description nor fields - no Instance": Case(
        "webhook-issue-created-no-description-nor-relevant-fields.json",
        f"Test User **created** {TES41}",
    ),
    "issue edited - no Instance": Case(
        "webhook-issue-updated-edited.json",
        f"Test User **edited** the description of {TES41_2}",
        text="Unit test description, not that long, a little longer now",
        attachment=True,
    ),
    "issue renamed - no Instance": Case(
        "webhook-issue-updated-renamed.json",
        f'Test User **updated** summary from "Unit test summary" to "Unit test summary 1" on {TES41_2}',
    ),
    "issue assigned nobody - no Instance": Case(
        "webhook-issue-updated-assigned-nobody.json",
        f"Test User **assigned** _nobody_ to {TES41_2}",
    ),
    "issue assigned - no Instance": Case(
        "webhook-issue-updated-assigned.json",
        f"Test User **assigned** Test User to {TES41_2}",
    ),
    "issue assigned on server - no Instance": Case(
        "webhook-issue-updated-assigned-on-server.json",
        f"Test User **assigned** Test User to {PRJA37}",
    ),
    "issue attachments - no Instance": Case(
        "webhook-issue-updated-attachments.json",
        f"Test User **attached** [test.gif] to, **removed** attachments [test.json] from {TES41_2}",
    ),
    "issue fix version - no Instance": Case(
        "webhook-issue-updated-fix-version.json",
        f'Test User **updated** Fix Version from "v1" to "v2" on {TES41_2}',
    ),
    "issue issue type - no Instance": Case(
        "webhook-issue-updated-issue-type.json",
        f'Test User **updated** issuetype from "Task" to "Bug" on {TES41_2}',
    ),
    "issue labels - no Instance": Case(
        "webhook-issue-updated-labels.json",
        f"Test User **added** labels [sad] to, **removed** labels [bad] from {TES41_2}",
    ),
    "issue lowered priority - no Instance": Case(
        "webhook-issue-updated-lowered-priority.json",
        f'Test User **updated** priority from "High" to "Low" on {TES41_2}',
    ),
    "issue raised priority - no Instance": Case(
        "webhook-issue-updated-raised-priority.json",
        f'Test User **updated** priority from "Low" to "High" on {TES41_2}',
    ),
    "issue rank - no Instance": Case(
        "webhook-issue-updated-rank.json",
        f'Test User **updated** Rank from "~~none~~" to "ranked higher" on {TES41_2}',
    ),
    "issue reopened - no Instance": Case(
        "webhook-issue-updated-reopened.json",
        f"Test User **updated** {TES41_2}",
        attachment=True,
        fields=(("", "**Reopened:** ~~Done~~ Open", False), ("", "**Status:** ~~Done~~ To Do", False)),
    ),
    "issue resolved - no Instance": Case(
        "webhook-issue-updated-resolved.json",
        f"Test User **updated** {TES41_2}",
        attachment=True,
        fields=(("", "**Resolved:** ~~Open~~ Done", False), ("", "**Status:** ~~In Progress~~ Done", False)),
    ),
    "issue sprint - no Instance": Case(
        "webhook-issue-updated-sprint.json",
        f'Test User **updated** Sprint from "Sprint 1" to "Sprint 2" on {TES41_2}',
    ),
    "issue started working - no Instance": Case(
        "webhook-issue-updated-started-working.json",
        f'Test User **updated** status from "To Do" to "In Progress" on {TES41_2}',
    ),
    "CLOUD comment created - no Instance": Case(
        "webhook-cloud-comment-created.json",
        f"Test User **commented** on {TES41_2}",
        text="> Added a comment",
        attachment=True,
    ),
    "CLOUD comment updated - no Instance": Case(
        "webhook-cloud-comment-updated.json",
        f"Test User **edited comment** in {TES41_2}",
        text="> Added a comment, then edited it",
        attachment=True,
    ),
    "CLOUD comment deleted - no Instance": Case(
        "webhook-cloud-comment-deleted.json",
        f"Test User **deleted comment** in {KT7}",
    ),
    "SERVER issue commented - no Instance": Case(
        "webhook-server-issue-updated-commented-1.json",
        f"Lev Brouk **commented** on {PRJX14}",
        text="> unik",
        attachment=True,
    ),
    "SERVER issue comment deleted - no Instance": Case(
        "webhook-server-issue-updated-comment-deleted.json",
        f"Lev Brouk **deleted comment** in {PRJX14}",
    ),
    "SERVER issue comment edited - no Instance": Case(
        "webhook-server-issue-updated-comment-edited.json",
        f"Lev Brouk **edited comment** in {PRJX14}",
        text="> and higher eeven higher",
        attachment=True,
    ),
    "SERVER issue commented notify - no Instance": Case(
        "webhook-server-issue-updated-commented-2.json",
        f"Test User **commented** on {PRJA42}",
        text="> This is a test comment. We should act on it right away.",
        attachment=True,
    ),
    "SERVER: ignored comment created - no Instance": Case(
        "webhook-server-comment-created.json", ignored=True
    ),
    "CLOUD comment created - user mentioned": Case(
        "webhook-cloud-comment-created-mention-user.json",
        f"Test User **commented** on {TES41_2}",
        text="> Added a comment with mentioned user @test-mm-username",
        attachment=True,
    ),
    "SERVER issue commented - user mentioned": Case(
        "webhook-server-issue-updated-commented-mention-user.json",
        f"Lev Brouk **commented** on {PRJX14}",
        text="> unik with mentioned user @test-mm-username",
        attachment=True,
    ),
    "SERVER issue commented - Post in issue created event thread": Case(
        "webhook-cloud-comment-created.json",
        f"Lev Brouk **commented** on {PRJX14}",
        text="> unik with mentioned user @test-mm-username",
        attachment=True,
    ),
}

# Cases where this project's wording differs on purpose: case -> (reason, the project's post).
EXCEPTIONS: dict[str, tuple[str, Case]] = {
    "SERVER issue comment created indentation": (
        "mentions: the plugin's expectation keeps `[~Test]` raw, yet its own user store connects "
        "every Jira user; this project writes the person, here the connected Mattermost user",
        Case(
            "webhook-issue-comment-created-indentation.json",
            f"User **commented** on {TEST4}",
            text=f"> @{MM_USERNAME} creating a test comment\r\n> \r\n> a second line for the test comment",
            attachment=True,
        ),
    ),
    "SERVER issue commented - Post in issue created event thread": (
        "the plugin's expectation belongs to another payload (its mocked CreatePost echoes the "
        "expectation back, so its test cannot notice); this payload is the Cloud comment on TES-41",
        Case(
            "webhook-cloud-comment-created.json",
            f"Test User **commented** on {TES41_2}",
            text="> Added a comment",
            attachment=True,
        ),
    ),
}


def connected_everyone(_jira_user: str) -> str:
    return MM_USERNAME


def legacy_post(file: str) -> RenderedPost | None:
    """What this project posts for `file` on the plugin test's legacy webhook URL."""
    event = normalise(parse_webhook(load_shared_webhook(file)))
    if event is None or not legacy_matches(LegacyOptions.from_query(LEGACY_QUERY), event):
        return None
    return render_event(event, RenderOptions(), connected_everyone)


def assert_post(post: RenderedPost | None, case: Case) -> None:
    if case.ignored:
        assert post is None
        return
    assert post is not None
    if not case.attachment:
        assert post == RenderedPost(message=case.headline)
        return
    assert post.message == ""
    (attachment,) = post.props["attachments"]
    assert attachment["pretext"] == case.headline
    assert attachment.get("text", "") == case.text
    fields = tuple((f["title"], f["value"], f["short"]) for f in attachment.get("fields", ()))
    assert fields == case.fields


def test_the_table_is_the_plugins_whole_table() -> None:
    # 73 cases in webhook_http_test.go at the time of transcription.
    assert len(PLUGIN_CASES) == 73
    assert set(EXCEPTIONS) <= set(PLUGIN_CASES)


@pytest.mark.parametrize("name", [n for n in PLUGIN_CASES if n not in EXCEPTIONS])
def test_post_has_the_plugins_wording(name: str) -> None:
    case = PLUGIN_CASES[name]
    assert_post(legacy_post(case.file), case)


@pytest.mark.parametrize("name", list(EXCEPTIONS))
def test_deliberate_differences(name: str) -> None:
    reason, ours = EXCEPTIONS[name]
    plugin = PLUGIN_CASES[name]
    assert reason
    assert ours.file == plugin.file
    post = legacy_post(ours.file)
    assert_post(post, ours)
    # The exception is real: the plugin's stated wording is not what this project posts.
    with pytest.raises(AssertionError):
        assert_post(post, plugin)
