"""Jira wiki markup to Mattermost Markdown in linear time.

Pure: no I/O, no clock. Two passes over the text, each character handled a bounded number of
times and no regular expression that can backtrack:

1. blocks: `{code}`, `{noformat}`, `{quote}` and `{panel}` macros (paired with the next closing
   tag, as Jira does), then line by line headings `h1.`-`h6.`, `bq.`, lists (`*`, `-`, `#`, nested
   and mixed), tables (`||` / `|`) and rulers `----`;
2. inline, per line: one left-to-right scan with a delimiter stack for `*bold*`, `_italic_`,
   `-strike-`, `+under+`, `^sup^`, `~sub~`, `??cite??`, plus `{{mono}}`, `[text|url]`, `[url]`,
   `[^attachment]`, `!image!`, `{color}`, `\\\\` line breaks, `\\` escapes and bare URLs.

Every forward search (for a closing tag, `]`, `!`, `}}`, `|`) remembers where it stopped, so no
stretch of text is searched twice for the same thing. A step counter (not a clock) bounds the
work: past `budget` steps `WikiBudgetExceeded` is raised and the caller posts escaped plain text.

Safety: links keep only http, https and mailto targets (others become their text); images become
links (an inline image would make every reader's client fetch an outside URL).
"""

from __future__ import annotations

import re

# Enough for any text of MAX_CONVERTED_CHARS: the converter spends well under 20 steps a
# character on the worst inputs of bench/bench_render.py; this leaves a wide margin.
DEFAULT_BUDGET = 2_000_000

ALLOWED_LINK_PREFIXES = ("http://", "https://", "mailto:")
_BARE_URL_PREFIXES = ("http://", "https://", "ftp://")
# Characters that end a bare URL: whitespace, and those that would let the URL run into
# Markdown link syntax.
_URL_STOP = frozenset(' \t\n\r\f\v<>[]"`')
_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# Inline delimiters: Jira token -> Markdown (opening, closing). Underline, superscript,
# subscript and citation have no Markdown form Mattermost shows: the words are kept.
_EFFECTS: dict[str, tuple[str, str]] = {
    "*": ("**", "**"),
    "_": ("_", "_"),
    "-": ("~~", "~~"),
    "+": ("", ""),
    "^": ("", ""),
    "~": ("", ""),
    "??": ("", ""),
}
# How an unpaired delimiter is written: a lone "*" would be Markdown emphasis.
_LITERAL = {"*": "\\*"}
# A line without any of these is already Markdown as it stands.
_INLINE_SPECIAL = re.compile(r"[*_\-+^~?\[!{\\]|(?i:https?|ftp)://")
_INLINE_NEEDLES = ("]", "|", "!", "}}")
_BRACKET, _BAR, _BANG, _MONO = range(4)
_MACROS = ("code", "noformat", "quote", "panel")
_MACRO_CLOSERS = tuple("{" + name + "}" for name in _MACROS)
_MACRO_OPEN = re.compile(r"\{(code|noformat|quote|panel)[:}|]")
_MAX_TAG = 400  # longest opening macro tag ({code:lang|title=...}) looked at
_MAX_COLOR_TAG = 48
_MAX_DEPTH = 4  # macro nesting ({panel} holding a {quote} ...); deeper text stays literal
_URL_ENCODE = str.maketrans({" ": "%20", "(": "%28", ")": "%29", "<": "%3C", ">": "%3E", "\n": ""})


class WikiBudgetExceeded(Exception):
    """The conversion took more steps than its budget allows."""


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _fence(text: str, char: str = "`", minimum: int = 3) -> str:
    """A run of `char` longer than any run of it inside `text` (so the text cannot close it)."""
    longest = run = 0
    for ch in text:
        if ch == char:
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    return char * max(minimum, longest + 1)


