"""Rendering hostile Jira text must not block the event loop.

Each render runs as a callback of its own in a loop with asyncio's debug mode on, which logs
"Executing <Handle ...> took N seconds" for every callback slower than `slow_callback_duration`.
The threshold is 50 ms, the most the bot may stall /healthz, intake and commands. On the
project's 2-CPU machine the slowest 20,000-character input converts in about 25 ms (see
bench/README.md) and a post converts at most 6,200 characters (3,000 shown, twice that plus 200
converted), so even a loaded machine at half speed stays under the threshold; the quadratic
converter this replaced took seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

import pytest

from bench.bench_render import inputs
from bot.render.markup import MAX_CONVERTED_CHARS, jira_to_markdown, render_jira_text
from bot.render.posts import render_event
from tests.render.test_render_hostile import commented_event, created_event, lookup

SLOW_CALLBACK_SECONDS = 0.05
HOSTILE = inputs(MAX_CONVERTED_CHARS)


def run_each_as_callback(jobs: list[Callable[[], object]]) -> None:
    # A full collection first: a pause owed to the objects earlier tests left (hypothesis keeps
    # many) is not the render's. The converter itself allocates few container objects.
    gc.collect()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
        for job in jobs:
            done: asyncio.Future[None] = loop.create_future()

            def step(job: Callable[[], object] = job, done: asyncio.Future[None] = done) -> None:
                jira_to_markdown.cache_clear()  # measure the conversion, not the cache
                job()
                done.set_result(None)

            loop.call_soon(step)
            await done

    asyncio.run(main())


def slow_callbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()]


def test_render_jira_text_never_blocks_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    jobs: list[Callable[[], object]] = []
    for text in HOSTILE.values():
        jobs.append(lambda text=text: render_jira_text(text, 3000, lookup, quote=True))
        # The whole configured limit converted at once.
        jobs.append(lambda text=text: render_jira_text(text, MAX_CONVERTED_CHARS, lookup))
    run_each_as_callback(jobs)
    assert slow_callbacks(caplog) == []


def test_render_event_never_blocks_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    events = [created_event(text) for text in HOSTILE.values()]
    events += [commented_event(text) for text in HOSTILE.values()]
    run_each_as_callback([lambda event=event: render_event(event, mentions=lookup) for event in events])
    assert slow_callbacks(caplog) == []


def test_a_slow_render_would_be_caught(caplog: pytest.LogCaptureFixture) -> None:
    # The detection itself works: a callback that takes longer than the threshold is logged.
    import time

    caplog.set_level(logging.WARNING, logger="asyncio")
    run_each_as_callback([lambda: time.sleep(SLOW_CALLBACK_SECONDS * 2)])
    assert len(slow_callbacks(caplog)) == 1
