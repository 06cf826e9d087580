"""Users' text (summaries, names, field values) shown exactly as they typed it.

A summary is plain text. Where Mattermost renders Markdown (messages, attachment pretext, text
and field values, dialog introductions) every character that would change its look is escaped
with a backslash, which Mattermost's Markdown honours, so the reader sees the characters typed:
`[Web] Adjust *all* timeouts` stays that, neither a link nor italics. Where Mattermost shows
text as is (select options, dialog fields, attachment `fallback` and a `title` with a
`title_link`) nothing is escaped. Mentions are defused on every surface.

Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata

from bot.render.markup import neutralise_mentions

ELLIPSIS = "..."  # the Jira plugin's mark of a cut text

# ASCII punctuation that Markdown gives a meaning inline: emphasis (* _), strikethrough (~),
# code (`), links and images ([ ] !), autolinks and HTML (< >), tables (|), entities (&), and
# the backslash itself. CommonMark lets a backslash escape any ASCII punctuation.
_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]<>~|&])")
# Block markers that only count at the start of a line: headings, quotes, lists, rules.
_LINE_START_MARKER = re.compile(r"(?m)^([ \t]*)(#|>|\+|-|=|(\d{1,9})([.)]))")

# Code points that join the character before them into one grapheme: cutting before one leaves
# half an emoji, a letter without its accent, or a dangling joiner.
_ZWJ = "\u200d"
_EMOJI_MODIFIERS = range(0x1F3FB, 0x1F400)  # skin tones
_TAGS = range(0xE0020, 0xE0080)  # flag tag sequences
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)


def escape_markdown(text: str) -> str:
    """`text` for a Markdown surface: every special escaped, so it reads as typed."""
    escaped = _INLINE_SPECIALS.sub(r"\\\1", text)
    return _LINE_START_MARKER.sub(_escape_marker, escaped)


def _escape_marker(match: re.Match[str]) -> str:
    indent, marker = match[1], match[2]
    if match[3] is not None:  # "1." or "1)": escape the punctuation, not the digits
        return f"{indent}{match[3]}\\{match[4]}"
    return f"{indent}\\{marker}"


def escape_link_text(text: str) -> str:
    """`text` as the text of a Markdown link `[text](url)`: escaped like any Markdown text
    (brackets, backslashes and backticks included, which would otherwise end or swallow the
    link), on one line, since a blank line ends a link."""
    return escape_markdown(one_line(text))


def one_line(text: str) -> str:
    """Line breaks as spaces; other whitespace as typed."""
    return " ".join(text.splitlines())


def _extends(char: str) -> bool:
    """Whether `char` belongs to the grapheme of the character before it."""
    code = ord(char)
    return (
        char == _ZWJ
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or code in _EMOJI_MODIFIERS
        or code in _TAGS
    )


def _grapheme_cut(text: str, end: int) -> int:
    """The largest cut at or before `end` that splits no grapheme (approximately: combining
    marks, joiners, variation selectors, skin tones, tags and flag pairs stay whole) and no
    surrogate pair."""
    cut = end
    while 0 < cut < len(text):
        here, before = text[cut], text[cut - 1]
        if _extends(here) or before == _ZWJ or "\udc00" <= here <= "\udfff":
            cut -= 1
            continue
        if ord(here) in _REGIONAL_INDICATORS and ord(before) in _REGIONAL_INDICATORS:
            # Flags are pairs: count the indicators before the cut to see if it halves one.
            start = cut
            while start > 0 and ord(text[start - 1]) in _REGIONAL_INDICATORS:
                start -= 1
            if (cut - start) % 2:
                cut -= 1
                continue
        break
    return cut


def cut(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, the last three being "...", as the Jira plugin
    does, but never inside a grapheme. Cut before escaping, so no escape is ever halved."""
    if limit < 0 or len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return text[: _grapheme_cut(text, limit)]
    return text[: _grapheme_cut(text, limit - len(ELLIPSIS))] + ELLIPSIS


def plain_text(text: str, limit: int = -1) -> str:
    """Users' text for a plain surface: one line, cut, mentions defused, nothing escaped."""
    return neutralise_mentions(cut(one_line(text), limit))


def markdown_text(text: str, limit: int = -1) -> str:
    """Users' text for a Markdown surface: one line, cut, mentions defused, then escaped."""
    return escape_markdown(plain_text(text, limit))


def link_text(text: str, limit: int = -1) -> str:
    """Users' text as Markdown link text: one line, cut, mentions defused, then escaped."""
    return escape_link_text(plain_text(text, limit))


def code_span(text: str) -> str:
    """`text` as a Markdown code span showing it as typed: fenced by more backticks than any run
    inside, padded when it starts or ends with a backtick (CommonMark strips one space each side)."""
    body = one_line(neutralise_mentions(text))
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    if body.startswith("`") or body.endswith("`"):
        body = f" {body} "
    return f"{fence}{body}{fence}"


_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_LINK = re.compile(r"\[((?:\\.|[^\\\]])*)\]\([^)\s]*\)")


def markdown_to_plain(markdown: str) -> str:
    """The plain text of Markdown this project writes around escaped users' text: links become
    their text, `**`/`~~` markers go, escapes are undone. (Users' text is always escaped, so the
    markers removed are only the project's own.)"""
    text = _LINK.sub(lambda m: m[1], markdown)
    parts = re.split(r"(\\.)", text)
    out = []
    for part in parts:
        if len(part) == 2 and part[0] == "\\":
            out.append(part)
        else:
            out.append(part.replace("**", "").replace("~~", ""))
    return _MARKDOWN_ESCAPE.sub(r"\1", "".join(out))


__all__ = [
    "code_span",
    "cut",
    "escape_link_text",
    "escape_markdown",
    "link_text",
    "markdown_text",
    "markdown_to_plain",
    "one_line",
    "plain_text",
]
