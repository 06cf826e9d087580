"""Render a normalised Jira event into a Mattermost post, worded as the Jira plugin words it.

Pure: no I/O, no clock. User lookups (Jira user -> Mattermost username) are passed in.

The post has the plugin's shape (webhook.go, PostToChannel): a bare `message` holding the
headline when there is nothing more to show, otherwise an empty message and one Slack-style
attachment in `props["attachments"]` (pretext = headline, text = description or quoted comment,
fields = created-issue facts or one line per change of a merged update).

Every piece of text that comes from Jira goes through `neutralise_mentions`: only the mentions
this module writes itself, of Jira users who connected a Mattermost account, can notify anyone.
Users' plain text (summaries, names, field values) is Markdown-escaped (bot.render.plain), so it
reads as typed; the attachment's `fallback`, which Mattermost shows as plain text, carries the
headline unescaped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.jira.events import (
    COMMENT_KINDS,
    EVENT_CREATED,
    EVENT_CREATED_COMMENT,
    EVENT_DELETED,
    EVENT_DELETED_COMMENT,
    EVENT_UPDATED_ASSIGNEE,
    EVENT_UPDATED_ATTACHMENT,
    EVENT_UPDATED_DESCRIPTION,
    EVENT_UPDATED_LABELS,
    EVENT_UPDATED_RANK,
    EVENT_UPDATED_REOPENED,
    EVENT_UPDATED_RESOLVED,
    FieldChange,
    IssueEvent,
    JiraUser,
)
from bot.render.markup import MentionLookup, neutralise_mentions, render_jira_text
from bot.render.plain import cut, escape_link_text, escape_markdown, markdown_to_plain


def no_mentions(_jira_user_id: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class RenderOptions:
    hide_description: bool = False
    hide_comments: bool = False
    subscription_name: str | None = None  # shown in the post when set


@dataclass(frozen=True, slots=True)
class RenderedPost:
    message: str
    props: Mapping[str, Any] = field(default_factory=dict)


# The plugin's limits (webhook_jira.go / webhook_parser.go).
SUMMARY_LIMIT = 80
TEXT_LIMIT = 3000
DESCRIPTION_DIFF_LIMIT = 500
ATTACHMENT_COLOR = "#95b7d0"
NOBODY = "_nobody_"
SOMEONE = "Someone"
# A changed value this long, or spanning lines, is free text (environment, text-area custom
# fields): hidden with the comments when a subscription asks for that.
FREE_TEXT_LENGTH = 255

_DEFAULT_OPTIONS = RenderOptions()
_TITLE_WORD = re.compile(r"(?<![\w'])(\w)")


def render_event(
    event: IssueEvent,
    options: RenderOptions = _DEFAULT_OPTIONS,
    mentions: MentionLookup = no_mentions,
) -> RenderedPost | None:
    """The post for `event`, or None when the event carries nothing to post."""
    rendering = render_once(event, options, mentions)
    return None if rendering is None else rendering.post(options.subscription_name)


@dataclass(frozen=True, slots=True)
class EventRendering:
    """An event rendered once for every channel it reaches: the posts differ only by the
    subscription line, so an event routed to fifty channels converts its Jira text once."""

    headline: str
    text: str
    fields: tuple[Mapping[str, Any], ...]

    def post(self, subscription_name: str | None = None) -> RenderedPost:
        headline = self.headline
        if subscription_name:
            headline += f"\nSubscription: **{_md(subscription_name)}**"
        if not self.text and not self.fields:
            return RenderedPost(message=headline)
        attachment: dict[str, Any] = {
            "color": ATTACHMENT_COLOR,
            "fallback": markdown_to_plain(headline),
            "pretext": headline,
            "text": self.text,
        }
        if self.fields:
            attachment["fields"] = [dict(item) for item in self.fields]
        return RenderedPost(message="", props={"attachments": [attachment]})


def render_once(
    event: IssueEvent,
    options: RenderOptions = _DEFAULT_OPTIONS,
    mentions: MentionLookup = no_mentions,
) -> EventRendering | None:
    """What every post of `event` shares (`options.subscription_name` is left to `post`), or
    None when the event carries nothing to post."""
    parts = _Renderer(event, options, mentions).parts()
    if parts is None:
        return None
    headline, text, fields = parts
    return EventRendering(headline, text, tuple(fields))


def post_headline(post: RenderedPost) -> str:
    """The headline of a rendered post, wherever it sits (message or attachment pretext)."""
    if post.message:
        return post.message
    attachments = post.props.get("attachments") or ()
    return str(attachments[0].get("pretext", "")) if attachments else ""


def post_text(post: RenderedPost) -> str:
    """Everything a reader sees in the post, as one string (for logs and tests)."""
    lines = [post.message] if post.message else []
    for attachment in post.props.get("attachments") or ():
        lines.extend(str(attachment.get(key) or "") for key in ("pretext", "text"))
        for item in attachment.get("fields") or ():
            title, value = item.get("title") or "", item.get("value") or ""
            lines.append(f"{title}: {value}" if title else str(value))
    return "\n".join(line for line in lines if line)


def md_user(user: JiraUser | None) -> str:
    """How the plugin names a Jira user: display name, else name, account id, key, e-mail."""
    if user is not None:
        for value in (user.display_name, user.name, user.account_id, user.key, user.email):
            if value and value.strip():
                return value.strip()
    return SOMEONE


def go_quote(value: str) -> str:
    """A double-quoted string as Go's %q writes it (the plugin's "from "A" to "B"" wording)."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif not char.isprintable() and char != " " and unicodedata.category(char) != "Cf":
            # Format characters (zero-width joiners, direction marks) stay as typed: escaped,
            # they would show as "\u200d" in the middle of a name.
            out.append(_go_escape(ord(char)))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _md(text: str) -> str:
    """Users' plain text for Markdown: mentions defused, then every special escaped."""
    return escape_markdown(neutralise_mentions(text))


