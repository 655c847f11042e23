"""Time and peak memory of a drift report over 1,000, 10,000 and 100,000 logged requests.

Two contenders compute the same Evidently report (text descriptors, predicted labels,
confidence, all-MiniLM-L6-v2 embedding drift) on the same request log, in one run:

- ``tunegate``: ``tunegate.monitoring.drift_report.main_report`` as ``tunegate drift`` runs it: a
  seeded sample of at most ``monitor.sample`` rows per side is described and embedded,
  and the reference sample's embeddings come from the on-disk cache (the first, cold
  report computes it; its cost is reported apart);
- ``naive``: the baseline: every logged request and every reference row described and
  embedded at report time, Evidently run on all of them.

Each measurement runs in its own process, so peak RSS (``ru_maxrss``) is that report's
alone; the time includes loading the encoder, as a scheduled ``tunegate drift`` pays it.
The log's requests are hold-out and shifted messages of the prepared data with random
filler words, so texts repeat rarely. Writes ``bench/results/drift_cost.json``.

On 2 cores the baseline embeds about 30 texts/s, so 100,000 requests would take it
most of an hour: by default it runs up to 10,000 requests, and for larger logs only its
embedding time is estimated from its measured rate (marked as an estimate).

Usage: ``python bench/drift_cost.py [--sizes 1000 10000 100000] [--naive-max 10000]``
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FILLER = ("ok", "so", "um", "please", "today", "again", "now", "hi", "hello", "thanks", "quick", "urgent")


def build_log(path: Path, data: Path, n: int, seed: int) -> None:
    """A request log of n answered /classify requests, written by the service's own writer."""
    from tunegate.core.artifacts import read_jsonl
    from tunegate.serving.requestlog import Entry, RequestLog

    rows = read_jsonl(data / "holdout.jsonl") + read_jsonl(data / "shifted.jsonl")
    rng = random.Random(seed)
    log = RequestLog(path)
    for i in range(n):
        r = rng.choice(rows)
        words = r["text"].split()
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLER))
        log.write(
            Entry(f"q{i}", "classify", 200, stage="production", version="v1", input=" ".join(words),
                  label=r["label"], valid=True, confidence=rng.betavariate(8, 2), latency_ms=50.0)
        )  # fmt: skip
    log.close()


def measure(mode: str, log: Path, reference: Path, reports: Path, sample: int) -> dict:
    """One report, in this process (called in a child): seconds, embedding seconds, peak RSS."""
    import tunegate.monitoring.drift as drift
    from tunegate.core import monitor_reference
    from tunegate.core.params import Params
    from tunegate.monitoring.drift_report import main_report
    from tunegate.monitoring.window import read_window

    spent = {"embed": 0.0, "rows": 0}
    original = drift.embed

    def timed_embed(texts, cache=None):
        start = time.perf_counter()
        hit = cache is not None and cache.exists()
        out = original(texts, cache)
        spent["embed"] += time.perf_counter() - start
        spent["rows"] += 0 if hit else len(texts)
        return out

    drift.embed = timed_embed
    params = Params()
    m = params.monitor
    start = time.perf_counter()
    if mode == "naive":
        window, ref = read_window(log), monitor_reference.read(reference)
        everything = len(window.texts) + len(ref)
        results, _ = drift.judge_window(ref, window, m.signals, m.min_window, everything, 0, m.alpha)
        status = "drift" if any(s.drifted for s in results) else "no_drift"
    else:
        record, _ = main_report(log, str(reference), reports, params)
        status = record.status
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "embedding_seconds": round(spent["embed"], 2),
        "embedding_share": round(spent["embed"] / seconds, 3),
        "texts_embedded": spent["rows"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "status": status,
    }


def child(mode: str, log: Path, reference: Path, reports: Path, sample: int, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(log), str(reference), str(reports), str(sample)]
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "timed_out_after_s": timeout}
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"{mode} failed:\n{err.stderr[-3000:]}") from err
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - start, 2)
    return result


def reference_rows(reference: Path) -> list:
    return json.loads(reference.read_text(encoding="utf-8"))["rows"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, log, reference, reports, sample = sys.argv[2:7]
        print(json.dumps(measure(mode, Path(log), Path(reference), Path(reports), int(sample))))
        return
    from tunegate.core.artifacts import environment, write_json
    from tunegate.core.params import MonitorParams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument(
        "--naive-max", type=int, default=10_000,
        help="largest size the baseline runs on; past it, its embedding time is extrapolated from its rate",
    )  # fmt: skip
    parser.add_argument("--reference", type=Path, default=Path("eval/results/monitor_reference.json"))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one report may take")
    parser.add_argument("--out", type=Path, default=Path("bench/results/drift_cost.json"))
    args = parser.parse_args()

    reference = args.reference
    if not reference.exists():
        raise SystemExit(f"{reference} is missing: run `dvc repro evaluate` first")
    sample = MonitorParams().sample
    results: dict[str, dict] = {}
    ref_rows, naive_rate = len(reference_rows(reference)), 0.0
    with tempfile.TemporaryDirectory(prefix="tunegate-drift-cost-") as tmp:
        reports = Path(tmp) / "reports"
        for n in args.sizes:
            log = Path(tmp) / f"requests-{n}.sqlite"
            start = time.perf_counter()
            build_log(log, args.data, n, seed=n)
            entry: dict = {"log_build_seconds": round(time.perf_counter() - start, 2)}
            if not (reports / "cache").exists():
                entry["tunegate_cold_cache"] = child(
                    "tunegate", log, reference, reports, sample, args.timeout
                )
            entry["tunegate"] = child("tunegate", log, reference, reports, sample, args.timeout)
            if n > args.naive_max and naive_rate:
                entry["naive_embedding_estimate_s"] = round((n + ref_rows) / naive_rate, 1)
            if n <= args.naive_max:
                entry["naive"] = child("naive", log, reference, reports, sample, args.timeout)
                naive = entry["naive"]
                if naive["seconds"]:
                    entry["speedup"] = round(naive["seconds"] / entry["tunegate"]["seconds"], 1)
                    naive_rate = naive["texts_embedded"] / naive["embedding_seconds"]
            results[str(n)] = entry
            print(n, json.dumps(entry), flush=True)
    out = {
        "benchmark": "drift_cost",
        "baseline": "naive: every request and reference row embedded at report time",
        "target": "100,000 requests in under 60 s on 2 cores",
        "sample_per_side": sample,
        "reference_rows": ref_rows,
        "results": results,
        "environment": environment(),
    }
    write_json(args.out, out)
    big = results.get("100000", {}).get("tunegate", {})
    if big:
        print(f"100,000 requests: {big['seconds']} s, peak {big['peak_rss_mb']} MB; wrote {args.out}")


if __name__ == "__main__":
    main()
