"""A newcomer's first hour: `jira-chatops serve` with no configuration at all, driven by the
`curl` lines of README's quick start, read from README.md so that the README cannot drift from
what works."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def quick_start_curls(readme: str) -> list[str]:
    """Each `curl` command of README's "Quick start" section, continuation lines joined."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("curl "):
                commands.append(command.strip())
    return commands


def _read(path: Path) -> str:
    return path.read_text()


def _spawn(cwd: Path, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT
        )


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes], out: Path) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):  # up to a minute on a loaded machine
            assert proc.poll() is None, _read(out)
            try:
                async with s.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the bot did not become healthy:\n" + _read(out))


def _curl(command: str, cwd: Path, port: int) -> str:
    """Run README's command as a shell would, against this test's bot."""
    command = command.replace("localhost:8080", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, (command, done.stderr.decode())
    return done.stdout.decode()


@pytest.mark.skipif(shutil.which("curl") is None, reason="README's quick start uses curl, not installed")
async def test_readme_quick_start_without_any_configuration(tmp_path: Path, unused_tcp_port: int) -> None:
    """Real process (about 3 s to start on the development machine)."""
    curls = quick_start_curls((ROOT / "README.md").read_text(encoding="utf-8"))
    webhook = [c for c in curls if "/plugins/jira/webhook" in c]
    commands = [c for c in curls if "/mattermost/command" in c]
    assert len(webhook) == 1 and len(commands) == 2, curls

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MATTERMOST_", "JIRA_", "DATABASE_URL", "BOT_", "DATA_DIR", "LOG_"))
    }
    env.update(PORT=str(unused_tcp_port), HOST="127.0.0.1", PYTHONPATH=str(ROOT))
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # README's commands run in the clone
    out = tmp_path / "out.txt"
    proc = _spawn(tmp_path, env, out)
    try:
        await _wait_healthy(f"http://127.0.0.1:{unused_tcp_port}", proc, out)
        accepted = json.loads(_curl(webhook[0], tmp_path, unused_tcp_port))
        assert accepted["status"] == "accepted"

        help_answer = json.loads(_curl(commands[0], tmp_path, unused_tcp_port))
        assert help_answer["response_type"] == "ephemeral"
        assert "* `/jira [issue] view [issue-key]`" in help_answer["text"]
        assert "/jira change" not in help_answer["text"]  # no change gate configured

        view = json.loads(_curl(commands[1], tmp_path, unused_tcp_port))
        assert view["text"].startswith("No Jira instance is installed yet: add one under `jira.instances`")

        for _ in range(300):
            if "WEB-42" in _read(out):
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log = _read(out)
    assert "Checkout button does nothing on Safari" in log  # the sample post, on the console
    # The start-up log says what is on and off, and why.
    assert "feature slash commands: on at /mattermost/command" in log
    assert "feature dialogs, direct messages, chat (websocket): off (they need mattermost.url)" in log
    token = (tmp_path / "data" / "command-token").read_text().strip()
    assert oct((tmp_path / "data" / "command-token").stat().st_mode & 0o777) == "0o600"
    assert token not in log


def test_the_quick_start_curls_are_found() -> None:
    """The parser above sees README's commands whole (a continuation line is not lost)."""
    readme = "## Quick start\n\n```sh\ncurl -a \\\n  -b http://x\nls\n```\n\n## Next\n```sh\ncurl -c\n```\n"
    assert quick_start_curls(readme) == ["curl -a    -b http://x"]
