"""Users' text as written: a summary reads as typed on every surface a person sees.

Each summary below goes through the real builders: the channel post of a real payload with its
summary replaced, the personal notification, the `view` card, issue links and previews, dialog
texts and choice lists. On Markdown surfaces the text, once un-escaped by CommonMark's backslash
rule, must be the summary (cut at the surface's limit, mentions defused) and links must parse
back to their text and URL; on plain surfaces the summary must appear verbatim.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.chat.previews import preview_text
from bot.commands.cards import SUMMARY_LIMIT as CARD_LIMIT
from bot.commands.cards import inline_text, issue_card, issue_link
from bot.commands.create_form import SUMMARY_MAX, plan_create_form
from bot.jira.events import IssueEvent, normalise
from bot.jira.models import parse_webhook
from bot.jira.rest_models import AllowedValue, FieldMeta, IssueCard, IssueTypeMeta, Transition
from bot.mattermost.payloads import DialogOption
from bot.notify.messages import notice_message
from bot.notify.rules import Notice, Topic, Why
from bot.render.markup import ZERO_WIDTH_JOINER, neutralise_mentions
from bot.render.plain import cut
from bot.render.posts import SUMMARY_LIMIT, render_event
from tests.conftest import load_shared_webhook

URL = "https://some-instance-test.atlassian.net/browse/TES-41"
LONG = "Long " + "word " * 60 + "[x] `y` *z* " + "tail " * 40

SUMMARIES = {
    "brackets": "[Web] Adjust timeout",
    "link lookalike": "[Web](https://evil.example) and ![img](x)",
    "backticks": "Fix `code` path and ``double``",
    "underscores": "snake_case and __init__ and _it_",
    "asterisks": "**bold** and *it* and a * b",
    "pipes": "a | b | c",
    "angle brackets": "<script> & <b>x</b> &amp; a < b > c",
    "tildes": "~~gone~~ and ~x~ and ~",
    "backslashes": "C:\\temp\\ and \\[not escaped\\] and a trailing \\",
    "line-start markers": "# not a heading",
    "numbered": "1. not a list",
    "quote": "> not a quote",
    "emoji": "Emoji 🚀, 👩‍💻, 👍🏽 and 🇫🇷 flags",
    "right to left": "עברית ثم English ومزيد",
    "zero width": "zero\u200bwidth\u200cnon\u200djoiner\u2060word",
    "mentions": "Ping @channel, @all and @here.x",
    "500 characters": LONG[:500],
    "cut beside specials": "a" * 76 + "\\[]`*_" + "b" * 100,
    "cut inside an emoji": "a" * 75 + "👩‍💻👩‍💻" + "b" * 20,
}


# -- a tiny CommonMark reader: backslash escapes and inline links --------------------------------

_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def unescape(markdown: str) -> str:
    """CommonMark's backslash rule: a backslash before ASCII punctuation stands for it."""
    return _ESCAPE.sub(r"\1", markdown)


def parse_link(markdown: str, start: int) -> tuple[str, str, int]:
    """The raw text and URL of the inline link opening at `markdown[start] == "["`, and the end."""
    assert markdown[start] == "["
    i, depth = start + 1, 0
    while i < len(markdown):
        char = markdown[i]
        if char == "\\":
            i += 2
            continue
        assert char != "`", "an unescaped backtick in link text may swallow the link"
        if char == "[":
            depth += 1
        elif char == "]":
            if depth == 0:
                break
            depth -= 1
        i += 1
    else:
        raise AssertionError(f"link text never closes: {markdown!r}")
    text = markdown[start + 1 : i]
    assert markdown[i + 1] == "(", f"no URL after the link text: {markdown!r}"
    end = markdown.index(")", i)
    return text, markdown[i + 2 : end], end + 1


def only_link(markdown: str) -> tuple[str, str]:
    """The text and URL of the one link in `markdown` (the first unescaped "[")."""
    match = re.search(r"(?<!\\)\[", markdown)
    assert match is not None, markdown
    text, url, _ = parse_link(markdown, match.start())
    return text, url


def shown(summary: str, limit: int) -> str:
    """What a reader must see: the summary cut at the limit, mentions defused."""
    return neutralise_mentions(cut(summary, limit))


def assert_no_live_mention(text: str) -> None:
    for word in ("channel", "all", "here"):
        assert f"@{word}" not in text


# -- builders ----------------------------------------------------------------------------------


def event_with(summary: str, name: str = "webhook-issue-updated-assigned.json") -> IssueEvent:
    payload: dict[str, Any] = load_shared_webhook(name)
    payload["issue"]["fields"]["summary"] = summary
    event = normalise(parse_webhook(payload))
    assert event is not None
    return event


def card_with(summary: str) -> IssueCard:
    return IssueCard(
        key="TES-41",
        id="10041",
        summary=summary,
        status="To Do",
        issue_type="Story",
        priority="High",
        assignee_name="",
        assignee_id="",
        reporter_name="Test User",
        reporter_id="u1",
        description="",
        browse_url=URL,
        project_key="TES",
        security_level=None,
    )


def field(field_id: str, name: str, values: tuple[str, ...] = ()) -> FieldMeta:
    return FieldMeta(
        id=field_id,
        name=name,
        required=True,
        schema_type="option" if values else "string",
        schema_items="",
        schema_system="",
        schema_custom="",
        allowed_values=tuple(AllowedValue(id=str(i), name=v) for i, v in enumerate(values, 1)) or None,
        has_default_value=False,
    )


