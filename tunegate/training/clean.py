"""Validate, normalise, scrub and de-duplicate raw rows. Pure functions, no I/O.

A malformed row is dropped and counted under its reason; the caller decides (from
``prepare.max_invalid_share``) whether too many were dropped to go on.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from tunegate.core.pii import normalise, scrub
from tunegate.training.sources import RawRow

PUNCT = re.compile(r"[^\w\s]")
DIGITS = re.compile(r"\d")
SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Row:
    where: str
    text: str
    label: str


@dataclass
class CleanReport:
    """What cleaning did, for the manifest."""

    total: int = 0
    dropped: Counter = field(default_factory=Counter)
    """reason -> rows dropped"""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """reason -> the first few offending rows (file:row)"""
    first_invalid: list[str] = field(default_factory=list)
    """the first few malformed rows (file:row), in file order"""
    redactions: Counter = field(default_factory=Counter)
    duplicates_exact: int = 0
    duplicates_near: int = 0
    label_conflicts: int = 0
    """duplicates whose label differed from the kept row's label"""
    out_of_scope: int = 0
    """rows labelled ``data.oos_label``: kept out of the label set and the training targets
    (they become the validation and hold-out out-of-scope suites)"""

    def drop(self, row: RawRow | Row, reason: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(row.where)
        if not reason.startswith("duplicate") and len(self.first_invalid) < 5:
            self.first_invalid.append(f"{row.where} ({reason})")

    @property
    def invalid(self) -> int:
        return sum(n for reason, n in self.dropped.items() if not reason.startswith("duplicate"))

    def to_dict(self) -> dict:
        return {
            "rows_in": self.total,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_examples": dict(sorted(self.examples.items())),
            "redactions": dict(sorted(self.redactions.items())),
            "duplicates_exact": self.duplicates_exact,
            "duplicates_near": self.duplicates_near,
            "label_conflicts": self.label_conflicts,
            "out_of_scope": self.out_of_scope,
        }


def near_key(text: str) -> str:
    """Rows with the same key are near-duplicates: case, punctuation, digits and spacing ignored."""
    return SPACE.sub(" ", DIGITS.sub("0", PUNCT.sub(" ", text.lower()))).strip()


def validate(
    rows: list[RawRow],
    report: CleanReport,
    *,
    min_chars: int,
    max_chars: int,
    scrub_pii: bool,
    oos_label: str | None = None,
) -> list[Row]:
    """Drop malformed rows (counted in `report`), count out-of-scope ones (label
    `oos_label`: kept, for the out-of-scope suites); normalise and scrub the rest."""
    out = []
    for raw in rows:
        report.total += 1
        if raw.problem:
            report.drop(raw, raw.problem)
            continue
        if raw.text is None or (isinstance(raw.text, str) and not raw.text.strip()):
            report.drop(raw, "empty text")
            continue
        if not isinstance(raw.text, str):
            report.drop(raw, f"text is {type(raw.text).__name__}, not a string")
            continue
        label = raw.label
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)
        if not isinstance(label, str) or not label.strip():
            report.drop(raw, "missing label")
            continue
        if oos_label is not None and label.strip() == oos_label:
            report.out_of_scope += 1
        text = normalise(raw.text)
        if len(text) < min_chars:
            report.drop(raw, f"text shorter than {min_chars} characters")
            continue
        if len(text) > max_chars:
            report.drop(raw, f"text longer than {max_chars} characters")
            continue
        if scrub_pii:
            scrubbed = scrub(text)
            text = scrubbed.text
            report.redactions.update(scrubbed.counts)
        out.append(Row(raw.where, text, label.strip()))
    return out


def deduplicate(
    rows: list[Row], report: CleanReport, mode: str, seen: dict[str, str] | None = None
) -> list[Row]:
    """Keep the first row per key. `seen` (key -> label) carries keys across calls."""
    if mode == "none":
        return rows
    seen = {} if seen is None else seen
    exact_seen: set[str] = set()
    out = []
    for row in rows:
        key = near_key(row.text) if mode == "near" else row.text
        if key in seen:
            if row.text in exact_seen or mode == "exact":
                report.duplicates_exact += 1
                report.drop(row, "duplicate (exact)")
            else:
                report.duplicates_near += 1
                report.drop(row, "duplicate (near)")
            if seen[key] != row.label:
                report.label_conflicts += 1
            continue
        seen[key] = row.label
        exact_seen.add(row.text)
        out.append(row)
    return out
