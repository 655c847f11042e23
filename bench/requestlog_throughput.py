"""How fast the request log takes rows: the service's writer against one write per call.

For each engine (an SQLite file; a PostgreSQL server this script starts from Debian's
binaries, or ``--database-url``), in one run:

- ``direct``: the path before the writer, each request's row opened and completed by its
  own statement and transaction (``RequestLog.begin`` / ``finish``), on the caller's
  thread (what the event loop waited for);
- ``writer``: the service's path (serving/logwriter.py): ``begin`` / ``finish`` append to
  the queue, one flusher thread writes batches; timed until every row is in the database.
  Also reported: how long the caller's thread spent per request (the event loop's cost).

Each row is a realistic /classify row (a 60-character message, scrubbed). Writes
``bench/results/requestlog_throughput.{json,md}``.

    .venv/bin/python bench/requestlog_throughput.py --requests 5000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.logwriter import LogWriter  # noqa: E402
from serving.requestlog import OPEN, Entry, RequestLog  # noqa: E402
from tunegate.artifacts import environment, write_json  # noqa: E402

MESSAGE = "my card payment to the supermarket was declined twice today??"


def entries(n: int, tag: str) -> list[Entry]:
    return [
        Entry(f"{tag}-{i}", "classify", OPEN, version="v1", stage="production", input=MESSAGE)
        for i in range(n)
    ]


def direct(url: str, n: int) -> dict:
    log = RequestLog(url)
    start = time.perf_counter()
    for entry in entries(n, "direct"):
        row = log.begin(entry)
        entry.status, entry.label, entry.latency_ms = 200, "declined_card_payment", 12.5
        log.finish(row, entry)
    seconds = time.perf_counter() - start
    return {"requests": n, "seconds": round(seconds, 3), "requests_per_s": round(n / seconds, 1),
            "caller_ms_per_request": round(1000 * seconds / n, 4)}  # fmt: skip


def writer(url: str, n: int, spool: Path) -> dict:
    log = RequestLog(url)
    w = LogWriter(log, spool, max_pending=4 * n)
    w.start()
    start = time.perf_counter()
    for entry in entries(n, "writer"):
        key = w.begin(entry)
        entry.status, entry.label, entry.latency_ms = 200, "declined_card_payment", 12.5
        w.finish(key, entry)
    handed = time.perf_counter() - start
    assert w.flush(600), w.health()
    seconds = time.perf_counter() - start
    w.close()
    return {"requests": n, "seconds": round(seconds, 3), "requests_per_s": round(n / seconds, 1),
            "caller_ms_per_request": round(1000 * handed / n, 4)}  # fmt: skip


def measure(name: str, url: str, n: int, spool: Path) -> dict:
    out = {"direct": direct(url, n), "writer": writer(url, n, spool)}
    out["writer_speedup"] = round(out["writer"]["requests_per_s"] / out["direct"]["requests_per_s"], 2)
    rows = RequestLog(url).count()
    assert rows == 2 * n, f"{name}: {rows} rows for {2 * n} requests"  # nothing lost
    out["rows_checked"] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument(
        "--database-url", default=None, help="a PostgreSQL database to use (emptied first? no: a new one)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/requestlog_throughput.json")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tunegate-logbench-") as tmp:
        results["sqlite"] = measure(
            "sqlite", str(Path(tmp) / "requests.sqlite"), args.requests, Path(tmp) / "s1"
        )
        server = None
        if args.database_url is None:
            from tests.postgres import PostgresServer, fresh_database

            server = PostgresServer()
            server.start()
            url = fresh_database(server.url)
        else:
            url = args.database_url
        try:
            results["postgresql"] = measure("postgresql", url, args.requests, Path(tmp) / "s2")
        finally:
            if server is not None:
                server.close()
    record = {"benchmark": "requestlog_throughput", "baseline": "direct", "results": results,
              "environment": environment()}  # fmt: skip
    write_json(args.out, record)
    lines = ["| engine | path | requests/s | caller ms per request | speedup |", "|---|---|---|---|---|"]
    for engine, r in results.items():
        for path in ("direct", "writer"):
            speed = f"{r['writer_speedup']}x" if path == "writer" else "1.00x"
            p = r[path]
            lines.append(
                f"| {engine} | {path} | {p['requests_per_s']} | {p['caller_ms_per_request']} | {speed} |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
