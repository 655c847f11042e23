"""params.yaml's release-side sections: ``release`` (rollout and the canary judge), ``serve``
(the service) and ``monitor`` (drift and retraining). ``tunegate/core/params.py`` assembles
them with the pipeline's sections into ``Params``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from tunegate.core.catalogues import DESCRIPTORS, GENERATION_SIGNALS, LIVE_SIGNALS, MODEL_SIGNALS

UNDECIDED = "not_enough_evidence"
"""The gate's verdict when its suites could not tell (tunegate/evaluation/outcomes.py): what the
package stage, the registry and the canary judge read from a gate record."""


@dataclass(frozen=True)
class ReleaseParams:
    name: str = "intent-classifier"
    """The released artifact's name in GTO (git tags) and in the BentoML model store."""
    pipeline: str = "dvc.yaml"
    """The DVC pipeline file whose stage commands name this release's paths (the production
    pointer, the registry's audit trail and lock beside it, the gate record): the generation
    default's is generation/dvc.yaml, so its registry (registry/generation/) is its own."""
    canary_weight: int = 10
    """Percent of public traffic a canary gets when `promote --to canary` names no --weight."""
    canary_steps: tuple[int, ...] = (10, 25, 50)
    """Canary weights the rollout judge advances through before promoting to production."""
    lock_timeout_s: float = 10.0
    """How long a registry action waits for another one to finish before failing."""
    remote: str | None = None
    """A git remote (name, e.g. ``origin``, or URL) the registry follows: every action
    fetches its tags first and pushes after, and the service fetches every
    serve.watch_seconds, so several machines and replicas share one registry
    (tunegate/serving/registry_remote.py). null: this clone's tags only."""
    admit_undecided: bool = False
    """A candidate the gate had not enough evidence for (neither shown fit nor shown harmful) is
    packaged and registered, and may go to staging and canary, every step audited with its
    verdict; production it reaches only on the canary judge's online evidence, never by
    `promote` or --force. false: only approved candidates are packaged."""
    judge_window_minutes: int = 60
    """The canary judge reads this much of the request log."""
    judge_every_minutes: float = 0
    """Run the judge inside the service on this schedule (0: only `tunegate rollout step`)."""
    judge_min_requests: int = 50
    """The judge waits for at least this many canary requests before deciding."""
    judge_max_error_increase: float = 0.02
    """Largest tolerated canary-minus-production error rate (one-sided test at gate.alpha)."""
    judge_max_p95_ratio: float = 1.5
    """Largest tolerated canary p95 latency, as a multiple of production's."""
    judge_max_invalid_rate: float = 0.02
    """Largest share of canary /classify answers outside the label set."""
    judge_min_agreement: float = 0.9
    """Smallest agreement with production on shadowed requests (when there are any)."""
    judge_max_per_caller: int = 5
    """The most requests one caller (user id, else client address) counts for in the judge's
    figures: a caller with more has each request weighted down, so one caller cannot decide
    the verdict. The judge counts callers' weighted requests against judge_min_requests."""
    judge_max_abstention_change: float = 0.1
    """How far the canary's share of /classify abstentions may differ from production's,
    either way: the judge advances once the change is shown within it, and rolls back once it
    is shown beyond."""
    judge_max_quality_drop: float = 0.03
    """How much worse than production the canary's live quality (from /feedback) may be: the
    judge advances once the drop is shown within it and rolls back once it is shown beyond."""
    judge_min_live_quality: float = 0.8
    """A first release (no production to compare with): the live quality from /feedback (label
    accuracy; a generation answer's rating or agreement with its reference) it must be shown to
    reach, where feedback arrives. It is the quality figure a release the gate had not enough
    evidence for needs before it is promoted."""
    judge_max_minutes: float = 1440.0
    """How long a canary step may go without a decision: past it, the judge rolls the canary
    back (no evidence either way after this long is no reason to keep it)."""

    def problems(self) -> list[str]:
        out = []
        if not self.name or any(c in self.name for c in "@#:/ "):
            out.append(f"release.name: {self.name!r} must be non-empty without any of @ # : / or spaces")
        for w in (self.canary_weight, *self.canary_steps):
            if not 0 < w < 100:
                out.append(f"release: canary weight {w} is outside (0, 100) percent")
        if list(self.canary_steps) != sorted(self.canary_steps):
            out.append(f"release.canary_steps: {list(self.canary_steps)} must increase")
        for name in (
            "judge_max_error_increase",
            "judge_max_invalid_rate",
            "judge_min_agreement",
            "judge_max_abstention_change",
            "judge_max_quality_drop",
            "judge_min_live_quality",
        ):
            if not 0 <= getattr(self, name) <= 1:
                out.append(f"release.{name}: {getattr(self, name)} is outside [0, 1]")
        if self.judge_max_per_caller < 1:
            out.append(f"release.judge_max_per_caller: {self.judge_max_per_caller} must be >= 1")
        if self.judge_max_minutes <= 0:
            out.append(f"release.judge_max_minutes: {self.judge_max_minutes} must be > 0")
        if self.lock_timeout_s < 0 or self.judge_min_requests < 1 or self.judge_max_p95_ratio < 1:
            out.append("release: lock_timeout_s >= 0, judge_min_requests >= 1 and judge_max_p95_ratio >= 1")
        return out


