"""`jira-chatops serve --workers N`: N serve processes on one port, and a parent that watches them.

Each worker is a whole replica (bot.pipeline.replica): it binds the port with SO_REUSEPORT (the
kernel spreads new connections over the workers), runs its own intake, processors and delivery
workers, and shares the PostgreSQL database with the others exactly as separate replicas do, so
per-issue order, takeover and every once-only duty hold between workers as between machines.
SQLite takes one writer at a time, so N > 1 is refused there (`workers_problem`).

The parent serves nothing; it is a plain loop on one thread (no asyncio), woken by signals and by
the workers' pipes:

- It starts the workers (the same command line with a hidden `--worker-ready-fd`) and learns from
  that pipe when each one listens.
- SIGTERM or SIGINT is forwarded to every worker as SIGTERM; each stops as a single process does
  (readiness 503, posts in flight finished, claims released). The parent exits 0 once all have
  exited 0, 1 otherwise; a worker still running `grace + STOP_MARGIN_SECONDS` later is killed.
- A worker that dies after it listened (a crash, the OOM killer, a kill -9) is started again after
  1 s, doubling up to 30 s; the delay starts over once a worker has stayed up a minute. Its peers
  take over what it held meanwhile, as for any dead replica.
- It gives up (stops the other workers, exits 1) when a worker fails before it listens at the
  first start (a port in use, an unreachable database: starting again would not help, and the
  process manager above should see it), or when one slot fails MAX_FAILURES times in a row.

On Linux each worker gets SIGTERM if the parent dies (PR_SET_PDEATHSIG), so a kill -9 of the parent
leaves no worker holding the port.
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("bot.supervisor")

FIRST_RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 30.0
# A worker up this long has recovered: its next death starts the delays over.
STABLE_SECONDS = 60.0
# Deaths in a row (each within STABLE_SECONDS of its start) at which the parent gives up.
MAX_FAILURES = 5
# Past the workers' own grace period (their watchdog exits them by then), before SIGKILL.
STOP_MARGIN_SECONDS = 5.0
READY_MESSAGE = b"listening\n"
_PR_SET_PDEATHSIG = 1


def workers_problem(workers: int, database_url: str) -> str | None:
    """Why `workers` processes cannot share this database, or None when they can."""
    if workers > 1 and not database_url.startswith(("postgresql", "postgres:")):
        return (
            f"server.workers is {workers}, but the database is SQLite, which takes one writer at a "
            "time: run one worker (server.workers: 1, or leave out --workers), or use PostgreSQL "
            "(database.url: postgresql://USER@HOST:PORT/DB) for several"
        )
    return None


def notify_listening(fd: int) -> None:
    """In a worker: tell the parent that the port is bound (see `Supervisor`)."""
    try:
        os.write(fd, READY_MESSAGE)
    finally:
        os.close(fd)


def _death_signal_setter() -> Callable[[], None] | None:
    """A function for the child side of fork that asks Linux to send it SIGTERM when the parent
    dies; None where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call: nobody would stop us
            os._exit(1)

    return set_death_signal


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    ready_fd: int  # the parent's end of the worker's pipe; -1 once closed
    started: float
    listening: bool = False


