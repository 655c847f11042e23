"""The evaluate stage: predictions, metrics and plots for the candidate and its baseline.

1. Resolve the models: the candidate (its files verified against its card), and the
   baseline: the production model named by ``registry/production.json`` when there is
   one, otherwise the base model zero-shot (a first release). A baseline on another
   base model cannot be compared and is an error.
2. Build the suites (tunegate/evaluation/suites.py) and predict them with the configured engine
   (``eval.engine``): the candidate on every suite, the baseline on hold-out and shifted.
3. The forgetting probe: candidate and base model answer general questions.
4. Parity: on ``eval.parity_rows`` hold-out rows, the served engine (vLLM, adapter per
   request) and the evaluation path are each compared with the transformers + PEFT
   reference, and the largest confidence difference between served and evaluated answers
   is recorded. The monitoring reference rows (``eval.reference_rows`` validation and
   hold-out rows) were answered in step 2 already: with the evaluation's answers and
   confidences (which parity ties to the served engine's) they become
   ``monitor_reference.json``, packaged with the release; no second pass answers them.
5. Write ``eval/results/`` (predictions per suite, evidence.json for the gate,
   per_class.json with per-intent precision/recall/F1),
   ``eval/metrics.json`` (DVC metrics), ``eval/plots/`` (DVC plots).

Usage (from dvc.yaml): ``python -m tunegate.evaluation.evaluate --params params.yaml``
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunegate.core import calibration, monitor_reference
from tunegate.core.artifacts import (
    atomic_dir,
    jsonl_text,
    read_json,
    read_jsonl,
    record_run,
    sha256_file,
    write_json,
)
from tunegate.core.calibration import Calibration
from tunegate.core.errors import DataError
from tunegate.core.params import Params, load_params
from tunegate.core.prompt import PromptTemplate
from tunegate.core.stage import configure_logging
from tunegate.core.task import for_kind
from tunegate.core.words import vocabulary
from tunegate.evaluation import classical
from tunegate.evaluation.calibration_step import baseline_calibration, calibrate, calibration_rows, item_marks
from tunegate.evaluation.evidence import (
    PROMPTING,
    Evaluated,
    Evidence,
    ParityResult,
    SuiteInfo,
    write_evidence,
)
from tunegate.evaluation.hf_predict import Prediction
from tunegate.evaluation.models import Models, identities, resolve_models
from tunegate.evaluation.predictors import HFEngine, ModelRef, vllm_available, vllm_classify
from tunegate.evaluation.probe import forgetting_probe
from tunegate.evaluation.results import Scored, SuiteAnswers, plot_rows, score, write_csv
from tunegate.evaluation.suites import Suite, build_suites, unknown_labels

log = logging.getLogger(__name__)


def predict_all(
    engine_kind: str,
    batch_size: int,
    jobs: list[tuple[ModelRef, PromptTemplate, Suite]],
    kv_cache_gib: int,
    confident: frozenset[str] | None = None,
) -> dict[tuple[str, str], list[Prediction]]:
    """Predictions per (model key, suite name). The scorer computes confidences (which cost
    decoding to the end token) only for the models in `confident` (None: every model)."""
    if engine_kind == "vllm":  # one engine per prompt; few-shot examples travel with their job
        by_template: dict[PromptTemplate, list] = {}
        shots = {}
        for ref, tpl, suite in jobs:
            by_template.setdefault(replace(tpl, examples=()), []).append(
                (ref, f"{ref.key}|{suite.name}", suite.rows)
            )
            shots[f"{ref.key}|{suite.name}"] = tpl.examples
        out = {}
        for tpl, group in by_template.items():
            for name, preds in vllm_classify(group, tpl, kv_cache_gib, examples=shots).items():
                key, suite_name = name.split("|", 1)
                out[(key, suite_name)] = preds
        return out
    engine = HFEngine(engine_kind, batch_size)
    # The same weights (tree hash, base included), prompt and rows give the same greedy
    # answers: a production model identical to the candidate (re-evaluated after its
    # promotion) is asked once, with confidences if either needs them.
    same: dict[tuple, list[tuple[str, str]]] = {}
    asked: dict[tuple, tuple[ModelRef, PromptTemplate, Suite]] = {}
    for ref, tpl, suite in jobs:
        key = (ref.tree_sha256, ref.base_dir.resolve(), ref.adapter_dir is None, tpl, suite.name)
        same.setdefault(key, []).append((ref.key, suite.name))
        asked.setdefault(key, (ref, tpl, suite))
    out = {}
    started, total = time.perf_counter(), sum(len(s.rows) for _, _, s in asked.values())
    done = 0
    for i, (key, (ref, tpl, suite)) in enumerate(asked.items(), 1):
        needs = confident is None or any(k in confident for k, _ in same[key])
        log.info("answering %s (%d rows) with %s: %d/%d", suite.name, len(suite.rows), ref.key, i, len(asked))
        preds = engine.classify(ref, tpl, suite.rows, needs)
        out |= {who: preds for who in same[key]}
        done += len(suite.rows)
        spent = time.perf_counter() - started
        log.info(
            "  %d of %d rows in %.0f s; about %.0f s to go", done, total, spent, spent / done * (total - done)
        )
    return out


def agreement(a: list[Prediction], b: list[Prediction]) -> tuple[float, list[dict[str, Any]]]:
    diff = [
        {"id": x.id, "one": x.label, "reference": y.label}
        for x, y in zip(a, b, strict=True)
        if x.label != y.label
    ]
    return 1 - len(diff) / max(len(a), 1), diff


def few_shot_rows(train: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """`k` seeded training rows for the prompting reference, as many labels as `k` allows
    (one row per label first, labels in a seeded order)."""
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in train:
        by_label.setdefault(r["label"], []).append(r)
    labels = sorted(by_label)
    rng.shuffle(labels)
    picked = [rng.choice(by_label[lab]) for lab in labels[:k]]
    rest = [r for r in train if r not in picked]
    return picked + rng.sample(rest, min(k - len(picked), len(rest)))


def prompting_ref(m: Models) -> ModelRef:
    """The base model as the prompting reference (its own key: it may also be the baseline)."""
    return replace(m.base, role=PROMPTING)


def predict_suites(
    m: Models,
    suites: list[Suite],
    extra: dict[str, list[dict]],
    base_cal: Calibration | None,
    params: Params,
    shots: list[dict[str, Any]],
) -> tuple[dict[tuple[str, str], list[Prediction]], dict[str, Any]]:
    """Every prediction the evaluation needs, in one engine pass: the suites (the baseline,
    and the base model with the few-shot `shots` in its prompt, where compared), validation
    and out-of-scope rows for calibration."""
    cand, baseline, options = m.candidate, m.baseline, params.eval
    jobs = [(cand, m.template, s) for s in suites]
    jobs += [(baseline, m.baseline_template, s) for s in suites if s.versus_baseline]
    if shots:
        asked = replace(m.template, examples=tuple((r["text"], r["label"]) for r in shots))
        jobs += [(prompting_ref(m), asked, s) for s in suites if s.versus_baseline]
    jobs += [(cand, m.template, Suite(name, "holdout", rows)) for name, rows in extra.items() if rows]
    if base_cal is not None and extra["holdout_oos"]:  # production's abstention on the same items
        jobs.append((baseline, m.baseline_template, Suite("holdout_oos", "holdout", extra["holdout_oos"])))
    t0 = time.perf_counter()
    # The baseline's confidences matter only when it has a calibration to compare abstention with.
    confident = frozenset({cand.key} | ({baseline.key} if base_cal is not None else set()))
    preds = predict_all(options.engine, options.batch_size, jobs, options.vllm_kv_cache_gib, confident)
    seconds = time.perf_counter() - t0
    rows = sum(len(s.rows) for _, _, s in jobs)
    log.info("%d predictions with %s in %.1fs", rows, options.engine, seconds)
    return preds, {"rows": rows, "seconds": round(seconds, 2)}


def measure_parity(
    m: Models, parity_rows: list[dict], served: dict[str, Any] | None, ours: list[Prediction], batch_size: int
) -> ParityResult:
    """The served engine's and this evaluation's answers against the transformers reference."""
    if not parity_rows:
        return ParityResult(missing="parity was not measured (eval.parity_rows is 0)")
    if served is None:
        return ParityResult(missing="parity was not measured: vllm is not installed")
    reference = HFEngine("reference", batch_size).classify(m.candidate, m.template, parity_rows)
    served_rate, served_diff = agreement(served["parity"], reference)
    eval_rate, eval_diff = agreement(ours[: len(parity_rows)], reference)
    gaps = [
        abs(a.confidence - b.confidence)
        for a, b in zip(served["parity"], ours[: len(parity_rows)], strict=True)
        if a.id == b.id and a.label == b.label and a.confidence is not None and b.confidence is not None
    ]
    return ParityResult(
        confidence_gap=float(f"{max(gaps):.3g}") if gaps else None,
        rows=len(parity_rows),
        rates={"served_vs_reference": served_rate, "evaluation_vs_reference": eval_rate},
        disagreements={"served_vs_reference": served_diff, "evaluation_vs_reference": eval_diff},
        served_engine="vllm, base model + LoRA adapter per request, structured outputs (choice)",
    )


def evaluate(args: argparse.Namespace, params: Params) -> Evaluated:
    """The stage: resolve the models, predict, probe, measure parity, calibrate, score, write."""
    options, seed = params.eval, params.base.seed
    m = resolve_models(args, params)
    suites = build_suites(args.data, params)
    unknown = unknown_labels(suites, m.template.labels)
    if unknown:
        raise DataError(f"labels the candidate was not trained on: {unknown}")
    extra = calibration_rows(args.data)  # predicted for calibration and abstention, not suites
    base_cal = baseline_calibration(m.pointer) if m.production else None
    train = read_jsonl(args.data / "train.jsonl")
    shots = few_shot_rows(train, options.few_shot, seed) if options.few_shot else []
    preds, predict_info = predict_suites(m, suites, extra, base_cal, params, shots)
    log.info("forgetting probe: the candidate and the base model on general questions")
    probe = forgetting_probe(args.data, params, m)
    log.info("parity: the served engine's answers on %d hold-out rows", options.parity_rows)
    parity_rows = suites[0].rows[: options.parity_rows]
    served = served_answers(m.candidate, m.template, parity_rows, options.vllm_kv_cache_gib)
    parity = measure_parity(m, parity_rows, served, preds[(m.candidate.key, "holdout")], options.batch_size)
    # The monitoring reference: rows this evaluation answered already (validation, hold-out).
    ref_rows = reference_rows(args.data, options.reference_rows, seed)
    answered = {p.id: p for split in ("val", "holdout") for p in preds.get((m.candidate.key, split), [])}
    reference = [answered[r["id"]] for r in ref_rows]

    t0 = time.perf_counter()
    reference_model = classical.fit(train, seed)
    timings = {  # eval/run.json: they change on every run, so they stay out of the evidence
        "stage": "evaluate",
        "predict_seconds": predict_info.pop("seconds"),
        "classical_seconds": round(time.perf_counter() - t0, 2),
        "served_seconds": None if served is None else served["seconds"],
    }
    record_run(args.out / "run.json", timings)
    classical_info = {"model": classical.MODEL}
    cand = m.candidate.key
    cal, cal_block = calibrate(
        params, extra["val"], preds.get((cand, "val"), []), preds.get((cand, "val_oos"), [])
    )
    cal_block["baseline"] = None if base_cal is None else base_cal.to_dict()
    answers, oos_records = answer_sheets(m, suites, extra, preds, (cal, base_cal), reference_model, params)
    scored = score(answers, m.template.labels, options.length_buckets, params.gate.bootstrap_resamples, seed)
    evidence = Evidence(
        *identities(m, args.base), labels=m.template.labels, engine=options.engine,
        suites={s.name: SuiteInfo(s.kind, len(s.rows), s.versus_baseline) for s in suites},
        probe=probe, parity=parity, data=read_json(args.data / "manifest.json")["files"],
        production_pointer=m.pointer, predict=predict_info, classical=classical_info, calibration=cal_block,
        prompting={"few_shot": len(shots), "examples": [r["id"] for r in shots]} if shots else {},
        monitor_reference={
            "rows": len(ref_rows), "file": monitor_reference.FILE, "answered_by": options.engine
        } if ref_rows
        else {"missing": "no monitoring reference: eval.reference_rows is 0"},
    )  # fmt: skip
    metrics = scored.metrics
    if probe.candidate is not None and probe.base is not None:
        drop = round(probe.base["accuracy"] - probe.candidate["accuracy"], 4)
        metrics["probe"] = {"candidate": probe.candidate, "base": probe.base, "accuracy_drop": drop}
    if parity.rates:
        metrics["parity"] = {k: round(v, 4) for k, v in parity.rates.items()}
    oos = (oos_records, params.data.oos_label)
    write_results(args.out / "results", evidence, scored, cal, oos, ref_rows, reference, args.data)
    with atomic_dir(args.out / "plots") as tmp:
        for name, rows in plot_rows(scored, suites).items():
            write_csv(tmp / f"{name}.csv", rows)
    write_json(args.out / "metrics.json", metrics)
    hold = metrics["holdout"]
    return Evaluated(metrics, hold["candidate"]["accuracy"], hold["baseline"]["accuracy"], cal.abstain_below)


def answer_sheets(
    m: Models,
    suites: list[Suite],
    extra: dict[str, list[dict[str, Any]]],
    preds: dict[tuple[str, str], list[Prediction]],
    calibrations: tuple[Calibration, Calibration | None],
    reference_model: Any,
    params: Params,
) -> tuple[list[SuiteAnswers], list[dict[str, Any]]]:
    """Every suite's answers (candidate, baseline where compared, classical reference) with the
    abstention marks, and the out-of-scope hold-out's records."""
    cand, baseline, prompting = m.candidate.key, m.baseline.key, prompting_ref(m).key
    cal, base_cal = calibrations
    answers = [
        SuiteAnswers(
            s,
            [x.label for x in preds[(cand, s.name)]],
            [x.label for x in preds[(baseline, s.name)]] if s.versus_baseline else None,
            classical.predict(reference_model, s.rows),
            item_marks(cal, preds[(cand, s.name)], base_cal, preds.get((baseline, s.name))),
            [x.label for x in preds[(prompting, s.name)]] if (prompting, s.name) in preds else None,
        )
        for s in suites
    ]
    oos_preds = preds.get((cand, "holdout_oos"), [])
    marks = item_marks(cal, oos_preds, base_cal, preds.get((baseline, "holdout_oos")))
    gold = params.data.oos_label
    oos_records = [
        {"id": r["id"], "text": r["text"], "gold": gold, "candidate": x.label} | mark
        for r, x, mark in zip(extra["holdout_oos"], oos_preds, marks, strict=True)
    ]
    return answers, oos_records