CASES = pytest.mark.parametrize("summary", list(SUMMARIES.values()), ids=list(SUMMARIES))


# -- Markdown surfaces -------------------------------------------------------------------------


@CASES
def test_channel_post_link(summary: str) -> None:
    post = render_event(event_with(summary))
    assert post is not None
    text, url = only_link(post.message)
    assert url == URL
    assert unescape(text) == f"TES-41: {shown(summary, SUMMARY_LIMIT)}"
    assert_no_live_mention(post.message)


@CASES
def test_channel_post_attachment_pretext_and_plain_fallback(summary: str) -> None:
    post = render_event(event_with(summary, "webhook-issue-created.json"))
    assert post is not None
    (attachment,) = post.props["attachments"]
    text, url = only_link(attachment["pretext"])
    assert (unescape(text), url) == (f"TES-41: {shown(summary, SUMMARY_LIMIT)}", URL)
    # The fallback is plain text: the summary as typed, nothing escaped.
    assert attachment["fallback"] == f"Test User created story TES-41: {shown(summary, SUMMARY_LIMIT)}"


@CASES
def test_summary_change_in_a_headline(summary: str) -> None:
    event = event_with(summary, "webhook-issue-updated-renamed.json")
    post = render_event(event)
    assert post is not None
    # `updated summary from "old" to "new" on`: the new summary inside Go-style quotes.
    quoted = re.search(r' to "(.*)" on ', post.message)
    assert quoted is not None
    new = event.changes[0].to_string
    expected = neutralise_mentions(new).replace("\\", "\\\\").replace('"', '\\"')
    assert unescape(quoted[1]) == unescape(expected)


@CASES
def test_personal_notification(summary: str) -> None:
    notice = Notice(recipient="someone", why=Why.ASSIGNEE, topic=Topic.ASSIGNED)
    message = notice_message(notice, event_with(summary))
    assert message.startswith("Test User **assigned** you to [")
    text, url = only_link(message)
    assert (unescape(text), url) == (f"TES-41: {shown(summary, SUMMARY_LIMIT)}", URL)
    assert_no_live_mention(message)


@CASES
def test_issue_link_and_preview(summary: str) -> None:
    for markdown in (issue_link("TES-41", URL, summary), preview_text(card_with(summary))):
        text, url = only_link(markdown)
        assert (unescape(text), url) == (f"TES-41: {shown(summary, CARD_LIMIT)}", URL)
        assert_no_live_mention(markdown)


@CASES
def test_markdown_line_in_dialogs_and_messages(summary: str) -> None:
    # The transition dialog's introduction and the create picker's "Summary:" line use it.
    markdown = f"**TES-41**: {inline_text(summary, 120)}"
    assert unescape(markdown[len("**TES-41**: ") :]) == shown(summary, 120)
    assert_no_live_mention(markdown)


# -- plain surfaces ----------------------------------------------------------------------------


@CASES
def test_card_title_and_fallback_are_plain(summary: str) -> None:
    attachment = issue_card(card_with(summary))
    assert attachment.title_link == URL
    assert attachment.title == attachment.fallback == f"TES-41: {shown(summary, CARD_LIMIT)}"


@CASES
def test_create_dialog_default_is_as_typed(summary: str) -> None:
    issue_type = IssueTypeMeta(id="1", name="Task", subtask=False, fields=(field("summary", "Summary"),))
    (element,) = plan_create_form(issue_type, summary).elements
    # Nothing escaped; a summary over the field's size is cut, with a "…" when Mattermost's
    # byte limit cuts it further.
    kept = element.default.removesuffix("…")
    assert summary[:SUMMARY_MAX].startswith(kept)
    assert len(kept) >= min(len(summary), 100)


@CASES
def test_choice_lists_are_as_typed(summary: str) -> None:
    # A custom select field whose options are users' text, and a transition named by it.
    issue_type = IssueTypeMeta(
        id="1", name="Task", subtask=False, fields=(field("customfield_1", "Area", (summary, "Other")),)
    )
    select = plan_create_form(issue_type).elements[1]
    assert [o.text for o in select.options or ()] == [summary, "Other"]
    label = Transition(id="7", name=summary, to_status="Done").label
    assert DialogOption(text=label, value="7").text == f"{summary} → Done"


# -- the pieces themselves ---------------------------------------------------------------------


def test_brackets_are_escaped_not_replaced() -> None:
    post = render_event(event_with("[Web] Adjust timeout"))
    assert post is not None
    assert "[TES-41: \\[Web\\] Adjust timeout](" in post.message
    assert "(Web)" not in inline_text("[Web] Adjust timeout")


def test_cut_never_leaves_a_dangling_backslash_or_half_an_emoji() -> None:
    post = render_event(event_with(SUMMARIES["cut beside specials"]))
    assert post is not None
    # Cut after the summary's backslash, which is then escaped itself: "\\" before the "...".
    text, _ = only_link(post.message)
    assert text.endswith("a\\\\...")
    assert unescape(text).endswith("a\\...")
    post = render_event(event_with(SUMMARIES["cut inside an emoji"]))
    assert post is not None
    text, _ = only_link(post.message)
    # 77 characters would end in the joiner of the first 👩‍💻: the cut leaves the emoji out whole.
    assert text == "TES-41: " + "a" * 75 + "..."
    assert f"{ZERO_WIDTH_JOINER}..." not in text
