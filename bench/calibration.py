"""Calibration, abstention and the label-free accuracy estimate, measured.

For each dataset, in one run:

- expected calibration error (10 bins, bootstrap 95% interval) of the raw answer confidence
  and of the calibrated one, on hold-out and on shifted traffic;
- the abstention trade-off: coverage, selective accuracy and out-of-scope recall at a
  range of thresholds, and at the threshold chosen on validation;
- the auto threshold (tunegate/evaluation/threshold.py) side by side with the rule it replaced (the
  lowest threshold whose in-scope validation precision reaches the target, out-of-scope
  rows ignored): the threshold each picks on validation, which floor bound it, and the
  hold-out's coverage, selective accuracy and out-of-scope recall at it;
- the label-free accuracy estimate (tunegate/monitoring/estimate.py: mean calibrated confidence of
  answered requests) against the true accuracy of those requests, over replayed windows of
  100 and 300 requests drawn from hold-out and from shifted traffic (mean absolute error,
  95th percentile). Target: within 0.05 on hold-out traffic.

Datasets:

- ``sample``: the checked-out candidate's evaluation records (``eval/results``: the
  evaluate stage's calibration fitted on validation, hold-out, shifted channel and the
  out-of-scope hold-out), so run ``dvc repro`` first.
- ``banking77`` (``../shared/data/banking77``, skipped when absent): the capped candidate
  of ``bench/drift_power.py`` (20 rows per intent of 67 intents; 10 intents held out),
  answered by the scorer (the same confidences as vLLM). Calibration and threshold are
  fitted on 1,000 unseen rows of train.csv plus half of the held-out intents' rows (as
  out-of-scope validation); hold-out is test.csv's in-scope rows; "shifted" is the other
  half of the held-out intents (messages the model has no label for: out of scope).

Usage: ``python bench/calibration.py [--banking77 DIR] [--windows 200]``. Writes
``bench/results/calibration.json`` and ``.md`` (two tables).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunegate.core import calibration
from tunegate.core.artifacts import environment, read_json, read_jsonl, write_json
from tunegate.core.calibration import Calibration
from tunegate.core.params import load_params
from tunegate.evaluation.calibration_fit import ece, fit
from tunegate.evaluation.metrics import with_ci
from tunegate.evaluation.threshold import Floors, choose_threshold

THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def ece_ci(conf: list[float | None], right: list[bool]) -> dict[str, Any]:
    c = np.array([0.0 if v is None else v for v in conf])
    y = np.array(right, dtype=float)
    est = with_ci(ece, c, y, resamples=1000, seed=0)
    return {"ece": round(est.value, 4), "ci95": [round(est.lo, 4), round(est.hi, 4)], "rows": len(c)}


def trade_off(conf: list[float | None], right: list[bool], oos_conf: list[float | None], t: float) -> dict:
    kept = [c is not None and c >= t for c in conf]
    answered = [r for r, k in zip(right, kept, strict=True) if k]
    oos_kept = [c is not None and c >= t for c in oos_conf]
    return {
        "threshold": round(t, 4),
        "coverage": round(sum(kept) / len(kept), 4),
        "selective_accuracy": round(sum(answered) / len(answered), 4) if answered else None,
        "oos_recall": round(1 - sum(oos_kept) / len(oos_kept), 4) if oos_kept else None,
    }


def estimate_errors(conf: list[float | None], right: list[bool], t: float, windows: int) -> dict[str, Any]:
    """|mean calibrated confidence - accuracy| of the answered requests of replayed windows."""
    out = {}
    items = [(c, r) for c, r in zip(conf, right, strict=True) if c is not None and c >= t]
    for size in (100, 300):
        if len(items) < size:
            continue
        rng, errors = random.Random(size), []
        for _ in range(windows):
            w = rng.sample(items, size)
            errors.append(abs(np.mean([c for c, _ in w]) - np.mean([r for _, r in w])))
        out[str(size)] = {
            "mean_abs_error": round(float(np.mean(errors)), 4),
            "p95_abs_error": round(float(np.percentile(errors, 95)), 4),
            "windows": windows,
        }
    return out


def measure(
    cal: Calibration,
    suites: dict[str, tuple[list[float | None], list[bool]]],
    oos_raw: list[float | None],
    windows: int,
) -> dict[str, Any]:
    """Every figure for one dataset, from raw confidences and correctness per suite."""
    result: dict[str, Any] = {"calibration": cal.to_dict(), "suites": {}}
    oos = [cal.apply(c) for c in oos_raw]
    for name, (raw, right) in suites.items():
        conf = [cal.apply(c) for c in raw]
        result["suites"][name] = {
            "raw": ece_ci(raw, right),
            "calibrated": ece_ci(conf, right),
            "accuracy": round(float(np.mean(right)), 4),
            "trade_off": [trade_off(conf, right, oos, t) for t in sorted({*THRESHOLDS, cal.abstain_below})],
            "at_threshold": trade_off(conf, right, oos, cal.abstain_below),
            "estimate": estimate_errors(conf, right, cal.abstain_below, windows),
        }
    return result


def precision_only(floors: Floors) -> Floors:
    """The rule before: in-scope precision (point) alone, out-of-scope rows not consulted."""
    return Floors(floors.precision, 0.0, 0.0, 0.0, confidence=0.5)


def threshold_rules(
    val: tuple[list[float | None], list[bool], list[float | None]],
    holdout: tuple[list[float | None], list[bool], list[float | None]],
    floors: Floors,
) -> dict[str, Any]:
    """Each rule's threshold on validation (calibrated confidences) and the hold-out at it."""
    out = {}
    for rule, f in (("every floor (auto)", floors), ("precision only (before)", precision_only(floors))):
        oos_val = val[2] if rule.startswith("every") else []
        found = choose_threshold(val[0], val[1], oos_val, f)
        out[rule] = {
            "threshold": round(found.value, 4),
            "met_on_validation": found.met,
            "bound_by": list(found.bound_by),
            "explanation": found.explain(),
            "holdout": trade_off(*[holdout[0], holdout[1], holdout[2]], found.value),
        }
    return out


