"""The canary judge: from the request log, advance the canary, promote it, or roll it back.

Over a window of the log (since the canary's current weight was set, at most
``release.judge_window_minutes``), canary traffic is compared with production traffic:

- error rate (5xx): a one-sided two-proportion test (statsmodels) of
  H0: canary - production <= ``judge_max_error_increase``; rejected at ``gate.alpha`` means
  the canary is significantly worse and is rolled back;
- latency: canary p95 over production p95 at most ``judge_max_p95_ratio``;
- invalid outputs: the canary's share of /classify answers outside the label set at most
  ``judge_max_invalid_rate``;
- agreement with production on the same requests (shadow copies): at least
  ``judge_min_agreement``, judged only when there are 20 pairs or more.

With fewer than ``judge_min_requests`` canary requests the judge waits. When every check
passes, the canary advances to the next of ``release.canary_steps``, and after the last
one it is promoted to production. Every decision is recorded with its reasons.

First release (a canary and no production): the canary answers all traffic, there is
nothing to compare with, so it is judged on its own health: its error rate must not be
significantly above ``judge_max_error_increase`` (one-sided exact binomial test, scipy)
and its invalid-output rate at most ``judge_max_invalid_rate``. Passing promotes it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from tunegate.params import ReleaseParams


@dataclass
class Decision:
    action: Literal["wait", "advance", "promote", "rollback", "none"]
    reasons: list[str]
    weight: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def summarize(rows: list[dict[str, Any]], version: str) -> dict[str, Any]:
    mine = [r for r in rows if r["version"] == version and not r["shadow"]]
    classify = [r for r in mine if r["endpoint"] == "classify" and r["status"] == 200]
    return {
        "requests": len(mine),
        "errors": sum(1 for r in mine if r["status"] >= 500),
        "p95_ms": p95([r["latency_ms"] for r in mine if r["status"] == 200 and r["latency_ms"] is not None]),
        "classify": len(classify),
        "invalid": sum(1 for r in classify if not r["valid"]),
    }


def agreement(rows: list[dict[str, Any]], canary: str, production: str) -> tuple[int, int]:
    """(agreeing, pairs) over requests both releases answered (one of them as a shadow)."""
    answers: dict[str, dict[str, str | None]] = {}
    for r in rows:
        if r["status"] == 200 and r["version"] in (canary, production):
            answers.setdefault(r["request_id"], {})[r["version"]] = (
                r["label"] if r["endpoint"] == "classify" else r["output"]
            )
    pairs = [a for a in answers.values() if len(a) == 2]
    return sum(1 for a in pairs if a[canary] == a[production]), len(pairs)


def judge_alone(rows: list[dict[str, Any]], canary: str, release: ReleaseParams, alpha: float) -> Decision:
    """A first release's canary, with no production to compare with: absolute health."""
    from scipy.stats import binomtest

    c = summarize(rows, canary)
    metrics: dict[str, Any] = {"canary": c, "production": None}
    if c["requests"] < release.judge_min_requests:
        return Decision(
            "wait", [f"{c['requests']} canary requests, need {release.judge_min_requests}"], None, metrics
        )
    failed, passed = [], []
    limit = release.judge_max_error_increase
    pvalue = float(binomtest(c["errors"], c["requests"], limit, alternative="greater").pvalue)
    metrics["error_test_p"] = pvalue
    line = f"error rate {c['errors']}/{c['requests']} (above {limit:.0%}: p={pvalue:.3g}; no production yet)"
    (failed if pvalue < alpha else passed).append(line)
    if c["classify"]:
        rate = c["invalid"] / c["classify"]
        metrics["invalid_rate"] = rate
        cap = release.judge_max_invalid_rate
        line = f"invalid outputs {c['invalid']}/{c['classify']} = {rate:.1%} (limit {cap:.0%})"
        (failed if rate > cap else passed).append(line)
    if failed:
        return Decision("rollback", failed, None, metrics)
    return Decision("promote", passed, None, metrics)


