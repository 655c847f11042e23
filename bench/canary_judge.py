"""Does the canary judge stay valid however often it looks? A simulation through its own code.

Each replicate feeds the judge (tunegate/serving/rollout.py ``judge``) a request log that grows by
``--per-look`` canary and three times as many production requests between looks, from
callers of their own, and asks it for a decision at every look, up to ``--looks`` (48) looks,
stopping at the first decision (advance, which promotion at the last step follows the same
way, or rollback). Scenarios:

- identical: the canary answers as production does (error rate 1%, live accuracy 0.90):
  rolling it back is a false alarm, which must happen in at most alpha of the replicates;
- twice the error-rate limit: the canary's error rate is production's plus twice
  ``release.judge_max_error_increase``: advancing it must happen at most alpha of the time;
- 5 points worse in live accuracy (feedback on every answer): advancing it, the same.

For each: the shares advanced, rolled back and undecided after all looks, and the median
canary requests to a decision. The fixed-alpha judge it replaced re-tested at every look;
the first row of the table is what its false-alarm rate would be measured against.

Writes ``bench/results/canary_judge.json`` and ``bench/results/canary_judge.md``.

Usage: ``python bench/canary_judge.py [--replicates 200] [--looks 48] [--per-look 100]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunegate.core.artifacts import environment, write_json
from tunegate.core.params import ReleaseParams
from tunegate.serving.rollout import judge

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results"
RELEASE = ReleaseParams(judge_min_requests=50)
SCENARIOS = {
    "identical": {"error": 0.01, "accuracy": 0.90},
    "twice the error-rate limit": {"error": 0.01 + 2 * RELEASE.judge_max_error_increase, "accuracy": 0.90},
    "5 points worse live accuracy": {"error": 0.01, "accuracy": 0.85},
}
ids = itertools.count()


def requests(rng: np.random.Generator, version: str, n: int, error: float, accuracy: float) -> list[dict]:
    out = []
    for failed, right in zip(rng.random(n) < error, rng.random(n) < accuracy, strict=True):
        rid = f"r{next(ids)}"
        out.append({
            "request_id": rid, "version": version, "shadow": 0, "pinned": 0, "endpoint": "classify",
            "status": 500 if failed else 200, "latency_ms": 20.0 + rng.random(), "valid": 1,
            "label": "a", "output": "a", "caller": None, "client": f"client-{rid}", "abstained": 0,
            "feedback": None if failed else ("a" if right else "b"),
        })  # fmt: skip
    return out


def replicate(rng: np.random.Generator, scenario: dict, looks: int, per_look: int, alpha: float):
    rows: list[dict] = []
    for look in range(1, looks + 1):
        rows += requests(rng, "v2", per_look, scenario["error"], scenario["accuracy"])
        rows += requests(rng, "v1", 3 * per_look, 0.01, 0.90)
        action = judge(rows, "v2", "v1", 10, RELEASE, alpha).action
        if action in ("advance", "promote", "rollback"):
            return ("advance" if action == "promote" else action), look * per_look
    return "undecided", None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--looks", type=int, default=48)
    parser.add_argument("--per-look", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = []
    for name, scenario in SCENARIOS.items():
        outcomes = [
            replicate(rng, scenario, args.looks, args.per_look, args.alpha) for _ in range(args.replicates)
        ]
        decided = [n for action, n in outcomes if n is not None]
        row = {
            "scenario": name, **scenario, "replicates": args.replicates, "looks": args.looks,
            "per_look": args.per_look,
            **{a: round(sum(o == a for o, _ in outcomes) / args.replicates, 4)
               for a in ("advance", "rollback", "undecided")},
            "median_canary_requests_to_decision": statistics.median(decided) if decided else None,
        }  # fmt: skip
        table.append(row)
        print(row, flush=True)
    write_json(
        RESULTS / "canary_judge.json", {"alpha": args.alpha, "rows": table, "environment": environment()}
    )
    lines = [
        "# Canary judge: decisions at every look",
        "",
        f"alpha {args.alpha}; {args.looks} looks, {args.per_look} canary and {3 * args.per_look} "
        f"production requests between looks; {args.replicates} replicates per scenario "
        "(`python bench/canary_judge.py`).",
        "",
        "| scenario | advanced | rolled back | undecided after all looks "
        "| median canary requests to a decision |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['scenario']} | {r['advance']:.3f} | {r['rollback']:.3f} | {r['undecided']:.3f} | "
        f"{r['median_canary_requests_to_decision'] or '-'} |"
        for r in table
    ]
    (RESULTS / "canary_judge.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
