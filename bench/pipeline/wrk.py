"""wrk as the load generator: a C client that leaves the CPU to the server, when it is installed.

`apt-get install wrk` (Debian/Ubuntu; `brew install wrk` on macOS). One thread, `concurrency`
connections, for a fixed time. A Lua script (its `request()` hook) posts the same payloads as the
Python client, round-robin, each with its own issue key and `X-Atlassian-Webhook-Identifier`, and
its `done()` hook prints a JSON summary; the result is a `Drive` like the Python client's, without
per-request send times (wrk keeps none).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.pipeline.load import RUN_ID, Drive
from bench.pipeline.scenarios import PLACEHOLDER, TAG_BASE, Payload

WRK_TIMEOUT_S = 30

LUA = """
local templates, n = {}, 0
local start, run_id = 0, ""
counter = 0  -- global: done() reads it with thread:get
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  start = tonumber(args[1])
  run_id = args[2]
  for line in io.lines(args[3]) do
    n = n + 1
    templates[n] = line
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local seq = start + counter
  counter = counter + 1
  local body = (templates[(seq % n) + 1]:gsub("__PLACEHOLDER__", tostring(__TAG_BASE__ + seq)))
  wrk.headers["X-Atlassian-Webhook-Identifier"] = "bench-" .. run_id .. "-" .. seq
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local sent = 0
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("counter")
  end
  io.write("WRK-JSON ", string.format(
    '{"requests": %d, "duration_us": %d, "sent": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, sent, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def find_wrk(option: str | None) -> str | None:
    """The wrk executable: the one given, else wrk on PATH; None with `--client python`."""
    if option == "python":
        return None
    if option and option not in ("auto", "wrk"):
        return option
    found = shutil.which("wrk")
    if option == "wrk" and found is None:
        raise SystemExit("bench.pipeline: --client wrk, but wrk is not on PATH (apt-get install wrk)")
    return found


def write_script(workdir: Path, payloads: Sequence[Payload]) -> tuple[Path, Path]:
    """The Lua script and the payload file it reads (one template a line, as compact JSON)."""
    data = workdir / "wrk-payloads.txt"
    lines = [json.dumps(json.loads(p.template)) for p in payloads]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    script = workdir / "wrk-webhooks.lua"
    script.write_text(
        LUA.replace("__PLACEHOLDER__", PLACEHOLDER.decode()).replace("__TAG_BASE__", str(TAG_BASE)),
        encoding="utf-8",
    )
    return script, data


async def drive_wrk(
    wrk: str,
    url: str,
    workdir: Path,
    payloads: Sequence[Payload],
    start: int,
    seconds: float,
    concurrency: int,
) -> Drive:
    """Run wrk for `seconds` against `url`; webhooks are numbered from `start`."""
    script, data = write_script(workdir, payloads)
    args = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "-s",
        str(script),
        url,
        "--",
        str(start),
        RUN_ID,
        str(data),
    ]
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    wall = time.perf_counter() - started
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"bench.pipeline: wrk failed (exit {proc.returncode}):\n{text[-2000:]}")
    s = json.loads(line.removeprefix("WRK-JSON "))
    run = Drive()
    run.wall = s["duration_us"] / 1e6 or wall
    bad = s["status"]  # answers with a status of 400 or more
    run.statuses = Counter({200: s["requests"] - bad})
    if bad:
        run.statuses[0] = bad  # wrk does not say which status; 0 stands for "not 2xx/3xx"
    run.errors = s["connect"] + s["read"] + s["write"] + s["timeout"]
    run.sent = range(start, start + s["sent"])
    run.latency_p50_ms = s["p50_us"] / 1000
    run.latency_p99_ms = s["p99_us"] / 1000
    return run
