"""`jira-chatops gate`: the pipeline's side of the change gate.

    jira-chatops gate --url BOT --token T --project P --environment E --version V
                      [--change-request KEY] [--idempotency-key K] [--timeout S]
    jira-chatops gate event --url BOT --token T --gate ID --kind deployment_started --event-id X

The first form opens (or, with the same idempotency key, finds again) the gate, then long-polls it,
printing each change of decision with its message, until the deployment may proceed (exit 0) or
must not (exit 1). Usage errors, and requests the bot refuses (bad token, wrong project, a reused
idempotency key), exit 2. Network errors and 5xx/429 answers are retried with backoff until the
timeout; the bot's `retry_after_seconds` spaces the polls when it answers without holding.

The token may be given in the JIRA_CHATOPS_GATE_TOKEN environment variable instead of --token,
which keeps it out of process listings and CI logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import aiohttp

from bot.backoff import retry_delay

EXIT_PROCEED = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
TOKEN_ENV = "JIRA_CHATOPS_GATE_TOKEN"
EVENT_KINDS = ("deployment_started", "deployment_succeeded", "deployment_failed")
MAX_WAIT_SECONDS = 55
# Each HTTP call may take this much longer than the long-poll it asks for.
_HTTP_MARGIN_SECONDS = 15
_RETRY_BASE = 1.0
_RETRY_CAP = 30.0

Sleep = Callable[[float], Awaitable[None]]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so that `gate_main` returns its code."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


class _Refused(Exception):
    """The bot answered a 4xx: retrying the same request cannot help."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the bot refused the request (HTTP {status}): {reason}")
        self.status = status


class _GaveUp(Exception):
    pass


@dataclass
class _Out:
    stdout: TextIO
    stderr: TextIO

    def say(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)


