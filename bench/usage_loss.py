"""Does JetPero lose usage records under load? Paced requests, then rows counted against them.

    .venv/bin/python -m bench.usage_loss                      # 1,000 req/s for 60 s (~1.5 minutes)
    .venv/bin/python -m bench.usage_loss --rate 200 --seconds 5

Starts the bench upstream and JetPero under gunicorn (bench.jetpero_target, its own SQLite
database), sends `--rate` requests per second for `--seconds` (open loop: each request is due at
its own time, over 64 connections; what is still unsent after twice the run's length is counted as
`not_sent`, so the run is bounded on a machine too slow for the rate), waits for the workers' writers to flush, and
counts the usage rows against the requests answered. Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bench.load import _connect, _request, _target, raise_nofile_limit
from bench.targets import CHAT_BODY, start_process, wait_http
from tools import procs
from tools.procs import free_port

CONNECTIONS = 64  # keep-alive connections the paced requests are spread over
GIVE_UP = 2.0  # requests still unsent after twice the run's length are counted, not sent


async def paced(url: str, headers: dict[str, str], rate: float, seconds: float) -> dict:
    """Send `rate * seconds` requests, request i due at start + i / rate; count the answers."""
    host, port, path = _target(url)
    raw = _request("POST", host, port, path, {"Content-Type": "application/json", **headers}, CHAT_BODY.encode())
    total = int(rate * seconds)
    counts = {"sent": 0, "answered": 0, "ok": 0, "failed": 0, "not_sent": 0, "late_ms_max": 0.0}
    queue: asyncio.Queue[int] = asyncio.Queue()
    start = time.monotonic() + 0.5
    give_up = start + seconds * GIVE_UP  # a machine too slow for the rate: the rest is not sent

    async def pacer() -> None:
        for index in range(total):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(index)
        for _ in range(CONNECTIONS):
            queue.put_nowait(-1)

    async def worker() -> None:
        conn = None
        while (index := await queue.get()) >= 0:
            if time.monotonic() > give_up:
                counts["not_sent"] += 1
                continue
            late = (time.monotonic() - (start + index / rate)) * 1000
            counts["late_ms_max"] = max(counts["late_ms_max"], late)
            counts["sent"] += 1
            try:
                if conn is None or not conn.open:
                    conn = await _connect(host, port)
                status = await conn.request(raw)
                counts["answered"] += 1
                counts["ok"] += 200 <= status < 300
                if not conn.keep_alive:
                    conn.close()
                    conn = None
            except (OSError, ValueError):
                counts["failed"] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    await asyncio.gather(pacer(), *(worker() for _ in range(CONNECTIONS)))
    counts["late_ms_max"] = round(counts["late_ms_max"], 1)
    counts["achieved_rps"] = round(counts["answered"] / (time.monotonic() - start), 1)
    return counts


def rows(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM usage_records").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (at most 300)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait for the last rows")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 300.0)
    raise_nofile_limit()
    from bench.jetpero_target import start_jetpero

    work = Path(tempfile.mkdtemp(prefix="jetpero-usage-loss-"))
    database = work / "usage.db"
    up_port = free_port()
    upstream = start_process("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(up_port)])
    stop_jetpero = None
    try:
        up_url = f"http://127.0.0.1:{up_port}"
        wait_http(up_url + "/v1/chat/completions", {}, proc=upstream)
        base, headers, stop_jetpero = start_jetpero(up_url, {"JETPERO_DATABASE_URL": f"sqlite:///{database}"})
        counts = asyncio.run(paced(base + "/v1/chat/completions", headers, args.rate, args.seconds))
        deadline = time.monotonic() + args.settle
        while (found := rows(database)) < counts["answered"] and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        if stop_jetpero is not None:
            stop_jetpero()  # gunicorn stops its workers: each flushes what it still holds
        procs.stop(upstream, 8.0, signal.SIGTERM)
    found = rows(database)
    result = {**counts, "rate": args.rate, "seconds": args.seconds, "usage_rows": found}
    result["lost"] = counts["answered"] - found
    print(json.dumps(result))
    print(f"{counts['answered']} requests answered, {found} usage rows: {result['lost']} lost")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