@dataclass(frozen=True)
class ServeParams:
    host: str = "127.0.0.1"
    port: int = 3000
    public_model: str = "tunegate"
    """The model name clients ask for; routed by weight between production and canary."""
    max_concurrency: int = 16
    """Requests in flight beyond this get 429 (health stays green)."""
    max_tokens: int = 256
    """Default and cap of generated tokens per request (also bounded by the context)."""
    max_model_len: int = 1024
    kv_cache_gib: int = 2
    """CPU KV cache for vLLM (VLLM_CPU_KVCACHE_SPACE)."""
    watch_seconds: float = 5.0
    """How often the service re-reads the registry, so CLI promotions reach it without a
    restart (0: only on /admin/reload and the admin actions)."""
    max_lora_rank: int = 16
    """Largest adapter rank the engine serves; LoRA kernels pad every adapter to it, so
    keep it at the rank the releases use (train.lora.r)."""
    request_log: str = "logs/requests.sqlite"
    """The request log: an SQLite file (relative to the project) or a database URL
    (``postgresql://user:pass@host/db``, the store several replicas share)."""
    log_queue: int = 10_000
    """Rows the service keeps in memory while the log's database is slow or down; past
    it, new requests get 503 (tunegate/serving/logwriter.py)."""
    lost_after_seconds: float = 60.0
    """A process that wrote the log and has not said it is alive for this long is dead: any
    replica (or `tunegate rollout step`) closes its open rows as lost."""
    log_drain_seconds: float = 10.0
    """At shutdown, how long queued rows may take to reach the database before the rest
    are spooled to a local file (replayed at the next start)."""
    require_api_key: bool = False
    """When true, public endpoints and /metrics need `Authorization: Bearer KEY` with one of the
    comma-separated keys in $TUNEGATE_API_KEY. Each key is then the caller the canary judge
    counts (give each client its own key: one shared key is one caller)."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks (CIDR) of the proxies in front of the service: a request from one
    of them is the client's named in X-Forwarded-For (the right-most address no trusted proxy
    holds). Without require_api_key, that address is the caller the canary judge counts."""
    public_metrics: bool = False
    """Leave /metrics open even when require_api_key is on (e.g. for a scraper without the key)."""
    max_body_bytes: int = 1_048_576
    """Request bodies larger than this get 413 before they are read."""
    abstain_below: float | Literal["auto"] | None = "auto"
    """Calibrated confidence under which /classify abstains (``label: null``, ``abstained:
    true``). auto: the evaluate stage picks the lowest threshold (the most in-scope
    coverage) that meets, on validation, every floor the gate judges abstention by
    (tunegate/evaluation/threshold.py: gate.target_in_scope_precision, and gate.min_coverage,
    gate.min_selective_accuracy, gate.min_oos_recall at a one-sided Wilson bound of
    confidence gate.threshold_confidence); a number in [0, 1]: that threshold; null: never
    abstain. The threshold is recorded in the release (calibration.json), judged by the
    gate and served as judged."""
    expected_oos_share: float | None = None
    """The share of production /classify traffic that belongs to no intent, as the team
    expects it (the data's share is an accident of how it was collected). null: in-scope
    precision and out-of-scope recall are judged separately. A share in (0, 1): the report
    also gives the precision of all answered requests at that mix, with its interval, and
    the auto threshold's precision target (gate.target_in_scope_precision) applies to it."""
    shadow: tuple[str, ...] = ()
    """Stages that get a copy of every public request (answer logged, not returned), e.g.
    [staging] to try a release on live traffic, or [canary] for the judge's agreement check."""
    caller_system_prompt: bool = False
    """/generate: whether a caller's ``messages`` may carry system turns of their own (replacing
    the release's, the one it was trained and evaluated with). Off: a system turn from a
    caller is refused with 400, so no caller re-instructs the release."""

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.port < 65536:
            out.append(f"serve.port: {self.port} is not a TCP port")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                out.append(f"serve.trusted_proxies: {proxy!r} is not an address or a CIDR network")
        for stage in self.shadow:
            if stage not in ("staging", "canary", "production"):
                out.append(f"serve.shadow: {stage!r} is not a stage (staging, canary, production)")
        positive = ("max_concurrency", "max_tokens", "max_model_len", "kv_cache_gib", "max_lora_rank")
        for name in (*positive, "max_body_bytes", "log_queue"):
            if getattr(self, name) < 1:
                out.append(f"serve.{name}: {getattr(self, name)} must be >= 1")
        if self.lost_after_seconds <= 0:
            out.append(f"serve.lost_after_seconds: {self.lost_after_seconds} must be > 0")
        if self.log_drain_seconds < 0:
            out.append(f"serve.log_drain_seconds: {self.log_drain_seconds} must be >= 0")
        if isinstance(self.abstain_below, float) and not 0 <= self.abstain_below <= 1:
            out.append(f"serve.abstain_below: {self.abstain_below} is outside [0, 1] (or use auto, or null)")
        if self.expected_oos_share is not None and not 0 < self.expected_oos_share < 1:
            out.append(f"serve.expected_oos_share: {self.expected_oos_share} is outside (0, 1) (or use null)")
        return out


