"""The README's first run: the bot on its embedded defaults, a sample payload, a post on the
console; and the command line's answers to a bad configuration."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _spawn(cwd: Path, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT
        )


async def test_embedded_defaults_print_the_sample_post(tmp_path: Path, unused_tcp_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATTERMOST_", "JIRA_", "DATABASE_URL"))}
    env["PORT"] = str(unused_tcp_port)
    env["HOST"] = "127.0.0.1"
    out = tmp_path / "out.txt"
    # The defaults put data in ./data; run from an empty directory to keep the tree clean.
    proc = _spawn(tmp_path, {**env, "PYTHONPATH": str(ROOT)}, out)
    try:
        url = f"http://127.0.0.1:{unused_tcp_port}"
        secret_file = tmp_path / "data" / "webhook-secret"
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            secret = secret_file.read_text().strip()
            assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
            params = {"secret": secret, "team": "demo", "channel": "town-square"}
            body = (ROOT / "examples" / "issue-created.json").read_bytes()
            async with s.post(url + "/plugins/jira/webhook", data=body, params=params) as r:
                assert r.status == 200
        for _ in range(100):
            if "WEB-42: posted" in out.read_text():
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    printed = out.read_text()
    assert "Dana Reyes **created** bug [WEB-42: Checkout button does nothing on Safari]" in printed
    assert "demo/town-square" in printed
    assert secret not in printed  # the secret never reaches the logs
    assert (tmp_path / "data" / "jira-chatops.db").exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("server:\n  port: 0\n", "server.port"), ("delivery: {workres: 2}\n", "delivery.workres: unknown key")],
)
def test_bad_config_exits_non_zero_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert main(["serve", "--config", str(cfg)]) == 2
    assert fragment in capsys.readouterr().err


def test_subscription_naming_an_unknown_instance_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "subscriptions:\n  - {name: x, channel: t/c, instance: nope, filters: {events: [event_created], "
        "projects: [A]}}\n"
    )
    assert main(["--config", str(cfg), "check-config"]) == 2
    assert "subscriptions.0.instance" in capsys.readouterr().err


def test_webhook_url_prints_the_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", "a b")
    monkeypatch.setenv("BOT_PUBLIC_URL", "https://bot.example")
    assert main(["webhook-url", "--team", "acme", "--channel", "dev"]) == 0
    out = capsys.readouterr().out
    assert "https://bot.example/plugins/jira/api/v2/webhook?secret=a%20b" in out
    assert "https://bot.example/plugins/jira/webhook?secret=a%20b&team=acme&channel=dev" in out
