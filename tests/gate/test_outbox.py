"""The gate's comments on the CR go through the durable delivery queue: one Jira refused is retried
by the next application on the same database (a restart) and posted once; one that cannot be
posted is a dead letter listed by its kind."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.__main__ import main
from bot.app import create_app
from bot.config import Settings, load_settings
from tests.fakes.jsm import FakeJsm
from tests.gate.harness import SVC_EMAIL, SVC_SECRET, WEB_TOKEN, start_fakes, until

COMMENTS = "/rest/servicedeskapi/request/"


def _settings(tmp_path: Path, jsm: FakeJsm, mm_url: str, mm_token: str, max_attempts: int) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
database: {{url: "sqlite:///{tmp_path / "bot.db"}"}}
delivery: {{max_attempts: {max_attempts}, backoff_base_seconds: 0.2, backoff_max_seconds: 0.5}}
jira:
  instances:
    - url: "{jsm.url}"
      type: cloud
      alias: itsm
      service_account: {{email: "{SVC_EMAIL}", api_token: "{SVC_SECRET}"}}
change_gate:
  instance: itsm
  service_desk: ITSM
  poll_interval_seconds: 60
  channel: ops-team/deployments
  pipeline_tokens: [{{token: "{WEB_TOKEN}", projects: [Web Site]}}]
  projects: {{Web Site: {{change_controlled: true}}}}
  environments: {{Production: {{change_controlled: true}}}}
"""
    )
    return cfg


def _load(cfg: Path, tmp_path: Path, mm_url: str, mm_token: str) -> Settings:
    return load_settings(
        cfg, {"DATA_DIR": str(tmp_path), "MATTERMOST_URL": mm_url, "MATTERMOST_BOT_TOKEN": mm_token}
    )


async def _open_gate(server: TestServer) -> dict[str, object]:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {WEB_TOKEN}", "Idempotency-Key": "deploy-1"}
        body = {"project": "Web Site", "environment": "Production", "version": "1.2.3"}
        async with http.post(server.make_url("/api/v1/gates"), json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            return dict(await r.json())


async def test_a_refused_comment_is_posted_once_by_the_next_application(tmp_path: Path) -> None:
    jsm, mm, _channel = await start_fakes("cloud")
    cfg = _settings(tmp_path, jsm, mm.url, mm.token, max_attempts=50)
    settings = _load(cfg, tmp_path, mm.url, mm.token)
    try:
        jsm.fail_next(503, times=1000, path=COMMENTS)  # Jira refuses comments until told otherwise
        first = TestServer(create_app(settings))
        await first.start_server()
        try:
            opened = await _open_gate(first)
            await until(lambda: len(jsm.requests_to(COMMENTS, "POST")) >= 2, timeout=30)
        finally:
            await first.close()
        key = str(opened["change_request"]["key"])  # type: ignore[index]
        assert jsm.comments.get(key, []) == []
        jsm._failures.clear()

        # A new application on the same database: the queued comment is posted, once.
        second = TestServer(create_app(_load(cfg, tmp_path, mm.url, mm.token)))
        await second.start_server()
        try:
            await until(lambda: len(jsm.comments.get(key, [])) >= 1, timeout=30)
        finally:
            await second.close()
        linked = [c for c in jsm.comments[key] if "gates the deployment" in c]
        assert len(linked) == 1
        assert jsm.comments_public[key][0] is False  # internal
    finally:
        await jsm.stop()
        await mm.stop()


async def test_a_comment_that_cannot_be_posted_is_a_dead_letter_of_its_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsm, mm, _channel = await start_fakes("cloud")
    cfg = _settings(tmp_path, jsm, mm.url, mm.token, max_attempts=2)
    settings = _load(cfg, tmp_path, mm.url, mm.token)
    try:
        jsm.fail_next(403, times=1000, path=COMMENTS)  # forbidden: not retried
        server = TestServer(create_app(settings))
        await server.start_server()
        try:
            await _open_gate(server)
            await until(lambda: len(jsm.requests_to(COMMENTS, "POST")) >= 1, timeout=30)
            async with aiohttp.ClientSession() as http:

                async def dead() -> bool:
                    async with http.get(server.make_url("/metrics")) as r:
                        text = await r.text()
                    return 'jira_chatops_deliveries_total{kind="gate_comment",result="dead"} 1.0' in text

                for _ in range(300):
                    if await dead():
                        break
                    await asyncio.sleep(0.1)
                assert await dead()
        finally:
            await server.close()
    finally:
        await jsm.stop()
        await mm.stop()
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["dead-letters", "-c", str(cfg)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    comments = [line for line in lines if line["kind"] == "gate_comment"]
    assert len(comments) == 1 and comments[0]["gate_id"]
    assert "HTTP 403" in comments[0]["error"]
