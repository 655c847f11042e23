"""The retraining policy: when drift persists, run the pipeline again; the gate decides.

A trigger fires when the last ``monitor.consecutive_windows`` judged reports each
drifted on at least one ``monitor.retrain_on`` signal (reports too small to judge are
skipped, neither breaking nor extending the streak). Every signal of a report is tested
at its share of ``monitor.alpha`` against the release's held-out reference
(tunegate/monitoring/drift.py), so a report on in-distribution traffic drifts in at most alpha of
windows, and the policy fires on such traffic about alpha ** consecutive_windows of the
time (measured: ``bench/drift_power.py``). The report that fires names the signals that
carried it. Firing first exports the
feedback-labelled production requests to ``monitor.feedback_dir/feedback.jsonl`` (a
dependency of the prepare stage: they join the training split, and ``dvc.lock`` pins
them) and commits that folder alone (GTO registers the next release at that commit),
then runs ``dvc repro`` (of the release's pipeline, ``release.pipeline``); the new
candidate is evaluated against production like any other. For the generation kind the
feedback is the reference answers callers sent, exported as chat records. Every trigger
is appended to ``<reports_dir>/triggers.jsonl`` with the
reports that caused it, the feedback it added and what the run gave.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from tunegate.core.artifacts import atomic_write_text, jsonl_text, read_json, read_jsonl
from tunegate.core.errors import DataError
from tunegate.core.layout import layout
from tunegate.core.pii import clean_text
from tunegate.serving.logstore import named
from tunegate.serving.requestlog import RequestLog


class Decision(NamedTuple):
    fires: bool
    why: str
    signals: list[str]
    """The retrain_on signals that drifted in every one of the windows that carried it."""


def due(reports: list[dict[str, Any]], retrain_on: tuple[str, ...], consecutive: int) -> Decision:
    """Whether the policy fires on these reports (oldest first), why, and on which signals."""
    judged = [r for r in reports if r["status"] != "insufficient"][-consecutive:]
    if len(judged) < consecutive:
        return Decision(False, f"{len(judged)} judged report(s); the policy needs {consecutive} in a row", [])
    hits = [sorted(set(r["drifted"]) & set(retrain_on)) for r in judged]
    if all(hits):
        carried = sorted({s for h in hits for s in h})
        return Decision(True, f"{consecutive} reports in a row drifted on " + ", ".join(carried), carried)
    return Decision(
        False, f"the last {consecutive} judged reports did not all drift on {', '.join(retrain_on)}", []
    )


def reports(reports_dir: Path) -> list[dict[str, Any]]:
    return [read_json(p) for p in sorted(reports_dir.glob("2*.json"))]


def export_feedback(log: str | Path, folder: Path, oos_label: str | None = None) -> dict[str, Any]:
    """Merge the log's feedback-labelled /classify requests into ``folder/feedback.jsonl``.

    Each row records where it came from (``source``: the request id, the release that
    answered, its answer and when the label was given) and its text passes the scrubber
    again (logs written before a scrubber fix are cleaned on the way out). Keyed by request
    id, so exporting twice adds nothing. Requests labelled out of scope (``oos_label``) are
    counted, not exported: they are no intent's training example. Returns the counts."""
    found = [tuple(r.values()) for r in RequestLog.reader(log).with_feedback()]  # in the order unpacked below
    out_of_scope = sum(1 for row in found if oos_label is not None and row[3] == oos_label)
    exported = {}
    for request_id, time, text, label, version, answered, given in found:
        if oos_label is not None and label == oos_label:
            continue
        source = {"kind": "feedback", "request_id": request_id, "version": version, "answered": answered,
                  "feedback_time": given, "log": named(log)}  # fmt: skip
        exported[request_id] = {"id": request_id, "time": time, "text": clean_text(text), "label": label,
                                "source": source}  # fmt: skip
    return merge_export(folder / "feedback.jsonl", exported, "label") | {"out_of_scope": out_of_scope}


