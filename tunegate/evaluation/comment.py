"""The gate's verdict as one markdown comment for a pull request (`tunegate gate --format
markdown`, what CML's ``cml comment create`` or ``gh pr comment --body-file`` posts).

Built from the gate record (verdict, checks with their intervals and thresholds) and the
release report the same gate stage wrote beside it (its "Largest regressions" section,
with example messages), so the comment says nothing the gate did not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunegate.core.markdown import REGRESSIONS, section
from tunegate.evaluation.outcomes import VERDICT_WORDS
from tunegate.evaluation.report import _cell, _ci, _num, mark, outcome


def regressions(report: str) -> list[str]:
    """The report's "Largest regressions" section, one heading level down; [] if absent."""
    lines = section(report, REGRESSIONS)
    return [f"### {REGRESSIONS}", "", *lines] if lines else []


def _rows(checks: list[dict[str, Any]]) -> list[str]:
    out = ["| | check | metric | value | interval | threshold |", "|---|---|---|---|---|---|"]
    for c in checks:
        out.append(
            f"| {mark(c)} | {c['name']} | {_cell(str(c.get('metric', '')))} | {_num(c.get('value'))} | "
            f"{_ci(c.get('ci'))} | {_cell(str(c.get('threshold', '')))} |"
        )
    return out


def pr_comment(record: dict[str, Any], report: str | None, report_path: str = "eval/report.md") -> str:
    cand, base = record["candidate"], record["baseline"]
    against = "production" if base.get("kind") == "production" else "the base model (first release)"
    checks = record.get("checks", [])
    failed = [c for c in checks if outcome(c) == "failed"]
    undecided = [c for c in checks if outcome(c) == "undecided"]
    out = [
        f"## tunegate release gate: {VERDICT_WORDS.get(record['verdict'], record['verdict'])}",
        "",
        f"**{record['summary']}**: candidate `{cand['model_id']}` against {against} "
        f"`{base.get('model_id')}`.",
        "",
    ]
    if failed:
        out += ["### Failed checks", "", *_rows(failed), ""]
    if undecided:
        out += ["### Not enough evidence", "", *_rows(undecided), ""]
        out += [f"- {c['name']}: {_cell(c.get('reason', ''), 300)}" for c in undecided] + [""]
    out += [f"<details><summary>All {len(checks)} checks</summary>", "", *_rows(checks), "", "</details>", ""]
    if report is None:
        out += ["(no release report beside the gate record: `dvc repro gate` writes it)", ""]
    else:
        out += [*regressions(report), ""]
    out.append(f"Full report: `{report_path}` (written by `dvc repro`).")
    return "\n".join(out) + "\n"


def comment_for(gate_file: Path) -> str:
    """The comment for a gate record on disk (its report.md beside it, if there)."""
    from tunegate.core.artifacts import read_json
    from tunegate.core.errors import TunegateError

    if not gate_file.exists():
        raise TunegateError(f"{gate_file} is missing; run `dvc repro` to evaluate and gate the candidate")
    report = gate_file.with_name("report.md")
    text = report.read_text(encoding="utf-8") if report.exists() else None
    return pr_comment(read_json(gate_file), text, report.as_posix())
