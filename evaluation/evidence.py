"""The evidence the evaluate stage hands the gate: per-suite, per-item outcomes.

``eval/results/`` holds it: ``evidence.json`` (models, suites and their hashes, probe,
parity, calibration) and one ``<suite>.jsonl`` per suite (one record per item: gold,
candidate's and baseline's answers, the hold-out's slice). This module defines the
suite-level types and reads them back, hash-checked, so the gate decides from what was
evaluated and nothing else. Pure: no model, no statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunegate.artifacts import read_json, read_jsonl, sha256_file
from tunegate.errors import DataError

SuiteKind = Literal["holdout", "shifted", "perturbation"]
"""What a suite is for: the gate judges each kind by its own checks."""


@dataclass(frozen=True)
class SuiteOutcome:
    """One suite's items, in order: the gold label and each model's answer (None: invalid)."""

    name: str
    kind: SuiteKind
    gold: Sequence[str]
    candidate: Sequence[str | None]
    baseline: Sequence[str | None]


def slices(records: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Item indices per slice of a suite's records (``slice``: the message-length bucket)."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(r["slice"], []).append(i)
    return out


def outcomes(evidence: dict[str, Any], records: dict[str, list[dict[str, Any]]]) -> list[SuiteOutcome]:
    return [
        SuiteOutcome(
            name,
            evidence["suites"][name]["kind"],
            [r["gold"] for r in recs],
            [r["candidate"] for r in recs],
            [r["baseline"] for r in recs],
        )
        for name, recs in records.items()
    ]


def load_evidence(results: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """``evidence.json`` and each suite's records, refused when a file changed since."""
    path = results / "evidence.json"
    if not path.exists():
        raise DataError(f"{path} is missing; run `dvc repro evaluate` first")
    evidence = read_json(path)
    records = {}
    for name, info in evidence["suites"].items():
        file = results / f"{name}.jsonl"
        if not file.exists():
            raise DataError(f"{file}: predictions for suite {name!r} are missing")
        if sha256_file(file) != info["sha256"]:
            raise DataError(
                f"{file}: predictions changed after evaluation (sha256 differs from evidence.json)"
            )
        records[name] = read_jsonl(file)
    return evidence, records


def load_out_of_scope(results: Path, evidence: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The out-of-scope hold-out's records (hash-checked), or None when there were none."""
    info = evidence.get("out_of_scope", {})
    if "sha256" not in info:
        return None
    file = results / "holdout_oos.jsonl"
    if not file.exists() or sha256_file(file) != info["sha256"]:
        raise DataError(f"{file}: missing, or changed after evaluation (sha256 differs from evidence.json)")
    return read_jsonl(file)
