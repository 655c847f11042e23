"""The generation kind's part of the release report: per-suite scores for every model, and
the items where the candidate lost most against the baseline, side by side.

Pure string building from the evidence and the suites' records (tunegate/evaluation/generation.py).
"""

from __future__ import annotations

import math
from typing import Any

from tunegate.evaluation.evidence import Evidence

EXAMPLES = 6
PATHS = 25
SHOWN = ("field_f1", "token_f1", "rouge_l", "chrf", "exact_match", "json_valid", "schema_valid")


def _mean(rows: list[dict[str, Any]], who: str, metric: str) -> float:
    vals = [r["scores"][who][metric] for r in rows if who in r["scores"] and metric in r["scores"][who]]
    return sum(vals) / len(vals) if vals else math.nan


def _cell(text: str, limit: int = 90) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def generation_sections(
    evidence: Evidence, records: dict[str, list[dict]], _oos: Any, policy: dict[str, Any]
) -> list[str]:
    primary = policy.get("primary_metric", "token_f1")
    return (
        _scores_section(evidence, records, primary)
        + _paths_section(records.get("holdout", []))
        + _losses_section(records, primary)
    )


def _scores_section(evidence: Evidence, records: dict[str, list[dict]], primary: str) -> list[str]:
    first = next((rs[0] for rs in records.values() if rs), None)
    metrics = [m for m in SHOWN if first and m in first["scores"]["candidate"]]
    shots = evidence.prompting.get("few_shot", 0)
    out = [
        "",
        "## Suites",
        "",
        f"Mean per-item scores (primary: **{primary}**). baseline: the "
        + ("production model" if evidence.baseline.kind == "production" else "base model, zero-shot")
        + (f"; prompting: the base model with {shots} training examples in its prompt" if shots else ""),
        "",
        "| suite | rows | model | " + " | ".join(metrics) + " |",
        "|---|---|---|" + "---|" * len(metrics),
    ]
    for name, rows in records.items():
        for who in ("candidate", "baseline", "prompting"):
            if rows and who in rows[0]["scores"]:
                cells = " | ".join(_fmt(_mean(rows, who, m)) for m in metrics)
                out.append(f"| {name} | {len(rows)} | {who} | {cells} |")
    return out


def _paths_section(rows: list[dict]) -> list[str]:
    """Per leaf path of the reference answers (``slots.city``): how many hold-out items have
    it and each model's mean agreement on them, the most frequent paths first."""
    paths: dict[str, int] = {}
    for r in rows:
        for key in r["scores"]["candidate"]:
            if key.startswith("field."):
                paths[key] = paths.get(key, 0) + 1
    if not paths:
        return []
    who = [w for w in ("candidate", "baseline", "prompting") if w in rows[0]["scores"]]
    shown = f"all {len(paths)}" if len(paths) <= PATHS else f"the {PATHS} most frequent of {len(paths)}"
    out = [
        "",
        "## Fields",
        "",
        f"Agreement per leaf path of the reference answers on the hold-out (exact value; a list: "
        f"multiset F1; free text: token F1), over the items whose reference has the path; {shown}:",
        "",
        "| path | items | " + " | ".join(who) + " |",
        "|---|---|" + "---|" * len(who),
    ]
    for key, n in sorted(paths.items(), key=lambda kv: (-kv[1], kv[0]))[:PATHS]:
        having = [r for r in rows if key in r["scores"]["candidate"]]
        cells = " | ".join(_fmt(_mean(having, w, key)) for w in who)
        out.append(f"| `{key.removeprefix('field.')}` | {n} | {cells} |")
    return out


def _losses_section(records: dict[str, list[dict]], primary: str) -> list[str]:
    out = [
        "",
        "## Largest regressions",
        "",
        f"Items where the candidate lost most {primary} against the baseline:",
        "",
    ]
    out += ["| suite | input | reference | candidate | baseline | delta |", "|---|---|---|---|---|---|"]
    losses = sorted(
        (
            (r["scores"]["candidate"][primary] - r["scores"]["baseline"][primary], name, r)
            for name in ("holdout", "shifted")
            for r in records.get(name, [])
            if "baseline" in r["scores"]
        ),
        key=lambda x: (x[0], x[1], x[2]["id"]),
    )
    shown = [(d, n, r) for d, n, r in losses if d < 0][:EXAMPLES]
    for d, name, r in shown:
        out.append(
            f"| {name} | {_cell(r['input'])} | {_cell(r['reference'])} | {_cell(r['candidate'])} | "
            f"{_cell(r['baseline'])} | {d:+.2f} |"
        )
    if not shown:
        out.append("| | (none: the candidate scored at least the baseline on every item) | | | | |")
    return out
