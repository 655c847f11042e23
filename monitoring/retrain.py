"""The retraining policy: when drift persists, run the pipeline again; the gate decides.

A trigger fires when the last ``monitor.consecutive_windows`` judged reports each
drifted on at least one ``monitor.retrain_on`` signal (reports too small to judge are
skipped, neither breaking nor extending the streak). Firing runs ``dvc repro``; the new
candidate is evaluated against production like any other. Every trigger is appended to
``<reports_dir>/triggers.jsonl`` with the reports that caused it and what the run gave.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunegate.artifacts import read_json


def due(reports: list[dict[str, Any]], retrain_on: tuple[str, ...], consecutive: int) -> tuple[bool, str]:
    """Whether the policy fires on these reports (oldest first), and why."""
    judged = [r for r in reports if r["status"] != "insufficient"][-consecutive:]
    if len(judged) < consecutive:
        return False, f"{len(judged)} judged report(s); the policy needs {consecutive} in a row"
    hits = [sorted(set(r["drifted"]) & set(retrain_on)) for r in judged]
    if all(hits):
        return True, f"{consecutive} reports in a row drifted on " + ", ".join(
            sorted({s for h in hits for s in h})
        )
    return False, f"the last {consecutive} judged reports did not all drift on {', '.join(retrain_on)}"


def reports(reports_dir: Path) -> list[dict[str, Any]]:
    return [read_json(p) for p in sorted(reports_dir.glob("2*.json"))]


def trigger(project: Path, reports_dir: Path, why: str, causes: list[str]) -> dict[str, Any]:
    """Run `dvc repro` in `project` and record the trigger with the gate's verdict."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc), "repro"], cwd=project, capture_output=True, text=True, check=False)
    gate = project / "eval/gate.json"
    entry = {
        "time": started,
        "why": why,
        "reports": causes,
        "command": "dvc repro",
        "exit_code": result.returncode,
        "verdict": read_json(gate)["verdict"] if result.returncode == 0 and gate.exists() else None,
        "output_tail": (result.stdout + result.stderr)[-2000:],
    }
    with open(reports_dir / "triggers.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return entry
