"""The canary judge: from the request log, advance the canary, promote it, or roll it back.

Over a window of the log (since the canary's current weight was set, at most
``release.judge_window_minutes``), canary traffic is compared with production traffic.
Only routed public requests count (not shadow copies, not requests pinned to a stage,
which need the admin token anyway), and every caller counts for at most
``release.judge_max_per_caller`` requests, so one caller, however many or slow its
requests, cannot decide the verdict. A caller is who the request is by evidence no request
can choose: its API key when ``serve.require_api_key`` is on, else its client address
(through ``serve.trusted_proxies``); the ``user`` / ``X-Caller-Id`` a caller asserts keeps it
on one release and counts for nothing here. The minimum the judge waits for counts answered
requests only: a 499, a 429 or a 5xx carries no answer (a 5xx still counts as an error):

- error rate (5xx): a one-sided two-proportion test (statsmodels) of
  H0: canary - production <= ``judge_max_error_increase``; rejected at ``gate.alpha`` means
  the canary is significantly worse and is rolled back;
- latency, per endpoint (a chat answer and a label are not alike): canary p95 over
  production p95 at most ``judge_max_p95_ratio``;
- invalid outputs: the canary's share of /classify answers outside the label set (or of
  /generate answers that are not JSON within the release's schema) at most
  ``judge_max_invalid_rate``;
- abstentions: the canary's share of /classify answers it abstained on must not differ
  from production's by significantly more than ``judge_max_abstention_change`` either way
  (far more: it hands answerable messages to people; far less: it answers what it should not);
- agreement with production on the same requests (shadow copies): at least
  ``judge_min_agreement``, judged only when there are 20 pairs or more. A /classify pair
  agrees or not; a /generate pair is graded (by field for JSON answers, token F1 for
  text: two tickets that differ only in the summary's wording mostly agree).

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
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from tunegate.params import ReleaseParams
from tunegate.release_params import UNDECIDED
from tunegate.text_metrics import agreement as answer_agreement


@dataclass
class Decision:
    action: Literal["wait", "advance", "promote", "rollback", "none"]
    reasons: list[str]
    weight: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def p95(values: list[float], weights: list[float] | None = None) -> float | None:
    """The (weighted) 95th percentile: the smallest value with 95% of the weight at or below it."""
    if not values:
        return None
    weights = weights or [1.0] * len(values)
    pairs = sorted(zip(values, weights, strict=True))
    total, acc = sum(weights), 0.0
    for value, weight in pairs:
        acc += weight
        if acc >= 0.95 * total - 1e-9:
            return value
    return pairs[-1][0]


def caller_unit(row: dict[str, Any]) -> str:
    """Whose request it is: its API key or client address (serving/auth.py ``identity``, a keyed
    hash in the log), never the caller id the request asserts."""
    return "client:" + (row.get("client") or "unknown")


def judged_rows(rows: list[dict[str, Any]], version: str, cap: int) -> list[tuple[dict[str, Any], float]]:
    """A release's routed public requests, each with its weight: a caller with more than
    `cap` requests has each weighted cap/n, so together they count as `cap`. Pinned
    requests (an operator's `tunegate:canary`), shadow copies and capacity refusals (429,
    decided before the release saw the request) are not the release's traffic."""
    mine = [
        r for r in rows
        if r["version"] == version and not r["shadow"] and not r.get("pinned") and r["status"] != 429
    ]  # fmt: skip
    per_unit = Counter(caller_unit(r) for r in mine)
    return [(r, min(1.0, cap / per_unit[caller_unit(r)])) for r in mine]


@dataclass(frozen=True)
class Latency:
    weight: float
    p95_ms: float | None


@dataclass(frozen=True)
class Traffic:
    """One release's judged traffic in the window (every count weighted per caller)."""

    requests: int
    callers: int
    weight: float
    errors: float
    """5xx responses."""
    latency: dict[str, Latency]
    """Per endpoint, over successful requests."""
    classify: float
    """Successful task answers: /classify, or /generate for a generation release."""
    invalid: float
    abstained: float
    answered: float = 0.0
    """Requests answered (status 200): what the minimum the judge waits for counts."""


TASK_ENDPOINTS = ("classify", "generate")
"""Whose answers have a validity (a label of the set; JSON within the release's schema)."""


