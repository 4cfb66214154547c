"""Entities per second into the Port emulator (issue 12 §4): ``--entities`` entities, 20 per bulk
request, the emulator answering every entities API request after ``--latency-ms`` and enforcing
Port's published rate limits (35,000 requests / 5 min, token endpoint 100 / 5 min, burst 10).

    .venv/bin/python -m bench.port [--entities 100000] [--latency-ms 50] [--only before|after] [--out FILE]

- before: the Port sink of commit c1b15f4 (batches one after the other, a token per sink).
- after: the current sink (bulk requests of one mapping concurrently, ``--concurrency``, default 4;
  paced per credential set).

Entities are handed to the sink 1,000 at a time, as the sync engine flushes them. The emulator runs
in its own process. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

from tests.portapi import server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BEFORE_COMMIT = "c1b15f4"
FLUSH = 1000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def before_module() -> types.ModuleType:
    """httpsync.sinks.port as it was at BEFORE_COMMIT."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BEFORE_COMMIT}:operator/httpsync/sinks/port.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader("bench_port_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"port.py@{BEFORE_COMMIT}", "exec"), module.__dict__)
    return module


class Emulator:
    def __init__(self, latency_ms: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["--port", str(self.port), "--latency-ms", str(latency_ms), "--port-limits", "--no-log"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.portapi.server", *args], cwd=REPO, stdout=subprocess.DEVNULL
        )
        for _ in range(200):
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the Port emulator did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=5) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def entities(n: int) -> list[dict[str, Any]]:
    return [
        {
            "identifier": f"svc-{i}",
            "blueprint": "service",
            "title": f"Service {i}",
            "properties": {"tier": i % 3, "owner": f"team-{i % 17}", "url": f"https://svc-{i}.example.com"},
            "relations": {},
        }
        for i in range(n)
    ]


async def run_one(label: str, n: int, latency_ms: float, concurrency: int) -> dict[str, Any]:
    emulator = Emulator(latency_ms)
    try:
        if label == "before":
            sink = before_module().PortSink(emulator.url, server.CLIENT_ID, server.CLIENT_SECRET)
        else:
            from httpsync.sinks.port import PortSink

            sink = PortSink(emulator.url, server.CLIENT_ID, server.CLIENT_SECRET, concurrency=concurrency)
        items = entities(n)
        failed = 0
        started = time.monotonic()
        try:
            for start in range(0, n, FLUSH):
                report = await sink.upsert("bench/services", items[start : start + FLUSH])
                failed += len(report.failed)
        finally:
            await sink.aclose()
        seconds = time.monotonic() - started
        stats = emulator.stats()
    finally:
        emulator.stop()
    return {
        "sink": label,
        "entities": n,
        "latencyMs": latency_ms,
        "concurrency": 1 if label == "before" else concurrency,
        "seconds": round(seconds, 2),
        "entitiesPerSecond": round(n / seconds),
        "requestsPerSecond": round(stats["requests"] / seconds, 1),
        "landed": stats["entities"],
        "failed": failed,
        "rateLimited429": stats["rateLimited"],
        "tokenRequests": stats["tokenRequests"],
        "maxInFlight": stats["maxInFlight"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", choices=["before", "after"], action="append")
    parser.add_argument("--out", type=Path, default=HERE / "results-port.json")
    args = parser.parse_args(argv)
    results = []
    for label in args.only or ["before", "after"]:
        result = asyncio.run(run_one(label, args.entities, args.latency_ms, args.concurrency))
        print(json.dumps(result), flush=True)
        results.append(result)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
