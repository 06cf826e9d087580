"""Text helpers for posts made from Jira content: wiki markup to Markdown, Jira user mentions,
defusing of Mattermost mentions, truncation.

Pure: no I/O. Every function here accepts any string and never raises on odd input.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

from bot.render.wiki import DEFAULT_BUDGET, WikiBudgetExceeded, wiki_to_markdown

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

# Bounds the conversion of one text: text beyond this is cut before conversion (a post shows at
# most 3,000 characters of it). With the linear converter of bot/render/wiki.py this costs a few
# milliseconds at worst (see bench/bench_render.py).
MAX_CONVERTED_CHARS = 20_000
# Steps (not time: the core reads no clock) one conversion may take before the text is posted
# as escaped plain text instead. Linear conversion of MAX_CONVERTED_CHARS needs far fewer.
CONVERSION_BUDGET = DEFAULT_BUDGET

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~^])")


def escape_markdown(text: str) -> str:
    """`text` shown as it is: every character Markdown could read as markup escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


@lru_cache(maxsize=512)
def jira_to_markdown(text: str) -> str:
    """Convert Jira wiki markup to Mattermost Markdown. Never raises: when the conversion fails
    or exceeds its step budget, the text is returned as escaped plain text."""
    if not text:
        return text
    source = text[:MAX_CONVERTED_CHARS]
    try:
        return wiki_to_markdown(source, CONVERSION_BUDGET)
    except WikiBudgetExceeded:
        log.warning("Jira markup over its conversion budget (%d chars): posted as plain text", len(text))
    except Exception:  # any failure must not lose the post
        log.warning("could not convert Jira markup (%d chars): plain text", len(text), exc_info=True)
    return escape_markdown(source)


# After "](": a link destination Mattermost may follow. Anything else (javascript:, data:,
# vbscript:, file:, relative paths, entity-encoded schemes) is broken apart.
_BAD_LINK_DESTINATION = re.compile(r"\]\((?![ \t]*<?(?:https?://|mailto:))", re.IGNORECASE)
# "<scheme:...>" autolinks with a scheme other than http, https and mailto.
_BAD_AUTOLINK = re.compile(r"<(?=[a-z][a-z0-9+.\-]{1,31}:)(?!(?:https?|mailto):)", re.IGNORECASE)
_IMAGE_OPENER = re.compile(r"!(?=\[)")
ZERO_WIDTH_SPACE = "\u200b"


def defuse_markdown_links(text: str) -> str:
    """Make sure `text` holds no Markdown image and no link to a target other than http, https
    or mailto, whatever literal Markdown it carried (also inside code, where a later cut could
    open it up). A zero-width space splits the syntax; the text reads the same."""
    if "](" in text:
        text = _BAD_LINK_DESTINATION.sub("]" + ZERO_WIDTH_SPACE + "(", text)
    if "<" in text:
        text = _BAD_AUTOLINK.sub("<" + ZERO_WIDTH_SPACE, text)
    if "!" in text:
        text = _IMAGE_OPENER.sub("!" + ZERO_WIDTH_SPACE, text)
    if "]:" in text:  # a reference definition ("[x]: javascript:...") for a link elsewhere
        text = text.replace("]:", "]" + ZERO_WIDTH_SPACE + ":")
    return text


# --- Jira user mentions ---------------------------------------------------------------------------

# [~username], [~accountid:5b10...] and the aliased form [Jane Doe|~accountid:5b10...].
# The alias stops at "[": otherwise every "[" of "[[[[..." would scan to the end of the line
# (quadratic time on hostile text).
_JIRA_MENTION = re.compile(
    r"\[(?:(?P<alias>[^|\[\]\n]*)\|)?~(?P<accountid>accountid:)?(?P<id>[\w\-@.:+]+)\]", re.IGNORECASE
)


def mentioned_jira_users(text: str) -> list[str]:
    """The Jira users a text mentions ([~name] or [~accountid:X]), by id, in order, once each."""
    return list(dict.fromkeys(m["id"] for m in _JIRA_MENTION.finditer(text or "")))


# What an alias may not contain: it would end the mention early or start another.
_ALIAS_BREAKERS = re.compile(r"[|\[\]\n\r~]+")


