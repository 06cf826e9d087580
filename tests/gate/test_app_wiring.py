"""The application built from settings serves the change gate: API, poller, posts, CLI entry."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from bot.__main__ import main
from bot.app import create_app
from bot.config import load_settings
from tests.gate.harness import SVC_EMAIL, SVC_SECRET, WEB_TOKEN, start_fakes, until


async def test_create_app_serves_the_gate_and_posts_to_the_channel(tmp_path: Path) -> None:
    """Slow (about 5 s): the gate's poller, at its 5 s minimum interval, is what sees the change
    request move on."""
    jsm, mm, channel_id = await start_fakes("cloud")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"""
jira:
  instances:
    - url: "{jsm.url}"
      type: cloud
      alias: itsm
      service_account: {{email: "{SVC_EMAIL}", api_token: "{SVC_SECRET}"}}
change_gate:
  instance: itsm
  service_desk: ITSM
  poll_interval_seconds: 5
  channel: ops-team/deployments
  pipeline_tokens: [{{token: "{WEB_TOKEN}", projects: [Web Site]}}]
  projects: {{Web Site: {{change_controlled: true}}}}
  environments: {{Production: {{change_controlled: true}}}}
"""
    )
    settings = load_settings(
        cfg,
        {"DATA_DIR": str(tmp_path), "MATTERMOST_URL": mm.url, "MATTERMOST_BOT_TOKEN": mm.token},
    )
    server = TestServer(create_app(settings))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {WEB_TOKEN}", "Idempotency-Key": "deploy-1"}
            body = {"project": "Web Site", "environment": "Production", "version": "1.2.3"}
            async with http.post(server.make_url("/api/v1/gates"), json=body, headers=headers) as r:
                assert r.status == 201, await r.text()
                opened = await r.json()
            assert opened["decision"] == "wait"
            key = opened["change_request"]["key"]
            jsm.set_status(key, "Implementing")
            url = server.make_url(f"/api/v1/gates/{opened['gate_id']}")
            async with http.get(url, params={"wait": "15"}, headers=headers) as r:
                assert (await r.json())["decision"] == "proceed"
        await until(lambda: any(key in str(p) for p in mm.posts_in(channel_id)))
    finally:
        await server.close()
        await jsm.stop()
        await mm.stop()


def test_gate_cli_is_reachable_from_the_main_command() -> None:
    assert main(["gate", "--help-unknown-option"]) == 2
