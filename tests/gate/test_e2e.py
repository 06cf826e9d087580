"""End to end: the pipeline client (`jira-chatops gate`) against the bot and a fake Jira Service
Management, while the test moves the CR through Planning → Authorize → Implementing the way a change
manager would. Checks the decisions the pipeline sees, the comments on the CR and the Mattermost
root post and its thread."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.gate.cli import EXIT_PROCEED, run_gate_cli
from bot.gate.posts import COLOURS
from tests.gate.harness import WEB_TOKEN, GateBot, gate_bot, until

SUMMARY = 'Octopus: Deploy "Web Site" version 1.2.3 to "Production"'


async def pipeline(bot: GateBot, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    command = ["event"] if argv[:1] == ("event",) else []
    args = [*command, "--url", bot.url, "--token", WEB_TOKEN, *argv[len(command) :]]
    code = await run_gate_cli(args, stdout=out, stderr=err, environ={})
    return code, out.getvalue(), err.getvalue()


def attachment(post: dict[str, Any]) -> dict[str, Any]:
    attachments: list[dict[str, Any]] = post["props"]["attachments"]
    return attachments[0]


@pytest.mark.parametrize("flavour", ["cloud", "server"])
async def test_pipeline_waits_for_approval_then_deploys(tmp_path: Path, flavour: str) -> None:
    async with gate_bot(tmp_path, flavour=flavour, max_wait_seconds=1.0) as bot:
        gate_args = ["--project", "Web Site", "--environment", "Production", "--version", "1.2.3"]
        gate_args += ["--idempotency-key", "build-77-deploy", "--timeout", "30"]
        run = asyncio.create_task(pipeline(bot, *gate_args))

        # The gate created the CR through the Service Desk API, in the configured request type.
        await until(lambda: len(bot.jsm.issues) == 1)
        cr = next(iter(bot.jsm.issues.values()))
        assert (cr.summary, cr.status, cr.project) == (SUMMARY, "Planning", "ITSM")
        await until(lambda: len(bot.roots()) == 1)
        root = bot.roots()[0]
        assert attachment(root)["color"] == COLOURS["wait"]

        # The change manager plans a window around now and takes the CR through approval.
        now = datetime.now(UTC)
        bot.jsm.set_planned(
            cr.key,
            start=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            end=(now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        )
        await asyncio.sleep(0.2)
        bot.jsm.set_status(cr.key, "Authorize")
        await until(lambda: any("to Authorize" in p["message"] for p in bot.thread(root["id"])))
        assert not run.done()
        bot.jsm.set_status(cr.key, "Implementing")

        code, out, err = await asyncio.wait_for(run, 10)
        assert code == EXIT_PROCEED, err
        decisions = [line.split(":")[0] for line in out.splitlines()[1:]]
        assert decisions == [
            f"wait (awaiting_approval) [{cr.key}",
            f"wait (awaiting_approval) [{cr.key}",
            f"proceed (approved) [{cr.key}",
        ]
        gate_id = out.split()[1]

        # The pipeline deploys and says so; a retried report changes nothing.
        event = ["event", "--gate", gate_id, "--kind"]
        assert (await pipeline(bot, *event, "deployment_started", "--event-id", "b77-start"))[0] == 0
        assert (await pipeline(bot, *event, "deployment_started", "--event-id", "b77-start"))[0] == 0
        assert (await pipeline(bot, *event, "deployment_succeeded", "--event-id", "b77-done"))[0] == 0

        # A retried pipeline step finds the same gate and the same CR.
        code, again, _ = await pipeline(bot, *gate_args)
        assert code == EXIT_PROCEED and again.split()[1] == gate_id
        assert len(bot.jsm.creates()) == 1

        # Comments on the CR: linked, proceed, started, succeeded; each once.
        comments = bot.jsm.comments[cr.key]
        assert len(comments) == 4, comments
        assert gate_id in comments[0] and "gates the deployment" in comments[0]
        assert "proceed" in comments[1]
        assert comments[2].endswith("started.") and comments[3].endswith("succeeded.")

        # One root post, edited in place to the final state, with one reply per change.
        await until(lambda: len(bot.thread(root["id"])) >= 7)
        assert [p["id"] for p in bot.roots()] == [root["id"]]
        final = bot.mm.get_post(root["id"])
        assert final is not None
        assert attachment(final)["color"] == COLOURS["proceed"]
        assert "Deployment succeeded" in attachment(final)["text"]
        fields = {f["title"]: f["value"] for f in attachment(final)["fields"]}
        assert fields["Change request"] == f"[{cr.key}]({bot.jsm.url}/browse/{cr.key}) (Implementing)"
        assert "Change window" in fields and gate_id in fields["Gate"]
        replies = [p["message"] for p in bot.thread(root["id"])]
        assert replies[0].startswith(f":memo: Created change request [{cr.key}]")
        assert replies[1].startswith(":hourglass_flowing_sand: Waiting (`awaiting_approval`)")
        assert "moved from Planning to Authorize" in replies[2]
        assert "moved from Authorize to Implementing" in replies[3]
        assert replies[4].startswith(":white_check_mark: The deployment may proceed.")
        assert replies[5].startswith(":rocket: Deployment started")
        assert replies[6].startswith(":tada: Deployment succeeded")
        assert len(replies) == 7, replies
