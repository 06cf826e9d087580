"""/jira change list|show|recheck|cancel|test: the change gate from chat, through the whole bot
(fake Mattermost) with a gate service over the bot's own database and a fake JSM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bot.config import JiraInstanceSettings
from bot.gate.jsm import JsmClients
from bot.gate.service import GateService, body_hash
from bot.gate.store import GateStore
from bot.gate_rules.model import Gate, GateRequest
from bot.names import unknown_instance
from tests.commands.conftest import Harness
from tests.fakes.jsm import FakeJsm
from tests.gate.harness import SVC_EMAIL, SVC_SECRET, gate_settings


@dataclass
class Gates:
    h: Harness
    jsm: FakeJsm
    service: GateService

    async def open(self, version: str, environment: str = "Production", **kw: str) -> Gate:
        request = GateRequest("Web Site", environment, version, **kw)
        gate, _ = await self.service.open_or_get(
            request, f"key-{version}-{environment}", body_hash(request), now=datetime.now(UTC)
        )
        return gate


@pytest.fixture
async def gates(harness: Harness) -> AsyncIterator[Gates]:
    jsm = FakeJsm("cloud")
    jsm.add_api_token(SVC_EMAIL, SVC_SECRET)
    desk = jsm.add_service_desk("ITSM")
    jsm.add_request_type(desk, "Request a change")
    await jsm.start()
    deps = harness.services.commands.deps  # type: ignore[union-attr]
    itsm = JiraInstanceSettings.model_validate(
        {
            "url": jsm.url,
            "type": "cloud",
            "alias": "itsm",
            "service_account": {"email": SVC_EMAIL, "api_token": SVC_SECRET},
        }
    )
    jira = deps.settings.jira.model_copy(update={"instances": (*deps.settings.jira.instances, itsm)})
    deps.settings = deps.settings.model_copy(update={"jira": jira})
    settings = gate_settings(channel="acme/ops")
    clients = JsmClients(jira, time_zone=settings.time_zone)
    service = GateService(GateStore(harness.services.db.engine), settings, clients)
    deps.gate = service  # type: ignore[union-attr]
    try:
        yield Gates(harness, jsm, service)
    finally:
        await clients.close()
        await jsm.stop()


async def test_not_configured(harness: Harness) -> None:
    answer = await harness.command("alice", "change list")
    assert "not configured" in answer["text"]


async def test_list_shows_open_gates_and_all_shows_finished(gates: Gates) -> None:
    h = gates.h
    assert "No open gates" in (await h.command("alice", "change list"))["text"]
    waiting = await gates.open("1.0.0")
    failed = await gates.open("1.0.1", change_request="ITSM-999")
    text = (await h.command("alice", "change list"))["text"]
    assert f"`{waiting.id[:8]}`" in text and "Web Site 1.0.0 → Production" in text
    assert "`awaiting_approval`" in text and "ITSM-1" in text
    assert failed.id[:8] not in text
    everything = (await h.command("alice", "change list all"))["text"]
    assert failed.id[:8] in everything and "`cr_not_found`" in everything


async def test_show_by_prefix(gates: Gates) -> None:
    gate = await gates.open("2.0.0")
    await gates.service.record_event(
        gate.id, "job-1", "deployment_started", now=datetime.now(UTC), detail="step 3"
    )
    text = (await gates.h.command("alice", f"change show {gate.id[:6]}"))["text"]
    assert f"Gate `{gate.id}`" in text
    assert f"[ITSM-1]({gates.jsm.url}/browse/ITSM-1) (Planning)" in text
    assert "deployment_started: step 3" in text
    missing = (await gates.h.command("alice", "change show zzzz"))["text"]
    assert "There is no gate `zzzz`" in missing
    usage = (await gates.h.command("alice", "change show"))["text"]
    assert "/jira change show ID" in usage


async def test_recheck_reads_jira_now(gates: Gates) -> None:
    gate = await gates.open("3.0.0")
    gates.jsm.set_status("ITSM-1", "Implementing")
    text = (await gates.h.command("alice", f"change recheck {gate.id}"))["text"]
    assert "**proceed** (`approved`)" in text
    stored = await gates.service.get(gate.id)
    assert stored is not None and stored.decision.value == "proceed"


async def test_cancel_needs_the_role_in_the_gate_channel(gates: Gates) -> None:
    h = gates.h
    gate = await gates.open("4.0.0")
    refused = (await h.command("alice", f"change cancel {gate.id}"))["text"]
    assert "Only admins of the gate channel" in refused
    assert (await gates.service.get(gate.id)).decision.value == "wait"  # type: ignore[union-attr]

    h.mm.add_member(h.channels["ops"], h.user("bob"), admin=True)
    done = (await h.command("bob", f"change cancel {gate.id}"))["text"]
    assert "is cancelled" in done
    stored = await gates.service.get(gate.id)
    assert stored is not None and (stored.decision.value, stored.reason.value) == ("fail", "cancelled")
    assert "@bob" in stored.message
    again = (await h.command("admin", f"change cancel {gate.id}"))["text"]
    assert "already final" in again


async def test_test_is_for_admins(gates: Gates) -> None:
    answer = await gates.h.command("alice", "change test")
    assert answer["text"] == "This command is for Mattermost system admins."


async def test_test_checks_the_service_desk_and_request_type(gates: Gates) -> None:
    text = (await gates.h.command("admin", "change test"))["text"]
    assert "Change gate connection `itsm`" in text
    assert ":white_check_mark: **ITSM** / Request a change" in text
    assert "service desk ITSM found" in text and "The connection works." in text


async def test_test_says_what_is_wrong(gates: Gates) -> None:
    gates.jsm.fail_next(401)
    refused = (await gates.h.command("admin", "change test itsm"))["text"]
    assert ":x:" in refused and "refused the service account" in refused and "Fix the problem" in refused

    gates.jsm.request_types.clear()
    gates.jsm.service_desks.clear()
    missing = (await gates.h.command("admin", "change test"))["text"]
    assert "no service desk for project ITSM" in missing

    # The sentence and did-you-mean every entry point gives for an unknown instance.
    unknown = (await gates.h.command("admin", "change test itsn"))["text"]
    h = gates.h
    assert unknown == (
        "There is no Jira instance `itsn` (did you mean `itsm`?). Known instances: "
        f"`cloud` ({h.cloud_url}), `dc` ({h.server_url}), `itsm` ({gates.jsm.url})."
    )
    deps = h.services.commands.deps  # type: ignore[union-attr]
    assert unknown == unknown_instance("itsn", deps.settings.jira.known_instances)
    # URL in any case.
    by_url = (await h.command("admin", f"change test {gates.jsm.url.upper()}/"))["text"]
    assert by_url.startswith("###### Change gate connection `itsm`")
    no_account = (await gates.h.command("admin", "change test dc"))["text"]
    assert "has no `service_account`" in no_account
