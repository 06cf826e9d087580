"""The pipelines' HTTP API over the real gate service, store and JSM client (fake JSM): auth and
scopes, validation, idempotency, long-polling and deployment events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.gate_rules.model import Decision, Reason, Verdict
from tests.gate.harness import BILLING_TOKEN, WEB_TOKEN, GateBot, gate_bot

BODY = {"project": "Web Site", "environment": "Production", "version": "1.2.3"}


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[GateBot]:
    # No background poller: tests move the gate with run_once() when they mean to.
    async with gate_bot(tmp_path, run_poller=False, max_wait_seconds=1.5) as b:
        yield b


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = WEB_TOKEN,
    key: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    kwargs: dict[str, Any] = {"json": body} if raw is None else {"data": raw}
    if raw is not None:
        headers["Content-Type"] = "application/json"
    async with http.request(method, url, headers=headers, **kwargs) as r:
        assert r.headers["Content-Type"] == "application/json"
        return r.status, await r.json()


async def open_gate(
    bot: GateBot, http: aiohttp.ClientSession, key: str = "run-1", **body: str
) -> dict[str, Any]:
    status, answer = await call(http, "POST", f"{bot.url}/api/v1/gates", key=key, body={**BODY, **body})
    assert status in (200, 201), answer
    return answer


# -- auth ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "status"), [(None, 401), ("not-a-token", 401), (BILLING_TOKEN, 403), (WEB_TOKEN, 201)]
)
async def test_token_is_checked_and_scoped(
    bot: GateBot, http: aiohttp.ClientSession, token: str | None, status: int
) -> None:
    got, answer = await call(http, "POST", f"{bot.url}/api/v1/gates", token=token, key="k", body=BODY)
    assert got == status, answer
    if status != 201:
        assert answer["status"] == "error" and answer["reason"]
        # Nothing reached Jira for a refused call.
        assert bot.jsm.creates() == []


async def test_reading_another_projects_gate_is_forbidden(bot: GateBot, http: aiohttp.ClientSession) -> None:
    gate = await open_gate(bot, http)
    url = f"{bot.url}/api/v1/gates/{gate['gate_id']}"
    assert (await call(http, "GET", url, token=BILLING_TOKEN))[0] == 403
    event = {"kind": "deployment_started", "event_id": "e1"}
    assert (await call(http, "POST", url + "/events", token=BILLING_TOKEN, body=event))[0] == 403
    assert (await call(http, "GET", url, token="nope"))[0] == 401


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "raw", "key", "reason"),
    [
        (BODY, None, None, "Idempotency-Key"),
        ({"project": "Web Site", "environment": "Production"}, None, "k", "version"),
        ({**BODY, "version": "  "}, None, "k", "version"),
        ({**BODY, "extra": 1}, None, "k", "extra"),
        ({**BODY, "change_request": "not a key"}, None, "k", "change_request"),
        (None, b"{not json", "k", "JSON"),
        (None, b"[1, 2]", "k", "object"),
    ],
)
async def test_invalid_requests_get_400_with_a_reason(
    bot: GateBot, http: aiohttp.ClientSession, body: Any, raw: bytes | None, key: str | None, reason: str
) -> None:
    status, answer = await call(http, "POST", f"{bot.url}/api/v1/gates", key=key, body=body, raw=raw)
    assert status == 400
    assert reason in answer["reason"]


async def test_unknown_gate_is_404(bot: GateBot, http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, "GET", f"{bot.url}/api/v1/gates/no-such-gate")
    assert status == 404 and "no-such-gate" in answer["reason"]
    event = {"kind": "deployment_started", "event_id": "e1"}
    assert (await call(http, "POST", f"{bot.url}/api/v1/gates/nope/events", body=event))[0] == 404


async def test_an_unexpected_failure_is_a_json_503(
    bot: GateBot, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(gate_id: str) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(bot.service, "get", broken)
    async with http.get(f"{bot.url}/api/v1/gates/x", headers={"Authorization": f"Bearer {WEB_TOKEN}"}) as r:
        assert r.status == 503 and r.headers["Retry-After"]
        assert r.headers["Content-Type"] == "application/json"
        text = await r.text()
    assert "database went away" not in text and "Traceback" not in text


# -- opening and idempotency --------------------------------------------------------------------------


async def test_open_answers_the_documented_shape(bot: GateBot, http: aiohttp.ClientSession) -> None:
    answer = await open_gate(bot, http)
    cr = answer["change_request"]
    assert set(answer) == {
        "gate_id",
        "decision",
        "reason",
        "message",
        "change_request",
        "retry_after_seconds",
    }
    assert (answer["decision"], answer["reason"]) == ("wait", "awaiting_approval")
    assert cr["key"] in answer["message"]
    assert set(cr) == {"key", "id", "url", "status", "planned_start", "planned_end", "source"}
    assert (cr["status"], cr["source"]) == ("Planning", "created")
    assert cr["url"] == f"{bot.jsm.url}/browse/{cr['key']}"
    assert answer["retry_after_seconds"] == 30


async def test_same_key_same_body_is_the_same_gate(bot: GateBot, http: aiohttp.ClientSession) -> None:
    url = f"{bot.url}/api/v1/gates"
    first = await call(http, "POST", url, key="run-7", body=BODY)
    # The same body spelled differently (key order) is the same request.
    again = await call(http, "POST", url, key="run-7", body=dict(reversed(list(BODY.items()))))
    assert (first[0], again[0]) == (201, 200)
    assert first[1]["gate_id"] == again[1]["gate_id"]
    assert len(bot.jsm.creates()) == 1


async def test_same_key_other_body_is_422(bot: GateBot, http: aiohttp.ClientSession) -> None:
    url = f"{bot.url}/api/v1/gates"
    await call(http, "POST", url, key="run-8", body=BODY)
    status, answer = await call(http, "POST", url, key="run-8", body={**BODY, "version": "1.2.4"})
    assert status == 422 and "Idempotency-Key" in answer["reason"]


async def test_environment_not_controlled_proceeds_at_once(bot: GateBot, http: aiohttp.ClientSession) -> None:
    answer = await open_gate(bot, http, environment="Dev")
    assert (answer["decision"], answer["reason"], answer["change_request"]) == (
        "proceed",
        "not_change_controlled",
        None,
    )
    assert answer["retry_after_seconds"] is None
    assert bot.jsm.requests == []


# -- long-polling ---------------------------------------------------------------------------------------


async def test_long_poll_returns_early_when_the_decision_changes(
    bot: GateBot, http: aiohttp.ClientSession
) -> None:
    gate = await open_gate(bot, http)
    url = f"{bot.url}/api/v1/gates/{gate['gate_id']}?wait=30"
    started = time.monotonic()
    poll = asyncio.create_task(call(http, "GET", url))
    await asyncio.sleep(0.2)
    assert not poll.done()
    bot.jsm.set_status(gate["change_request"]["key"], "Implementing")
    await bot.poller.run_once()
    status, answer = await asyncio.wait_for(poll, 5)
    assert status == 200
    assert (answer["decision"], answer["reason"]) == ("proceed", "approved")
    assert time.monotonic() - started < 1.2  # well before the 1.5 s cap


async def test_long_poll_times_out_with_the_current_decision(
    bot: GateBot, http: aiohttp.ClientSession
) -> None:
    gate = await open_gate(bot, http)
    started = time.monotonic()
    status, answer = await call(http, "GET", f"{bot.url}/api/v1/gates/{gate['gate_id']}?wait=0.6")
    elapsed = time.monotonic() - started
    assert status == 200 and answer["decision"] == "wait" and answer["gate_id"] == gate["gate_id"]
    assert 0.5 <= elapsed < 2.5


async def test_long_poll_is_capped(bot: GateBot, http: aiohttp.ClientSession) -> None:
    gate = await open_gate(bot, http)
    started = time.monotonic()
    status, _ = await call(http, "GET", f"{bot.url}/api/v1/gates/{gate['gate_id']}?wait=600")
    # The fixture's cap is 1.5 s (55 s in production).
    assert status == 200 and 1.4 <= time.monotonic() - started < 3.5


async def test_long_poll_sees_a_change_made_elsewhere(bot: GateBot, http: aiohttp.ClientSession) -> None:
    """A change stored by another replica wakes nobody here: the store is re-read meanwhile."""
    gate = await open_gate(bot, http)
    poll = asyncio.create_task(call(http, "GET", f"{bot.url}/api/v1/gates/{gate['gate_id']}?wait=30"))
    await asyncio.sleep(0.2)
    stored = await bot.service.store.get(gate["gate_id"])
    assert stored is not None
    other = replace(stored, verdict=Verdict(Decision.PROCEED, Reason.APPROVED, "approved elsewhere"))
    assert await bot.service.store.save(other, expected_revision=stored.revision, now=bot.clock()) is not None
    status, answer = await asyncio.wait_for(poll, 2)
    assert (status, answer["message"]) == (200, "approved elsewhere")


@pytest.mark.parametrize("wait", ["soon", "-1"])
async def test_bad_wait_is_400(bot: GateBot, http: aiohttp.ClientSession, wait: str) -> None:
    gate = await open_gate(bot, http)
    status, answer = await call(http, "GET", f"{bot.url}/api/v1/gates/{gate['gate_id']}?wait={wait}")
    assert status == 400 and "wait" in answer["reason"]


# -- events ---------------------------------------------------------------------------------------------


async def test_events_are_recorded_once_per_event_id(bot: GateBot, http: aiohttp.ClientSession) -> None:
    gate = await open_gate(bot, http)
    key = gate["change_request"]["key"]
    url = f"{bot.url}/api/v1/gates/{gate['gate_id']}/events"
    event = {"kind": "deployment_started", "event_id": "job-42-start"}
    first = await call(http, "POST", url, body=event)
    again = await call(http, "POST", url, body=event)
    assert first == (200, {"gate_id": gate["gate_id"], **event, "recorded": True})
    assert again[1]["recorded"] is False
    started = [c for c in bot.jsm.comments[key] if "started" in c]
    assert len(started) == 1


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"kind": "deployment_paused", "event_id": "e"}, "kind"),
        ({"kind": "deployment_started"}, "event_id"),
        ({"kind": "deployment_started", "event_id": "e", "message": 5}, "message"),
    ],
)
async def test_invalid_events_are_400(
    bot: GateBot, http: aiohttp.ClientSession, event: dict[str, Any], reason: str
) -> None:
    gate = await open_gate(bot, http)
    status, answer = await call(http, "POST", f"{bot.url}/api/v1/gates/{gate['gate_id']}/events", body=event)
    assert status == 400 and reason in answer["reason"]