def summarize(rows: list[dict[str, Any]], version: str, cap: int = 5) -> Traffic:
    judged = judged_rows(rows, version, cap)
    ok = [(r, w) for r, w in judged if r["status"] == 200 and r["latency_ms"] is not None]
    classify = [(r, w) for r, w in judged if r["endpoint"] in TASK_ENDPOINTS and r["status"] == 200]
    latency = {}
    for endpoint in sorted({r["endpoint"] for r, _ in ok}):
        pairs = [(r["latency_ms"], w) for r, w in ok if r["endpoint"] == endpoint]
        latency[endpoint] = Latency(
            sum(w for _, w in pairs), p95([v for v, _ in pairs], [w for _, w in pairs])
        )
    return Traffic(
        requests=len(judged),
        callers=len({caller_unit(r) for r, _ in judged}),
        weight=sum(w for _, w in judged),
        errors=sum(w for r, w in judged if r["status"] >= 500),
        answered=sum(w for r, w in judged if r["status"] == 200),
        latency=latency,
        classify=sum(w for _, w in classify),
        invalid=sum(w for r, w in classify if not r["valid"]),
        abstained=sum(w for r, w in classify if r.get("abstained")),
    )


def agreement(rows: list[dict[str, Any]], canary: str, production: str) -> list[float]:
    """Per request both releases answered (one of them as a shadow), how far the two answers
    agree: a /classify label 1 or 0; a /generate answer by field, or by token F1 for text
    (tunegate/text_metrics.py ``agreement``); a chat completion 1 or 0 on its text."""
    answers: dict[str, dict[str, tuple[str, str | None]]] = {}
    for r in rows:
        if r["status"] == 200 and r["version"] in (canary, production):
            answers.setdefault(r["request_id"], {})[r["version"]] = (
                r["endpoint"],
                r["label"] if r["endpoint"] == "classify" else r["output"],
            )
    out = []
    for a in (a for a in answers.values() if len(a) == 2):
        (kind, mine), (_, theirs) = a[canary], a[production]
        if kind == "generate" and mine is not None and theirs is not None:
            out.append(answer_agreement(mine, theirs))
        else:
            out.append(float(mine == theirs))
    return out


def agreement_interval(scores: list[float], alpha: float) -> tuple[float, float]:
    """Wilson's interval for 0/1 agreement; for graded (generation) agreement, Student's t."""
    from scipy.stats import t
    from statsmodels.stats.proportion import proportion_confint

    n, mean = len(scores), sum(scores) / len(scores)
    if all(s in (0.0, 1.0) for s in scores):
        low, high = proportion_confint(sum(scores), n, alpha=alpha, method="wilson")
        return float(low), float(high)
    half = float(t.ppf(1 - alpha / 2, n - 1) * np.std(scores, ddof=1) / math.sqrt(n))
    return max(0.0, mean - half), min(1.0, mean + half)


MIN_LATENCY_WEIGHT = 10
"""An endpoint's p95 is compared once each side has this much (weighted) successful traffic."""


def _wait(c: Traffic, release: ReleaseParams) -> str | None:
    if c.answered < release.judge_min_requests:
        return (
            f"{c.answered:.0f} weighted answered canary requests from {c.callers} caller(s) "
            f"(at most {release.judge_max_per_caller} count per caller; 499, 429 and 5xx carry no "
            f"answer), need {release.judge_min_requests}"
        )
    return None


def _invalid(c: Traffic, release: ReleaseParams, metrics: dict, failed: list, passed: list) -> None:
    if c.classify:
        rate = c.invalid / c.classify
        metrics["invalid_rate"] = rate
        cap = release.judge_max_invalid_rate
        line = f"invalid outputs {c.invalid:.0f}/{c.classify:.0f} = {rate:.1%} (limit {cap:.0%})"
        (failed if rate > cap else passed).append(line)


def _abstention(
    c: Traffic,
    p: Traffic,
    release: ReleaseParams,
    alpha: float,
    metrics: dict,
    failed: list,
    passed: list,
) -> None:
    """A canary that abstains far more (it hands customers to people for nothing) or far less
    (it answers what it should not) than production: two one-sided two-proportion tests of
    a change beyond ``judge_max_abstention_change``, each at alpha / 2."""
    from statsmodels.stats.proportion import test_proportions_2indep

    if min(c.classify, p.classify) < MIN_LATENCY_WEIGHT:
        return
    limit = release.judge_max_abstention_change
    pvalues = []
    for value, side in ((limit, "larger"), (-limit, "smaller")):
        with np.errstate(divide="ignore", invalid="ignore"):
            test = test_proportions_2indep(
                c.abstained, c.classify, p.abstained, p.classify,
                value=value, compare="diff", alternative=side, method="agresti-caffo",
            )  # fmt: skip
        pvalues.append(1.0 if math.isnan(test.pvalue) else float(test.pvalue))
    ours, theirs = c.abstained / c.classify, p.abstained / p.classify
    metrics["abstention"] = {"canary": ours, "production": theirs, "p_more": pvalues[0], "p_less": pvalues[1]}
    line = (
        f"abstentions {ours:.1%} vs production {theirs:.1%} (change beyond {limit:.0%}: "
        f"more p={pvalues[0]:.3g}, less p={pvalues[1]:.3g})"
    )
    (failed if min(pvalues) < alpha / 2 else passed).append(line)


