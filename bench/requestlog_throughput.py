"""The request log on SQLite and on PostgreSQL: how fast it takes rows, what it costs the
service, and how long a drift report over a million logged requests takes.

Each engine (an SQLite file; a PostgreSQL server this script starts from Debian's binaries,
or ``--database-url``) in one run, in three parts (``--parts``):

- ``writer``: rows/s the log takes. The service's path (tunegate/serving/logwriter.py: ``begin`` /
  ``finish`` append to a queue, one flusher thread writes batches; timed until every row is
  in the database), against the baseline, one statement and transaction per row on the
  caller's thread (``RequestLog.begin`` / ``finish``, what the event loop used to wait for).
  Also the caller's time per request (the event loop's cost).
- ``serving``: the load of ``bench/serving_overhead.py`` (chat completions of the candidate's
  own prompt for hold-out messages, ``--concurrency`` clients) on ``tunegate serve`` with the
  SQLite log and then with the PostgreSQL log: requests/s, p50/p95, the rows the service
  wrote per second, and the PostgreSQL log's overhead against SQLite's.
- ``drift``: ``tunegate drift`` over ``--drift-rows`` logged /classify requests (hold-out and
  shifted messages with filler words, as bench/drift_cost.py builds them) read from each
  engine, in its own process: seconds and peak RSS (targets: under 60 s and 2 GB for
  1,000,000). The reference sample's embeddings are cached by a warm-up report first, as
  every scheduled report after the first finds them.

Writes ``bench/results/requestlog_throughput.{json,md}``.

    .venv/bin/python bench/requestlog_throughput.py --requests 5000 --drift-rows 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.postgres import fresh_database, server_url  # noqa: E402
from tunegate.core.artifacts import environment, read_json, read_jsonl, write_json  # noqa: E402
from tunegate.serving.logstore import engine_for, migrate, requests  # noqa: E402
from tunegate.serving.logwriter import LogWriter  # noqa: E402
from tunegate.serving.requestlog import OPEN, Entry, RequestLog, row_of  # noqa: E402

MESSAGE = "my card payment to the supermarket was declined twice today??"
BIN = Path(sys.executable).parent


# -- writer ---------------------------------------------------------------------------------


def entries(n: int, tag: str) -> list[Entry]:
    return [
        Entry(f"{tag}-{i}", "classify", OPEN, version="v1", stage="production", input=MESSAGE)
        for i in range(n)
    ]


def rate(n: int, seconds: float, caller_seconds: float) -> dict:
    return {"requests": n, "seconds": round(seconds, 3), "requests_per_s": round(n / seconds, 1),
            "caller_ms_per_request": round(1000 * caller_seconds / n, 4)}  # fmt: skip


def direct(url: str, n: int) -> dict:
    log = RequestLog(url)
    start = time.perf_counter()
    for entry in entries(n, "direct"):
        row = log.begin(entry)
        entry.status, entry.label, entry.latency_ms = 200, "declined_card_payment", 12.5
        log.finish(row, entry)
    seconds = time.perf_counter() - start
    return rate(n, seconds, seconds)


def writer(url: str, n: int, spool: Path) -> dict:
    w = LogWriter(RequestLog(url), spool, max_pending=4 * n)
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
    return rate(n, seconds, handed)


def writer_part(url: str, n: int, spool: Path) -> dict:
    out = {"direct": direct(url, n), "writer": writer(url, n, spool)}
    out["writer_speedup"] = round(out["writer"]["requests_per_s"] / out["direct"]["requests_per_s"], 2)
    rows = RequestLog(url).count()
    assert rows == 2 * n, f"{rows} rows for {2 * n} requests"  # nothing lost
    out["rows_checked"] = rows
    return out


# -- serving --------------------------------------------------------------------------------


def serving_part(logs: dict[str, str], args: argparse.Namespace, tmp: Path) -> dict:
    """`tunegate serve` under serving_overhead's load, once per log engine."""
    import serving_overhead as so

    from tunegate.core.prompt import PromptTemplate

    template = PromptTemplate.load(args.candidate)
    rows = read_jsonl(args.data / "holdout.jsonl")
    bodies = [template.messages(rows[i % len(rows)]["text"]) for i in range(args.serving_requests)]
    env = os.environ | {"BENTOML_HOME": str(tmp / "bentoml"), "VLLM_CPU_KVCACHE_SPACE": "2",
                        "TUNEGATE_ACTOR": "bench"}  # fmt: skip
    project = so.scratch_project(tmp, args.base, args.candidate, args.gate, env)
    out: dict[str, dict] = {}
    for engine, url in logs.items():
        port = so.free_port()
        print(f"serving on the {engine} log ...", flush=True)
        cmd = [str(BIN / "tunegate"), "serve", "--port", str(port)]
        logged = env | {"TUNEGATE_REQUEST_LOG": url}
        proc = so.start(
            cmd, project, logged, tmp / f"serve-{engine}.log", f"http://127.0.0.1:{port}", "/readyz"
        )
        before = RequestLog(url).count()
        try:
            figures = asyncio.run(
                so.load(f"http://127.0.0.1:{port}", "tunegate", bodies, args.concurrency, args.max_tokens)
            )
        finally:
            so.stop(proc)  # SIGTERM: the writer drains before the process exits
        written = RequestLog(url).count() - before
        answered = figures["requests"] + so.WARM_UP  # the load's warm-up requests are logged too
        assert written == answered, f"{engine}: {written} rows for {answered} answered requests"
        figures["rows_written"] = written
        figures["rows_per_s"] = round(figures["requests"] / figures["seconds"], 2)
        out[engine] = figures
        print(engine, figures, flush=True)
    s, p = out["sqlite"], out["postgresql"]
    out["postgresql_vs_sqlite"] = {
        "throughput_ratio": round(p["requests_per_s"] / s["requests_per_s"], 3),
        "added_p50_ms": round(p["p50_ms"] - s["p50_ms"], 1),
        "added_p95_ms": round(p["p95_ms"] - s["p95_ms"], 1),
    }
    return out


