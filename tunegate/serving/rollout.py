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
requests only: a 499, a 429 or a 5xx carries no answer (a 5xx still counts as an error).

Every figure (tunegate/serving/canary_evidence.py: error rate, the share of slow answers per
endpoint, invalid outputs, abstentions, shadow agreement, live quality from /feedback) comes
from a confidence sequence (tunegate/serving/sequential.py), valid however often the judge looks.
Any figure that shows harm rolls the canary back at once; once every figure is shown within
its limit (and the answered minimum is reached) the canary advances to the next of
``release.canary_steps``, and after the last one it is promoted to production, as online
evidence. A release the gate had not enough evidence for also needs a quality figure
(live quality or shadow agreement) shown. Otherwise the judge waits, naming the figures not
yet decided, and past ``release.judge_max_minutes`` at one step without a decision it rolls
back with that reason. Every decision is recorded with its reasons.

First release (a canary and no production): the canary answers all traffic, there is
nothing to compare with, so it is judged on its own health: its error rate shown under
``judge_max_error_increase`` and its invalid-output rate under ``judge_max_invalid_rate``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tunegate.core.params import ReleaseParams
from tunegate.core.release_params import UNDECIDED
from tunegate.core.text_metrics import agreement as answer_agreement
from tunegate.serving.canary_evidence import MIN_LATENCY, TASK_ENDPOINTS, Figure, figures


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
    """Whose request it is: its API key or client address (tunegate/serving/auth.py ``identity``, a keyed
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
    (tunegate/core/text_metrics.py ``agreement``); a chat completion 1 or 0 on its text."""
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


def _wait(c: Traffic, release: ReleaseParams) -> str | None:
    if c.answered < release.judge_min_requests:
        return (
            f"{c.answered:.0f} weighted answered canary requests from {c.callers} caller(s) "
            f"(at most {release.judge_max_per_caller} count per caller; 499, 429 and 5xx carry no "
            f"answer), need {release.judge_min_requests}"
        )
    return None


def decide(
    found: list[Figure],
    waiting: str | None,
    metrics: dict[str, Any],
    weight: int | None,
    release: ReleaseParams,
    elapsed_minutes: float | None,
    undecided_offline: bool,
) -> tuple[str, list[str]]:
    """(action, reasons) from the figures: harm rolls back at any look; past judge_max_minutes
    without a decision rolls back; every figure shown advances (a release the gate had not
    enough evidence for also needs a quality figure shown); anything else waits."""
    metrics["figures"] = {f.name: f.verdict for f in found}
    harm = [f.line for f in found if f.verdict == "harm"]
    if harm:
        return "rollback", harm
    shown = all(f.verdict == "shown" for f in found)
    quality = any(f.quality and f.verdict == "shown" for f in found)
    if waiting is None and shown and (quality or not undecided_offline):
        return "advance", [f.line for f in found]
    if elapsed_minutes is not None and elapsed_minutes > release.judge_max_minutes:
        return "rollback", [
            f"no decision after {elapsed_minutes:.0f} minutes "
            f"(release.judge_max_minutes {release.judge_max_minutes:g})"
        ]
    reasons = [waiting] if waiting else []
    reasons += [f"not enough evidence yet: {f.line}" for f in found if f.verdict == "open"]
    if waiting is None and shown and undecided_offline:
        reasons.append(
            "the gate had not enough evidence for this release: production needs live quality (feedback) or "
            "shadow agreement shown as well"
        )
    return "wait", reasons


def judge_alone(
    rows: list[dict[str, Any]],
    canary: str,
    release: ReleaseParams,
    alpha: float,
    elapsed_minutes: float | None = None,
    undecided_offline: bool = False,
) -> Decision:
    """A first release's canary, with no production to compare with: its own health, its error
    and invalid rates shown within their limits by confidence sequences."""
    cap = release.judge_max_per_caller
    c = summarize(rows, canary, cap)
    metrics: dict[str, Any] = {"canary": asdict(c), "production": None}
    found = figures(judged_rows(rows, canary, cap), None, [], {}, release, alpha)
    action, reasons = decide(
        found, _wait(c, release), metrics, None, release, elapsed_minutes, undecided_offline
    )
    return Decision("promote" if action == "advance" else action, reasons, None, metrics)  # type: ignore[arg-type]


def judge(
    rows: list[dict[str, Any]],
    canary: str,
    production: str,
    weight: int,
    release: ReleaseParams,
    alpha: float,
    elapsed_minutes: float | None = None,
    undecided_offline: bool = False,
) -> Decision:
    """Canary vs production on routed public traffic, like with like (latency per endpoint, every
    caller's weight bounded), every figure from a confidence sequence valid at any look
    (tunegate/serving/canary_evidence.py)."""
    cap = release.judge_max_per_caller
    c, p = summarize(rows, canary, cap), summarize(rows, production, cap)
    metrics: dict[str, Any] = {"canary": asdict(c), "production": asdict(p)}
    p95s = {
        endpoint: theirs.p95_ms
        for endpoint, theirs in p.latency.items()
        if theirs.p95_ms
        and endpoint in c.latency
        and min(c.latency[endpoint].weight, theirs.weight) >= MIN_LATENCY
    }
    scores = agreement(rows, canary, production)
    found = figures(
        judged_rows(rows, canary, cap), judged_rows(rows, production, cap), scores, p95s, release, alpha
    )
    shadow = next((f for f in found if f.name == "agreement"), None)
    if shadow is not None and shadow.bounds is not None:  # the dashboard's canary page reads it
        metrics["agreement"] = {
            "agree": round(sum(scores), 4),
            "pairs": len(scores),
            "ci": list(shadow.bounds),
        }
    action, reasons = decide(
        found, _wait(c, release), metrics, weight, release, elapsed_minutes, undecided_offline
    )
    if action != "advance":
        return Decision(action, reasons, weight if action == "wait" else None, metrics)  # type: ignore[arg-type]
    later = [s for s in release.canary_steps if s > weight]
    if later:
        return Decision("advance", reasons, later[0], metrics)
    return Decision("promote", reasons, None, metrics)


def step(registry: Any, log: Any, release: ReleaseParams, alpha: float, apply: bool = True) -> Decision:
    """Judge the canary now and act on the registry (unless `apply` is false). The judge's
    moves are online evidence (`Registry.promote(online=True)`)."""
    stages = registry.stages()
    canary, production = stages["canary"], stages["production"]
    if canary is None:
        return Decision("none", ["no canary in flight"])
    assigned = datetime.fromisoformat(canary.at).astimezone(UTC)
    now = datetime.now(UTC)
    since = max(assigned, now - timedelta(minutes=release.judge_window_minutes))
    elapsed = (now - assigned).total_seconds() / 60
    undecided = registry.release(canary.version).verdict == UNDECIDED
    rows = log.rows(since=since)
    if production is None:
        decision = judge_alone(rows, canary.version, release, alpha, elapsed, undecided)
    else:
        decision = judge(
            rows, canary.version, production.version, canary.weight, release, alpha, elapsed, undecided
        )
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
