"""What the canary judge reads from live traffic: one figure per question, each from a
confidence sequence (tunegate/serving/sequential.py), so each stays valid however often it is read.

A figure is shown (the canary is not worse than the limit allows), harm (it is shown to be
worse) or open (not yet either way). The judge rolls back on any harm and advances only when
every figure it judges is shown. Alpha is split evenly over the figures judged (Bonferroni);
a comparison of the two releases gives each side's sequence half of its share (a union bound).

Figures: the error rate (5xx) against production's plus ``release.judge_max_error_increase``;
per endpoint, the share of canary answers slower than ``release.judge_max_p95_ratio`` times
production's p95 (at most 5%, which a p95 within the ratio keeps); the share of task answers
that are invalid; the abstention rate against production's, within
``release.judge_max_abstention_change`` either way; agreement with production on shadowed
requests (at least ``release.judge_min_agreement``); and live quality from ``/feedback`` (a
label right or not; a generation answer's rating, else its agreement with the reference
answer) against production's minus ``release.judge_max_quality_drop`` (for a first release,
with no production, against ``release.judge_min_live_quality``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunegate.core.params import ReleaseParams
from tunegate.core.text_metrics import agreement as answer_agreement
from tunegate.serving.sequential import Sequenced, Verdict, against, difference, sequence, within

TASK_ENDPOINTS = ("classify", "generate")
MIN_PAIRS = 20
"""Shadow pairs, and feedback rows per release, before agreement and live quality are judged."""
MIN_LATENCY = 10
"""Weighted answers per endpoint on each side before latency is judged."""
SLOW_SHARE = 0.05
"""The share of canary answers that may be slower than ratio x production's p95."""

Rows = list[tuple[dict[str, Any], float]]


@dataclass(frozen=True)
class Figure:
    name: str
    verdict: Verdict
    line: str
    quality: bool = False
    """Evidence about the answers themselves (agreement, live quality), not only health."""
    bounds: tuple[float, float] | None = None
    """The confidence-sequence bounds the verdict read (of the difference, for comparisons)."""


def live_score(row: dict[str, Any]) -> float | None:
    """A request's live quality, when feedback reached it: of answered requests (an abstention
    hands the message to a person; how often is the abstention figure's to judge), as the
    drift monitor's live accuracy is."""
    if row.get("abstained"):
        return None
    if row["endpoint"] == "classify" and row.get("feedback") is not None:
        return float(row.get("label") == row["feedback"])
    if row["endpoint"] == "generate":
        if row.get("rating") is not None:
            return float(row["rating"])
        if row.get("feedback") is not None and row.get("output") is not None:
            return answer_agreement(row["output"], row["feedback"])
    return None


def _values(rows: Rows, value: Callable[[dict[str, Any]], float | None]) -> tuple[list[float], list[float]]:
    pairs = [(v, w) for r, w in rows if (v := value(r)) is not None]
    return [v for v, _ in pairs], [w for _, w in pairs]


def _seq(
    rows: Rows, value: Callable[[dict[str, Any]], float | None], alpha: float, t_star: float
) -> Sequenced:
    values, weights = _values(rows, value)
    return sequence(values, weights, alpha, t_star)


def _compared(
    canary: Rows, production: Rows, value: Callable[[dict[str, Any]], float | None], a: float, t_star: float
) -> tuple[Sequenced, Sequenced, float, float, float]:
    """Both releases' sequences, each at a / 2 (a union bound), and their difference with bounds."""
    c, p = _seq(canary, value, a / 2, t_star), _seq(production, value, a / 2, t_star)
    return c, p, *difference(c, p)


def _floor(name: str, s: Sequenced, floor: float, text: str) -> Figure:
    """A quality figure of one sequence against its floor, carrying its bounds."""
    return Figure(name, against(s.lo, s.hi, floor, "above"), text, quality=True, bounds=(s.lo, s.hi))


def planned(canary: Rows, production: Rows | None, pairs: int, p95s: dict[str, float]) -> list[str]:
    """The figures this traffic can judge (alpha is split over them before any is computed)."""
    names = ["errors"]
    if production is not None:
        names += [f"latency.{e}" for e in p95s]
    if any(r["endpoint"] in TASK_ENDPOINTS and r["status"] == 200 for r, _ in canary):
        names.append("invalid")
    if (
        production is not None
        and min(_count(canary, "classify"), _count(production, "classify")) >= MIN_LATENCY
    ):
        names.append("abstention")
    if production is not None and pairs >= MIN_PAIRS:
        names.append("agreement")
    sides = (canary,) if production is None else (canary, production)
    if min(len(_values(x, live_score)[0]) for x in sides) >= MIN_PAIRS:
        names.append("quality")
    return names


