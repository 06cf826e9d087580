"""The parent of `serve --workers N` (bot.supervisor) with small real worker processes: Python
scripts that say they listen (or not) through the pipe, then exit as told."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from bot import supervisor
from bot.supervisor import Supervisor, workers_problem

DEADLINE = 60.0

# argv[-1] is the ready pipe's descriptor (the supervisor appends --worker-ready-fd FD).
WORKER = """
import os, signal, sys, time
mode, marks = sys.argv[1], sys.argv[2]
with open(marks, "a") as f:
    f.write(f"{os.getpid()}\\n")
if mode == "fail-at-start":
    sys.exit(3)
os.write(int(sys.argv[-1]), b"listening\\n")
if mode == "die-after-listening":
    time.sleep(0.2)
    os._exit(7)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.1)
"""


def command(mode: str, marks: Path) -> list[str]:
    return [sys.executable, "-c", WORKER, mode, str(marks)]


def started(marks: Path) -> list[int]:
    return [int(line) for line in marks.read_text().split()] if marks.exists() else []


def test_several_workers_need_postgresql() -> None:
    assert workers_problem(1, "sqlite:///x.db") is None
    assert workers_problem(4, "postgresql://u@h:5432/db") is None
    problem = workers_problem(2, "sqlite:///x.db")
    assert problem is not None and "SQLite" in problem and "server.workers: 1" in problem


def test_a_worker_that_fails_before_it_listens_makes_the_parent_give_up(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    code = Supervisor(command("fail-at-start", marks), 2, grace=5).run()
    assert code == 1
    assert 1 <= len(started(marks)) <= 2  # no start again


def test_a_worker_that_keeps_dying_is_started_again_then_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "FIRST_RESTART_SECONDS", 0.05)
    marks = tmp_path / "marks"
    begun = time.monotonic()
    code = Supervisor(command("die-after-listening", marks), 1, grace=5).run()
    assert code == 1
    # Started, then started again after each death until the MAX_FAILURES-th.
    assert len(started(marks)) == supervisor.MAX_FAILURES
    # Delays 0.05, 0.1, 0.2, 0.4 s between them: backoff, not a tight loop.
    assert time.monotonic() - begun >= 0.75


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_reaches_every_worker_and_a_clean_stop_exits_0(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    sup = Supervisor(command("serve", marks), 3, grace=5)

    def stop_when_all_started() -> None:
        deadline = time.monotonic() + DEADLINE
        while len(started(marks)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # past the ready message
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_all_started, daemon=True).start()
    assert sup.run() == 0
    pids = started(marks)
    assert len(pids) == 3
    assert not any(os.path.exists(f"/proc/{pid}/stat") and _running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
