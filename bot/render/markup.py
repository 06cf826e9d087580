"""Text helpers for posts made from Jira content: wiki markup to Markdown, Jira user mentions,
defusing of Mattermost mentions, truncation.

Pure: no I/O. Every function here accepts any string and never raises on odd input.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from jira2markdown.elements import MarkupElements
from jira2markdown.markup.images import Image
from jira2markdown.markup.links import Attachment, Mention
from jira2markdown.markup.text_effects import Color, InlineQuote, Subscript, Superscript, Underline
from pyparsing import Forward, ParseException, ParserElement, ParseResults

log = logging.getLogger(__name__)

# Given a Jira user id (accountId on Cloud, name/key on Server), the connected Mattermost
# username, or None when that Jira user has not connected an account.
MentionLookup = Callable[[str], str | None]

ELLIPSIS = "..."
# Inserted right after a defused "@": Mattermost splits words on it (it is neither a letter nor a
# digit nor one of ":._-@"), so "@<ZWJ>channel" is not a mention, yet it reads as "@channel".
ZERO_WIDTH_JOINER = "\u200d"


def truncate(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, the last three being "...", as the Jira plugin does."""
    if limit < 0 or len(text) <= limit:
        return text
    if limit > len(ELLIPSIS):
        return text[: limit - len(ELLIPSIS)] + ELLIPSIS
    return text[:limit]


# --- Jira wiki markup -> Markdown ----------------------------------------------------------------


class _PlainQuoted:
    """Mixin for jira2markdown's quoted text effects whose Markdown would be HTML that Mattermost
    shows literally (<u>, <sup>, <sub>, <q>): keep the inner text only."""

    QUOTE_CHAR = ""
    END_QUOTE_CHAR = ""


class _PlainUnderline(_PlainQuoted, Underline):
    pass


class _PlainSuperscript(_PlainQuoted, Superscript):
    pass


class _PlainSubscript(_PlainQuoted, Subscript):
    pass


class _PlainInlineQuote(_PlainQuoted, InlineQuote):
    pass


class _PlainColor(Color):
    """{color:red}text{color} -> text (Mattermost ignores <font>)."""

    def action(self, tokens: ParseResults) -> str:
        return str(self.inline_markup.transform_string(tokens.text))


def _is_absolute_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


class _SafeImage(Image):
    """!file.png! names a Jira attachment, which a Mattermost client cannot load: keep the name."""

    def action(self, tokens: ParseResults) -> str:
        url = str(tokens.url)
        return str(super().action(tokens)) if _is_absolute_url(url) else url


class _SafeAttachment(Attachment):
    """[^file.txt] names a Jira attachment: a relative link would be broken, keep the name."""

    def action(self, tokens: ParseResults) -> str:
        return str(tokens.filename)


# Where a jira2markdown element may start: a line start, one of these characters, or a bare URL.
# Every element of the grammar begins at one of those places (lists, tables, headings and
# quotes at a line start; text effects, links, macros at their opening character), so scanning
# only them gives the same result as pyparsing's position-by-position scan, many times faster.
_ELEMENT_START = re.compile(r"(?m:^)|[*\-{\[!^~+?\\|#]|(?i:https?|ftp)://")
# Text without any of these cannot contain wiki markup: it is returned as is.
_MARKUP_HINT = re.compile(r"[*\-{\[!^~+?\\|#]|(?i:https?|ftp)://|(?m:^[ \t]*(?:h[1-6]|bq)\. )")


def _flatten(items: Iterable[Any]) -> Iterable[str]:
    for item in items:
        if isinstance(item, str):
            yield item
        elif isinstance(item, Iterable):
            yield from _flatten(item)
        elif item is not None:
            yield str(item)


class _CandidateScan(Forward):
    """A Forward whose transform_string tries the grammar only where an element may start."""

    def transform_string(self, instring: str, *, debug: bool = False) -> str:
        if not self.streamlined:
            self.streamline()
        self.keepTabs = True
        parse = self._parse
        out: list[Any] = []
        last = loc = 0
        size = len(instring)
        search = _ELEMENT_START.search
        while loc < size:
            found = search(instring, loc)
            if found is None:
                break
            start = found.start()
            try:
                end, tokens = parse(instring, start, True, False)
            except ParseException:
                loc = start + 1
                continue
            if end <= start:
                loc = start + 1
                continue
            if start > last:
                out.append(instring[last:start])
            last = loc = end
            if isinstance(tokens, ParseResults):
                out.extend(tokens.as_list())
            elif tokens:
                out.append(tokens)
        out.append(instring[last:])
        return "".join(_flatten(part for part in out if part))


