"""A bot made of the change gate's pieces, served over real HTTP, with a fake Jira Service Management
and a fake Mattermost: the same composition the application uses (service + store + JSM clients +
posts listener + HTTP API + poller)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.config import JiraSettings
from bot.gate.jsm import JsmClients
from bot.gate.poller import GatePoller
from bot.gate.posts import GatePosts
from bot.gate.service import GateService
from bot.gate.store import GateStore
from bot.gate_rules.settings import ChangeGateSettings
from bot.mattermost.client import MattermostClient
from bot.store.db import Database, make_engine
from bot.web.gate_api import GateApi
from tests.fakes.jsm import FakeJsm
from tests.fakes.mattermost import FakeMattermost

WEB_TOKEN = "web-site-pipeline-token-0123456789"
BILLING_TOKEN = "billing-pipeline-token-0123456789"
SVC_EMAIL = "svc-gate@example.com"
SVC_SECRET = "svc-gate-secret-token"


@dataclass
class Clock:
    """Real time unless a test sets it (decisions about change windows compare with it)."""

    fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(UTC)


@dataclass
class GateBot:
    url: str
    service: GateService
    jsm: FakeJsm
    mm: FakeMattermost
    channel_id: str
    poller: GatePoller
    clock: Clock
    extra: dict[str, Any] = field(default_factory=dict)

    def thread(self, root_id: str) -> list[dict[str, Any]]:
        return [p for p in self.mm.posts_in(self.channel_id) if p.get("root_id") == root_id]

    def roots(self) -> list[dict[str, Any]]:
        return [p for p in self.mm.posts_in(self.channel_id) if not p.get("root_id")]


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until `check()` is true; fails the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def gate_settings(**overrides: Any) -> ChangeGateSettings:
    data: dict[str, Any] = {
        "instance": "itsm",
        "service_desk": "ITSM",
        "channel": "ops-team/deployments",
        "pipeline_tokens": [
            {"token": WEB_TOKEN, "projects": ["Web Site"], "name": "web"},
            {"token": BILLING_TOKEN, "projects": ["Billing"], "name": "billing"},
        ],
        "projects": {"Web Site": {"change_controlled": True}, "Billing": {"change_controlled": True}},
        "environments": {"Production": {"change_controlled": True}, "Dev": {"change_controlled": False}},
    }
    data.update(overrides)
    return ChangeGateSettings.model_validate(data)


def jira_settings(jsm: FakeJsm) -> JiraSettings:
    account = (
        {"email": SVC_EMAIL, "api_token": SVC_SECRET} if jsm.flavour == "cloud" else {"token": SVC_SECRET}
    )
    return JiraSettings.model_validate(
        {"instances": [{"url": jsm.url, "type": jsm.flavour, "alias": "itsm", "service_account": account}]}
    )


async def start_fakes(flavour: str = "cloud") -> tuple[FakeJsm, FakeMattermost, str]:
    jsm = FakeJsm(flavour)  # type: ignore[arg-type]
    if flavour == "cloud":
        jsm.add_api_token(SVC_EMAIL, SVC_SECRET)
    else:
        jsm.add_pat(SVC_SECRET)
    desk = jsm.add_service_desk("ITSM", "IT service management")
    jsm.add_request_type(desk, "Get IT help")
    jsm.add_request_type(desk, "Request a change")
    await jsm.start()
    mm = FakeMattermost()
    channel_id = mm.add_channel("ops-team", "deployments")
    mm.add_member(channel_id, mm.bot_user_id)
    await mm.start()
    return jsm, mm, channel_id


@asynccontextmanager
async def gate_bot(
    tmp_path: Path,
    *,
    flavour: str = "cloud",
    settings: ChangeGateSettings | None = None,
    poll_seconds: float = 0.05,
    run_poller: bool = True,
    prepare: Callable[[FakeJsm], None] | None = None,
    max_wait_seconds: float = 55,
) -> AsyncIterator[GateBot]:
    jsm, mm, channel_id = await start_fakes(flavour)
    if prepare is not None:
        prepare(jsm)
    gate = settings or gate_settings()
    db = Database(make_engine(f"sqlite:///{tmp_path / 'gate.db'}"))
    await db.migrate()
    clients = JsmClients(
        jira_settings(jsm),
        planned_start_field=gate.planned_start_field,
        planned_end_field=gate.planned_end_field,
        time_zone=gate.time_zone,
    )
    service = GateService(GateStore(db.engine), gate, clients)
    mattermost = MattermostClient(url=mm.url, token=mm.token, timeout=5)
    await mattermost.start()
    posts = GatePosts(
        mattermost, gate.channel, save_root_post=service.set_root_post, list_events=service.list_events
    )
    service.add_listener(posts.on_change)
    clock = Clock()
    app = web.Application()
    app.add_routes(
        GateApi(service, clock=clock, recheck_seconds=0.2, max_wait_seconds=max_wait_seconds).routes()
    )
    server = TestServer(app)
    await server.start_server()
    poller = GatePoller(service, clock=clock, interval_seconds=poll_seconds)
    if run_poller:
        poller.start()
    try:
        yield GateBot(
            url=str(server.make_url("")).rstrip("/"),
            service=service,
            jsm=jsm,
            mm=mm,
            channel_id=channel_id,
            poller=poller,
            clock=clock,
        )
    finally:
        await poller.stop()
        await server.close()
        await mattermost.close()
        await clients.close()
        await db.close()
        await jsm.stop()
        await mm.stop()
