"""The processes around the bot: child process handling, fake Mattermost, ceiling server, database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.pipeline.scenarios import CHANNELS, ROOT, TAG_BASE, TAG_RE

FIREHOSE = "/plugins/jira/api/v2/webhook"
SECRET = "bench-secret"
TEAM = "bench"
START_TIMEOUT = 30.0

# ---------------------------------------------------------------------------------- child processes


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def child(
    args: Sequence[str], *, log: Path, env: dict[str, str] | None = None, pipe_stdout: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, always stopped on exit: SIGTERM, then SIGKILL after 20 s."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipe_stdout else out,
            stderr=out,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_http(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while True:
            if proc.returncode is not None:
                raise SystemExit(f"bench.pipeline: {url} exited early:\n{tail(log)}")
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise SystemExit(
                    f"bench.pipeline: {url} did not answer in {START_TIMEOUT:.0f} s:\n{tail(log)}"
                )
            await asyncio.sleep(0.1)


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def proc_status_kb(pid: int, key: str) -> int:
    """VmRSS / VmHWM of a process, in kB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process's VmRSS every 100 ms, so the peak during each phase is known."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, proc_status_kb(self.pid, "VmRSS"))
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------- fake Mattermost child


def serve_fake_mattermost() -> None:
    """Child process: the test suite's fake Mattermost, recording when each post is saved and
    which replayed webhooks (issue key tags) it names; /bench/posts lists them."""
    from tests.fakes import FakeMattermost

    class RecordingMattermost(FakeMattermost):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.saved: list[tuple[float, str, list[int]]] = []

        def _save_post(self, user: dict[str, Any], channel: dict[str, Any], body: dict[str, Any]) -> Any:
            post = super()._save_post(user, channel, body)
            text = post["message"] + json.dumps(post["props"])
            tags = sorted({int(m) - TAG_BASE for m in TAG_RE.findall(text)})
            self.saved.append((time.time(), post["channel_id"], tags))
            return post

        def app(self) -> web.Application:
            app = super().app()

            async def posts(request: web.Request) -> web.Response:
                since = int(request.query.get("since", "0"))
                return web.json_response({"count": len(self.saved), "posts": self.saved[since:]})

            async def count(request: web.Request) -> web.Response:
                return web.json_response({"count": len(self.saved)})

            app.router.add_get("/bench/posts", posts)
            app.router.add_get("/bench/count", count)
            return app

    async def run() -> None:
        fake = RecordingMattermost()
        channels = [fake.add_channel(TEAM, f"jira-{i}") for i in range(CHANNELS)]
        url = await fake.start(host="127.0.0.1")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps({"url": url, "token": fake.token, "channels": channels}), flush=True)
        await stop.wait()
        await fake.stop()

    asyncio.run(run())


@dataclass(frozen=True, slots=True)
class FakeInfo:
    url: str
    token: str
    channels: list[str]


@contextlib.asynccontextmanager
async def fake_mattermost(workdir: Path) -> AsyncIterator[FakeInfo]:
    log = workdir / "fake-mattermost.log"
    args = [sys.executable, "-m", "bench.pipeline", "--serve-fake-mattermost"]
    async with child(args, log=log, pipe_stdout=True) as proc:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            info = json.loads(line)
        except (TimeoutError, ValueError):
            raise SystemExit(f"bench.pipeline: the fake Mattermost did not start:\n{tail(log)}") from None
        yield FakeInfo(info["url"], info["token"], info["channels"])


async def fake_posts(session: aiohttp.ClientSession, fake: FakeInfo) -> list[tuple[float, str, list[int]]]:
    posts: list[tuple[float, str, list[int]]] = []
    while True:
        async with session.get(
            f"{fake.url}/bench/posts",
            params={"since": str(len(posts))},
            headers={"Authorization": f"Bearer {fake.token}"},
        ) as r:
            data = await r.json()
        posts.extend((float(t), str(c), list(tags)) for t, c, tags in data["posts"])
        if len(posts) >= data["count"] or not data["posts"]:
            return posts


# ------------------------------------------------------------------------------------ ceiling child


def serve_ceiling(port: int) -> None:
    """Child process: the least a webhook endpoint can do (read the body, parse the JSON, answer)."""

    async def webhook(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.Response(body=b'{"status": "accepted"}', content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=1_048_576)
    app.router.add_post(FIREHOSE, webhook)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ----------------------------------------------------------------------------------------- database


@contextlib.asynccontextmanager
async def fresh_database(
    kind: str, workdir: Path, pg_url: str, pg_settings: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[str]:
    """A new empty database; PostgreSQL: one of its own, with `pg_settings` as its defaults, dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bot.db'}"
        return
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://", 1), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        for key, value in pg_settings:
            await admin.execute(f'ALTER DATABASE "{name}" SET {key} = {quote_literal(value)}')
        try:
            yield pg_url.rsplit("/", 1)[0] + "/" + name
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
