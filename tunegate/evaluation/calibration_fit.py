"""Fitting a calibration, and scoring it and the abstention it sets.

Pure (numpy, scipy, scikit-learn). The evaluate stage fits on the validation split's
answers, in-scope rows only (an answer's correctness is defined there), then chooses the
threshold on validation in-scope *and* out-of-scope rows (tunegate/evaluation/threshold.py); the
gate scores hold-out and shifted suites at that threshold. ``tunegate.core.calibration`` holds
the result and applies it.

Scores, each with a seeded percentile-bootstrap interval:

- expected calibration error: |accuracy - mean confidence| per equal-width confidence
  bin (``BINS``), weighted by the bin's share of answers;
- Brier score: mean squared difference between confidence and correctness;
- coverage (share of in-scope messages answered), selective accuracy (share of answered
  in-scope messages answered right), answered accuracy (share of in-scope messages
  answered right: an abstention is not a right answer), out-of-scope recall (share of
  out-of-scope messages abstained on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunegate.core.calibration import Calibration, Method
from tunegate.evaluation.metrics import Estimate, with_ci

BINS = 10
T_BOUNDS = (0.05, 20.0)


class CalibrationError(ValueError):
    """The calibration cannot be fitted; the message says why, naming the key to change."""


def nll(q: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(q, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def fit(method: Method, raw: Sequence[float], correct: Sequence[bool], min_rows: int) -> Calibration:
    """The calibration of raw confidences against correctness (validation, in-scope)."""
    x, y = np.asarray(raw, dtype=float), np.asarray(correct, dtype=float)
    if len(x) < min_rows:
        raise CalibrationError(
            f"{len(x)} validation answers with a confidence; calibrating needs at least {min_rows} "
            "(eval.calibration_min_rows): add validation rows (prepare.val_fraction)"
        )
    errors = int(len(y) - y.sum())
    fitted: dict[str, Any] = {"rows": len(x), "errors": errors, "nll_raw": round(nll(x, y), 5)}
    if method == "none":
        return Calibration("none", fitted=fitted)
    if errors in (0, len(y)):
        raise CalibrationError(
            f"every one of the {len(y)} validation answers is {'right' if errors == 0 else 'wrong'}: "
            "there is nothing to calibrate against; add validation rows or set eval.calibration: none"
        )
    cal = _temperature(x, y) if method == "temperature" else _isotonic(x, y)
    after = np.array([cal.apply(v) for v in x])
    return Calibration(
        cal.method, cal.temperature, cal.points, fitted=fitted | {"nll_calibrated": round(nll(after, y), 5)}
    )


def _temperature(x: np.ndarray, y: np.ndarray) -> Calibration:
    from scipy.optimize import minimize_scalar

    z = np.log(np.clip(x, 1e-6, 1 - 1e-6) / (1 - np.clip(x, 1e-6, 1 - 1e-6)))

    def loss(log_t: float) -> float:
        return nll(1 / (1 + np.exp(-z / math.exp(log_t))), y)

    low, high = (math.log(b) for b in T_BOUNDS)
    res = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-5})
    t = math.exp(res.x)
    if not res.success or min(abs(res.x - low), abs(res.x - high)) < 1e-3:
        raise CalibrationError(
            f"temperature scaling did not converge (T={t:.3g}, at the edge of {T_BOUNDS}): the "
            "confidences do not rank right above wrong answers; try eval.calibration: isotonic"
        )
    return Calibration("temperature", temperature=round(t, 6))


def _isotonic(x: np.ndarray, y: np.ndarray) -> Calibration:
    from sklearn.isotonic import IsotonicRegression

    ir = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    pairs = zip(ir.X_thresholds_, ir.y_thresholds_, strict=True)
    points = tuple((round(float(a), 6), round(float(b), 6)) for a, b in pairs)
    return Calibration("isotonic", points=points)


def ece(conf: np.ndarray, correct: np.ndarray) -> float:
    if len(conf) == 0:
        return math.nan
    edges = np.linspace(0, 1, BINS + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, BINS - 1)
    total = 0.0
    for b in range(BINS):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def brier(conf: np.ndarray, correct: np.ndarray) -> float:
    return float(np.mean((conf - correct) ** 2)) if len(conf) else math.nan


def reliability(conf: np.ndarray, correct: np.ndarray) -> list[dict[str, float]]:
    """One row per non-empty bin: its mean confidence, accuracy and count (a reliability diagram)."""
    edges = np.linspace(0, 1, BINS + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, BINS - 1)
    return [
        {
            "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
            "confidence": round(float(conf[which == b].mean()), 4),
            "accuracy": round(float(correct[which == b].mean()), 4),
            "count": int((which == b).sum()),
        }
        for b in range(BINS)
        if (which == b).any()
    ]


def record_scores(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Point values of one suite's evaluation records (``confidence``, ``abstained``,
    ``candidate``, ``gold``): ECE, Brier, coverage, selective accuracy. eval/metrics.json and
    the release report show these; the gate computes them with intervals (``suite_scores``)."""
    if not records:
        return {}
    conf = np.array([r["confidence"] or 0.0 for r in records])
    right = np.array([float(r["candidate"] == r["gold"]) for r in records])
    kept = np.array([not r["abstained"] for r in records])
    return {
        "ece": ece(conf, right),
        "brier": brier(conf, right),
        "coverage": float(kept.mean()),
        "selective_accuracy": float(right[kept].mean()) if kept.any() else math.nan,
    }


def suite_scores(
    conf: Sequence[float | None],
    correct: Sequence[bool],
    abstained: Sequence[bool],
    *,
    resamples: int,
    seed: int,
    alpha: float = 0.05,
) -> dict[str, Estimate]:
    """Calibration and selective scores of one in-scope suite (a missing confidence is an
    invalid answer: it counts as confidence 0 and wrong)."""
    c = np.array([0.0 if v is None else v for v in conf])
    ok = np.asarray(correct, dtype=float)
    kept = ~np.asarray(abstained, dtype=bool)
    boot = {"resamples": resamples, "seed": seed, "alpha": alpha}

    def selective(a: np.ndarray, k: np.ndarray) -> float:
        return float(a[k > 0].mean()) if (k > 0).any() else math.nan

    return {
        "ece": with_ci(ece, c, ok, **boot),
        "brier": with_ci(brier, c, ok, **boot),
        "coverage": with_ci(lambda _a, k: float(k.mean()), ok, kept.astype(float), **boot),
        "selective_accuracy": with_ci(selective, ok, kept.astype(float), **boot),
        "answered_accuracy": with_ci(lambda a, k: float((a * k).mean()), ok, kept.astype(float), **boot),
    }


def oos_recall(abstained: Sequence[bool], *, resamples: int, seed: int, alpha: float = 0.05) -> Estimate:
    a = np.asarray(abstained, dtype=float)
    return with_ci(lambda x, _y: float(x.mean()), a, a, resamples=resamples, seed=seed, alpha=alpha)
