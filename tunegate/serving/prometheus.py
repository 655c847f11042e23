"""Per-release Prometheus metrics, served on BentoML's own ``/metrics``.

Every series is labelled by the stage and version that answered, so a dashboard (or an
Argo Rollouts ``AnalysisTemplate``, deploy/prometheus/) compares canary with production:

- ``tunegate_requests_total{endpoint, status, stage, version}``: every admitted request,
  by its final status (200, 4xx, 429 for capacity refusals, 499 hung up, 5xx);
- ``tunegate_request_duration_seconds{endpoint, stage, version}``: latency histogram;
- ``tunegate_generated_tokens_total{stage, version}``: completion tokens generated;
- ``tunegate_invalid_answers_total`` / ``tunegate_abstained_total{stage, version}``;
- ``tunegate_feedback_total{version, correct}``: callers' labels on /classify answers (live
  accuracy is ``correct="true"`` over all);
- ``tunegate_traffic_weight_percent{stage, version}``: the current routing weights.

Shadow copies are not counted (no caller got them). The numbers are this process's; with
several replicas Prometheus sums them.

Why ``prometheus_client`` is imported only here, when the runtime starts: BentoML 1.4.39
(the pinned version) runs its workers in Prometheus multiprocess mode and its
``bentoml.metrics`` module is a deprecated shim that defers the import of
``prometheus_client`` for this reason; a metric must be created in the worker, once
``PROMETHEUS_MULTIPROC_DIR`` is set, or its values never reach ``/metrics``. vLLM imports
``prometheus_client`` too, inside the same worker, after the variable is set. The test
scrapes the real ``/metrics`` of a running service (tests/serving/test_service.py).
"""

from __future__ import annotations

from typing import Any

from tunegate.serving.requestlog import Entry

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        by_release = ["stage", "version"]
        self.requests = Counter(
            "tunegate_requests", "Admitted requests by final status", ["endpoint", "status", *by_release]
        )
        self.duration = Histogram(
            "tunegate_request_duration_seconds", "Request latency", ["endpoint", *by_release],
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.tokens = Counter("tunegate_generated_tokens", "Completion tokens generated", by_release)
        self.invalid = Counter("tunegate_invalid_answers", "Answers outside the release's format", by_release)
        self.abstained = Counter("tunegate_abstained", "/classify answers abstained on", by_release)
        self.feedback = Counter(
            "tunegate_feedback", "Callers' true labels on /classify answers", ["version", "correct"]
        )
        self.weight = Gauge(
            "tunegate_traffic_weight_percent", "Share of routed traffic per stage", by_release,
            multiprocess_mode="mostrecent",
        )  # fmt: skip
        self._weights: dict[tuple[str, str], int] = {}

    def finished(self, entry: Entry) -> None:
        """One request's outcome (called as its log row is completed)."""
        if entry.shadow:
            return
        release = {"stage": entry.stage or "none", "version": entry.version or "none"}
        self.requests.labels(endpoint=entry.endpoint, status=str(entry.status), **release).inc()
        if entry.latency_ms is not None:
            self.duration.labels(endpoint=entry.endpoint, **release).observe(entry.latency_ms / 1000)
        if entry.tokens:
            self.tokens.labels(**release).inc(entry.tokens)
        if entry.valid is False:
            self.invalid.labels(**release).inc()
        if entry.abstained:
            self.abstained.labels(**release).inc()

    def labelled(self, version: str, answered: str | None, truth: str) -> None:
        self.feedback.labels(version=version, correct=str(answered == truth).lower()).inc()

    def weights(self, weights: dict[str, int], live: dict[str, Any]) -> None:
        """The routing weights now; a (stage, version) no longer routed goes to 0."""
        now = {(s, live[s].version): w for s, w in weights.items() if s in live}
        for held in live.values():  # every live release's series exist from the start, at 0
            for counter in (self.tokens, self.invalid, self.abstained):
                counter.labels(held.stage, held.version)
        for key in self._weights.keys() - now.keys():
            self.weight.labels(*key).set(0)
        for (stage, version), w in now.items():
            self.weight.labels(stage, version).set(w)
        self._weights = now


_process: Metrics | None = None


def process_metrics() -> Metrics:
    """This process's metrics, made on first use (a registry takes each name once)."""
    global _process
    if _process is None:
        _process = Metrics()
    return _process
