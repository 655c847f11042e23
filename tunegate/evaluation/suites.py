"""Evaluation suites built from data/prepared: hold-out, shifted, perturbations, slices.

A suite is a named list of rows (``id, text, label``) with a kind the gate policy knows
how to judge. Slices are not separate predictions: they are subsets of the hold-out
(per intent, per message length), scored from the hold-out's predictions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_jsonl
from tunegate.core.errors import DataError
from tunegate.core.params import Params
from tunegate.evaluation.evidence import SuiteKind
from tunegate.evaluation.perturb import perturb_suite


@dataclass(frozen=True)
class Suite:
    name: str
    kind: SuiteKind
    rows: list[dict[str, Any]]

    @property
    def versus_baseline(self) -> bool:
        """The baseline is predicted on hold-out and shifted (the A/B checks), not on perturbations."""
        return self.kind in ("holdout", "shifted")


def read_suite(path: Path, what: str) -> list[dict[str, Any]]:
    if not path.exists():
        raise DataError(f"{path}: the {what} suite file is missing; run `dvc repro prepare`")
    rows = read_jsonl(path)
    for i, r in enumerate(rows, start=1):
        if not isinstance(r.get("text"), str) or not isinstance(r.get("label"), str) or "id" not in r:
            raise DataError(f"{path}:{i}: a suite row needs id, text and label")
    return rows


def build_suites(data_dir: Path, params: Params) -> list[Suite]:
    ev = params.eval
    holdout = read_suite(data_dir / "holdout.jsonl", "hold-out")
    suites = [Suite("holdout", "holdout", holdout)]
    if params.data.shifted_source:
        suites.append(Suite("shifted", "shifted", read_suite(data_dir / "shifted.jsonl", "shifted")))
    source = holdout
    if ev.perturbation_rows and ev.perturbation_rows < len(holdout):
        source = random.Random(params.base.seed).sample(holdout, ev.perturbation_rows)
    for name in ev.perturbations:
        suites.append(Suite(f"perturb_{name}", "perturbation", perturb_suite(source, name, params.base.seed)))
    return suites


def unknown_labels(suites: list[Suite], labels: tuple[str, ...]) -> dict[str, list[str]]:
    """Gold labels per suite that the candidate was not trained on."""
    known = set(labels)
    out = {}
    for s in suites:
        missing = sorted({r["label"] for r in s.rows} - known)
        if missing:
            out[s.name] = missing
    return out


def length_slice(text: str, edges: tuple[int, ...]) -> str:
    """The message-length bucket of a text by word count: edges (8, 20) give
    'words<=8', 'words9-20', 'words>20'."""
    n = len(text.split())
    low = 1
    for edge in edges:
        if n <= edge:
            return f"words<={edge}" if low == 1 else f"words{low}-{edge}"
        low = edge + 1
    return f"words>{edges[-1]}" if edges else "all"
