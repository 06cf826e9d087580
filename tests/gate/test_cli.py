"""`jira-chatops gate` against a running gate bot: exit codes 0 (proceed), 1 (fail), 2 (usage or a
refused request), the printed decisions, retries and deployment events."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.gate.cli import EXIT_FAIL, EXIT_PROCEED, EXIT_USAGE, TOKEN_ENV, run_gate_cli
from tests.gate.harness import BILLING_TOKEN, WEB_TOKEN, GateBot, gate_bot, until


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[GateBot]:
    async with gate_bot(tmp_path, max_wait_seconds=1.0) as b:
        yield b


class Run:
    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    async def __call__(self, *argv: str, env: dict[str, str] | None = None) -> int:
        return await run_gate_cli(
            list(argv), stdout=self.out, stderr=self.err, environ=env or {}, sleep=self.sleep
        )


def gate_args(
    bot: GateBot, *extra: str, token: str = WEB_TOKEN, environment: str = "Production"
) -> list[str]:
    return [
        "--url",
        bot.url,
        "--token",
        token,
        "--project",
        "Web Site",
        "--environment",
        environment,
        "--version",
        "1.2.3",
        "--timeout",
        "20",
        *extra,
    ]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--url", "http://bot", "--token", "t", "--project", "P", "--environment", "E"],  # no --version
        ["--url", "bot.example", "--token", "t", "--project", "P", "--environment", "E", "--version", "1"],
        ["--url", "http://bot", "--project", "P", "--environment", "E", "--version", "1"],  # no token
        [
            "--url",
            "http://bot",
            "--token",
            "t",
            "--project",
            "P",
            "--environment",
            "E",
            "--version",
            "1",
            "--timeout",
            "0",
        ],
        [
            "event",
            "--url",
            "http://bot",
            "--token",
            "t",
            "--gate",
            "g",
            "--kind",
            "deployment_paused",
            "--event-id",
            "x",
        ],
    ],
)
async def test_usage_errors_exit_2(argv: list[str]) -> None:
    run = Run()
    assert await run(*argv) == EXIT_USAGE
    assert run.err.getvalue().strip()


async def test_refused_requests_exit_2(bot: GateBot) -> None:
    run = Run()
    assert await run(*gate_args(bot, token="wrong-token-wrong-token")) == EXIT_USAGE
    assert "401" in run.err.getvalue()
    run = Run()
    assert await run(*gate_args(bot, token=BILLING_TOKEN)) == EXIT_USAGE
    assert "403" in run.err.getvalue()
    first = Run()
    assert await first(*gate_args(bot, "--idempotency-key", "k1", environment="Dev")) == EXIT_PROCEED
    reused = Run()
    assert await reused(*gate_args(bot, "--idempotency-key", "k1")) == EXIT_USAGE
    assert "422" in reused.err.getvalue()


async def test_not_controlled_proceeds_with_exit_0(bot: GateBot) -> None:
    run = Run()
    assert await run(*gate_args(bot, environment="Dev")) == EXIT_PROCEED
    assert "proceed (not_change_controlled)" in run.out.getvalue()


async def test_waits_then_proceeds_printing_each_change(bot: GateBot) -> None:
    run = Run()
    task = asyncio.create_task(run(*gate_args(bot, "--idempotency-key", "pipeline-1")))
    await until(lambda: bool(bot.jsm.issues))
    key = next(iter(bot.jsm.issues.values())).key
    await asyncio.sleep(0.2)
    assert not task.done()
    bot.jsm.set_status(key, "Authorize")
    await asyncio.sleep(0.3)
    bot.jsm.set_status(key, "Implementing")
    assert await asyncio.wait_for(task, 10) == EXIT_PROCEED
    lines = run.out.getvalue().splitlines()
    assert lines[0].startswith("gate ") and "Web Site 1.2.3 to Production" in lines[0]
    assert f"wait (awaiting_approval) [{key}: Planning]" in lines[1]
    assert f"wait (awaiting_approval) [{key}: Authorize]" in lines[2]
    assert f"proceed (approved) [{key}: Implementing]" in lines[3]
    assert len(lines) == 4


async def test_supplied_cr_that_does_not_exist_fails_with_exit_1(bot: GateBot) -> None:
    run = Run()
    assert await run(*gate_args(bot, "--change-request", "ITSM-404")) == EXIT_FAIL
    assert "fail (cr_not_found)" in run.out.getvalue()
    assert bot.jsm.creates() == []


async def test_declined_cr_fails_with_exit_1(bot: GateBot) -> None:
    issue = bot.jsm.add_issue("ITSM", "Hotfix", status="Declined")
    run = Run()
    assert await run(*gate_args(bot, "--change-request", issue.key)) == EXIT_FAIL
    assert "fail (" in run.out.getvalue() and issue.key in run.out.getvalue()


async def test_timeout_while_waiting_exits_1(bot: GateBot) -> None:
    run = Run()
    args = gate_args(bot)
    args[args.index("--timeout") + 1] = "0.5"
    assert await run(*args) == EXIT_FAIL
    assert "gave up waiting" in run.err.getvalue()


async def test_unreachable_bot_is_retried_then_exit_1(unused_tcp_port: int) -> None:
    run = Run()
    argv = ["--url", f"http://127.0.0.1:{unused_tcp_port}", "--project", "P", "--environment", "E"]
    argv += ["--version", "1", "--timeout", "3"]
    assert await run(*argv, env={TOKEN_ENV: "from-the-environment"}) == EXIT_FAIL
    # Backoff: each pause at least as long as the one before.
    assert len(run.sleeps) >= 2 and run.sleeps == sorted(run.sleeps)
    assert "retrying" in run.err.getvalue() and "gave up reaching the bot" in run.err.getvalue()


async def test_503_is_retried_honouring_retry_after(bot: GateBot, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = bot.service.open_or_get
    failures = [1]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            failures.pop()
            raise RuntimeError("database went away")
        return await real_open(*args, **kwargs)

    monkeypatch.setattr(bot.service, "open_or_get", flaky)
    run = Run()
    assert await run(*gate_args(bot, "--change-request", "ITSM-404")) == EXIT_FAIL
    # The bot's Retry-After (5 s) is a floor for the backoff.
    assert run.sleeps and run.sleeps[0] >= 5
    assert "HTTP 503" in run.err.getvalue()


async def test_event_command_records_once(bot: GateBot) -> None:
    run = Run()
    assert await run(*gate_args(bot, "--idempotency-key", "k-ev", environment="Dev")) == EXIT_PROCEED
    gate_id = run.out.getvalue().split()[1]
    event = [
        "event",
        "--url",
        bot.url,
        "--token",
        WEB_TOKEN,
        "--gate",
        gate_id,
        "--kind",
        "deployment_started",
    ]
    first, second = Run(), Run()
    assert await first(*event, "--event-id", "ev-1") == EXIT_PROCEED
    assert await second(*event, "--event-id", "ev-1") == EXIT_PROCEED
    assert "deployment_started recorded" in first.out.getvalue()
    assert "already recorded" in second.out.getvalue()
    missing = Run()
    event[event.index(gate_id)] = "no-such-gate"
    assert await missing(*event, "--event-id", "ev-2") == EXIT_USAGE
    assert "404" in missing.err.getvalue()


async def test_a_bot_without_a_change_gate_is_named_as_such() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    # A bot without a change_gate section serves no /gate routes: aiohttp's own 404.
    async with TestServer(web.Application()) as server:
        url = str(server.make_url("")).rstrip("/")
        run = Run()
        args = ["--url", url, "--token", WEB_TOKEN, "--project", "Web Site", "--environment", "Production"]
        code = await run(*args, "--version", "1.2.3", "--timeout", "20", "--change-request", "ITSM-1")
    assert code in (EXIT_FAIL, EXIT_USAGE)
    assert "this bot has no change gate configured" in run.err.getvalue()