def write_results(
    folder: Path,
    evidence: Evidence,
    scored: Scored,
    cal: Calibration,
    oos: tuple[list[dict[str, Any]], str | None],
    ref_rows: list[dict[str, Any]],
    reference: list[Prediction],
    data: Path,
) -> None:
    """``eval/results/``, whole or not at all: suite records, their hashes in evidence.json,
    the calibration, the out-of-scope records and the monitoring reference."""
    oos_records, oos_label = oos
    with atomic_dir(folder) as tmp:
        for name, recs in scored.records.items():
            (tmp / f"{name}.jsonl").write_text(jsonl_text(recs), encoding="utf-8")
        suites = {
            n: replace(info, sha256=sha256_file(tmp / f"{n}.jsonl")) for n, info in evidence.suites.items()
        }
        calibration.write(tmp / calibration.FILE, cal)
        if oos_records:
            (tmp / "holdout_oos.jsonl").write_text(jsonl_text(oos_records), encoding="utf-8")
            oos = {"rows": len(oos_records), "sha256": sha256_file(tmp / "holdout_oos.jsonl")}
        else:
            why = "data.oos_label is not declared" if oos_label is None else f"no rows labelled {oos_label!r}"
            oos = {"missing": "no out-of-scope hold-out rows: " + why}
        ref_file, model_id = tmp / monitor_reference.FILE, evidence.candidate.model_id
        if "missing" in evidence.monitor_reference:
            monitor_reference.write_missing(ref_file, evidence.monitor_reference["missing"], model_id)
        else:
            vocab = vocabulary(r["text"] for r in read_jsonl(data / "train.jsonl"))
            monitor_reference.write(ref_file, ref_rows, reference, vocab, model_id)
        write_evidence(tmp / "evidence.json", replace(evidence, suites=suites, out_of_scope=oos))
        write_json(tmp / "per_class.json", scored.classes)