def sample_part(windows: int) -> dict[str, Any]:
    results = Path("eval/results")
    cal = calibration.read(results / calibration.FILE)
    suites = {}
    for name in ("holdout", "shifted"):
        recs = read_jsonl(results / f"{name}.jsonl")
        suites[name] = ([r["raw_confidence"] for r in recs], [r["candidate"] == r["gold"] for r in recs])
    oos_path = results / "holdout_oos.jsonl"
    oos = [r["raw_confidence"] for r in read_jsonl(oos_path)] if oos_path.exists() else []
    model = read_json(results / "evidence.json")["candidate"]["model_id"]
    val = validation_of(cal, Path("data/prepared"), Path("models/candidate"))
    hold = read_jsonl(results / "holdout.jsonl")
    at = (
        [r["confidence"] for r in hold],
        [r["candidate"] == r["gold"] for r in hold],
        [cal.apply(c) for c in oos],
    )
    params = load_params()
    rules = threshold_rules(val, at, Floors.from_params(params.gate, params.serve))
    return {"model": model, "threshold_rules": rules, **measure(cal, suites, oos, windows)}


def validation_of(cal: Calibration, data: Path, candidate: Path) -> tuple[list, list, list]:
    """The checked-out candidate's calibrated confidences and correctness on validation and
    out-of-scope validation, answered by the scorer (the evaluate stage's engine)."""
    from tunegate.core.prompt import PromptTemplate
    from tunegate.evaluation.models import base_ref, candidate_ref
    from tunegate.evaluation.predictors import HFEngine

    rows = {name: read_jsonl(data / f"{name}.jsonl") for name in ("val", "val_oos")}
    cand = candidate_ref(candidate, base_ref(Path("models/base")))
    engine, template = HFEngine("scorer", 32), PromptTemplate.load(candidate)
    preds = {name: engine.classify(cand, template, r) for name, r in rows.items() if r}
    right = [p.label == r["label"] for p, r in zip(preds["val"], rows["val"], strict=True)]
    return (
        [cal.apply(p.confidence) for p in preds["val"]],
        right,
        [cal.apply(p.confidence) for p in preds.get("val_oos", [])],
    )