def _elements() -> MarkupElements:
    elements = MarkupElements()
    # Mentions are resolved to Mattermost users before conversion (see render_jira_text).
    elements.remove(Mention)
    for original, replacement in (
        (Color, _PlainColor),
        (Underline, _PlainUnderline),
        (Superscript, _PlainSuperscript),
        (Subscript, _PlainSubscript),
        (InlineQuote, _PlainInlineQuote),
        (Image, _SafeImage),
        (Attachment, _SafeAttachment),
    ):
        elements.replace(original, replacement)
    return elements


def build_wiki_grammar(forward_type: type[Forward] = _CandidateScan) -> ParserElement:
    """The jira2markdown grammar (built once: jira2markdown.convert rebuilds it on every call)."""
    elements = _elements()
    inline_markup = forward_type()
    markup = forward_type()
    inline_markup <<= elements.expr(
        inline_markup, markup, {}, [element for element in elements if element.is_inline_element]
    )
    markup <<= elements.expr(inline_markup, markup, {}, elements)
    return markup


_GRAMMAR = build_wiki_grammar()
# Bounds the conversion time of one text: text beyond this is cut before conversion.
MAX_CONVERTED_CHARS = 20_000


@lru_cache(maxsize=512)
def jira_to_markdown(text: str) -> str:
    """Convert Jira wiki markup to Mattermost Markdown. Never raises: on failure, the raw text."""
    if not text or _MARKUP_HINT.search(text) is None:
        return text
    source = text[:MAX_CONVERTED_CHARS]
    try:
        return str(_GRAMMAR.transform_string(source))
    except Exception:  # the grammar is third-party: any failure falls back to the raw text
        log.warning("could not convert Jira markup (%d chars); posting it raw", len(text), exc_info=True)
        return text


# --- Jira user mentions ---------------------------------------------------------------------------

# [~username], [~accountid:5b10...] and the aliased form [Jane Doe|~accountid:5b10...].
_JIRA_MENTION = re.compile(
    r"\[(?:(?P<alias>[^|\]\n]*)\|)?~(?P<accountid>accountid:)?(?P<id>[\w\-@.:+]+)\]", re.IGNORECASE
)


def mentioned_jira_users(text: str) -> list[str]:
    """The Jira users a text mentions ([~name] or [~accountid:X]), by id, in order, once each."""
    return list(dict.fromkeys(m["id"] for m in _JIRA_MENTION.finditer(text or "")))


# Stand-ins for resolved mentions while the text goes through the wiki converter.
_TOKEN_OPEN, _TOKEN_CLOSE = "\ue000", "\ue001"
_TOKEN = re.compile(f"{_TOKEN_OPEN}(\\d+){_TOKEN_CLOSE}")


def _resolve_mention(
    match: re.Match[str], lookup: MentionLookup, display_names: Mapping[str, str] | None
) -> tuple[str, str | None]:
    """The text for one [~...] mention and, when it is a connected user, their username."""
    jira_id = match["id"]
    try:
        username = lookup(jira_id)
    except Exception:  # a failing lookup must not lose the post
        log.warning("mention lookup failed for a Jira user", exc_info=True)
        username = None
    if username:
        return f"@{username}", username
    name = (display_names or {}).get(jira_id) or (match["alias"] or "").strip() or jira_id
    return name, None


def tokenise_mentions(
    text: str, lookup: MentionLookup, display_names: Mapping[str, str] | None = None
) -> tuple[str, list[str], set[str]]:
    """Replace each Jira mention by a stand-in token.

    Returns the text, the replacement of each token (by index) and the Mattermost usernames
    mentioned. Tokens survive wiki conversion untouched; `restore_mentions` puts the text back.
    """
    text = text.replace(_TOKEN_OPEN, "").replace(_TOKEN_CLOSE, "")
    replacements: list[str] = []
    usernames: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        replacement, username = _resolve_mention(match, lookup, display_names)
        if username:
            usernames.add(username)
        replacements.append(replacement)
        return f"{_TOKEN_OPEN}{len(replacements) - 1}{_TOKEN_CLOSE}"

    return _JIRA_MENTION.sub(substitute, text), replacements, usernames


def restore_mentions(text: str, replacements: list[str]) -> str:
    if not replacements:
        return text
    return _TOKEN.sub(lambda m: replacements[int(m[1])] if int(m[1]) < len(replacements) else "", text)


