"""The abstention threshold, chosen on validation against every floor the gate judges it by.

Pure (numpy, statsmodels). The rule (``serve.abstain_below: auto``):

    the lowest threshold, and so the most in-scope coverage, at which on validation
    - ``precision``: the share of answered in-scope messages answered right reaches
      ``gate.target_in_scope_precision`` (point estimate: the target is already a margin
      above the hold-out floor; with ``serve.expected_oos_share`` declared, the precision of
      all answered requests at that mix of traffic instead);
    - ``selective_accuracy``, ``coverage`` and ``oos_recall`` (the share of out-of-scope
      validation messages abstained on): the one-sided Wilson lower bound at
      ``gate.threshold_confidence`` reaches the floor the gate judges on the hold-out
      (``gate.min_selective_accuracy``, ``gate.min_coverage``, ``gate.min_oos_recall``).

A point estimate that just clears a floor on validation fails it on the hold-out about
half the time; the bound is the margin for the validation set's size (with validation and
hold-out of one size, a floor met at bound confidence c on validation is met on the
hold-out about c of the time, more when the hold-out is larger).

Candidates are 0 and every calibrated in-scope validation confidence: between two of them
the answered in-scope messages stay the same and out-of-scope recall only grows, so the
best threshold is always one of them. The floor that *bound* the choice is the one the
next lower candidate misses. When no candidate meets every floor, the choice is the best
trade-off (the smallest worst shortfall, floor minus bound, over the floors), marked not
met, naming the floors it misses and those no threshold meets even alone; the gate then
judges that threshold and fails it for that reason. Without out-of-scope validation rows
the out-of-scope floor cannot be measured and is left out, and the choice says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FLOORS = ("precision", "selective_accuracy", "coverage", "oos_recall")
KEYS = {
    "precision": "gate.target_in_scope_precision",
    "selective_accuracy": "gate.min_selective_accuracy",
    "coverage": "gate.min_coverage",
    "oos_recall": "gate.min_oos_recall",
}


@dataclass(frozen=True)
class Floors:
    """What the threshold must meet on validation (params.yaml ``gate:`` and ``serve:``)."""

    precision: float
    selective_accuracy: float
    coverage: float
    oos_recall: float
    confidence: float = 0.9
    """One-sided confidence of the Wilson lower bounds (0.5: the point estimates)."""
    oos_share: float | None = None
    """Declared out-of-scope share of traffic: the precision target applies at that mix."""

    @classmethod
    def from_params(cls, gate: Any, serve: Any) -> Floors:
        return cls(
            gate.target_in_scope_precision, gate.min_selective_accuracy, gate.min_coverage,
            gate.min_oos_recall, gate.threshold_confidence, serve.expected_oos_share,
        )  # fmt: skip


@dataclass(frozen=True)
class FloorResult:
    name: str
    key: str
    """The params.yaml key that declares the floor."""
    floor: float
    value: float
    """Point estimate on validation at the threshold."""
    bound: float
    """What is compared with the floor: the point for precision, the Wilson lower bound else."""
    met: bool


@dataclass(frozen=True)
class ThresholdChoice:
    value: float
    met: bool
    """Every floor holds on validation at this threshold."""
    floors: tuple[FloorResult, ...]
    bound_by: tuple[str, ...]
    """Met: the floors the next lower threshold misses (empty when the threshold is 0).
    Not met: the floors this best trade-off misses."""
    unmet_alone: tuple[str, ...]
    """Floors no threshold meets even on its own."""
    rows: int
    oos_rows: int
    previous: tuple[FloorResult, ...] = ()
    """The floors at the next lower candidate threshold (what bound the choice)."""

    def floor(self, name: str) -> FloorResult | None:
        return next((f for f in self.floors if f.name == name), None)

    def explain(self) -> str:
        """One sentence for the log and the report."""
        if self.met:
            if not self.bound_by:
                return "every floor holds on validation without abstaining"
            return "bound by " + ", ".join(
                _shortfall_text(f) for f in self.previous if f.name in self.bound_by
            )
        misses = ", ".join(_shortfall_text(f) for f in self.floors if not f.met)
        alone = f"; no threshold meets {', '.join(self.unmet_alone)} even alone" if self.unmet_alone else ""
        return f"no threshold meets every floor on validation; best trade-off misses {misses}{alone}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["floors"] = [_rounded(asdict(f)) for f in self.floors]
        out["previous"] = [_rounded(asdict(f)) for f in self.previous]
        out["explanation"] = self.explain()
        return out


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in d.items()}


def _shortfall_text(f: FloorResult) -> str:
    what = "point" if f.name == "precision" else "lower bound"
    return f"{f.name} ({what} {f.bound:.4f} vs {f.key} {f.floor})"


def wilson_lower(hits: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """One-sided Wilson score lower bounds (statsmodels); NaN where n is 0."""
    from statsmodels.stats.proportion import proportion_confint

    hits, n = np.asarray(hits, dtype=float), np.asarray(n, dtype=float)
    if confidence <= 0.5:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, hits / np.maximum(n, 1), np.nan)
    safe = np.maximum(n, 1)
    low, _ = proportion_confint(np.minimum(hits, safe), safe, alpha=2 * (1 - confidence), method="wilson")
    return np.where(n > 0, np.asarray(low, dtype=float), np.nan)


def mixed_precision(coverage: Any, selective: Any, oos_recall: Any, share: float) -> Any:
    """Precision of all answered requests when `share` of traffic is out of scope: right
    in-scope answers over in-scope answers plus out-of-scope messages answered."""
    right = (1 - share) * np.asarray(coverage) * np.asarray(selective)
    answered = (1 - share) * np.asarray(coverage) + share * (1 - np.asarray(oos_recall))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(answered > 0, right / np.where(answered > 0, answered, 1), np.nan)


def curves(
    conf: Sequence[float | None], correct: Sequence[bool], oos_conf: Sequence[float | None], floors: Floors
) -> dict[str, np.ndarray]:
    """Every floor's value and bound at every candidate threshold (ascending)."""
    c = np.array([-1.0 if v is None else float(v) for v in conf])
    ok = np.asarray(correct, dtype=bool)
    o = np.sort(np.array([-1.0 if v is None else float(v) for v in oos_conf]))
    candidates = np.array([0.0, *sorted(set(c[c >= 0].tolist()))])
    order = np.argsort(c)
    c_sorted, ok_sorted = c[order], ok[order].astype(float)
    right_from = np.concatenate([np.cumsum(ok_sorted[::-1])[::-1], [0.0]])  # right answers at index >= i
    start = np.searchsorted(c_sorted, candidates, side="left")  # first index with conf >= t
    answered = len(c) - start
    right = right_from[start]
    n, n_oos = float(len(c)), float(len(o))
    abstained_oos = np.searchsorted(o, candidates, side="left")  # oos with conf < t
    z = floors.confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        selective = np.where(answered > 0, right / np.maximum(answered, 1), np.nan)
        recall = abstained_oos / n_oos if n_oos else np.full(len(candidates), np.nan)
    out = {
        "threshold": candidates,
        "coverage": answered / n if n else np.full(len(candidates), np.nan),
        "coverage_bound": wilson_lower(answered, np.full(len(candidates), n), z),
        "selective_accuracy": selective,
        "selective_accuracy_bound": wilson_lower(right, answered, z),
        "oos_recall": recall,
        "oos_recall_bound": wilson_lower(abstained_oos, np.full(len(candidates), n_oos), z),
    }
    if floors.oos_share is not None and n_oos:
        out["precision"] = mixed_precision(out["coverage"], selective, recall, floors.oos_share)
    else:
        out["precision"] = selective
    out["precision_bound"] = out["precision"]
    return out