GENERATION_MONITOR = {
    "signals": (*DESCRIPTORS, *GENERATION_SIGNALS),
    "retrain_on": ("embedding", "oov_share", "english_share", "invalid_json", "live_quality"),
    "feedback_dir": "data/feedback-generation",
    "reports_dir": "reports/drift-generation",
}
"""The ``monitor`` defaults of a generation release (what it leaves unset takes these)."""


def monitor_kind_problems(m: MonitorParams, kind: str) -> list[str]:
    """Signals the other task kind's monitor computes, named for this one: refused."""
    own = {
        "classification": {*DESCRIPTORS, *MODEL_SIGNALS, LIVE_SIGNALS["classification"]},
        "generation": {*DESCRIPTORS, *GENERATION_SIGNALS, LIVE_SIGNALS["generation"]},
    }[kind]
    default = {
        "classification": (*DESCRIPTORS, *MODEL_SIGNALS),
        "generation": (*DESCRIPTORS, *GENERATION_SIGNALS),
    }
    return [
        f"monitor.{key}: {s!r} is not a signal of the {kind} kind's monitor "
        f"(its signals: {list(default[kind])}, and {LIVE_SIGNALS[kind]})"
        for key, names in (("signals", m.signals), ("retrain_on", m.retrain_on))
        for s in names
        if s not in own and s in {*DESCRIPTORS, *MODEL_SIGNALS, *GENERATION_SIGNALS, *LIVE_SIGNALS.values()}
    ]


@dataclass(frozen=True)
class MonitorParams:
    reference: str = "release"
    """What production traffic is compared with. ``release``: the monitoring reference
    packaged with the release that answered the window (its held-out rows, its answers and
    confidences on them, the training vocabulary; tunegate/core/monitor_reference.py). Or the
    path of such a file (``eval/results/monitor_reference.json``)."""
    signals: tuple[str, ...] = (*DESCRIPTORS, *MODEL_SIGNALS)
    """Classification's default; with ``base.task: generation`` the default is the
    descriptors, ``embedding`` and the answers' own (``answer_length``, ``invalid_json``,
    ``empty_answer``, ``null_rate``): `GENERATION_MONITOR`."""
    alpha: float = 0.05
    """Family-wise significance across the p-value signals (Bonferroni: each at alpha / n)."""
    min_window: int = 50
    """Windows with fewer /classify requests are reported as too small to judge."""
    min_feedback: int = 20
    """Live accuracy (live quality for generation) is judged once this many answered
    requests have feedback (labels; reference answers)."""
    sample: int = 1000
    """At most this many rows of reference and of window (seeded sample) per report."""
    reports_dir: str = "reports/drift"
    retrain_on: tuple[str, ...] = (
        "embedding",
        "oov_share",
        "english_share",
        "live_accuracy",
    )
    """Signals whose drift counts towards retraining (monitor.signals or live_accuracy).
    Not predicted_label by default: a change in the mix of intents (Banking77's balanced
    test split against its unbalanced train file drifts on it every time,
    bench/results/drift_power.md) is reported, but it says nothing of the model being
    wrong more often."""
    consecutive_windows: int = 2
    """Retrain when this many reports in a row drifted on a retrain_on signal."""
    feedback_dir: str = "data/feedback"
    """Where retraining writes feedback-labelled production requests (feedback.jsonl), a
    dependency of the prepare stage: they join the training split."""

    def problems(self) -> list[str]:
        known = {*DESCRIPTORS, *MODEL_SIGNALS, *GENERATION_SIGNALS}
        out = [
            f"monitor.signals: unknown signal {s!r}; known: {sorted(known)}"
            for s in self.signals
            if s not in known
        ]
        out += [
            f"monitor.retrain_on: {s!r} is not in monitor.signals (or {' / '.join(LIVE_SIGNALS.values())})"
            for s in self.retrain_on
            if s not in (*self.signals, *LIVE_SIGNALS.values())
        ]
        if len(set(self.signals)) != len(self.signals):
            out.append(f"monitor.signals: {list(self.signals)} names a signal twice")
        if not 0 < self.alpha < 0.5:
            out.append(f"monitor.alpha: {self.alpha} is outside (0, 0.5)")
        if self.min_window < 10 or self.sample < self.min_window or self.consecutive_windows < 1:
            out.append("monitor: min_window >= 10, sample >= min_window and consecutive_windows >= 1")
        return out