def _open_parser() -> _Parser:
    p = _Parser(
        prog="jira-chatops gate", description="Wait until a change-controlled deployment may proceed."
    )
    p.add_argument("--url", required=True, help="the bot's base URL")
    p.add_argument("--token", help=f"pipeline token (default: ${TOKEN_ENV})")
    p.add_argument("--project", required=True)
    p.add_argument("--environment", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--change-request", help="the CR key to check (none is created)")
    p.add_argument(
        "--idempotency-key",
        help="the same key finds the same gate again (default: a new key per run); use one stable "
        "across retries of the same pipeline job",
    )
    p.add_argument("--timeout", type=float, default=24 * 3600.0, help="give up (exit 1) after S seconds")
    return p


def _event_parser() -> _Parser:
    p = _Parser(prog="jira-chatops gate event", description="Report a deployment event for a gate.")
    p.add_argument("--url", required=True, help="the bot's base URL")
    p.add_argument("--token", help=f"pipeline token (default: ${TOKEN_ENV})")
    p.add_argument("--gate", required=True, help="the gate id printed when the gate was opened")
    p.add_argument("--kind", required=True, choices=EVENT_KINDS)
    p.add_argument("--event-id", required=True, help="unique per event: a retried report is recorded once")
    p.add_argument("--message", default="", help="optional detail, e.g. the failing step")
    p.add_argument("--timeout", type=float, default=300.0, help="give up (exit 1) after S seconds")
    return p


def gate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `jira-chatops gate ...` (argv: the words after `gate`)."""
    return asyncio.run(run_gate_cli(list(sys.argv[2:] if argv is None else argv)))


async def run_gate_cli(
    argv: Sequence[str],
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """The CLI as a coroutine (tests run it inside their event loop)."""
    out = _Out(stdout or sys.stdout, stderr or sys.stderr)
    env = os.environ if environ is None else environ
    is_event = bool(argv) and argv[0] == "event"
    try:
        args = (_event_parser() if is_event else _open_parser()).parse_args(
            list(argv[1:] if is_event else argv)
        )
        token = args.token or env.get(TOKEN_ENV, "")
        if not token:
            raise _UsageError(f"a pipeline token is needed: --token or ${TOKEN_ENV}")
        if not args.url.startswith(("http://", "https://")):
            raise _UsageError("--url must start with http:// or https://")
        if args.timeout <= 0:
            raise _UsageError("--timeout must be positive")
    except _UsageError as e:
        out.warn(str(e))
        return EXIT_USAGE
    client = _Client(args.url.rstrip("/"), token, out, sleep, deadline=time.monotonic() + args.timeout)
    async with aiohttp.ClientSession() as http:
        client.http = http
        try:
            if is_event:
                return await client.event(args.gate, args.kind, args.event_id, args.message)
            return await client.gate(
                {
                    "project": args.project,
                    "environment": args.environment,
                    "version": args.version,
                    **({"change_request": args.change_request} if args.change_request else {}),
                },
                args.idempotency_key or str(uuid.uuid4()),
            )
        except _Refused as e:
            out.warn(str(e))
            return EXIT_USAGE
        except _GaveUp as e:
            out.warn(str(e))
            return EXIT_FAIL


class _Client:
    def __init__(self, base: str, token: str, out: _Out, sleep: Sleep, *, deadline: float) -> None:
        self.base = base
        self.token = token
        self.out = out
        self.sleep = sleep
        self.deadline = deadline
        self.http: aiohttp.ClientSession | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def gate(self, body: dict[str, Any], idempotency_key: str) -> int:
        answer = await self._call(
            "POST", "/api/v1/gates", body=body, headers={"Idempotency-Key": idempotency_key}
        )
        gate_id = str(answer.get("gate_id", ""))
        self.out.say(
            f"gate {gate_id} opened for {body['project']} {body['version']} to {body['environment']}"
        )
        last: tuple[Any, ...] | None = None
        while True:
            shown = (answer.get("decision"), answer.get("reason"), answer.get("message"))
            if shown != last:
                self._print(answer)
                last = shown
            decision = answer.get("decision")
            if decision == "proceed":
                return EXIT_PROCEED
            if decision == "fail":
                return EXIT_FAIL
            if self.remaining() <= 0:
                raise _GaveUp(f"gave up waiting for gate {gate_id} after the --timeout")
            wait = int(max(1, min(MAX_WAIT_SECONDS, self.remaining())))
            started = time.monotonic()
            answer = await self._call("GET", f"/api/v1/gates/{gate_id}", params={"wait": str(wait)})
            # A bot that answered at once with no change is asked again no sooner than it said.
            unchanged = (answer.get("decision"), answer.get("reason"), answer.get("message")) == last
            pause = float(answer.get("retry_after_seconds") or 0) - (time.monotonic() - started)
            if unchanged and pause > 0:
                await self.sleep(min(pause, max(0.0, self.remaining())))

    async def event(self, gate_id: str, kind: str, event_id: str, message: str) -> int:
        body = {"kind": kind, "event_id": event_id, **({"message": message} if message else {})}
        answer = await self._call("POST", f"/api/v1/gates/{gate_id}/events", body=body)
        note = "recorded" if answer.get("recorded", True) else "already recorded"
        self.out.say(f"{kind} {note} for gate {gate_id}")
        return EXIT_PROCEED

    def _print(self, answer: Mapping[str, Any]) -> None:
        cr = answer.get("change_request") or {}
        cr_text = f" [{cr.get('key')}: {cr.get('status')}]" if isinstance(cr, dict) and cr.get("key") else ""
        self.out.say(f"{answer.get('decision')} ({answer.get('reason')}){cr_text}: {answer.get('message')}")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call, retried on network errors, 5xx and 429 until the deadline."""
        assert self.http is not None
        attempt = 0
        while True:
            retry_after: float | None = None
            wait = float((params or {}).get("wait", 0))
            timeout = aiohttp.ClientTimeout(total=wait + _HTTP_MARGIN_SECONDS)
            try:
                async with self.http.request(
                    method,
                    self.base + path,
                    json=body,
                    params=params,
                    headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
                    timeout=timeout,
                ) as response:
                    text = await response.text()
                    payload = _json_object(text)
                    if response.status < 400:
                        return payload
                    reason = str(
                        payload.get("reason") or payload.get("error") or text[:200] or response.reason
                    )
                    if response.status == 404 and not payload:
                        # Not the gate API's JSON 404 but aiohttp's own: no route, no gate.
                        raise _Refused(404, "this bot has no change gate configured")
                    if response.status != 429 and response.status < 500:
                        raise _Refused(response.status, reason)
                    problem = f"HTTP {response.status}: {reason}"
                    retry_after = _seconds(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            delay = retry_delay(attempt, base=_RETRY_BASE, cap=_RETRY_CAP, retry_after=retry_after)
            if self.remaining() <= delay:
                raise _GaveUp(f"gave up reaching the bot ({problem})")
            self.out.warn(f"the bot could not be reached ({problem}); retrying in {delay:.0f} s")
            await self.sleep(delay)
            attempt += 1


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(gate_main(sys.argv[1:]))