def reference_rows(data: Path, limit: int, seed: int) -> list[dict[str, Any]]:
    """Validation then hold-out rows (a seeded sample of `limit` when there are more)."""
    import random

    rows = [r | {"split": split} for split in ("val", "holdout") for r in read_jsonl(data / f"{split}.jsonl")]
    if len(rows) > limit:
        keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
        rows = [rows[i] for i in keep]
    return rows if limit else []


def served_answers(
    cand: ModelRef, template: PromptTemplate, parity: list[dict], kv_gib: int
) -> dict[str, Any] | None:
    """The served engine's answers (with confidences) on the parity rows; None without vLLM."""
    if not parity or not vllm_available():
        return None
    jobs = [(cand, "parity", parity)]
    t = time.perf_counter()
    out: dict[str, Any] = vllm_classify(jobs, template, kv_gib)
    out["seconds"] = round(time.perf_counter() - t, 2)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="evaluate stage: predictions, metrics and plots")
    parser.add_argument("--params", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--production", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging()
    from tunegate.evaluation.generation import evaluate as evaluate_generation

    params = load_params(args.params)
    kinds = {"classification": evaluate, "generation": evaluate_generation}
    done = for_kind(kinds, params.base.task, "evaluate")(args, params)
    threshold = "" if math.isnan(done.threshold) else f", abstention threshold {done.threshold:.4f}"
    log.info(
        "hold-out %s %.3f, baseline %.3f%s; wrote %s",
        done.metric, done.holdout_accuracy, done.baseline_accuracy, threshold, args.out,
    )  # fmt: skip


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