def _count(rows: Rows, endpoint: str) -> float:
    return sum(w for r, w in rows if r["endpoint"] == endpoint and r["status"] == 200)


def figures(
    canary: Rows,
    production: Rows | None,
    shadow_scores: list[float],
    p95s: dict[str, float],
    release: ReleaseParams,
    alpha: float,
) -> list[Figure]:
    """Every figure this traffic can judge, each at its share of alpha."""
    names = planned(canary, production, len(shadow_scores), p95s)
    a, t_star = alpha / len(names), 4.0 * release.judge_min_requests
    out = []

    def error(r: dict[str, Any]) -> float:
        return float(r["status"] >= 500)

    limit = release.judge_max_error_increase
    if production is None:
        s = _seq(canary, error, a, t_star)
        out.append(
            Figure(
                "errors",
                against(s.lo, s.hi, limit, "below"),
                f"error rate {s.mean:.2%} [{s.lo:.2%}, {s.hi:.2%}] (limit {limit:.0%}; no production yet)",
            )
        )
    else:
        c, p, d, lo, hi = _compared(canary, production, error, a, t_star)
        out.append(
            Figure(
                "errors",
                against(lo, hi, limit, "below"),
                f"error rate {c.mean:.2%} vs production {p.mean:.2%}: excess {d:+.2%} "
                f"[{lo:+.2%}, {hi:+.2%}] (limit {limit:+.0%})",
            )
        )
    for endpoint, base_p95 in p95s.items():
        cap = release.judge_max_p95_ratio * base_p95
        s = _seq(
            [x for x in canary if x[0]["endpoint"] == endpoint and x[0]["status"] == 200],
            lambda r, cap=cap: float((r["latency_ms"] or 0.0) > cap),
            a,
            t_star,
        )
        out.append(
            Figure(
                f"latency.{endpoint}",
                against(s.lo, s.hi, SLOW_SHARE, "below"),
                f"{endpoint}: {s.mean:.1%} [{s.lo:.1%}, {s.hi:.1%}] of answers slower than "
                f"{release.judge_max_p95_ratio}x production's p95 ({base_p95:.0f} ms; "
                f"limit {SLOW_SHARE:.0%})",
            )
        )
    if "invalid" in names:
        tasks = [x for x in canary if x[0]["endpoint"] in TASK_ENDPOINTS and x[0]["status"] == 200]
        s = _seq(tasks, lambda r: float(not r["valid"]), a, t_star)
        cap = release.judge_max_invalid_rate
        out.append(
            Figure(
                "invalid",
                against(s.lo, s.hi, cap, "below"),
                f"invalid outputs {s.mean:.1%} [{s.lo:.1%}, {s.hi:.1%}] (limit {cap:.0%})",
            )
        )
    if "abstention" in names:
        assert production is not None

        def abstained(r: dict[str, Any]) -> float | None:
            return (
                float(bool(r.get("abstained")))
                if r["endpoint"] == "classify" and r["status"] == 200
                else None
            )

        c, p, d, lo, hi = _compared(canary, production, abstained, a, t_star)
        limit = release.judge_max_abstention_change
        out.append(
            Figure(
                "abstention",
                within(lo, hi, limit),
                f"abstentions {c.mean:.1%} vs production {p.mean:.1%}: {d:+.1%} [{lo:+.1%}, {hi:+.1%}] "
                f"(limit +/-{limit:.0%})",
            )
        )
    if "agreement" in names:
        s = sequence(shadow_scores, None, a, t_star)
        floor = release.judge_min_agreement
        text = (
            f"agreement with production {s.mean:.1%} [{s.lo:.1%}, {s.hi:.1%}] on {len(shadow_scores)} "
            f"shadowed requests (min {floor:.0%})"
        )
        out.append(_floor("agreement", s, floor, text))
    if "quality" in names and production is None:
        s = _seq(canary, live_score, a, t_star)
        floor = release.judge_min_live_quality
        text = (
            f"live quality {s.mean:.3f} [{s.lo:.3f}, {s.hi:.3f}] from feedback (floor {floor:g}; "
            "no production yet)"
        )
        out.append(_floor("quality", s, floor, text))
    elif "quality" in names:
        assert production is not None
        c, p, d, lo, hi = _compared(canary, production, live_score, a, t_star)
        drop = release.judge_max_quality_drop
        out.append(
            Figure(
                "quality",
                against(lo, hi, -drop, "above"),
                f"live quality {c.mean:.3f} vs production {p.mean:.3f} from feedback: {d:+.3f} "
                f"[{lo:+.3f}, {hi:+.3f}] (at most {drop:.2f} worse)",
                quality=True,
            )
        )
    return out