def replace_jira_mentions(
    text: str, lookup: MentionLookup, display_names: Mapping[str, str] | None = None
) -> str:
    """[~user] / [~accountid:X] -> @mattermost_user when connected, else the display name when
    known, else the bare id. Never produces an "@" for someone who has not connected."""
    tokenised, replacements, _ = tokenise_mentions(text, lookup, display_names)
    return restore_mentions(tokenised, replacements)


# --- Mention neutralisation -------------------------------------------------------------------------

# Slack-style announcements, which Mattermost's Slack compatibility expands into @channel etc.
_SLACK_ANNOUNCEMENT = re.compile(r"<!(?P<word>[a-z]+)(?:\|[^>\n]*)?>", re.I)
# "@" written as an HTML character reference.
_AT_ENTITY = re.compile(r"&(?:#0*64|#x0*40|commat);", re.I)
# URL-like spans: a Markdown link destination, or a bare / angle-bracketed URL.
_URL_SPAN = re.compile(r"\]\([^)\s]*\)|(?i:\b(?:https?|ftp)://)[^\s<>\"]*")
# An "@" that Mattermost may read as the start of a mention: one not preceded by a letter or
# a digit (Mattermost's mention parser splits words on anything else, then also on ".-:"),
# with the word that follows it.
_MENTION = re.compile(r"(?<![^\W_])@(?P<name>[\w.\-]*)")
_TRAILING_PUNCTUATION = ".-_:"


def neutralise_mentions(text: str, allowed: Iterable[str] = frozenset()) -> str:
    """Defuse every Mattermost mention in `text` except `@name` for the names in `allowed`.

    @channel, @all, @here (any case), <!channel>-style announcements, and @someone all become
    "@<zero-width joiner>word": shown the same, notifying nobody. Inside URLs an "@" that could
    start a mention is written %40 instead, which keeps the link working. E-mail addresses
    (a@b.com) are left alone: Mattermost never reads them as mentions.
    """
    if "@" not in text and "<!" not in text and "&" not in text:
        return text
    allowed_lower = {name.lower() for name in allowed}
    text = _SLACK_ANNOUNCEMENT.sub(lambda m: f"@{ZERO_WIDTH_JOINER}{m['word']}", text)
    text = _AT_ENTITY.sub("@", text)
    if "@" not in text:
        return text

    def defuse_url(match: re.Match[str]) -> str:
        return _MENTION.sub(lambda m: "%40" + m["name"], match[0])

    def defuse(match: re.Match[str]) -> str:
        name = match["name"]
        if not name:
            return match[0]  # a lone "@" (or one already defused) mentions nobody
        if name.rstrip(_TRAILING_PUNCTUATION).lower() in allowed_lower:
            return match[0]
        return f"@{ZERO_WIDTH_JOINER}{name}"

    parts: list[str] = []
    last = 0
    for url in _URL_SPAN.finditer(text):
        parts.append(_MENTION.sub(defuse, text[last : url.start()]))
        parts.append(defuse_url(url))
        last = url.end()
    parts.append(_MENTION.sub(defuse, text[last:]))
    return "".join(parts)


def render_jira_text(
    text: str,
    limit: int,
    lookup: MentionLookup,
    display_names: Mapping[str, str] | None = None,
    *,
    quote: bool = False,
) -> str:
    """Jira text made ready for a post: mentions resolved, wiki converted, optionally quoted,
    cut at `limit`, and every mention defused except those of connected users."""
    if not text or not text.strip():
        return ""
    # Converting far more than will be shown only costs time.
    source = text[: max(limit, 0) * 2 + 200] if limit >= 0 else text
    tokenised, replacements, usernames = tokenise_mentions(source, lookup, display_names)
    converted = jira_to_markdown(tokenised)
    if quote:
        converted = quote_lines(converted)
    restored = restore_mentions(converted, replacements)
    return neutralise_mentions(truncate(restored, limit), usernames)


def quote_lines(text: str) -> str:
    """Markdown block quote of `text` ("" for blank text), as the plugin quotes comments."""
    if not text.strip():
        return ""
    return "> " + text.replace("\n", "\n> ")


__all__ = [
    "ZERO_WIDTH_JOINER",
    "MentionLookup",
    "build_wiki_grammar",
    "jira_to_markdown",
    "mentioned_jira_users",
    "neutralise_mentions",
    "quote_lines",
    "render_jira_text",
    "replace_jira_mentions",
    "restore_mentions",
    "tokenise_mentions",
    "truncate",
]
