"""The generation kind's drift monitor: false-alarm rate on in-distribution windows, power
on the mobile-chat channel, with the trained release's own answers.

Every window is judged by the monitor's own ``tunegate.monitoring.generation_drift`` (Evidently's
K-S, the embedding classifier against its null, Fisher exact tests per rate and field,
Mann-Whitney for live quality), with the embeddings computed once per text and Evidently's
picture skipped (``render=False``; a test checks the verdicts are the same).

The records are the evaluate stage's (``eval/generation/results/holdout.jsonl`` and
``shifted.jsonl``: each input, its reference ticket, the candidate's constrained vLLM answer
and its field F1). Each trial splits the 134 hold-out records at random into a reference
half (67) and a window of the other half (67, with the reference tickets as the callers'
feedback): unseen in-distribution messages answered by the same release, so a report
should drift in at most alpha (0.05) of trials. Shifted windows: 67 random mobile-chat
records (205), their answers and references. Intervals are Clopper-Pearson 95%.

Usage: ``python bench/generation_drift_power.py [--trials 100]`` after ``make
run-generation``. Writes ``bench/results/generation_drift_power.{json,md}``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tunegate.monitoring.generation_drift as gen
from tunegate.core.artifacts import environment, read_jsonl, write_json
from tunegate.core.monitor_reference import GenerationReference
from tunegate.core.params import load_params
from tunegate.core.task import read_task
from tunegate.core.words import vocabulary
from tunegate.monitoring.window import GenerationWindow

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/results/generation_drift_power"


def reference_of(
    rows: list[dict[str, Any]], task: Any, vocab: frozenset[str], metric: str
) -> GenerationReference:
    return GenerationReference(
        texts=[r["input"] for r in rows], answers=[r["candidate"] for r in rows],
        scores=[r["scores"]["candidate"][metric] for r in rows], metric=metric,
        output_schema=task.output_schema, json_answers=task.json_answers, vocabulary=vocab,
        model_id="bench", source="bench", sha256=f"bench-{random.random()}",
    )  # fmt: skip


def window_of(rows: list[dict[str, Any]]) -> GenerationWindow:
    return GenerationWindow(
        [r["input"] for r in rows], [r["candidate"] for r in rows], 0, None, None,
        references=[(r["candidate"], r["reference"]) for r in rows],
    )  # fmt: skip


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return round(lo, 3), round(hi, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    params = load_params(ROOT / "params-generation.yaml")
    m, metric = params.monitor, params.gate.primary_metric
    results = ROOT / "eval/generation/results"
    hold, shifted = read_jsonl(results / "holdout.jsonl"), read_jsonl(results / "shifted.jsonl")
    task = read_task(ROOT / "data/prepared-generation")
    vocab = vocabulary(r["input"] for r in read_jsonl(ROOT / "data/prepared-generation/train.jsonl"))
    texts = sorted({r["input"] for r in hold + shifted})
    vectors = dict(zip(texts, gen.embed(texts), strict=True))
    gen.embed = lambda batch, cache=None: np.stack([vectors[t] for t in batch])  # computed once per text
    half = len(hold) // 2
    rows, started = [], time.perf_counter()
    for case in ("in-distribution", "mobile chat"):
        drifted, fired = 0, Counter()
        for trial in range(args.trials):
            rng = random.Random(f"{case}:{trial}")
            order = rng.sample(hold, len(hold))
            reference = reference_of(order[:half], task, vocab, metric)
            pool = order[half:] if case == "in-distribution" else rng.sample(shifted, half)
            window = window_of(pool)
            signals, _ = gen.judge_generation(
                reference, window, m.signals, m.min_window, m.sample, trial, m.alpha, render=False
            )
            each = gen.correction(m.signals, gen.fields(reference), m.alpha).each
            signals.append(gen.live_quality(window, reference, m.min_feedback, each))
            names = [s.name for s in signals if s.drifted]
            drifted += bool(names)
            fired.update(names)
        lo, hi = clopper_pearson(drifted, args.trials)
        rows.append({"case": case, "window": half, "reference": half, "trials": args.trials,
                     "drifted": drifted, "rate": drifted / args.trials, "ci95": [lo, hi],
                     "signals": dict(sorted(fired.items()))})  # fmt: skip
        print(rows[-1], flush=True)
    family = gen.correction(m.signals, gen.fields(reference), m.alpha).family
    seconds = round(time.perf_counter() - started, 1)
    out = {"rows": rows, "family": family, "alpha": m.alpha, "seconds": seconds, "environment": environment()}
    write_json(OUT.with_suffix(".json"), out)
    lines = [
        "# Generation drift monitor: false alarms and power (`python bench/generation_drift_power.py`)",
        "",
        f"Bonferroni over {family} tests (alpha {m.alpha}); the release's own answers "
        f"(`eval/generation/results`); {args.trials} trials per row; {out['seconds']} s.",
        "",
        "| windows | reference / window | reports that drifted (95% CI) | signals that fired (windows) |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        fired = ", ".join(f"{k} {v}" for k, v in r["signals"].items()) or "-"
        lines.append(f"| {r['case']} | {r['reference']} / {r['window']} | {r['rate']:.2f} "
                     f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] | {fired} |")  # fmt: skip
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
