"""Seeded, stratified splits. Pure: the same rows and seed give the same splits."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tunegate.core.errors import DataError
from tunegate.training.clean import Row


@dataclass
class Prepared:
    """What the prepare stage writes: the splits (records by split name), the label set
    (empty for generation), the probe and replay prompts, and the manifest."""

    splits: dict[str, list[dict[str, Any]]]
    labels: list[str]
    probe: list[dict[str, Any]]
    manifest: dict[str, Any]
    replay: list[dict[str, Any]] = field(default_factory=list)


def by_label(rows: list[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.label].append(row)
    return dict(sorted(groups.items()))


def check_label_counts(rows: list[Row], minimum: int) -> None:
    small = {label: len(g) for label, g in by_label(rows).items() if len(g) < minimum}
    if small:
        listed = ", ".join(f"{k!r} ({v})" for k, v in small.items())
        raise DataError(
            f"{len(small)} label(s) have fewer than prepare.min_rows_per_label={minimum} rows and cannot be "
            f"split: {listed}. Add rows, merge or drop these labels, or lower the minimum"
        )


def cap_rows(rows: list[Row], max_rows: int, seed: int) -> list[Row]:
    """A stratified, seeded subsample of at most `max_rows` rows (each label keeps its share)."""
    if len(rows) <= max_rows:
        return rows
    rng = random.Random(seed)
    out = []
    for group in by_label(rows).values():
        take = max(1, round(len(group) * max_rows / len(rows)))
        out.extend(rng.sample(group, min(take, len(group))))
    return out


def stratified_split(
    rows: list[Row], fractions: dict[str, float], seed: int, rest: str = "train"
) -> dict[str, list[Row]]:
    """Split rows into named parts by label; each part gets its share of every label.

    Every label puts at least one row in each part with a non-zero fraction, and at
    least one row in `rest`.
    """
    rng = random.Random(seed)
    parts: dict[str, list[Row]] = {name: [] for name in [*fractions, rest]}
    for group in by_label(rows).values():
        group = list(group)
        rng.shuffle(group)
        start = 0
        for name, fraction in fractions.items():
            if fraction <= 0:
                continue
            n = max(1, round(len(group) * fraction))
            n = min(n, len(group) - start - 1)
            parts[name].extend(group[start : start + n])
            start += n
        parts[rest].extend(group[start:])
    return parts