def choose_threshold(
    conf: Sequence[float | None], correct: Sequence[bool], oos_conf: Sequence[float | None], floors: Floors
) -> ThresholdChoice:
    """The threshold the rule above picks (calibrated confidences, validation rows)."""
    k = curves(conf, correct, oos_conf, floors)
    names = [f for f in FLOORS if f != "oos_recall" or len(oos_conf)]
    limit = {n: getattr(floors, n) for n in names}
    with np.errstate(invalid="ignore"):
        shortfall = np.vstack([limit[n] - np.nan_to_num(k[f"{n}_bound"], nan=-1.0) for n in names])
    holds = shortfall <= 1e-12
    feasible = holds.all(axis=0)

    def at(i: int) -> tuple[FloorResult, ...]:
        return tuple(
            FloorResult(n, KEYS[n], limit[n], float(k[n][i]), float(k[f"{n}_bound"][i]), bool(holds[j, i]))
            for j, n in enumerate(names)
        )

    alone = tuple(n for j, n in enumerate(names) if not holds[j].any())
    if feasible.any():
        i = int(np.argmax(feasible))
        previous = at(i - 1) if i > 0 else ()
        bound_by = tuple(f.name for f in previous if not f.met)
        return ThresholdChoice(
            float(k["threshold"][i]), True, at(i), bound_by, alone, len(conf), len(oos_conf), previous
        )
    i = int(np.argmin(shortfall.max(axis=0)))  # first (lowest) of the ties
    found = at(i)
    misses = tuple(f.name for f in found if not f.met)
    return ThresholdChoice(float(k["threshold"][i]), False, found, misses, alone, len(conf), len(oos_conf))