def banking77_part(folder: Path, params_path: Path, windows: int) -> dict[str, Any]:
    from banking77_candidate import describe, train_candidate
    from drift_power import CACHE, banking77_split

    from tunegate.evaluation.models import base_ref, candidate_ref
    from tunegate.evaluation.predictors import HFEngine

    split = banking77_split(folder)
    candidate = train_candidate(split["training"], CACHE, params_path)
    from tunegate.core.prompt import PromptTemplate

    rng = random.Random(11)
    unseen = rng.sample(split["held_out_intents"], len(split["held_out_intents"]))
    half = len(unseen) // 2
    rows = {
        "val": split["reference"],
        "val_oos": unseen[:half][:300],
        "holdout": rng.sample(split["test_split"], 1000),
        "shifted": unseen[half:][:300],
    }
    cand = candidate_ref(candidate, base_ref(Path("models/base")))
    engine, template = HFEngine("scorer", 32), PromptTemplate.load(candidate)
    started = time.perf_counter()
    preds = {name: engine.classify(cand, template, r) for name, r in rows.items()}
    seconds = time.perf_counter() - started
    right = {
        name: [p.label == r["label"] for p, r in zip(preds[name], rows[name], strict=True)] for name in rows
    }
    raw = {name: [p.confidence for p in preds[name]] for name in rows}
    params = load_params(params_path)
    fitted = fit("temperature", raw["val"], right["val"], 30)

    def calibrated(name: str) -> list[float | None]:
        return [fitted.apply(c) for c in raw[name]]

    val = (calibrated("val"), right["val"], calibrated("val_oos"))
    floors = Floors.from_params(params.gate, params.serve)
    threshold = choose_threshold(*val, floors)
    cal = Calibration("temperature", fitted.temperature, (), threshold.value, "auto (bench)", fitted.fitted)
    at = (calibrated("holdout"), right["holdout"], calibrated("shifted"))
    suites = {"holdout": (raw["holdout"], right["holdout"])}
    # The held-out intents have no right answer for this model: every answer is wrong.
    suites["shifted"] = (raw["shifted"], [False] * len(rows["shifted"]))
    return {
        "candidate": describe(candidate),
        "rows": {k: len(v) for k, v in rows.items()},
        "scorer_seconds": round(seconds, 1),
        "threshold_search": threshold.to_dict(),
        "threshold_rules": threshold_rules(val, at, floors),
        **measure(cal, suites, raw["shifted"], windows),
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | suite | accuracy | ECE raw (95% CI) | ECE calibrated (95% CI) | at threshold: coverage, "
        "selective acc., OOS recall | estimate error, 100 / 300 windows (mean, p95) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, part in results["datasets"].items():
        for suite, s in part["suites"].items():
            raw, cal, at = s["raw"], s["calibrated"], s["at_threshold"]
            selective = at["selective_accuracy"] if at["selective_accuracy"] is not None else float("nan")
            est = "; ".join(
                f"{k}: {v['mean_abs_error']:.3f}, {v['p95_abs_error']:.3f}" for k, v in s["estimate"].items()
            )
            lines.append(
                f"| {dataset} | {suite} | {s['accuracy']:.3f} | {raw['ece']:.3f} [{raw['ci95'][0]:.3f}, "
                f"{raw['ci95'][1]:.3f}] | {cal['ece']:.3f} [{cal['ci95'][0]:.3f}, {cal['ci95'][1]:.3f}] | "
                f"{at['threshold']:.2f}: {at['coverage']:.2f}, {selective:.3f}, "
                f"{at['oos_recall'] if at['oos_recall'] is not None else '-'} | {est or '-'} |"
            )
    return "\n".join(lines) + "\n"


def rules_table(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | rule | threshold | met on validation | bound by (met) or missed (not met) | "
        "hold-out coverage | selective accuracy | out-of-scope recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset, part in results["datasets"].items():
        for rule, r in part.get("threshold_rules", {}).items():
            h = r["holdout"]
            sel = "-" if h["selective_accuracy"] is None else f"{h['selective_accuracy']:.3f}"
            rec = "-" if h["oos_recall"] is None else f"{h['oos_recall']:.3f}"
            met = "yes" if r["met_on_validation"] else "no"
            lines.append(
                f"| {dataset} | {rule} | {r['threshold']:.3f} | {met} | {', '.join(r['bound_by']) or '-'} | "
                f"{h['coverage']:.3f} | {sel} | {rec} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--banking77", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--windows", type=int, default=200)
    args = parser.parse_args()
    started = time.perf_counter()
    datasets = {"sample": sample_part(args.windows)}
    if (args.banking77 / "train.csv").exists():
        datasets["banking77"] = banking77_part(args.banking77, args.params, args.windows)
    else:
        print(f"Banking77 not found at {args.banking77}: skipped", flush=True)
    results = {
        "benchmark": "calibration",
        "datasets": datasets,
        "seconds": round(time.perf_counter() - started, 1),
        "environment": environment(),
    }
    out = Path("bench/results")
    write_json(out / "calibration.json", results)
    text = table(results) + "\n" + rules_table(results)
    (out / "calibration.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
