"""The recipe's run-to-run spread beside each check's margin: a note, never a rejection.

``tunegate tune --seeds K`` retrains the recipe with K seeds on the search's validation
views and writes ``tune/<study>/spread.json`` (tunegate/tuning/spread.py): the standard deviation
of the validation objective (the gate's primary metric) over those seeds. Here each
check measured in the objective's units (the metric itself, its drops from the hold-out,
its A/B deltas) gets its margin to its threshold, and a check that passes with a margin
smaller than the run-to-run band (``BAND_SD`` standard deviations: about where 95% of
single runs fall) is flagged "passes, but within run-to-run variation": retraining the
same recipe with another seed could land on the other side. The release decision stays
the paired tests on this candidate's items.

Using the level's spread for a drop or a delta is an approximation (both sides of a
drop move with the seed, the baseline of a delta does not); checks in other units
(calibration, invalid rate, forgetting, parity) show no spread rather than a wrong one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json
from tunegate.core.errors import DataError
from tunegate.core.tune_params import recipe_hash

BAND_SD = 2.0
_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)")


def margin(value: float, threshold: str) -> float | None:
    """How far ``value`` is inside ``threshold`` (``>= 0.8``, ``<= 0.15``, ``> 0 at alpha
    0.05``); negative when outside, None for thresholds that are not a bound."""
    m = _THRESHOLD.match(threshold)
    if m is None or value is None:
        return None
    op, bound = m.group(1), float(m.group(2))
    return value - bound if op.startswith(">") else bound - value


def in_objective_units(metric: str, objective: str) -> bool:
    return (
        metric == objective
        or metric.startswith(f"{objective} drop")
        or metric.startswith(f"{objective} delta")
    )


def read_spread(path: Path, train: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the spread record, None), or (None, why it is not used)."""
    try:
        raw = read_json(path)
        sd = float(raw["spread"]["value"]["sd"])
        seeds, objective, measured = list(raw["seeds"]), str(raw["objective"]), str(raw["recipe_hash"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a spread record from `tunegate tune --seeds` ({err})") from err
    if measured != recipe_hash(train):
        return None, (
            f"run-to-run spread in {path} was measured on another recipe (hash {measured}, this "
            f"params file's is {recipe_hash(train)}); rerun `tunegate tune --seeds` after --apply"
        )
    if len(seeds) < 2 or sd != sd:
        return None, f"run-to-run spread in {path} has {len(seeds)} seed(s); it needs at least 2"
    return {"sd": sd, "seeds": seeds, "objective": objective}, None


def spread_section(checks: list[dict[str, Any]], spread: dict[str, Any], source: Path) -> dict[str, Any]:
    """The gate record's ``spread`` entry: each check's margin, the band, what is flagged."""
    band = BAND_SD * spread["sd"]
    rows = []
    for c in checks:
        m = margin(c["value"], c["threshold"])
        units = in_objective_units(c["metric"], spread["objective"])
        within = bool(c["passed"] and units and m is not None and m < band)
        rows.append({"name": c["name"], "margin": m, "spread": band if units else None, "within": within})
    return {
        "source": str(source),
        "objective": spread["objective"],
        "seeds": spread["seeds"],
        "sd": spread["sd"],
        "band": band,
        "band_sd": BAND_SD,
        "checks": rows,
        "within": [r["name"] for r in rows if r["within"]],
    }


def spread_note(section: dict[str, Any]) -> str:
    head = (
        f"run-to-run spread: validation {section['objective']} sd {section['sd']:.4f} over seeds "
        f"{section['seeds']} (band {section['band_sd']:g} sd = {section['band']:.4f})"
    )
    if not section["within"]:
        return head + "; every check in these units passes by more than the band"
    return head + "; passes, but within run-to-run variation: " + ", ".join(section["within"])


def spread_lines(section: dict[str, Any] | None) -> list[str]:
    """The report's table: margin beside the spread, flagged rows."""
    if not section:
        return []
    out = [
        "",
        "## Margins and run-to-run spread",
        "",
        f"The recipe retrained with seeds {section['seeds']} (`{section['source']}`): validation "
        f"{section['objective']} sd {section['sd']:.4f}; band = {section['band_sd']:g} sd = "
        f"{section['band']:.4f}. A note, not a decision.",
        "",
        "| check | margin to threshold | run-to-run band | |",
        "|---|---|---|---|",
    ]
    for r in section["checks"]:
        m = "" if r["margin"] is None else f"{r['margin']:.4f}"
        b = "" if r["spread"] is None else f"{r['spread']:.4f}"
        flag = "passes, but within run-to-run variation" if r["within"] else ""
        out.append(f"| {r['name']} | {m} | {b} | {flag} |")
    return out