class Supervisor:
    """Runs `command` (plus `--worker-ready-fd FD`) `workers` times and watches the processes."""

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        grace: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._command = list(command)
        self._count = workers
        self._grace = grace
        self._clock = clock
        self._workers: dict[int, _Worker] = {}
        self._failures = dict.fromkeys(range(workers), 0)
        self._restart_at: dict[int, float] = {}
        self._ever_listened: set[int] = set()
        self._stop_signal: int | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r = -1
        self._death_signal = _death_signal_setter()

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        self._wake_r = wake_r
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        try:
            for slot in range(self._count):
                self._start(slot)
            code = self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            self._selector.close()
            os.close(wake_r)
            os.close(wake_w)
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only noted here; the loop, woken through the wake-up pipe, acts on it.
        if signum != signal.SIGCHLD and self._stop_signal is None:
            self._stop_signal = signum

    def _start(self, slot: int) -> None:
        ready_r, ready_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [*self._command, "--worker-ready-fd", str(ready_w)],
                pass_fds=(ready_w,),
                # Safe here: the parent runs no other thread.
                preexec_fn=self._death_signal,
            )
        finally:
            os.close(ready_w)
        os.set_blocking(ready_r, False)
        self._selector.register(ready_r, selectors.EVENT_READ, slot)
        self._workers[slot] = _Worker(slot, proc, ready_r, self._clock())
        log.info("worker %d started (pid %d)", slot, proc.pid)

    def _close_pipe(self, worker: _Worker) -> None:
        if worker.ready_fd >= 0:
            self._selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _wait(self, timeout: float) -> None:
        """Until a signal, a worker's message or `timeout`; what arrived is read."""
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self._drain(self._wake_r)
            else:
                self._read_ready(self._workers[key.data])

    def _watch(self) -> int:
        """The loop: until a stop signal (then the workers' own result) or giving up (1)."""
        while True:
            now = self._clock()
            due = min(self._restart_at.values(), default=now + 1.0)
            # Also woken at least once a second: a missed wake-up costs a second, never a hang.
            self._wait(min(1.0, max(0.0, due - now)))
            if self._stop_signal is not None:
                log.info("signal %d: stopping %d worker(s)", self._stop_signal, len(self._workers))
                return self._stop_all(clean=True)
            for worker in list(self._workers.values()):
                code = worker.proc.poll()
                if code is not None and not self._exited(worker, code):
                    return self._stop_all(clean=False)
            now = self._clock()
            for slot, at in list(self._restart_at.items()):
                if at <= now:
                    del self._restart_at[slot]
                    self._start(slot)

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _read_ready(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.ready_fd, 64)
        except BlockingIOError:
            return
        if data.startswith(READY_MESSAGE):
            worker.listening = True
            self._ever_listened.add(worker.slot)
            log.info("worker %d (pid %d) listening", worker.slot, worker.proc.pid)
        self._close_pipe(worker)  # the message, or end of file: the worker closed its end

    def _exited(self, worker: _Worker, code: int) -> bool:
        """A worker exited on its own: whether to go on (a restart is scheduled) or give up."""
        if worker.ready_fd >= 0:
            self._read_ready(worker)  # it may have listened just before dying
            self._close_pipe(worker)
        del self._workers[worker.slot]
        how = f"signal {-code}" if code < 0 else f"code {code}"
        up = self._clock() - worker.started
        if not worker.listening and worker.slot not in self._ever_listened:
            log.error(
                "worker %d (pid %d) exited with %s before it listened", worker.slot, worker.proc.pid, how
            )
            return False
        if up >= STABLE_SECONDS:
            self._failures[worker.slot] = 0
        self._failures[worker.slot] += 1
        failures = self._failures[worker.slot]
        if failures >= MAX_FAILURES:
            log.error("worker %d failed %d times in a row (last: %s); giving up", worker.slot, failures, how)
            return False
        delay = min(MAX_RESTART_SECONDS, FIRST_RESTART_SECONDS * 2 ** (failures - 1))
        log.warning(
            "worker %d (pid %d) exited with %s after %.0f s; starting it again in %.0f s",
            worker.slot,
            worker.proc.pid,
            how,
            up,
            delay,
        )
        self._restart_at[worker.slot] = self._clock() + delay
        return True

    def _stop_all(self, *, clean: bool) -> int:
        """SIGTERM to every worker, wait for them (SIGKILL past the deadline); 0 when the stop was
        asked for and every worker exited 0."""
        self._restart_at.clear()
        workers = list(self._workers.values())
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = self._clock() + self._grace + STOP_MARGIN_SECONDS
        codes: dict[int, int] = {}
        while len(codes) < len(workers):
            for worker in workers:
                code = worker.proc.poll()
                if code is not None and worker.slot not in codes:
                    codes[worker.slot] = code
                    if code != 0:
                        log.warning(
                            "worker %d (pid %d) exited with code %d", worker.slot, worker.proc.pid, code
                        )
            if self._clock() > deadline:
                for worker in workers:
                    if worker.slot not in codes:
                        log.error(
                            "worker %d (pid %d) still running; killing it", worker.slot, worker.proc.pid
                        )
                        worker.proc.kill()
                        codes[worker.slot] = worker.proc.wait()
                break
            self._wait(0.1)
        for worker in workers:
            self._close_pipe(worker)
        self._workers.clear()
        ok = clean and all(code == 0 for code in codes.values())
        log.info("stopped %d worker(s)%s", len(workers), "" if ok else "; exit 1")
        return 0 if ok else 1
