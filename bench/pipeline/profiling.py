"""With --profile: py-spy sampling of the bot during each phase, and the summaries printed after the table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from bench.pipeline.figures import Row
from bench.pipeline.servers import child


def profile_path(args: argparse.Namespace, count: int, suffix: str) -> Path:
    return Path(args.profile) / f"bot-{args.database}-{count}{suffix}"


@contextlib.asynccontextmanager
async def sampled(
    args: argparse.Namespace, pid: int, count: int, phase: str, workdir: Path
) -> AsyncIterator[None]:
    """With --profile and py-spy: sample the bot (all its threads) for the duration of the block."""
    if not (args.profile and args.py_spy):
        yield
        return
    out = profile_path(args, count, f".{phase}.pyspy.txt")
    command = [args.py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "-o", str(out)]
    async with child(command, log=workdir / "py-spy.log") as spy:
        await asyncio.sleep(0.5)  # attached before the load starts
        try:
            yield
        finally:
            # py-spy writes its file on SIGINT (as on Ctrl-C).
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(spy.wait(), 20)


def summarise_py_spy(path: Path, top: int = 25) -> str:
    """Where the samples are: by pipeline stage, by function (inclusive), by leaf (own time)."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    waiting = _waiting_leaves()
    idle = sum(
        n for frames, n in stacks if _short(frames[-1]) in waiting or "EpollSelector.select" in frames[-1]
    )
    stacks = [
        (f, n) for f, n in stacks if _short(f[-1]) not in waiting and "EpollSelector.select" not in f[-1]
    ]
    total = sum(n for _, n in stacks) or 1
    stages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        joined = ";".join(frames)
        stage = next((name for name, marker in _STAGES if marker in joined), "other (event loop, HTTP)")
        stages[stage] += n
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames}:
            inclusive[name] += n
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += n

    def block(title: str, counts: Counter[str], keep: int, only_bot: bool = False) -> list[str]:
        picked = [(k, v) for k, v in counts.most_common() if not only_bot or _is_bot_work(k)]
        rows = picked[:keep]
        return [title] + [f"  {100 * v / total:5.1f}%  {_short(k)}" for k, v in rows]

    lines = [
        f"{total} busy samples at 200/s per thread ({idle} more waiting in epoll or for SQL work, left out)"
    ]
    lines += block("by stage:", stages, len(stages))
    lines += block("bot functions, inclusive:", inclusive, top, only_bot=True)
    lines += block("leaf functions (own time):", leaves, top)
    return "\n".join(lines)


# Checked in order: the first marker found in a stack names its stage. The intake is split as
# issue 15 names its stages: authentication, parse (the handler's quick look), store (the group
# commit and its SQL, in the event loop), and the rest of the handler; the HTTP server itself
# (aiohttp's parser and writer, the event loop) is what is left.
_STAGES = (
    ("event processor", "bot/pipeline/processor.py"),
    ("delivery worker", "bot/pipeline/delivery.py"),
    ("intake: store (group commit)", "bot/pipeline/inbox_writer.py"),
    ("intake: authentication", "secret_matches"),
    ("intake: authentication", "signature_matches"),
    ("intake: parse (peek)", "peek_webhook"),
    ("intake: rest of the handler", "bot/web/jira_webhook.py"),
    ("SQLite driver thread (aiosqlite)", "aiosqlite/core.py"),
    ("PostgreSQL driver (asyncpg)", "asyncpg/"),
)


def _waiting_leaves() -> set[str]:
    """Leaf frames that are a thread waiting, which py-spy reports as busy: aiosqlite's worker
    thread blocked on its queue (the line of its `tx.get()`)."""
    try:
        import inspect

        import aiosqlite.core

        lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    except (ImportError, AttributeError, OSError, TypeError):
        return set()
    return {
        f"_connection_worker_thread (aiosqlite/core.py:{first + i})"
        for i, line in enumerate(lines)
        if "tx.get()" in line
    }


def _is_bot_work(frame: str) -> bool:
    """A frame of the bot's own code, other than the entry point every stack starts with."""
    return re.search(r"\((?:.*/)?bot/", frame) is not None and "bot/__main__.py" not in frame


def _short(frame: str) -> str:
    """`name (path)` with the path cut to the package: `accept (bot/pipeline/intake.py)`."""
    return re.sub(r"\(/\S*?/((?:site-packages|lib/python3\.\d+|work/main)/)", "(", frame)


def print_profiles(args: argparse.Namespace, rows: Sequence[Row]) -> None:
    import pstats

    for r in rows:
        for phase in ("intake", "drain"):
            spy = profile_path(args, r.subscriptions, f".{phase}.pyspy.txt")
            if spy.exists():
                print(f"\nbot profile (py-spy), {phase} phase, {r.subscriptions:,} subscriptions: {spy}")
                print(summarise_py_spy(spy))
        prof = profile_path(args, r.subscriptions, ".prof")
        if not args.py_spy and prof.exists():
            print(f"\nbot profile (cProfile, whole run), {r.subscriptions:,} subscriptions: {prof}")
            pstats.Stats(str(prof), stream=sys.stdout).sort_stats("tottime").print_stats(25)