def name_mentions(text: str, names: Mapping[str, str]) -> str:
    """Give each bare [~id] mention of a user in `names` that name, as Jira's aliased form
    [Name|~id]: it then reads as the person when nobody connected as them, instead of as the
    id (an opaque accountId on Cloud). Mentions that carry an alias already keep it."""
    if not names or not text or "[" not in text:
        return text

    def named(match: re.Match[str]) -> str:
        name = _ALIAS_BREAKERS.sub(" ", names.get(match["id"], "")).strip()
        if match["alias"] is not None or not name:
            return match[0]
        return f"[{name}|~{match['accountid'] or ''}{match['id']}]"

    return _JIRA_MENTION.sub(named, text)


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
# (The label stops at "<", so that "<!a|<!a|..." is read in linear time.)
_SLACK_ANNOUNCEMENT = re.compile(r"<!(?P<word>[a-z]+)(?:\|[^<>\n]*)?>", re.I)
# "@" written as an HTML character reference.
_AT_ENTITY = re.compile(r"&(?:#0*64|#x0*40|commat);", re.I)
# URL-like spans: a Markdown link destination, or a bare / angle-bracketed URL.
# (A destination stops at "(" and "]" too, so that "](](](..." is read in linear time.)
_URL_SPAN = re.compile(r"\]\([^()\]\s]*\)|(?i:\b(?:https?|ftp)://)[^\s<>\"]*")
# An "@" that Mattermost may read as the start of a mention: one not preceded by a letter or
# a digit (Mattermost's mention parser splits words on anything else, then also on ".-:"),
# with the word that follows it.
_MENTION = re.compile(r"(?<![^\W_])@(?P<name>[\w.\-]*)")
# The same without the look-behind, for the pass that looks at what it has written instead.
_AT_WORD = re.compile(r"@(?P<name>[\w.\-]*)")
_WORD_CHARACTER = re.compile(r"[^\W_]")
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

    def defuse(match: re.Match[str], before: str) -> str:
        name = match["name"]
        if not name:
            return match[0]  # a lone "@" (or one already defused) mentions nobody
        bare = name.rstrip(_TRAILING_PUNCTUATION)
        if bare.lower() in allowed_lower:
            # Mattermost reads "@jane." or "@jane:x" first as a whole word (another user's name,
            # a remote user): a joiner ends the word at "@jane", and the "@" that may follow
            # ("@jane@channel") then starts a word of its own, defused in turn.
            # Likewise a word it continues ("x.@jane" holds "@jane" but is read as "x", "@jane"
            # only after a split on ".-:", which also makes "@jane.mm" into "@jane").
            tail = name[len(bare) :]
            lead = ZERO_WIDTH_JOINER if before and before in ".-:_@\\" else ""
            if tail or match.string.startswith(("@", ":", "\\"), match.end()):
                return f"{lead}@{bare}{ZERO_WIDTH_JOINER}{tail}"
            return f"{lead}{match[0]}"
        return f"@{ZERO_WIDTH_JOINER}{name}"

    def defuse_text(part: str) -> str:
        # One pass; whether an "@" starts a word depends on the text as written so far, since a
        # joiner written after an allowed mention makes the next "@" start one.
        out: list[str] = []
        last = 0
        previous = ""
        for match in _AT_WORD.finditer(part):
            between = part[last : match.start()]
            if between:
                out.append(between)
                previous = between[-1]
            last = match.end()
            written = match[0] if _WORD_CHARACTER.match(previous) else defuse(match, previous)
            out.append(written)
            previous = written[-1]
        out.append(part[last:])
        return "".join(out)

    parts: list[str] = []
    last = 0
    for url in _URL_SPAN.finditer(text):
        before = defuse_text(text[last : url.start()])
        # "@http://x" is a mention of "http" (the URL span cut the "@" from its word).
        parts.append(before + ZERO_WIDTH_JOINER if before.endswith("@") else before)
        parts.append(defuse_url(url))
        last = url.end()
    parts.append(defuse_text(text[last:]))
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
    # Last, so that nothing added on the way (display names, the cut) can bring a link back.
    return defuse_markdown_links(neutralise_mentions(truncate(restored, limit), usernames))


def quote_lines(text: str) -> str:
    """Markdown block quote of `text` ("" for blank text), as the plugin quotes comments."""
    if not text.strip():
        return ""
    return "> " + text.replace("\n", "\n> ")


__all__ = [
    "CONVERSION_BUDGET",
    "MAX_CONVERTED_CHARS",
    "ZERO_WIDTH_JOINER",
    "MentionLookup",
    "defuse_markdown_links",
    "escape_markdown",
    "jira_to_markdown",
    "mentioned_jira_users",
    "name_mentions",
    "neutralise_mentions",
    "quote_lines",
    "render_jira_text",
    "replace_jira_mentions",
    "restore_mentions",
    "tokenise_mentions",
    "truncate",
]
