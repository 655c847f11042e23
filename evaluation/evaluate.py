"""The evaluate stage: predictions, metrics and plots for the candidate and its baseline.

1. Resolve the models: the candidate (its files verified against its card), and the
   baseline: the production model named by ``registry/production.json`` when there is
   one, otherwise the base model zero-shot (a first release). A baseline on another
   base model cannot be compared and is an error.
2. Build the suites (evaluation/suites.py) and predict them with the configured engine
   (``eval.engine``): the candidate on every suite, the baseline on hold-out and shifted.
3. The forgetting probe: candidate and base model answer general questions.
4. Parity: on ``eval.parity_rows`` hold-out rows, the served engine (vLLM, adapter per
   request) and the evaluation path are each compared with the transformers + PEFT
   reference. In the same engine start, the served engine answers the monitoring
   reference rows (``eval.reference_rows`` validation and hold-out rows): with their
   confidences they become ``monitor_reference.json``, packaged with the release.
5. Write ``eval/results/`` (predictions per suite, evidence.json for the gate,
   per_class.json with per-intent precision/recall/F1),
   ``eval/metrics.json`` (DVC metrics), ``eval/plots/`` (DVC plots).

Usage (from dvc.yaml): ``python -m evaluation.evaluate --params params.yaml``
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import classical
from evaluation.abstention import (
    baseline_calibration,
    calibrate,
    calibration_rows,
    item_marks,
    reliability_rows,
)
from evaluation.calibration import record_scores
from evaluation.engines import HFEngine, ModelRef, vllm_available, vllm_classify
from evaluation.evidence import slices
from evaluation.hf_predict import Prediction
from evaluation.metrics import accuracy, encode, macro_f1, per_class, token_f1, with_ci
from evaluation.suites import Suite, build_suites, length_slice, unknown_labels
from tunegate import calibration, monitor_reference
from tunegate.artifacts import (
    atomic_dir,
    jsonl_text,
    read_json,
    read_jsonl,
    sha256_file,
    verified_card,
    write_json,
)
from tunegate.errors import ArtifactError, DataError
from tunegate.params import Params, load_params
from tunegate.prompt import PromptTemplate
from tunegate.stage import configure_logging
from tunegate.words import vocabulary

log = logging.getLogger(__name__)


def adapter_ref(folder: Path, role: str, base: ModelRef, mismatch: str) -> ModelRef:
    """A fine-tuned model on `base`; `mismatch` explains the error when its base differs."""
    card = verified_card(folder)
    if card["base_model"]["tree_sha256"] != base.tree_sha256:
        raise ArtifactError(mismatch.format(model=card["model_id"], its_base=card["base_model"]["model_id"]))
    return ModelRef(role, base.base_dir, folder, card["model_id"], card["tree_sha256"])


def base_ref(folder: Path) -> ModelRef:
    card = verified_card(folder)
    return ModelRef("base", folder, None, card["model_id"], card["tree_sha256"])


def candidate_ref(folder: Path, base: ModelRef) -> ModelRef:
    mismatch = f"{folder} was trained on base model {{its_base}}, but models/base is {base.model_id}"
    mismatch += "; run `dvc repro`"
    return adapter_ref(folder, "candidate", base, mismatch)


def production_ref(pointer: Path | None, base: ModelRef) -> tuple[ModelRef | None, dict[str, Any]]:
    """The production model named by the registry pointer, or None for a first release."""
    if pointer is None or not pointer.exists():
        return None, {}
    info = read_json(pointer)
    if not info.get("version"):
        return None, info
    mismatch = (
        f"production {info['version']} ({{model}}) is built on base model {{its_base}}, the candidate on "
        f"{base.model_id}: their answers are not comparable; retrain on the same base or release with "
        "`--force --reason`"
    )
    if info.get("bento_tag"):  # a release in the BentoML model store, verified against the registry
        from serving.package import resolve

        folder = resolve(info["bento_tag"], info["tree_sha256"])
    else:  # a model folder; a relative one is relative to the project root (where dvc runs stages)
        folder = Path(info["model_dir"])
    return adapter_ref(folder, "production", base, mismatch), info


def predict_all(
    engine_kind: str,
    batch_size: int,
    jobs: list[tuple[ModelRef, PromptTemplate, Suite]],
    kv_cache_gib: int,
    confident: frozenset[str] | None = None,
) -> dict[tuple[str, str], list[Prediction]]:
    """Predictions per (model key, suite name). The scorer computes confidences (which cost
    decoding to the end token) only for the models in `confident` (None: every model)."""
    if engine_kind == "vllm":
        by_template: dict[PromptTemplate, list] = {}
        for ref, tpl, suite in jobs:
            by_template.setdefault(tpl, []).append((ref, f"{ref.key}|{suite.name}", suite.rows))
        out = {}
        for tpl, group in by_template.items():
            for name, preds in vllm_classify(group, tpl, kv_cache_gib).items():
                key, suite_name = name.split("|", 1)
                out[(key, suite_name)] = preds
        return out
    engine = HFEngine(engine_kind, batch_size)
    return {
        (ref.key, suite.name): engine.classify(
            ref, tpl, suite.rows, confident is None or ref.key in confident
        )
        for ref, tpl, suite in jobs
    }


def probe_scores(answers: list[str], probe: list[dict[str, Any]]) -> dict[str, float]:
    """Contains-an-answer accuracy (the gate's metric), exact match and token F1."""
    hit = [any(a in ans.lower() for a in q["answers"]) for ans, q in zip(answers, probe, strict=True)]
    exact = [ans.strip().lower().rstrip(".") in q["answers"] for ans, q in zip(answers, probe, strict=True)]
    f1 = [max(token_f1(ans, a) for a in q["answers"]) for ans, q in zip(answers, probe, strict=True)]
    return {
        "accuracy": float(np.mean(hit)),
        "exact_match": float(np.mean(exact)),
        "token_f1": float(np.mean(f1)),
    }


def agreement(a: list[Prediction], b: list[Prediction]) -> tuple[float, list[dict[str, Any]]]:
    diff = [
        {"id": x.id, "one": x.label, "reference": y.label}
        for x, y in zip(a, b, strict=True)
        if x.label != y.label
    ]
    return 1 - len(diff) / max(len(a), 1), diff


def suite_metrics(
    gold: list[str], pred: list[str | None], labels: tuple[str, ...], resamples: int, seed: int
):
    k = len(labels)
    g, p = encode(gold, pred, labels)
    acc = with_ci(accuracy, g, p, resamples=resamples, seed=seed)
    f1 = with_ci(lambda a, b: macro_f1(a, b, k), g, p, resamples=resamples, seed=seed)
    invalid = float(np.mean([x is None for x in pred])) if pred else math.nan
    flat = {
        "accuracy": round(acc.value, 4),
        "accuracy_lo": round(acc.lo, 4),
        "accuracy_hi": round(acc.hi, 4),
        "macro_f1": round(f1.value, 4),
        "macro_f1_lo": round(f1.lo, 4),
        "macro_f1_hi": round(f1.hi, 4),
        "invalid_rate": round(invalid, 4),
        "rows": len(gold),
    }
    return flat, per_class(g, p, labels)


def run(args: argparse.Namespace, params: Params) -> dict[str, Any]:
    ep = params.eval
    base = base_ref(args.base)
    cand = candidate_ref(args.candidate, base)
    production, pointer = production_ref(args.production, base)
    baseline = production or base
    template = PromptTemplate.load(args.candidate)
    labels = template.labels
    prepared = read_json(args.data / "labels.json")
    if list(labels) != list(prepared):
        raise DataError(
            f"{args.candidate} was trained on labels {list(labels)}, "
            f"data/prepared has {prepared}; run `dvc repro`"
        )
    suites = build_suites(args.data, params)
    unknown = unknown_labels(suites, labels)
    if unknown:
        raise DataError(f"labels the candidate was not trained on: {unknown}")
    base_template = PromptTemplate.load(production.adapter_dir) if production else template
    oos_label = params.data.oos_label
    if oos_label is not None and oos_label in labels:
        raise DataError(
            f"data.oos_label {oos_label!r} is one of the candidate's trained labels: it was trained "
            "before the label was declared out of scope; run `dvc repro` to prepare and train again"
        )
    extra = calibration_rows(args.data)  # predicted for calibration and abstention, not suites

    jobs = [(cand, template, s) for s in suites] + [
        (baseline, base_template, s) for s in suites if s.versus_baseline
    ]
    jobs += [(cand, template, Suite(name, "holdout", rows)) for name, rows in extra.items() if rows]
    base_cal = baseline_calibration(pointer) if production else None
    if base_cal is not None and extra["holdout_oos"]:  # production's abstention on the same items
        jobs.append((baseline, base_template, Suite("holdout_oos", "holdout", extra["holdout_oos"])))
    t0 = time.perf_counter()
    # The baseline's confidences matter only when it has a calibration to compare abstention with.
    confident = frozenset({cand.key} | ({baseline.key} if base_cal is not None else set()))
    preds = predict_all(ep.engine, ep.batch_size, jobs, ep.vllm_kv_cache_gib, confident)
    predict_seconds = time.perf_counter() - t0
    n_predicted = sum(len(s.rows) for _, _, s in jobs)
    log.info("%d predictions with %s in %.1fs", n_predicted, ep.engine, predict_seconds)

    evidence: dict[str, Any] = {
        "candidate": cand.identity(),
        "baseline": baseline.identity() | {"kind": "production" if production else "base"},
        "production_pointer": pointer,
        "base": base.identity() | {"license": read_json(args.base / "card.json").get("license", "unknown")},
        "data": read_json(args.data / "manifest.json")["files"],
        "labels": list(labels),
        "engine": ep.engine,
        "predict": {"rows": n_predicted, "seconds": round(predict_seconds, 2)},
        "suites": {},
    }

    # Forgetting: general questions, candidate vs base model, free-form answers.
    probe_path = args.data / "probe.jsonl"
    probe = read_jsonl(probe_path) if params.data.probe_source and probe_path.exists() else []
    if probe:
        hf = HFEngine("scorer", ep.batch_size)
        questions = [q["question"] for q in probe]
        answers = {ref.role: hf.answer(ref, questions, ep.probe_max_tokens) for ref in (cand, base)}
        evidence["probe"] = {
            "rows": len(probe),
            "candidate": probe_scores(answers["candidate"], probe),
            "base": probe_scores(answers["base"], probe),
            "examples": [
                {"question": q["question"], "expected": q["answers"], "candidate": c, "base": b}
                for q, c, b in list(zip(probe, answers["candidate"], answers["base"], strict=True))[:20]
            ],
        }
    else:
        evidence["probe"] = {"rows": 0, "missing": "no probe configured (data.probe_source)"}

    # Parity and the monitoring reference: both answered by the served engine.
    holdout = suites[0]
    parity_rows = holdout.rows[: ep.parity_rows]
    ref_rows = reference_rows(args.data, ep.reference_rows, params.base.seed)
    served = served_answers(cand, template, parity_rows, ref_rows, ep.vllm_kv_cache_gib)
    if not parity_rows:
        evidence["parity"] = {"missing": "parity was not measured (eval.parity_rows is 0)"}
    elif served is None:
        evidence["parity"] = {"missing": "parity was not measured: vllm is not installed"}
    else:
        reference = HFEngine("reference", ep.batch_size).classify(cand, template, parity_rows)
        ours = preds[(cand.key, "holdout")][: len(parity_rows)]
        served_rate, served_diff = agreement(served["parity"], reference)
        eval_rate, eval_diff = agreement(ours, reference)
        evidence["parity"] = {
            "rows": len(parity_rows),
            "rates": {"served_vs_reference": served_rate, "evaluation_vs_reference": eval_rate},
            "disagreements": {"served_vs_reference": served_diff, "evaluation_vs_reference": eval_diff},
            "served_engine": "vllm, base model + LoRA adapter per request, structured outputs (choice)",
            "served_seconds": served["seconds"],
        }
    evidence["monitor_reference"] = (
        {"rows": len(ref_rows), "file": monitor_reference.FILE}
        if served is not None and ref_rows
        else {"missing": "no monitoring reference: " + ("no vllm" if ref_rows else "reference_rows is 0")}
    )

    t0 = time.perf_counter()
    reference_model = classical.fit(read_jsonl(args.data / "train.jsonl"), params.base.seed)
    evidence["classical"] = {"model": classical.MODEL, "seconds": round(time.perf_counter() - t0, 2)}
    cal, evidence["calibration"] = calibrate(
        params, extra["val"], preds.get((cand.key, "val"), []), preds.get((cand.key, "val_oos"), [])
    )
    evidence["calibration"]["baseline"] = None if base_cal is None else base_cal.to_dict()
    oos_preds = preds.get((cand.key, "holdout_oos"), [])
    oos_records = [
        {"id": r["id"], "text": r["text"], "gold": oos_label, "candidate": x.label} | m
        for r, x, m in zip(
            extra["holdout_oos"],
            oos_preds,
            item_marks(cal, oos_preds, base_cal, preds.get((baseline.key, "holdout_oos"))),
            strict=True,
        )
    ]

    # Metrics, predictions and plots.
    resamples, seed = params.gate.bootstrap_resamples, params.base.seed
    metrics: dict[str, Any] = {}
    classes: dict[str, Any] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    class_deltas: dict[str, list[dict[str, Any]]] = {}
    for s in suites:
        gold = [r["label"] for r in s.rows]
        cp = [x.label for x in preds[(cand.key, s.name)]]
        bp = [x.label for x in preds[(baseline.key, s.name)]] if s.versus_baseline else [None] * len(gold)
        cm, cpc = suite_metrics(gold, cp, labels, resamples, seed)
        entry: dict[str, Any] = {"candidate": cm}
        classes[s.name] = {"candidate": {lab: vars(sc) for lab, sc in cpc.items()}}
        if s.versus_baseline:
            bm, bpc = suite_metrics(gold, bp, labels, resamples, seed)
            entry["baseline"] = bm
            entry["accuracy_delta"] = round(cm["accuracy"] - bm["accuracy"], 4)
            classes[s.name]["baseline"] = {lab: vars(sc) for lab, sc in bpc.items()}
            class_deltas[s.name] = [
                {"class": lab, "recall_delta": round(cpc[lab].recall - bpc[lab].recall, 4)}
                for lab in labels
                if cpc[lab].support
            ]
        records[s.name] = [
            {
                "id": r["id"],
                "text": r["text"],
                "gold": r["label"],
                "candidate": c,
                "baseline": b,
                "classical": k,
                "slice": length_slice(r["text"], ep.length_buckets),
            }
            | m
            for r, c, b, k, m in zip(
                s.rows,
                cp,
                bp,
                classical.predict(reference_model, s.rows),
                item_marks(cal, preds[(cand.key, s.name)], base_cal, preds.get((baseline.key, s.name))),
                strict=True,
            )
        ]
        cm |= {k: round(v, 4) for k, v in record_scores(records[s.name]).items()}
        metrics[s.name] = entry
        evidence["suites"][s.name] = {
            "kind": s.kind,
            "rows": len(s.rows),
            "versus_baseline": s.versus_baseline,
        }

    metrics["slices"] = {}
    for name, idx in sorted(slices(records["holdout"]).items()):
        rows = [records["holdout"][i] for i in idx]
        m, _ = suite_metrics(
            [r["gold"] for r in rows], [r["candidate"] for r in rows], labels, resamples, seed
        )
        metrics["slices"][name] = {"accuracy": m["accuracy"], "rows": m["rows"]}
    if "candidate" in evidence["probe"]:
        pc, pb = evidence["probe"]["candidate"], evidence["probe"]["base"]
        metrics["probe"] = {
            "candidate": pc,
            "base": pb,
            "accuracy_drop": round(pb["accuracy"] - pc["accuracy"], 4),
        }
    if "rates" in evidence["parity"]:
        metrics["parity"] = {k: round(v, 4) for k, v in evidence["parity"]["rates"].items()}

    hold = records["holdout"]
    confusion = [{"actual": r["gold"], "predicted": r["candidate"] or "<invalid>"} for r in hold]
    suite_deltas = [
        {"suite": name, "accuracy_delta": m["accuracy_delta"], "versus": "baseline"}
        for name, m in metrics.items()
        if isinstance(m, dict) and "accuracy_delta" in m
    ] + [
        {
            "suite": s.name,
            "accuracy_delta": round(
                metrics[s.name]["candidate"]["accuracy"] - metrics["holdout"]["candidate"]["accuracy"], 4
            ),
            "versus": "hold-out",
        }
        for s in suites
        if s.kind == "perturbation"
    ]

    with atomic_dir(args.out / "results") as tmp:
        for name, recs in records.items():
            (tmp / f"{name}.jsonl").write_text(jsonl_text(recs), encoding="utf-8")
        evidence["suites"] = {
            name: info | {"sha256": sha256_file(tmp / f"{name}.jsonl")}
            for name, info in evidence["suites"].items()
        }
        calibration.write(tmp / calibration.FILE, cal)
        if oos_records:
            (tmp / "holdout_oos.jsonl").write_text(jsonl_text(oos_records), encoding="utf-8")
            evidence["out_of_scope"] = {
                "rows": len(oos_records),
                "sha256": sha256_file(tmp / "holdout_oos.jsonl"),
            }
        else:
            evidence["out_of_scope"] = {
                "missing": "no out-of-scope hold-out rows: "
                + (
                    "data.oos_label is not declared"
                    if oos_label is None
                    else f"no rows labelled {oos_label!r}"
                )
            }
        ref_file, model_id = tmp / monitor_reference.FILE, cand.identity()["model_id"]
        if "missing" in evidence["monitor_reference"]:
            monitor_reference.write_missing(ref_file, evidence["monitor_reference"]["missing"], model_id)
        else:
            vocab = vocabulary(r["text"] for r in read_jsonl(args.data / "train.jsonl"))
            monitor_reference.write(ref_file, ref_rows, served["reference"], vocab, model_id)
        write_json(tmp / "evidence.json", evidence)
        write_json(tmp / "per_class.json", classes)
    with atomic_dir(args.out / "plots") as tmp:
        write_csv(tmp / "confusion.csv", confusion)
        write_csv(tmp / "suite_deltas.csv", suite_deltas)
        for name, rows in class_deltas.items():
            write_csv(tmp / f"class_deltas_{name}.csv", rows)
        for name in ("holdout", "shifted"):
            if name in records:
                write_csv(tmp / f"reliability_{name}.csv", reliability_rows(records[name]))
        write_csv(tmp / "reliability_holdout_raw.csv", reliability_rows(records["holdout"], "raw_confidence"))
    write_json(args.out / "metrics.json", metrics)
    return metrics


def reference_rows(data: Path, limit: int, seed: int) -> list[dict[str, Any]]:
    """Validation then hold-out rows (a seeded sample of `limit` when there are more)."""
    import random

    rows = [r | {"split": split} for split in ("val", "holdout") for r in read_jsonl(data / f"{split}.jsonl")]
    if len(rows) > limit:
        keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
        rows = [rows[i] for i in keep]
    return rows if limit else []


def served_answers(
    cand: ModelRef, template: PromptTemplate, parity: list[dict], reference: list[dict], kv_gib: int
) -> dict[str, Any] | None:
    """The served engine's answers (with confidences) on the parity and reference rows, in
    one engine start; None without vLLM."""
    if not (parity or reference) or not vllm_available():
        return None
    jobs = [(cand, name, rows) for name, rows in (("parity", parity), ("reference", reference)) if rows]
    t = time.perf_counter()
    out: dict[str, Any] = vllm_classify(jobs, template, kv_gib)
    out["seconds"] = round(time.perf_counter() - t, 2)
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["empty"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


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
    metrics = run(args, load_params(args.params))
    hold = metrics["holdout"]
    log.info(
        "hold-out accuracy %.3f, baseline %.3f; wrote %s",
        hold["candidate"]["accuracy"],
        hold["baseline"]["accuracy"],
        args.out,
    )


if __name__ == "__main__":
    from tunegate.stage import run_stage

    run_stage(main)
