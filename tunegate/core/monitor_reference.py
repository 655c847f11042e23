"""A release's monitoring reference: what in-distribution traffic looks like for it.

Written by the evaluate stage (``eval/results/monitor_reference.json``), packaged with the
release, read by the drift monitor. It holds rows the model never trained on (validation
and hold-out, scrubbed like live traffic) with the release's own answers and served
confidences on them (the vLLM path, as the service answers), and the training split's
vocabulary. Live traffic from the training distribution is unseen text answered by the
same model, exactly like these rows, so every drift test compares like with like and
its false-alarm rate is the declared one (``tunegate/monitoring/drift_tests.py``). The first window
after a release can be judged: nothing depends on earlier traffic.

A generation release's reference (``"task": "generation"``, `GenerationReference`) holds
its hold-out records' last user turns, the release's constrained answers to them (as the
service answers) and each answer's score on the gate's primary metric against the
reference answer: the answer signals and live quality are compared with those.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json, write_json
from tunegate.core.errors import DataError

SCHEMA = 1
MIN_ROWS = 50
"""Fewer reference rows cannot estimate the tests' null distributions (the embedding
classifier tests on half of reference + window; label and K-S tests need the spread)."""
FILE = "monitor_reference.json"


@dataclass(frozen=True)
class MonitorReference:
    texts: list[str]
    answers: list[str | None]
    """The release's answer per row (None: not a valid label)."""
    confidence: list[float]
    labels: frozenset[str]
    """Every label the release knows of (gold and answered)."""
    vocabulary: frozenset[str]
    model_id: str
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.texts)


def write(
    path: Path, rows: list[dict[str, Any]], answers: list[Any], vocabulary: frozenset[str], model_id: str
) -> None:
    """`rows` (id, text, label, split) with their served `answers` (label, confidence)."""
    write_json(
        path,
        {
            "schema": SCHEMA,
            "model_id": model_id,
            "rows": [
                {
                    "id": r["id"],
                    "split": r.get("split"),
                    "text": r["text"],
                    "gold": r["label"],
                    "answer": a.label,
                    "confidence": a.confidence,
                }
                for r, a in zip(rows, answers, strict=True)
            ],
            "vocabulary": sorted(vocabulary),
        },
    )


@dataclass(frozen=True)
class GenerationReference:
    texts: list[str]
    """The last user turn of each hold-out record (what the request log keeps of a request)."""
    answers: list[str]
    """The release's answer text to each (schema-constrained, as served)."""
    scores: list[float]
    """Each answer's ``metric`` score against its reference answer (the gate's per-item score)."""
    metric: str
    output_schema: dict[str, Any] | None
    json_answers: bool
    vocabulary: frozenset[str]
    model_id: str
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.texts)


def write_generation(
    path: Path,
    records: list[dict[str, Any]],
    metric: str,
    task: Any,
    vocabulary: frozenset[str],
    model_id: str,
) -> None:
    """The hold-out suite's `records` (id, input, candidate, scores) as a generation reference."""
    write_json(
        path,
        {
            "schema": SCHEMA,
            "task": "generation",
            "model_id": model_id,
            "metric": metric,
            "output_schema": None if task.output_schema is None else json.dumps(task.output_schema),
            "json_answers": task.json_answers,
            "rows": [
                {
                    "id": r["id"],
                    "text": r["input"],
                    "answer": r["candidate"],
                    "score": r["scores"]["candidate"][metric],
                }
                for r in records
            ],
            "vocabulary": sorted(vocabulary),
        },
    )


def write_missing(path: Path, why: str, model_id: str) -> None:
    """Say why a release has no reference (the pipeline's file exists either way)."""
    write_json(path, {"schema": SCHEMA, "model_id": model_id, "missing": why})


def missing(path: Path) -> str | None:
    """Why `path` holds no reference (evaluate could not record one), or None."""
    try:
        raw = read_json(path)
    except (OSError, ValueError):
        return None  # read() says what is wrong with it
    return raw.get("missing") if isinstance(raw, dict) else None


