"""Worst-case timing of Jira wiki markup conversion (bot/render/wiki.py) over hostile inputs.

    python -m bench.bench_render                 # every input, 20,000 characters each
    python -m bench.bench_render --size 5000 --repeat 5

For each input: the best of `--repeat` conversions (wiki_to_markdown_counted, no cache), in ms and
ms per KB of input, the converter's step count per character (what its budget bounds), and the
time of the whole `render_jira_text` path (mentions, conversion, quoting, cut, defusing). The
worst ms/KB is printed last.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bot.render.markup import MAX_CONVERTED_CHARS, jira_to_markdown, render_jira_text
from bot.render.wiki import DEFAULT_BUDGET, wiki_to_markdown_counted

REALISTIC = """h2. Steps to reproduce
# Log in as *admin* on [staging|https://staging.example.com/login?next=/home]
# Open the _settings_ page, see {{/admin/settings}}
## then click *Save* -twice-
* Expected: a toast saying ??saved?? ^1^
* Actual: the page hangs, see !https://files.example.com/shot.png|thumbnail! and [^trace.log]

{code:java}
public void save() {
    repository.save(entity); // *not* markup
}
{code}

||Browser||Version||Result||
|Firefox|120|[fails|https://ci.example.com/b/1]|
|Chrome|119|ok|

{quote}
Seen by [~jane] and [~accountid:5b10a2844c20165700ede21g] @channel, ping me on mailto:ops@example.com
{quote}
{panel:title=Note}
Workaround: restart -- or wait --- about 5 minutes. {color:red}Urgent{color}
{panel}
bq. quoted line with http://example.com/a_b*c*
----
"""


def _fill(unit: str, size: int) -> str:
    return (unit * (size // max(1, len(unit)) + 1))[:size]


def _nested_list(size: int) -> str:
    lines: list[str] = []
    depth = 1
    while sum(len(line) + 1 for line in lines) < size:
        lines.append("*" * depth + " item " + "#" * (depth % 3))
        depth = depth + 1 if depth < 300 else 1
    return "\n".join(lines)[:size]


def _nested_table(size: int) -> str:
    return _fill("||h|[a|b]|{{c|d}}|!x.png|w=1!|[|\n|", size)


def inputs(size: int) -> dict[str, str]:
    cases: dict[str, str] = {}
    for char in "[{*_-+^~|!#":
        cases[f"run of {char}"] = char * size
    cases["run of '[' (2,000)"] = "[" * 2000
    cases["words with [ "] = _fill("[ a ", size)
    cases["[a| repeated"] = _fill("[a|", size)
    cases["[x|javascript: repeated"] = _fill("[x|javascript:alert(1)] ", size)
    cases["!x.png| repeated"] = _fill("!x.png|", size)
    cases["! word ! repeated"] = _fill("!a.b c ", size)
    cases["{{ repeated"] = _fill("{{a}", size)
    cases["{color: repeated"] = _fill("{color:red}", size)
    cases["unclosed {code}"] = "{code:java}\n" + _fill("x *y* [z|", size - 12)
    cases["openers {code:x}"] = _fill("{code:x}", size)
    cases["unclosed {noformat}"] = "{noformat}" + _fill("a{noformat", size - 10)
    cases["unclosed {quote}"] = "{quote}" + _fill("*a _b [c ", size - 7)
    cases["unclosed {panel}"] = _fill("{panel:title=a|b=c}", size)
    cases["{quote} pairs"] = _fill("{quote}*x*\n", size)
    cases["{panel}{quote} nesting"] = _fill("{panel}{quote}{code}x{quote}", size)
    cases["nested lists"] = _nested_list(size)
    cases["nested tables"] = _nested_table(size)
    cases["table row of ||"] = "|" + _fill("|a|", size - 1)
    cases["alternating delimiters"] = _fill("*_-+^~", size)
    cases["openers, no closers"] = _fill("*a _b -c +d ^e ~f ??g ", size)
    cases["closers, no openers"] = _fill("a* b_ c- d+ e^ f~ g?? ", size)
    cases["nested pairs"] = _fill("*_-+x", size // 2) + _fill("x+-_*", size // 2)
    cases["bold pairs"] = _fill("*x* ", size)
    cases["backslashes"] = _fill("\\", size)
    cases["bare URLs"] = _fill("http://a.b/*c*_d_ ", size)
    cases["headings and bq."] = _fill("h1. *a*\nbq. [b|http://c]\n", size)
    cases["dashes"] = _fill("-- --- ---- ", size)
    cases["lines of ----"] = _fill("----\n", size)
    cases["empty lines"] = "\n" * size
    cases["literal Markdown"] = _fill("![i](http://evil/x.png) [x](javascript:alert(1)) ", size)
    cases["realistic text"] = _fill(REALISTIC, size)
    return cases


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _lookup(jira_id: str) -> str | None:
    return "jane" if jira_id == "jane" else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=MAX_CONVERTED_CHARS, help="characters per input")
    parser.add_argument("--repeat", type=int, default=3, help="conversions per input; the best counts")
    args = parser.parse_args()

    print(f"input size {args.size} chars, best of {args.repeat}, step budget {DEFAULT_BUDGET:,}")
    header = f"{'input':<28} {'chars':>7} {'convert ms':>10} {'ms/KB':>7} {'steps/char':>10} {'render ms':>9}"
    print(header)
    print("-" * len(header))
    worst = ("", 0.0)
    for name, text in inputs(args.size).items():
        seconds = _best(lambda text=text: wiki_to_markdown_counted(text), args.repeat)
        _, steps = wiki_to_markdown_counted(text)

        def render(text: str = text) -> None:
            jira_to_markdown.cache_clear()
            render_jira_text(text, 3000, _lookup, quote=True)

        render_seconds = _best(render, args.repeat)
        per_kb = seconds * 1000 / (max(1, len(text)) / 1024)
        if per_kb > worst[1]:
            worst = (name, per_kb)
        print(
            f"{name:<28} {len(text):>7} {seconds * 1000:>10.2f} {per_kb:>7.3f} "
            f"{steps / max(1, len(text)):>10.2f} {render_seconds * 1000:>9.2f}"
        )

    huge = "[" * 1_000_000
    jira_to_markdown.cache_clear()
    seconds = _best(lambda: (jira_to_markdown.cache_clear(), render_jira_text(huge, 3000, _lookup)), 1)
    print(f"\n1,000,000 x '[' through render_jira_text: {seconds * 1000:.1f} ms")
    print(f"worst: {worst[0]} at {worst[1]:.3f} ms/KB")


if __name__ == "__main__":
    main()
