"""The evaluate stage's calibration step: fit on validation, fix the abstention threshold,
and mark every answer with its calibrated confidence and whether the release abstains.

Inputs are the candidate's predictions (with raw path confidences, from whichever engine
evaluated) on the validation split and on the out-of-scope suites that ``prepare`` writes
when ``data.oos_label`` is declared. The threshold comes from ``serve.abstain_below``: a
declared number, null (never), or auto (tunegate/evaluation/threshold.py: the most coverage that
meets every floor the gate judges abstention by, on validation). When no threshold meets
them all, the stage says so in its log, naming the floors, before the gate runs, and the
gate judges the best trade-off found. The result is ``eval/results/calibration.json``,
which the package stage ships with the release and the service applies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.core.artifacts import read_jsonl
from tunegate.core.calibration import Calibration
from tunegate.core.params import Params
from tunegate.evaluation.calibration_fit import CalibrationError, fit, reliability
from tunegate.evaluation.hf_predict import Prediction
from tunegate.evaluation.threshold import Floors, choose_threshold

log = logging.getLogger(__name__)
SPLITS = ("val", "val_oos", "holdout_oos")


def calibration_rows(data: Path) -> dict[str, list[dict[str, Any]]]:
    """Validation rows and the out-of-scope suites (empty when prepare wrote none)."""
    return {
        name: read_jsonl(data / f"{name}.jsonl") if (data / f"{name}.jsonl").exists() else []
        for name in SPLITS
    }


def calibrate(
    params: Params, val: list[dict[str, Any]], val_preds: list[Prediction], oos_preds: list[Prediction]
) -> tuple[Calibration, dict[str, Any]]:
    """The release's calibration and threshold, and what the gate needs to know about them."""
    raw = [p.confidence for p in val_preds]
    answered = [i for i, c in enumerate(raw) if c is not None]
    right = [val_preds[i].label == val[i]["label"] for i in answered]
    evidence: dict[str, Any] = {
        "method": params.eval.calibration,
        "val_rows": len(val),
        "val_oos_rows": len(oos_preds),
    }
    try:
        fitted = fit(
            params.eval.calibration, [raw[i] for i in answered], right, params.eval.calibration_min_rows
        )
    except CalibrationError as err:
        log.warning("calibration failed: %s", err)
        fitted, evidence["failed"] = Calibration("none"), str(err)
    declared = params.serve.abstain_below
    if declared is None:
        threshold, chosen_by = 0.0, "never: serve.abstain_below is null"
    elif declared == "auto":
        threshold, chosen_by, evidence["threshold_search"] = auto_threshold(
            params, fitted, val, val_preds, oos_preds
        )
    else:
        threshold, chosen_by = float(declared), "declared: serve.abstain_below"
    cal = Calibration(
        fitted.method, fitted.temperature, fitted.points, round(threshold, 6), chosen_by, fitted.fitted
    )
    return cal, evidence | cal.to_dict()


RULE = (
    "auto: the lowest threshold (most in-scope coverage) meeting on validation the precision "
    "target (point) and the coverage, selective-accuracy and out-of-scope floors (one-sided Wilson "
    "bound, confidence {confidence})"
)


def auto_threshold(
    params: Params,
    fitted: Calibration,
    val: list[dict[str, Any]],
    val_preds: list[Prediction],
    oos_preds: list[Prediction],
) -> tuple[float, str, dict[str, Any]]:
    """(threshold, how it was chosen, the search's record for the gate and the report)."""
    floors = Floors.from_params(params.gate, params.serve)
    found = choose_threshold(
        [fitted.apply(p.confidence) for p in val_preds],
        [p.label == r["label"] for p, r in zip(val_preds, val, strict=True)],
        [fitted.apply(p.confidence) for p in oos_preds],
        floors,
    )
    chosen_by = RULE.format(confidence=floors.confidence)
    if not oos_preds:
        chosen_by += "; no out-of-scope validation rows: chosen on the in-scope floors alone"
    if floors.oos_share is not None:
        chosen_by += (
            f"; precision at the declared mix of {floors.oos_share:g} out-of-scope traffic"
            if oos_preds
            else "; serve.expected_oos_share is declared, but without out-of-scope rows precision is in-scope"
        )
    if found.met:
        log.info("abstention threshold %.4f: %s", found.value, found.explain())
    else:
        log.warning(
            "abstention threshold %.4f: %s; the gate will judge this threshold and reject it",
            found.value,
            found.explain(),
        )
    return found.value, chosen_by, found.to_dict() | {"oos_share": floors.oos_share}


def baseline_calibration(pointer: dict[str, Any]) -> Calibration | None:
    """The production release's own calibration (packaged with it), for the A/B of abstention
    on the same items; None when the baseline is not a packaged release (the base model on a
    first release, or a model folder): there is then nothing to compare abstention with."""
    if not pointer.get("bento_tag"):
        return None
    from tunegate.serving.package import release_calibration

    return release_calibration(pointer["bento_tag"], pointer["tree_sha256"])


def item_marks(
    cal: Calibration,
    preds: list[Prediction],
    base_cal: Calibration | None = None,
    base_preds: list[Prediction] | None = None,
) -> list[dict[str, Any]]:
    """`mark` per item, plus the baseline's abstention on the same item when the baseline
    is a release with a calibration of its own."""
    marks = mark(cal, preds)
    if base_cal is None or base_preds is None:
        return marks
    theirs = mark(base_cal, base_preds)
    return [m | {"baseline_abstained": b["abstained"]} for m, b in zip(marks, theirs, strict=True)]


def mark(cal: Calibration, preds: list[Prediction]) -> list[dict[str, Any]]:
    """Per answer: raw and calibrated confidence, and whether the release abstains."""
    out = []
    for p in preds:
        conf = cal.apply(p.confidence)
        out.append(
            {
                "raw_confidence": None if p.confidence is None else round(p.confidence, 6),
                "confidence": None if conf is None else round(conf, 6),
                "abstained": cal.abstains(conf),
            }
        )
    return out


def reliability_rows(records: list[dict[str, Any]], key: str = "confidence") -> list[dict[str, Any]]:
    """A reliability diagram's points for one suite's records (invalid answers count as 0, wrong)."""
    conf = np.array([r[key] if r[key] is not None else 0.0 for r in records])
    right = np.array([float(r["candidate"] == r["gold"]) for r in records])
    return reliability(conf, right) if len(records) else []