def read(
    path: Path, source: str | None = None, sha256: str | None = None
) -> MonitorReference | GenerationReference:
    """Load and check a reference; every problem is a DataError naming the file. The bytes
    are read once: the hash (checked against `sha256` when given, e.g. the one recorded at
    packaging) and the parsed rows are of the same bytes, so no swap can fall between them."""
    where = source or str(path)
    if not path.exists():
        raise DataError(f"monitoring reference {where} does not exist")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise DataError(f"{where}: {FILE} was changed after it was packaged")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"monitoring reference {where} is not JSON: {err}") from err
    if isinstance(raw, dict) and raw.get("missing"):
        raise DataError(f"{where} holds no monitoring reference: {raw['missing']}")
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        found = raw.get("schema") if isinstance(raw, dict) else type(raw).__name__
        raise DataError(f"monitoring reference {where} has schema {found!r}; this tunegate reads {SCHEMA}")
    rows = raw.get("rows")
    if raw.get("task") == "generation":
        return _generation(raw, where, digest)
    if not isinstance(rows, list) or not all(_good(r) for r in rows):
        raise DataError(f"monitoring reference {where}: rows need text, answer and a confidence in [0, 1]")
    vocab = _sized(rows, raw, where)
    labels = frozenset(x for r in rows for x in (r.get("gold"), r["answer"]) if isinstance(x, str))
    return MonitorReference(
        texts=[r["text"] for r in rows],
        answers=[r["answer"] for r in rows],
        confidence=[float(r["confidence"]) for r in rows],
        labels=labels,
        vocabulary=frozenset(vocab),
        model_id=str(raw.get("model_id")),
        source=where,
        sha256=digest,
    )


def _sized(rows: list[Any], raw: dict[str, Any], where: str) -> list[str]:
    """The training vocabulary, once the rows are known to be enough."""
    if len(rows) < MIN_ROWS:
        raise DataError(
            f"monitoring reference {where} has {len(rows)} rows; at least {MIN_ROWS} are needed "
            "to estimate the drift tests' null distributions (raise eval.reference_rows or add held-out rows)"
        )
    vocab = raw.get("vocabulary")
    if not isinstance(vocab, list) or not vocab:
        raise DataError(f"monitoring reference {where} has no training vocabulary")
    return vocab


def _generation(raw: dict[str, Any], where: str, digest: str) -> GenerationReference:
    rows = raw.get("rows")
    if not isinstance(rows, list) or not all(_good_generated(r) for r in rows):
        raise DataError(f"monitoring reference {where}: rows need text, an answer and a score in [0, 1]")
    vocab = _sized(rows, raw, where)
    schema = raw.get("output_schema")
    try:
        parsed = None if schema is None else json.loads(schema)
    except (TypeError, ValueError) as err:
        raise DataError(f"monitoring reference {where}: output_schema is not JSON text: {err}") from err
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise DataError(f"monitoring reference {where} names no metric for its scores")
    return GenerationReference(
        texts=[r["text"] for r in rows],
        answers=[r["answer"] for r in rows],
        scores=[float(r["score"]) for r in rows],
        metric=metric,
        output_schema=parsed if isinstance(parsed, dict) else None,
        json_answers=bool(raw.get("json_answers")),
        vocabulary=frozenset(vocab),
        model_id=str(raw.get("model_id")),
        source=where,
        sha256=digest,
    )


def _good_generated(row: Any) -> bool:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
        return False
    s = row.get("score")
    ok = isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and 0.0 <= s <= 1.0
    return ok and isinstance(row.get("answer"), str)


def _good(row: Any) -> bool:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
        return False
    if "answer" not in row or not (row["answer"] is None or isinstance(row["answer"], str)):
        return False
    c = row.get("confidence")
    return isinstance(c, (int, float)) and math.isfinite(c) and 0.0 <= c <= 1.0