# -- drift ----------------------------------------------------------------------------------

FILLER = ("ok", "so", "um", "please", "today", "again", "now", "hi", "hello", "thanks", "quick", "urgent")


def logged_rows(data: Path, n: int, seed: int) -> Iterator[list[dict]]:
    """n answered /classify rows as the service writes them, in batches of 20,000 (already
    scrubbed messages: the bench fills the log, the service's scrubbing is not timed here)."""
    messages = read_jsonl(data / "holdout.jsonl") + read_jsonl(data / "shifted.jsonl")
    rng = random.Random(seed)
    template = row_of(Entry("x", "classify", 200, stage="production", version="v1", valid=True), "bench:1")
    start, batch = datetime(2026, 12, 1, tzinfo=UTC), []
    for i in range(n):
        r = rng.choice(messages)
        words = r["text"].split()
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
        batch.append(template | {
            "request_id": f"q{i}", "time": (start + timedelta(milliseconds=i)).isoformat(),
            "input": " ".join(words), "label": r["label"], "confidence": rng.betavariate(8, 2),
            "latency_ms": 50.0,
        })  # fmt: skip
        if len(batch) == 20_000:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(url: str, data: Path, n: int) -> float:
    """Write n rows into the log at `url` (bulk inserts); the seconds it took."""
    engine = engine_for(url)
    migrate(engine)
    start = time.perf_counter()
    for batch in logged_rows(data, n, seed=n):
        with engine.begin() as conn:
            conn.execute(requests.insert(), batch)
    engine.dispose()
    return time.perf_counter() - start


def drift_run(url: str, reference: Path, params: Path) -> dict:
    """`tunegate drift` on the log, in its own process: seconds, peak RSS, its verdict."""
    cmd = [
        str(BIN / "tunegate"),
        "drift",
        "--log",
        url,
        "--reference",
        str(reference),
        "--params",
        str(params),
    ]
    with tempfile.TemporaryFile("w+") as out:  # a file, not a pipe: a full pipe would block the child
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):  # 0: no drift, 3: drift; anything else is a failure
        raise SystemExit(f"tunegate drift exited {code}:\n{output[-3000:]}")
    last = [line for line in output.splitlines() if "requests (" in line]
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "exit_code": code, "summary": last[-1] if last else output[-300:]}  # fmt: skip