# Go's quoting already writes `\\` and `\"`, which Markdown reads back as `\` and `"`: the
# backslash is left out of what is escaped in a quoted value.
_QUOTED_SPECIALS = re.compile(r"([`*_\[\]<>~|&])")


def md_quoted(value: str, default: str = "") -> str:
    """A changed value in the plugin's "from "A" to "B"" wording: defused, quoted as Go quotes
    it, then escaped; `default` (the project's own Markdown) when the value is empty."""
    if not value:
        return go_quote(default)
    return _QUOTED_SPECIALS.sub(r"\\\1", go_quote(neutralise_mentions(value)))


def _go_escape(code: int) -> str:
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def title_case(name: str) -> str:
    """Upper-case the first letter of each word, leaving the rest as is (Go's cases.Title, NoLower)."""
    return _TITLE_WORD.sub(lambda m: m[1].upper(), name)


def _added(before: str, after: str) -> str:
    """Space-separated words of `after` missing from `before` (the plugin's mdDiff)."""
    known = set(before.split(" "))
    return " ".join(word for word in after.split(" ") if word not in known)


def _add_remove(before: str, after: str, add: str, remove: str) -> str:
    added, removed = _added(before, after), _added(after, before)
    parts = []
    if added:
        parts.append(f"{add} [{_md(added)}] to")
    if removed:
        parts.append(f"{remove} [{_md(removed)}] from")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class _ChangeView:
    """One change as the plugin shows it: a headline verb phrase and a merged-post line."""

    verb: str  # e.g. '**updated** priority from "Low" to "High" on'
    name: str  # field title in a merged post
    before: str
    after: str


_Parts = tuple[str, str, list[dict[str, Any]]]


