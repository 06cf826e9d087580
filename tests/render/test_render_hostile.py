"""Hostile Jira text through the render path: generated text (markup characters, unicode, control
characters, mass mentions, dangerous links and images) must render without an exception, without a
mention that notifies anyone but connected users, without an image and without a link to anything
but http, https or mailto."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.jira.events import IssueEvent, normalise
from bot.jira.models import parse_webhook
from bot.render.markup import MAX_CONVERTED_CHARS, jira_to_markdown, render_jira_text
from bot.render.posts import render_event
from bot.render.wiki import DEFAULT_BUDGET, wiki_to_markdown_counted
from tests.render.test_markup import mattermost_mentions

FIXTURE = Path(__file__).parent.parent / "fixtures" / "webhooks" / "cloud-issue-updated-priority.json"
CONNECTED = {"bob": "bob.mm"}

FRAGMENTS = [
    *"[]{}*_-+^~|!#?\\()<>`:@&;.= \t\n\r",
    "||", "??", "{{", "}}", "\\\\", "----", "h1. ", "bq. ", "* ", "# ", "** ", "#* ", "-- ",
    "{code}", "{code:java}", "{noformat}", "{quote}", "{panel:title=T}", "{panel}", "{color:red}",
    "{color}", "@channel", "@all", "@here", "@ChAnNeL", "@ALL.", "@here:", "\\@channel", "<!channel>",
    "<!here|x>", "<!everyone>", "&#64;all", "&commat;here", "&#x40;channel", "@bob.mm", "@eve",
    "[~bob]", "[~accountid:acc-1]", "[Al|~carol]", "javascript:alert(1)", "JaVaScRiPt:x",
    "data:text/html,<b>", "vbscript:x", "file:///etc/passwd", "http://evil/x.png", "https://ok.io/a_b*c*",
    "mailto:a@b.c", "www.x.org", "[x|javascript:alert(1)]", "[x](javascript:alert(1))",
    "![i](http://evil/x.png)", "!http://evil/x.png!", "!x.png|thumbnail!", "[^a.txt]", "](", "![",
    "[r]: javascript:x", "<javascript:x>", "<data:x>", "\u202e", "\u200b", "\u200d", "\ufeff", "\u0000",
    "\x1b[31m", "\u2028", "\ue000", "\ue001", "0", "é", "日本", "🙂", "word", "x.png",
]  # fmt: skip

hostile_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=60).map("".join)

_LINK_TARGET = re.compile(r"\]\(\s*<?([^)\s>]*)")
_AUTOLINK_SCHEME = re.compile(r"<([a-z][a-z0-9+.\-]{1,31}):", re.IGNORECASE)
_ALLOWED_TARGET = re.compile(r"(?:https?://|mailto:)", re.IGNORECASE)


def lookup(jira_id: str) -> str | None:
    return CONNECTED.get(jira_id)


# A backslash before ASCII punctuation makes it literal text in Markdown (CommonMark 2.4), so an
# escaped "[", "]", "<" or "!" opens no link, autolink, image or reference definition.
_ESCAPED_PUNCTUATION = re.compile(r"\\[!-/:-@\[-`{-~]")


def assert_safe(rendered: str, allowed_mentions: set[str]) -> None:
    # Markdown drops a "\" before ASCII punctuation (and only there) before Mattermost looks for
    # mentions: "@\_x" reads "@_x", while "@\U0001" keeps its backslash and mentions nobody.
    shown = _ESCAPED_PUNCTUATION.sub(lambda m: m[0][1], rendered)
    assert mattermost_mentions(shown) <= allowed_mentions, rendered
    markup = _ESCAPED_PUNCTUATION.sub("\x00", rendered)
    assert "![" not in markup, rendered
    for target in _LINK_TARGET.findall(markup):
        assert _ALLOWED_TARGET.match(target), (target, rendered)
    for scheme in _AUTOLINK_SCHEME.findall(markup):
        assert scheme.lower() in ("http", "https", "mailto"), rendered
    assert "]:" not in markup, rendered


def _payload() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(FIXTURE.read_text())
    payload.pop("changelog", None)
    return payload


def created_event(description: str) -> IssueEvent:
    payload = _payload()
    payload["webhookEvent"], payload["issue_event_type_name"] = "jira:issue_created", "issue_created"
    payload["issue"]["fields"]["description"] = description
    event = normalise(parse_webhook(payload))
    assert event is not None
    return event


def commented_event(body: str) -> IssueEvent:
    payload = _payload()
    payload["issue_event_type_name"] = "issue_commented"
    payload["comment"] = {"id": "1", "body": body, "author": payload["user"], "updateAuthor": payload["user"]}
    event = normalise(parse_webhook(payload))
    assert event is not None and event.comment is not None
    return event


def post_texts(event: IssueEvent) -> str:
    post = render_event(event, mentions=lookup)
    assert post is not None
    parts = [post.message]
    for attachment in post.props.get("attachments", []):
        parts += [attachment.get("text", ""), attachment.get("pretext", "")]
        parts += [str(field.get("value", "")) for field in attachment.get("fields", [])]
    return "\n".join(parts)


@settings(max_examples=200, deadline=None)
@given(hostile_text)
def test_render_jira_text_is_safe(text: str) -> None:
    for quote in (False, True):
        assert_safe(render_jira_text(text, 3000, lookup, quote=quote), {"bob.mm"})
    assert_safe(render_jira_text(text, 40, lookup), {"bob.mm"})  # cut anywhere


@settings(max_examples=200, deadline=None)
@given(hostile_text)
def test_converter_never_raises_and_stays_linear(text: str) -> None:
    markdown, steps = wiki_to_markdown_counted(text)
    assert isinstance(markdown, str)
    assert steps <= 40 * len(text) + 50


@settings(max_examples=100, deadline=None)
@given(hostile_text)
def test_created_issue_post_is_safe(description: str) -> None:
    assert_safe(post_texts(created_event(description)), {"bob.mm"})


@settings(max_examples=100, deadline=None)
@given(hostile_text)
def test_comment_post_is_safe(body: str) -> None:
    assert_safe(post_texts(commented_event(body)), {"bob.mm"})


class TestRegressions:
    def test_2000_brackets_take_a_linear_number_of_steps(self) -> None:
        # Used to take 12.7 s in the pyparsing grammar; the step count shows the work is linear.
        _, steps_1000 = wiki_to_markdown_counted("[" * 1000)
        _, steps_2000 = wiki_to_markdown_counted("[" * 2000)
        assert steps_2000 <= 2 * steps_1000 + 10
        assert steps_2000 <= 5 * 2000

    def test_every_markup_run_is_linear(self) -> None:
        for char in "[{*_-+^~|!#?\\":
            _, small = wiki_to_markdown_counted(char * 5_000)
            _, large = wiki_to_markdown_counted(char * 20_000)
            assert large <= 4 * small + 20, char
            assert large <= 10 * 20_000, char

    def test_million_character_text_is_cut_and_converted(self) -> None:
        text = "[" * 1_000_000
        jira_to_markdown.cache_clear()
        assert jira_to_markdown(text) == "[" * MAX_CONVERTED_CHARS
        rendered = render_jira_text(text, 3000, lookup)
        assert len(rendered) == 3000 and rendered.endswith("...")
        post = post_texts(created_event(text))
        assert "[[[" in post

    def test_hostile_text_stays_far_under_the_budget(self) -> None:
        # The budget is a safety net, never reached by text of the configured size.
        text = ("{quote}*_-+^~[a|!x.png|{{" * 1000)[:MAX_CONVERTED_CHARS]
        _, steps = wiki_to_markdown_counted(text)
        assert steps < DEFAULT_BUDGET / 4

    def test_javascript_link_written_as_markdown(self) -> None:
        result = render_jira_text("[x](javascript:alert(1))", 3000, lookup)
        assert_safe(result, set())
        assert result.replace("\u200b", "") == "[x](javascript:alert(1))"  # reads the same

    def test_markdown_image_written_in_jira_text(self) -> None:
        result = render_jira_text("![i](http://evil/x.png)", 3000, lookup)
        assert_safe(result, set())
        assert "http://evil/x.png" in result

    def test_jira_image_becomes_a_link(self) -> None:
        assert render_jira_text("!http://evil/x.png!", 3000, lookup) == "[x.png](http://evil/x.png)"

    def test_javascript_jira_link_becomes_text(self) -> None:
        assert render_jira_text("[x|javascript:alert(1)]", 3000, lookup) == "x"