def drift_part(logs: dict[str, str], args: argparse.Namespace, tmp: Path) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["monitor"]["reports_dir"] = str(tmp / "reports")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    warm = f"sqlite:///{tmp / 'warm.sqlite'}"
    fill(warm, args.data, 1000)
    out: dict[str, dict] = {"warm_up": drift_run(warm, args.reference, params)}  # caches the reference
    for engine, url in logs.items():
        url = f"sqlite:///{tmp / 'drift.sqlite'}" if engine == "sqlite" else fresh_database(url)
        print(f"filling the {engine} log with {args.drift_rows} rows ...", flush=True)
        result = {"rows": args.drift_rows, "fill_seconds": round(fill(url, args.data, args.drift_rows), 1)}
        result |= drift_run(url, args.reference, params)
        out[engine] = result
        print(engine, result, flush=True)
    out["targets"] = {"seconds": "< 60", "peak_rss_mb": "< 2048"}
    return out


# -- the run --------------------------------------------------------------------------------


def table(results: dict) -> str:
    lines = []
    if "writer" in results:
        lines += ["| engine | path | requests/s | caller ms per request | speedup |", "|---|---|---|---|---|"]
        for engine, r in results["writer"].items():
            for path in ("direct", "writer"):
                speed, p = (f"{r['writer_speedup']}x" if path == "writer" else "1.00x"), r[path]
                lines.append(
                    f"| {engine} | {path} | {p['requests_per_s']} | {p['caller_ms_per_request']} | {speed} |"
                )
    if "serving" in results:
        lines += ["", "| log | requests/s | p50 ms | p95 ms | rows written |", "|---|---|---|---|---|"]
        for engine in ("sqlite", "postgresql"):
            s = results["serving"][engine]
            figures = (
                f"{s['requests_per_s']:.2f} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} | {s['rows_written']}"
            )
            lines.append(f"| {engine} | {figures} |")
    if "drift" in results:
        lines += ["", "| log | rows | drift seconds | peak RSS MB |", "|---|---|---|---|"]
        for engine in ("sqlite", "postgresql"):
            d = results["drift"][engine]
            lines.append(f"| {engine} | {d['rows']} | {d['seconds']} | {d['peak_rss_mb']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--parts", nargs="+", choices=["writer", "serving", "drift"], default=["writer", "serving", "drift"]
    )
    ap.add_argument("--requests", type=int, default=5000, help="requests per contender in the writer part")
    ap.add_argument(
        "--database-url", default=None, help="a PostgreSQL server to use (new databases are made on it)"
    )
    ap.add_argument("--base", type=Path, default=ROOT / "models/base")
    ap.add_argument("--candidate", type=Path, default=ROOT / "models/candidate")
    ap.add_argument("--gate", type=Path, default=ROOT / "eval/gate.json")
    ap.add_argument("--data", type=Path, default=ROOT / "data/prepared")
    ap.add_argument("--reference", type=Path, default=ROOT / "eval/results/monitor_reference.json")
    ap.add_argument("--serving-requests", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--drift-rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/requestlog_throughput.json")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with (
        tempfile.TemporaryDirectory(prefix="tunegate-logbench-") as name,
        server_url(args.database_url) as server,
    ):
        tmp = Path(name)
        logs = {"sqlite": f"sqlite:///{tmp / 'requests.sqlite'}", "postgresql": fresh_database(server)}
        if "writer" in args.parts:
            results["writer"] = {
                e: writer_part(url, args.requests, tmp / f"spool-{e}") for e, url in logs.items()
            }
            print(results["writer"], flush=True)
        if "serving" in args.parts:
            served = {"sqlite": f"sqlite:///{tmp / 'served.sqlite'}", "postgresql": fresh_database(server)}
            results["serving"] = serving_part(served, args, tmp)
        if "drift" in args.parts:
            results["drift"] = drift_part({"sqlite": "", "postgresql": server}, args, tmp)
    baseline = "writer: one transaction per row; serving: the SQLite log"
    record = {"benchmark": "requestlog_throughput", "baseline": baseline, "parts": args.parts,
              "results": results, "environment": environment()}  # fmt: skip
    if args.out.exists():  # parts run apart keep the others' last figures
        kept = read_json(args.out).get("results", {})
        record["results"] = kept | results
    write_json(args.out, record)
    args.out.with_suffix(".md").write_text(table(record["results"]))
    print(table(record["results"]))


if __name__ == "__main__":
    main()