class _Renderer:
    def __init__(self, event: IssueEvent, options: RenderOptions, mentions: MentionLookup) -> None:
        self.event = event
        self.options = options
        self.mentions = mentions
        self._display_names: dict[str, str] | None = None

    # --- entry point ---

    def parts(self) -> _Parts | None:
        kinds = self.event.kinds
        if not kinds:
            return None
        if EVENT_CREATED in kinds:
            return self._created()
        if EVENT_DELETED in kinds:
            return self._headline(self._actor(), "**deleted**"), "", []
        if kinds & COMMENT_KINDS:
            return self._comment()
        return self._changes()

    # --- pieces ---

    def _actor(self) -> str:
        return _md(md_user(self.event.actor))

    def _link(self) -> str:
        issue = self.event.issue
        # Cut before escaping, so an escape is never halved.
        summary = cut(issue.summary, SUMMARY_LIMIT)
        label = f"{issue.key}: {summary}" if issue.key else summary
        label = escape_link_text(neutralise_mentions(label))
        issue_type = _md(issue.issue_type.name.lower())
        target = f"[{label}]({issue.browse_url})" if issue.browse_url else label
        return f"{issue_type} {target}" if issue_type else target

    def _headline(self, who: str, verb: str) -> str:
        return f"{who} {verb} {self._link()}"

    def _names(self) -> dict[str, str]:
        """Display names of the Jira users this event knows, by every id they go by."""
        if self._display_names is None:
            names: dict[str, str] = {}
            issue, comment = self.event.issue, self.event.comment
            users = [self.event.actor, issue.assignee, issue.reporter]
            if comment is not None:
                users += [comment.author, comment.update_author]
            for user in users:
                if user is not None and user.display_name:
                    for ident in user.ids:
                        names.setdefault(ident, user.display_name)
            self._display_names = names
        return self._display_names

    def _rich(self, text: str, limit: int, *, quote: bool = False) -> str:
        return render_jira_text(text, limit, self.mentions, self._names(), quote=quote)

    # --- event kinds ---

    def _created(self) -> _Parts:
        issue = self.event.issue
        headline = self._headline(self._actor(), "**created**")
        text = "" if self.options.hide_description else self._rich(issue.description, TEXT_LIMIT)
        fields: list[dict[str, Any]] = []
        if issue.assignee is not None:
            fields.append(_field("Assignee", _md(md_user(issue.assignee)), short=True))
        if issue.priority is not None:
            fields.append(_field("Priority", _md(issue.priority.name), short=True))
        return headline, text, fields

    def _comment(self) -> _Parts:
        event, comment = self.event, self.event.comment
        kinds = event.kinds
        if EVENT_DELETED_COMMENT in kinds:
            # Server names the deleter in `user` (with a key); Cloud only in the comment.
            who = event.actor
            if (who is None or not who.key) and comment is not None and comment.update_author.ids:
                who = comment.update_author
            return self._headline(_md(md_user(who)), "**deleted comment** in"), "", []
        author = comment.update_author if comment is not None and comment.update_author.ids else event.actor
        verb = "**commented** on" if EVENT_CREATED_COMMENT in kinds else "**edited comment** in"
        headline = self._headline(_md(md_user(author)), verb)
        body = comment.body if comment is not None else ""
        text = "" if self.options.hide_comments else self._rich(body, TEXT_LIMIT, quote=True)
        return headline, text, []

    def _changes(self) -> _Parts | None:
        changes = self.event.changes
        if not changes:
            return None
        actor = self._actor()
        if len(changes) == 1:
            change = changes[0]
            view = self._view(change)
            text = ""
            if change.kind == EVENT_UPDATED_DESCRIPTION and not self.options.hide_description:
                text = self._rich(self.event.issue.description, TEXT_LIMIT)
            return self._headline(actor, view.verb), text, []
        fields = []
        for change in changes:
            if change.kind == EVENT_UPDATED_DESCRIPTION and self.options.hide_description:
                continue
            view = self._view(change, merged=True)
            strike = "" if change.kind == EVENT_UPDATED_DESCRIPTION or view.before.startswith("~~") else "~~"
            shown_before = f"{strike}{view.before}{strike} " if view.before else ""
            line = f"**{title_case(view.name)}:** {shown_before}{view.after}"
            fields.append(_field("", line, short=False))
        return self._headline(actor, "**updated**"), "", fields

    def _view(self, change: FieldChange, *, merged: bool = False) -> _ChangeView:
        """The plugin's wording for one change; every value neutralised and escaped."""
        kind = change.kind
        before, after = change.from_string, change.to_string
        safe = _md
        if kind == EVENT_UPDATED_REOPENED:
            return _ChangeView("**reopened**", "reopened", safe(before), "Open")
        if kind == EVENT_UPDATED_RESOLVED:
            return _ChangeView("**resolved**", "resolved", "Open", safe(after))
        if kind == EVENT_UPDATED_ASSIGNEE:
            assignee = self.event.issue.assignee
            who = safe(md_user(assignee)) if assignee is not None else NOBODY
            before, after = safe(before) or NOBODY, safe(after) or NOBODY
            return _ChangeView(f"**assigned** {who} to", "assignee", before, after)
        if kind == EVENT_UPDATED_DESCRIPTION:
            if not merged:
                return _ChangeView("**edited** the description of", "description", "", "")
            return _ChangeView(
                "**edited** the description of",
                "description",
                "\n**From:** " + self._rich(before, DESCRIPTION_DIFF_LIMIT),
                "\n**To:** " + self._rich(after, DESCRIPTION_DIFF_LIMIT),
            )
        if kind == EVENT_UPDATED_ATTACHMENT:
            verb = _add_remove(before, after, "**attached**", "**removed** attachments")
            return _ChangeView(
                verb or "**updated** attachments of",
                "attachments",
                safe(before) or "~~None~~",
                safe(after) or "None",
            )
        if kind == EVENT_UPDATED_LABELS:
            verb = _add_remove(before, after, "**added** labels", "**removed** labels")
            before, after = safe(before) or "~~None~~", safe(after) or "None"
            return _ChangeView(verb or "**updated** labels of", "labels", before, after)
        name = safe(change.field or change.field_id)
        if self.options.hide_comments and _is_free_text(change):
            return _ChangeView(f"**updated** {name} on", name, "", "(text hidden)")
        none_before, none_after = "~~None~~", "None"
        if kind == EVENT_UPDATED_RANK:
            before, after = before.lower(), after.lower()
            none_before, none_after = none_before.lower(), none_after.lower()
        shown_from, shown_to = md_quoted(before, none_before), md_quoted(after, none_after)
        verb = f"**updated** {name} from {shown_from} to {shown_to} on"
        return _ChangeView(verb, name, safe(before) or none_before, safe(after) or none_after)


def _is_free_text(change: FieldChange) -> bool:
    return (
        any(
            "\n" in value or len(value) > FREE_TEXT_LENGTH for value in (change.from_string, change.to_string)
        )
        or change.field_id.lower() == "environment"
    )


def _field(title: str, value: str, *, short: bool) -> dict[str, Any]:
    return {"title": title, "value": value, "short": short}


__all__ = [
    "JiraUser",
    "MentionLookup",
    "RenderOptions",
    "RenderedPost",
    "go_quote",
    "md_quoted",
    "md_user",
    "no_mentions",
    "post_headline",
    "post_text",
    "render_event",
    "title_case",
]