def merge_export(path: Path, exported: dict[str, dict[str, Any]], taught: str) -> dict[str, Any]:
    """Merge `exported` rows into the JSONL file at `path` by request id (a later export of
    the same request replaces it), oldest first; counts of new rows and of rows whose
    `taught` field (the label, the reference answer's turns) changed."""
    rows = {r["id"]: r for r in read_jsonl(path)} if path.exists() else {}
    before = dict(rows)
    rows |= exported
    ordered = sorted(rows.values(), key=lambda r: (r["time"], r["id"]))
    atomic_write_text(path, jsonl_text(ordered))
    return {
        "path": str(path),
        "new": sum(1 for k in rows if k not in before),
        "relabelled": sum(1 for k, r in before.items() if rows[k][taught] != r[taught]),
        "total": len(rows),
    }


def export_references(log: str | Path, folder: Path) -> dict[str, Any]:
    """Merge the log's /generate requests that callers sent a reference answer for into
    ``folder/feedback.jsonl`` as chat records (the request's last user turn, the reference
    answer as the assistant's), each with its ``source`` and scrubbed again, keyed by
    request id like `export_feedback`. The prepare stage gives them the release's system
    turn and validates them like any record. Returns the counts."""
    exported = {}
    for found in RequestLog.reader(log).with_references():
        source = {
            "kind": "feedback", "request_id": found["request_id"], "version": found["version"],
            "answered": found["output"], "feedback_time": found["feedback_time"], "log": named(log),
        }  # fmt: skip
        turns = [
            {"role": "user", "content": clean_text(found["input"])},
            {"role": "assistant", "content": clean_text(found["feedback"])},
        ]
        exported[found["request_id"]] = {"id": found["request_id"], "time": found["time"], "messages": turns,
                                         "source": source}  # fmt: skip
    return merge_export(folder / "feedback.jsonl", exported, "messages") | {"out_of_scope": 0}


def commit_feedback(project: Path, feedback_dir: Path, why: str) -> str | None:
    """Commit the feedback folder alone (the new release is registered at this commit);
    None when there is no git repository or nothing changed."""
    if not (project / ".git").exists():
        return None

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)

    identity = (
        []
        if git("config", "user.email").stdout.strip()
        else ["-c", "user.name=tunegate", "-c", "user.email=tunegate@localhost"]
    )
    git("add", "--", str(feedback_dir))
    if git("diff", "--cached", "--quiet", "--", str(feedback_dir)).returncode == 0:
        return None
    done = git(
        *identity,
        "commit",
        "-q",
        "-m",
        f"Feedback-labelled requests for retraining ({why})",
        "--",
        str(feedback_dir),
    )
    if done.returncode != 0:
        raise DataError(f"could not commit {feedback_dir}: {done.stderr.strip()}")
    return git("rev-parse", "HEAD").stdout.strip()


def trigger(
    project: Path,
    reports_dir: Path,
    why: str,
    causes: list[str],
    log: str | Path,
    feedback_dir: Path,
    oos_label: str | None = None,
    task: str = "classification",
    pipeline: str = "dvc.yaml",
) -> dict[str, Any]:
    """Export feedback (labels; for generation, reference answers), run `dvc repro` of the
    release's `pipeline` in `project`, and record the trigger with the gate's verdict."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if task == "generation":
        feedback = export_references(log, project / feedback_dir)
    else:
        feedback = export_feedback(log, project / feedback_dir, oos_label)
    feedback["commit"] = commit_feedback(project, feedback_dir, why)
    dvc = Path(sys.executable).parent / "dvc"
    command = ["repro"] + ([] if pipeline == "dvc.yaml" else [pipeline])
    result = subprocess.run([str(dvc), *command], cwd=project, capture_output=True, text=True, check=False)
    gate = layout(project, pipeline).gate_record
    entry = {
        "time": started,
        "why": why,
        "reports": causes,
        "feedback": feedback,
        "command": " ".join(["dvc", *command]),
        "exit_code": result.returncode,
        "verdict": read_json(gate)["verdict"] if result.returncode == 0 and gate.exists() else None,
        "output_tail": (result.stdout + result.stderr)[-2000:],
    }
    with open(reports_dir / "triggers.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    return entry