class _Searches:
    """Forward searches in `text` for a few needles: the next occurrence at or after a position,
    each stretch of the text searched at most once while positions only grow (as they do in a
    left-to-right scan). State is kept in one list of ints: few objects for the collector."""

    __slots__ = ("needles", "state", "text")

    def __init__(self, text: str, needles: tuple[str, ...]) -> None:
        self.text = text
        self.needles = needles
        self.state = [-1] * (2 * len(needles))  # per needle: searched from, found at

    def next(self, slot: int, start: int, conv: _Converter) -> int:
        state = self.state
        searched_from, found = state[2 * slot], state[2 * slot + 1]
        if searched_from >= 0 and start >= searched_from and (found == -1 or found >= start):
            return found
        found = self.text.find(self.needles[slot], start)
        conv.spend((found if found >= 0 else len(self.text)) - start + 1)
        state[2 * slot], state[2 * slot + 1] = start, found
        return found


class _Converter:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.steps = 0

    def spend(self, steps: int) -> None:
        self.steps += steps
        if self.steps > self.budget:
            raise WikiBudgetExceeded(f"more than {self.budget} steps")

    # --- macros ---------------------------------------------------------------------------------

    def blocks(self, text: str, depth: int = 0) -> list[str]:
        """Lines of Markdown for `text`: macro blocks cut out, the rest read line by line."""
        out: list[str] = []
        closers = _Searches(text, _MACRO_CLOSERS)
        flow_start = pos = 0
        size = len(text)
        while depth < _MAX_DEPTH:
            found = _MACRO_OPEN.search(text, pos)
            self.spend((found.start() if found else size) - pos + 1)
            if found is None:
                break
            brace, name, after = found.start(), found[1], found.end() - 1
            pos = brace + 1
            window = min(size, after + _MAX_TAG)
            tag_end = text.find("}", after, window)
            newline = text.find("\n", after, tag_end) if tag_end >= 0 else -1
            self.spend((tag_end if tag_end >= 0 else window) - after + 1)
            if tag_end < 0 or newline >= 0:
                continue
            close = closers.next(_MACROS.index(name), tag_end + 1, self)
            if close < 0:
                continue
            params = text[after + 1 : tag_end] if text[after] != "}" else ""
            body = text[tag_end + 1 : close]
            self.flow(text[flow_start:brace], out)
            self.macro(name, params, body, out, depth)
            flow_start = pos = close + len(name) + 2
        self.flow(text[flow_start:], out)
        return out

    def macro(self, name: str, params: str, body: str, out: list[str], depth: int) -> None:
        self.spend(len(body) + len(params) + 1)
        _blank_line(out)
        if name in ("code", "noformat"):
            first = params.split("|", 1)[0].strip()
            lang = first if name == "code" and first and _is_language(first) else ""
            content = body.strip("\n")
            fence = _fence(content)
            out.append(f"{fence}{lang}\n{content}\n{fence}")
        else:
            lines: list[str] = []
            title = _panel_title(params) if name == "panel" else ""
            if title:
                lines.append(f"**{self.inline(title)}**")
            inner = "\n".join(line.lstrip() for line in body.strip().split("\n"))
            lines.extend(self.blocks(inner, depth + 1))
            quoted = "\n".join(lines).split("\n")
            out.append("\n".join(f"> {line}" if line else ">" for line in quoted))
        out.append("")

    # --- lines ------------------------------------------------------------------------------------

    def flow(self, text: str, out: list[str]) -> None:
        if not text:
            return
        if out and out[-1] == "" and text.startswith("\n"):
            text = text[1:]  # the blank line after a block already ends it
        lines = text.split("\n")
        list_depth = 0
        table: list[list[str]] = []
        in_quote = False
        for index, line in enumerate(lines):
            self.spend(1)
            stripped = line.lstrip(" \t")
            if stripped.startswith("|"):
                table.append(self.cells(stripped))
                list_depth = 0
                continue
            if table:
                self.emit_table(table, out)
                table = []
            blank = not stripped.strip()
            if in_quote and not stripped.startswith("bq. "):
                in_quote = False
                if not blank:
                    out.append("")
            bullets = _bullets(stripped)
            if bullets and len(bullets) <= list_depth + 1:
                list_depth = len(bullets)
                out.append(self.list_item(bullets, stripped[len(bullets) + 1 :]))
                continue
            list_depth = 0 if blank else list_depth
            level = _heading_level(stripped)
            if level:
                out.append("#" * level + " " + self.inline(stripped[4:]))
            elif stripped.startswith("bq. "):
                in_quote = True
                out.append("> " + self.inline(stripped[4:]))
            elif stripped.rstrip() == "----":
                _blank_line(out)
                out.append("----")
            elif index == len(lines) - 1 and not line and out and out[-1] == "":
                pass  # a trailing newline after a block
            else:
                out.append(self.inline(line))
        if table:
            self.emit_table(table, out)

    def list_item(self, bullets: str, text: str) -> str:
        indent = "".join("   " if ch == "#" else "  " for ch in bullets[:-1])
        marker = "1." if bullets[-1] == "#" else "-"
        return f"{indent}{marker} {self.inline(text)}"

    def cells(self, row: str) -> list[str]:
        """The cells of one table row; a "|" inside [a|b] or {{...}} does not split."""
        cells: list[str] = []
        last_close = row.rfind("]")
        mono_close = row.rfind("}}")
        self.spend(len(row) + 1)
        start = i = 0
        size = len(row)
        closing = ""
        while i < size:
            ch = row[i]
            if closing:
                if row.startswith(closing, i):
                    i += len(closing)
                    closing = ""
                    continue
            elif ch == "[" and i < last_close:
                closing = "]"
            elif row.startswith("{{", i) and i < mono_close:
                closing = "}}"
                i += 2
                continue
            elif ch == "|":
                cells.append(row[start:i])
                while i < size and row[i] == "|":
                    i += 1
                start = i
                continue
            i += 1
        cells.append(row[start:])
        if cells and not cells[0].strip():
            cells = cells[1:]
        if cells and not cells[-1].strip():
            cells = cells[:-1]
        return cells

    def emit_table(self, rows: list[list[str]], out: list[str]) -> None:
        width = max(1, max(len(row) for row in rows))
        _blank_line(out)
        for number, row in enumerate(rows):
            cells = [self.inline(cell.strip(), newline=" ").replace("|", "\\|") for cell in row]
            cells += [""] * (width - len(cells)) if number == 0 else []
            out.append("| " + " | ".join(cells) + " |" if cells else "|")
            if number == 0:
                out.append("|" + "---|" * width)
        out.append("")

    # --- inline -----------------------------------------------------------------------------------

    def inline(self, s: str, newline: str = "\n") -> str:
        """Markdown for one line of wiki text."""
        if _INLINE_SPECIAL.search(s) is None:
            self.spend(len(s) // 8 + 1)
            return s
        out: list[str] = []
        # Open delimiters: their tokens and the index in `out` of their placeholders (two lists
        # of atoms rather than a list of tuples: fewer objects for the collector).
        stack_tokens: list[str] = []
        stack_index: list[int] = []
        open_count: dict[str, int] = dict.fromkeys(_EFFECTS, 0)
        searches = _Searches(s, _INLINE_NEEDLES)
        size = len(s)
        i = 0
        text_start = 0  # start of the pending run of plain characters

        while i < size:
            self.spend(1)
            ch = s[i]
            if ch in "*_-+^~?":
                run = i + 1
                while run < size and s[run] == ch:
                    run += 1
                length = run - i
                token = "??" if ch == "?" and length == 2 else ch if length == 1 and ch != "?" else ""
                if not token:
                    if ch == "-" and length in (2, 3) and _dash_word(s, i, run):
                        if i > text_start:
                            out.append(s[text_start:i])
                        out.append("–" if length == 2 else "—")
                        i = text_start = run
                    else:
                        if i > text_start:
                            out.append(s[text_start:i])
                        out.append(_LITERAL.get(ch, ch) * length)
                        i = text_start = run
                    continue
                if i > text_start:
                    out.append(s[text_start:i])
                before = s[i - 1] if i else ""
                after = s[run] if run < size else ""
                can_close = bool(before) and not before.isspace() and (not after or not _is_word(after))
                can_open = (not before or not _is_word(before)) and bool(after) and not after.isspace()
                if can_close and open_count[token]:
                    while stack_tokens:
                        top, index = stack_tokens.pop(), stack_index.pop()
                        open_count[top] -= 1
                        self.spend(1)
                        if top == token:
                            break
                    out[index] = _EFFECTS[token][0]
                    out.append(_EFFECTS[token][1])
                elif can_open:
                    stack_tokens.append(token)
                    stack_index.append(len(out))
                    open_count[token] += 1
                    out.append(_LITERAL.get(token, token))
                else:
                    out.append(_LITERAL.get(token, token))
                i = text_start = run
                continue
            if ch == "[":
                end = searches.next(_BRACKET, i + 1, self)
                if end >= 0:
                    replacement = self.bracket(s, i, end, searches)
                    if replacement is not None:
                        if i > text_start:
                            out.append(s[text_start:i])
                        out.append(replacement)
                        i = text_start = end + 1
                        continue
            elif ch == "!" and (i == 0 or not _is_word(s[i - 1])):
                end = searches.next(_BANG, i + 1, self)
                if end >= 0 and end < size:
                    replacement = self.image(s, i, end, searches)
                    if replacement is not None:
                        if i > text_start:
                            out.append(s[text_start:i])
                        out.append(replacement)
                        i = text_start = end + 1
                        continue
            elif ch == "{":
                if s.startswith("{{", i):
                    end = searches.next(_MONO, i + 2, self)
                    if end > i + 2:
                        if i > text_start:
                            out.append(s[text_start:i])
                        out.append(_code_span(s[i + 2 : end]))
                        self.spend(end - i)
                        i = text_start = end + 2
                        continue
                elif s.startswith("{color", i):
                    end = s.find("}", i, min(size, i + _MAX_COLOR_TAG))
                    if end > 0 and (end == i + 6 or s[i + 6] == ":"):
                        if i > text_start:
                            out.append(s[text_start:i])
                        i = text_start = end + 1
                        continue
            elif ch == "\\":
                if i > text_start:
                    out.append(s[text_start:i])
                nxt = s[i + 1] if i + 1 < size else ""
                if nxt == "\\":
                    out.append(newline)
                    i = text_start = i + 2
                elif nxt in _ASCII_PUNCTUATION and nxt:
                    out.append("\\" + nxt)  # Jira's escape: the character itself
                    i = text_start = i + 2
                else:
                    out.append("\\\\" if not nxt else "\\")
                    i = text_start = i + 1
                continue
            elif ch in "hHfF":
                head = s[i : i + 8].lower()
                if head.startswith(_BARE_URL_PREFIXES):
                    end = i
                    while end < size and s[end] not in _URL_STOP:
                        end += 1
                    self.spend(end - i)
                    if i > text_start:
                        out.append(s[text_start:i])
                    out.append(s[i:end])  # as is: its "*", "_" or "-" are not markup
                    i = text_start = end
                    continue
            i += 1
        if size > text_start:
            out.append(s[text_start:size])
        return "".join(out)

    def bracket(self, s: str, start: int, end: int, searches: _Searches) -> str | None:
        """[text|url], [url], [mailto:x], [^attachment]; None when it is plain text."""
        if s.startswith("^", start + 1):
            self.spend(end - start)
            return self.inline(s[start + 2 : end])
        bar = searches.next(_BAR, start + 1, self)
        has_alias = 0 <= bar < end
        target_start = bar + 1 if has_alias else start + 1
        head = s[target_start : target_start + 8].lower()
        if head.startswith(ALLOWED_LINK_PREFIXES) or head.startswith("www."):
            self.spend(end - start)
            target = s[target_start:end].strip()
            url = ("https://" + target if head.startswith("www.") else target).translate(_URL_ENCODE)
            alias = self.inline(s[start + 1 : bar]).strip() if has_alias else ""
            if not alias:
                return f"<{target[7:]}>" if head.startswith("mailto:") else f"<{url}>"
            return f"[{_link_text(alias)}]({url})"
        if has_alias:
            # A target Mattermost must not link (javascript:, data:, file:, a Jira anchor...):
            # only the words stay.
            self.spend(end - start)
            return self.inline(s[start + 1 : bar])
        return None

    def image(self, s: str, start: int, end: int, searches: _Searches) -> str | None:
        """!url! or !file.png|thumbnail! as a link (never an inline image); None when the "!"
        pair is not an image (an exclamation, or text between two of them)."""
        if end - start < 4 or s[start + 1].isspace():
            return None
        bar = searches.next(_BAR, start + 1, self)
        url_end = bar if 0 <= bar < end else end
        self.spend(url_end - start)
        url = s[start + 1 : url_end]
        if not url or url[-1].isspace() or "." not in url or any(ch.isspace() for ch in url):
            return None
        if url[:8].lower().startswith(("http://", "https://")):
            name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or url
            return f"[{_link_text(name)}]({url.translate(_URL_ENCODE)})"
        # An attachment of the issue (or a target we do not link): its name as text.
        return url.replace("*", "\\*")


def _bullets(line: str) -> str:
    """The list markers opening `line` ("*", "##", "#*", ...) when followed by a space and text."""
    i = 0
    size = len(line)
    while i < size and line[i] in "*-#":
        i += 1
    if i == 0 or i >= size or line[i] != " " or not line[i + 1 :].strip():
        return ""
    bullets = line[:i]
    if bullets in ("----", "---", "--") or ("-" in bullets and bullets.strip("-")):
        return ""  # rulers and dashes, or "-" mixed with other markers
    return bullets


def _heading_level(line: str) -> int:
    if len(line) >= 4 and line[0] == "h" and line[1] in "123456" and line[2:4] == ". ":
        return int(line[1])
    return 0


def _dash_word(s: str, start: int, end: int) -> bool:
    """True when the dashes s[start:end] stand alone between spaces (Jira's -- and ---)."""
    return (start == 0 or s[start - 1].isspace()) and (end == len(s) or s[end].isspace())


def _is_language(name: str) -> bool:
    return len(name) <= 32 and all(ch.isascii() and (ch.isalnum() or ch in "#+-_") for ch in name)


def _panel_title(params: str) -> str:
    for part in params.split("|"):
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() == "title":
            return value.strip()
    return ""


def _code_span(content: str) -> str:
    fence = _fence(content, minimum=1)
    pad = " " if content.startswith("`") or content.endswith("`") else ""
    return f"{fence}{pad}{content}{pad}{fence}"


def _link_text(text: str) -> str:
    return text.replace("[", "\\[").replace("]", "\\]")


def _blank_line(out: list[str]) -> None:
    if out and out[-1] != "":
        out.append("")


def wiki_to_markdown_counted(text: str, budget: int = DEFAULT_BUDGET) -> tuple[str, int]:
    """The Markdown for `text` and the steps it took. Raises WikiBudgetExceeded past `budget`."""
    conv = _Converter(budget)
    # "\r\n" line ends are kept as they come: each line simply ends with "\r", which Markdown and
    # every rule below read as trailing white space.
    lines = conv.blocks(text)
    while lines and lines[-1] == "":
        lines.pop()
    while lines and lines[0] == "":
        lines.pop(0)
    return "\n".join(lines), conv.steps


def wiki_to_markdown(text: str, budget: int = DEFAULT_BUDGET) -> str:
    return wiki_to_markdown_counted(text, budget)[0]


__all__ = [
    "ALLOWED_LINK_PREFIXES",
    "DEFAULT_BUDGET",
    "WikiBudgetExceeded",
    "wiki_to_markdown",
    "wiki_to_markdown_counted",
]