def judge(
    rows: list[dict[str, Any]],
    canary: str,
    production: str,
    weight: int,
    release: ReleaseParams,
    alpha: float,
) -> Decision:
    from statsmodels.stats.proportion import proportion_confint, test_proportions_2indep

    c, p = summarize(rows, canary), summarize(rows, production)
    metrics: dict[str, Any] = {"canary": c, "production": p}
    if c["requests"] < release.judge_min_requests:
        return Decision(
            "wait", [f"{c['requests']} canary requests, need {release.judge_min_requests}"], weight, metrics
        )
    failed, passed = [], []
    if p["requests"] > 0:
        with np.errstate(divide="ignore", invalid="ignore"):  # zero errors on a side are fine here
            test = test_proportions_2indep(
                c["errors"], c["requests"], p["errors"], p["requests"],
                value=release.judge_max_error_increase, compare="diff", alternative="larger",
                method="agresti-caffo",  # pseudo-counts: sound with zero errors on a side
            )  # fmt: skip
        pvalue = float(test.pvalue) if not math.isnan(test.pvalue) else 1.0
        metrics["error_test_p"] = pvalue
        line = (
            f"error rate {c['errors']}/{c['requests']} vs production {p['errors']}/{p['requests']} "
            f"(excess over {release.judge_max_error_increase:.0%}: p={pvalue:.3g})"
        )
        (failed if pvalue < alpha else passed).append(line)
    if c["p95_ms"] is not None and p["p95_ms"]:
        ratio = c["p95_ms"] / p["p95_ms"]
        metrics["p95_ratio"] = ratio
        limit = release.judge_max_p95_ratio
        line = f"p95 latency {c['p95_ms']:.0f} ms = {ratio:.2f}x production (limit {limit}x)"
        (failed if ratio > release.judge_max_p95_ratio else passed).append(line)
    if c["classify"]:
        rate = c["invalid"] / c["classify"]
        metrics["invalid_rate"] = rate
        limit = release.judge_max_invalid_rate
        line = f"invalid outputs {c['invalid']}/{c['classify']} = {rate:.1%} (limit {limit:.0%})"
        (failed if rate > release.judge_max_invalid_rate else passed).append(line)
    agree, pairs = agreement(rows, canary, production)
    if pairs >= 20:
        low, high = proportion_confint(agree, pairs, alpha=alpha, method="wilson")
        metrics["agreement"] = {"agree": agree, "pairs": pairs, "ci": [low, high]}
        line = (
            f"agreement with production {agree}/{pairs} = {agree / pairs:.1%} "
            f"(CI {low:.1%}-{high:.1%}; min {release.judge_min_agreement:.0%})"
        )
        (failed if agree / pairs < release.judge_min_agreement else passed).append(line)
    if failed:
        return Decision("rollback", failed, None, metrics)
    later = [s for s in release.canary_steps if s > weight]
    if later:
        return Decision("advance", passed, later[0], metrics)
    return Decision("promote", passed, None, metrics)


def step(registry: Any, log: Any, release: ReleaseParams, alpha: float, apply: bool = True) -> Decision:
    """Judge the canary now and act on the registry (unless `apply` is false)."""
    stages = registry.stages()
    canary, production = stages["canary"], stages["production"]
    if canary is None:
        return Decision("none", ["no canary in flight"])
    since = max(
        datetime.fromisoformat(canary.at).astimezone(UTC),
        datetime.now(UTC) - timedelta(minutes=release.judge_window_minutes),
    )
    rows = log.rows(since=since)
    if production is None:
        decision = judge_alone(rows, canary.version, release, alpha)
    else:
        decision = judge(rows, canary.version, production.version, canary.weight, release, alpha)
    if not apply or decision.action == "wait":
        return decision
    reason = "rollout judge: " + "; ".join(decision.reasons)
    if decision.action == "advance":
        registry.promote(canary.version, "canary", weight=decision.weight, reason=reason)
    elif decision.action == "promote":
        registry.promote(canary.version, "production", reason=reason)
    elif decision.action == "rollback":
        registry.rollback(stage="canary", reason=reason)
    return decision
