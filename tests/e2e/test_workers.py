"""`jira-chatops serve --workers N` as a real process tree: N workers on one port (SO_REUSEPORT)
sharing one fresh PostgreSQL database, each answering webhooks; a worker killed with SIGKILL is
started again; SIGTERM stops them all and the parent exits 0. On SQLite, several workers are refused
with a message; a port that cannot be bound makes the parent give up with exit 1.

Which worker answered a connection is read from /proc: the worker holding the server side of it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
import pytest

from bot.accounts.crypto import generate_key_text
from tests.e2e.conftest import PG_URL, SECRET, skip_or_fail
from tests.e2e.test_replicas import LEGACY, change, order_problems, posted_changes, replica_env
from tests.fakes import FakeMattermost

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database of its own, dropped afterwards."""
    name = f"workers_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_URL.replace("postgresql://", "postgres://"), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        skip_or_fail(f"PostgreSQL not reachable at {PG_URL}: {e!r}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (zombies left out)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def tcp_sockets() -> list[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every TCP socket of this network namespace."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, remote = cols[1].rsplit(":", 1)[1], cols[2].rsplit(":", 1)[1]
            rows.append((int(local, 16), int(remote, 16), cols[3], int(cols[9])))
    return rows


def listening_workers(parent: int, port: int) -> set[int]:
    """The children of `parent` that hold a socket listening on `port`."""
    listeners = {inode for lp, _, state, inode in tcp_sockets() if lp == port and state == TCP_LISTEN}
    return {pid for pid in children(parent) if socket_inodes(pid) & listeners}


def server_side_owner(parent: int, port: int, client_port: int) -> int | None:
    """The worker holding the accepted end of the connection from `client_port`."""
    inodes = {inode for lp, rp, _, inode in tcp_sockets() if lp == port and rp == client_port and inode}
    for pid in children(parent):
        if socket_inodes(pid) & inodes:
            return pid
    return None


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


async def wait_for(what: str, check: Callable[[], bool], log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE:.0f} s; log:\n{tail(log)}")
        await asyncio.sleep(0.1)


async def post_on_new_connection(parent: int, port: int, body: bytes) -> tuple[int, int | None]:
    """One webhook on a connection of its own: (HTTP status, the worker that accepted it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        client_port = writer.get_extra_info("sockname")[1]
        owner = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        # The worker's event loop accepts the connection a moment after the kernel completed it.
        while owner is None and loop.time() < deadline:
            owner = server_side_owner(parent, port, client_port)
            if owner is None:
                await asyncio.sleep(0.02)
        path = f"{LEGACY}?{urlencode({'secret': SECRET, 'team': 'acme', 'channel': 'dev'})}"
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), DEADLINE)
        return int(status_line.split()[1]), owner
    finally:
        writer.close()


def start_parent(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_two_workers_answer_on_one_port_one_is_restarted_after_a_kill_and_sigterm_exits_0(
    pg_url: str, fake_mm: FakeMattermost, tmp_path: Path, unused_tcp_port_factory
) -> None:
    """Slow (about 30 s): a real parent and two workers, started twice (one is killed)."""
    port = unused_tcp_port_factory()
    env = replica_env(0, port, pg_url, fake_mm, tmp_path, generate_key_text())
    log = tmp_path / "serve.log"
    parent = start_parent(env, log, "--workers", "2")
    connections = 24
    try:
        await wait_for("two workers listening", lambda: len(listening_workers(parent.pid, port)) == 2, log)
        first_workers = listening_workers(parent.pid, port)

        answers = await asyncio.gather(
            *(post_on_new_connection(parent.pid, port, change(i, 0)) for i in range(connections))
        )
        assert [status for status, _ in answers] == [200] * connections, answers
        # The kernel spreads connections over both sockets (2 * 0.5^24 that it would not).
        assert {owner for _, owner in answers} == first_workers, (answers, first_workers)

        victim = min(first_workers)
        os.kill(victim, signal.SIGKILL)
        await wait_for(
            "a worker started again after the kill",
            # One look per check: two looks may see two different moments of the restart.
            lambda: (lambda now: len(now) == 2 and victim not in now)(listening_workers(parent.pid, port)),
            log,
        )
        assert parent.poll() is None
        second_workers = listening_workers(parent.pid, port)
        assert len(second_workers - first_workers) == 1

        answers = await asyncio.gather(
            *(post_on_new_connection(parent.pid, port, change(i, 1)) for i in range(connections))
        )
        assert [status for status, _ in answers] == [200] * connections, answers
        assert {owner for _, owner in answers} == second_workers, (answers, second_workers)

        # Whatever the killed worker held is taken over by the others (replica liveness).
        await fake_mm.wait_for_posts(2 * connections, timeout=DEADLINE)
        await asyncio.sleep(1.0)  # anything posted twice would show by now

        parent.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(parent.wait, DEADLINE)
        assert code == 0, tail(log)
        assert not any(exists(pid) for pid in second_workers)
    finally:
        stop(parent)
    assert order_problems(posted_changes(fake_mm), connections, 2) == (0, 0, 0)
    text = log.read_text()
    assert f"worker 0 (pid {victim})" in text or f"worker 1 (pid {victim})" in text
    assert "exited with signal 9" in text and "stopped 2 worker(s)" in text


@pytest.mark.parametrize("how", ["option", "config"])
async def test_several_workers_on_sqlite_are_refused_with_the_reason(
    how: str, fake_mm: FakeMattermost, tmp_path: Path, unused_tcp_port_factory
) -> None:
    sqlite = f"sqlite:///{tmp_path / 'bot.db'}"
    env = replica_env(0, unused_tcp_port_factory(), sqlite, fake_mm, tmp_path, generate_key_text())
    args = ["--workers", "2"] if how == "option" else []
    if how == "config":
        env["JIRA_CHATOPS__SERVER__WORKERS"] = "2"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "serve", *args],
        env=env,
        capture_output=True,
        cwd=ROOT,
        timeout=DEADLINE,
    )
    assert done.returncode == 2, done
    assert b"server.workers is 2, but the database is SQLite, which takes one writer" in done.stderr
    assert b"use PostgreSQL" in done.stderr


async def test_the_parent_gives_up_with_exit_1_when_workers_cannot_listen(
    pg_url: str, fake_mm: FakeMattermost, tmp_path: Path, unused_tcp_port_factory
) -> None:
    """A port held by another program (without SO_REUSEPORT): starting again would not help."""
    port = unused_tcp_port_factory()
    env = replica_env(0, port, pg_url, fake_mm, tmp_path, generate_key_text())
    log = tmp_path / "serve.log"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        parent = start_parent(env, log, "--workers", "2")
        try:
            code = await asyncio.to_thread(parent.wait, DEADLINE)
        finally:
            stop(parent)
    assert code == 1, tail(log)
    text = log.read_text()
    assert "before it listened" in text
    assert not children(parent.pid)