def judge_alone(rows: list[dict[str, Any]], canary: str, release: ReleaseParams, alpha: float) -> Decision:
    """A first release's canary, with no production to compare with: absolute health."""
    from scipy.stats import binomtest

    c = summarize(rows, canary, release.judge_max_per_caller)
    metrics: dict[str, Any] = {"canary": asdict(c), "production": None}
    failed, passed = [], []
    limit = release.judge_max_error_increase
    n, k = round(c.weight), min(round(c.errors), round(c.weight))
    pvalue = float(binomtest(k, n, limit, alternative="greater").pvalue) if n else 1.0
    metrics["error_test_p"] = pvalue
    rate = f"{c.errors:.0f}/{c.weight:.0f}"
    line = f"error rate {rate} (above {limit:.0%}: p={pvalue:.3g}; no production yet)"
    (failed if pvalue < alpha else passed).append(line)
    if (why := _wait(c, release)) is not None:  # harm shown early rolls back; nothing else is decided
        return (
            Decision("rollback", failed, None, metrics) if failed else Decision("wait", [why], None, metrics)
        )
    _invalid(c, release, metrics, failed, passed)
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
    """Canary vs production on routed public traffic, like with like: latency per endpoint,
    every caller's weight bounded (release.judge_max_per_caller)."""
    from statsmodels.stats.proportion import test_proportions_2indep

    cap = release.judge_max_per_caller
    c, p = summarize(rows, canary, cap), summarize(rows, production, cap)
    metrics: dict[str, Any] = {"canary": asdict(c), "production": asdict(p)}
    failed, passed = [], []
    if p.weight > 0:
        with np.errstate(divide="ignore", invalid="ignore"):  # zero errors on a side are fine here
            test = test_proportions_2indep(
                c.errors, c.weight, p.errors, p.weight,
                value=release.judge_max_error_increase, compare="diff", alternative="larger",
                method="agresti-caffo",  # pseudo-counts: sound with zero errors on a side
            )  # fmt: skip
        pvalue = float(test.pvalue) if not math.isnan(test.pvalue) else 1.0
        metrics["error_test_p"] = pvalue
        line = (
            f"error rate {c.errors:.0f}/{c.weight:.0f} "
            f"vs production {p.errors:.0f}/{p.weight:.0f} "
            f"(excess over {release.judge_max_error_increase:.0%}: p={pvalue:.3g})"
        )
        (failed if pvalue < alpha else passed).append(line)
    if (why := _wait(c, release)) is not None:  # harm shown early rolls back; nothing else is decided
        return (
            Decision("rollback", failed, None, metrics)
            if failed
            else Decision("wait", [why], weight, metrics)
        )
    ratios = {}
    for endpoint, mine in c.latency.items():
        theirs = p.latency.get(endpoint)
        if theirs is None or min(mine.weight, theirs.weight) < MIN_LATENCY_WEIGHT:
            continue
        if mine.p95_ms is None or not theirs.p95_ms:  # an endpoint with traffic has a p95
            continue
        ratios[endpoint] = ratio = mine.p95_ms / theirs.p95_ms
        limit = release.judge_max_p95_ratio
        line = f"{endpoint} p95 latency {mine.p95_ms:.0f} ms = {ratio:.2f}x production (limit {limit}x)"
        (failed if ratio > limit else passed).append(line)
    metrics["p95_ratio"] = ratios
    _invalid(c, release, metrics, failed, passed)
    _abstention(c, p, release, alpha, metrics, failed, passed)
    scores = agreement(rows, canary, production)
    pairs, agree = len(scores), sum(scores)
    if pairs >= 20:
        low, high = agreement_interval(scores, alpha)
        metrics["agreement"] = {"agree": round(agree, 4), "pairs": pairs, "ci": [low, high]}
        line = (
            f"agreement with production {agree:.4g}/{pairs} = {agree / pairs:.1%} "
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
    if decision.action == "promote" and registry.release(canary.version).verdict == UNDECIDED:
        held = (
            "the gate had not enough evidence for this release, and these checks are fixed-alpha tests "
            "repeated at every look, not evidence valid at any look: it stays in canary"
        )
        decision = Decision("wait", [*decision.reasons, held], canary.weight, decision.metrics)
    if not apply or decision.action == "wait":
        return decision
    reason = "rollout judge: " + "; ".join(decision.reasons)
    if decision.action == "advance":
        registry.promote(canary.version, "canary", weight=decision.weight, reason=reason, online=True)
    elif decision.action == "promote":
        registry.promote(canary.version, "production", reason=reason, online=True)
    elif decision.action == "rollback":
        registry.rollback(stage="canary", reason=reason)
    return decision
