"""What the dashboard's pages show, as JSON (`tunegate/serving/ui.py` serves it; `tunegate ui build`
writes it into a static site).

Nothing here computes a new figure: each view is read from what already holds it, and
says where (``source``). Releases and the audit trail come from the registry (GTO's git
tags), a release's checks from the ``gate.json`` packaged with it in the model store (its
files verified against the registry first), its worst regressions from the release report
packaged beside it, the canary from the canary judge run as a dry run on the request log,
and drift from the reports `tunegate drift` wrote. Anything unreadable becomes a note on
the page, never a broken page.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json
from tunegate.core.errors import TunegateError
from tunegate.core.markdown import REGRESSIONS, blocks, section
from tunegate.serving.package import REPORT, resolve
from tunegate.serving.releases import json_message

JUDGE = "rollout judge:"
"""How the canary judge's own registry actions begin their reason (tunegate/serving/rollout.py)."""
LISTED = ("version", "model_id", "verdict", "registered_at")
"""What the releases page lists of each registered release."""
HTML_NAME = re.compile(r"^[\w.:+-]+\.html$")
"""A drift report's Evidently page as the dashboard links it: a bare file name."""


def releases_view(registry: Any) -> dict[str, Any]:
    """Each stage's release, traffic share, verdict and assignment, every registered release,
    and the audit trail (newest first; forced promotions marked)."""
    newest = sorted(registry.releases().values(), key=_registration, reverse=True)
    return {
        "artifact": registry.name,
        "stages": registry.status(),
        "releases": [{k: getattr(r, k) for k in LISTED} for r in newest],
        "audit": audit_trail(registry),
        "source": f"registry: GTO tags of {registry.name} in {registry.repo.name}",
    }


def audit_trail(registry: Any) -> list[dict[str, Any]]:
    """Every stage assignment and unassignment, newest first, forced and judge moves marked."""
    trail = []
    for e in reversed(registry.events()):
        info = json_message(e["message"])
        reason = str(info.get("reason", ""))
        trail.append(
            {
                "time": str(e["timestamp"]),
                "action": "assign" if e["event"] == "assignment" else "unassign",
                "stage": e["stage"],
                "version": e["version"],
                "by": e["author"],
                "weight": info.get("weight"),
                "reason": reason,
                "forced": bool(info.get("forced", False)),
                "judge": reason.startswith(JUDGE),
            }
        )
    return trail


def _registration(r: Any) -> tuple[str, list[int]]:
    """When a release was registered; within one second, by its version's numbers."""
    return r.registered_at, [int(n) for n in re.findall(r"\d+", r.version)]


def release_view(registry: Any, version: str) -> dict[str, Any]:
    """One release: its gate record's checks and baseline, its worst regressions and its card."""
    releases = registry.releases()  # one read of the registry's history for the whole view
    release = releases.get(version) or registry.release(version)  # the latter names what is known
    out: dict[str, Any] = {
        "version": version,
        "model_id": release.model_id,
        "verdict": release.verdict,
        "registered_at": release.registered_at,
        "tree_sha256": release.tree_sha256,
        "bento_tag": release.bento_tag,
        "notes": [],
    }
    try:
        folder = resolve(release.bento_tag, release.tree_sha256)
    except TunegateError as err:
        return out | {"gate": None, "card": None, "regressions": [], "notes": [str(err)]}
    gate, card = read_json(folder / "gate.json"), read_json(folder / "card.json")
    by_tree = {r.tree_sha256: r.version for r in releases.values()}
    baseline = dict(gate.get("baseline") or {})
    baseline["version"] = by_tree.get(baseline.get("tree_sha256"))
    out["gate"] = {
        "verdict": gate.get("verdict"),
        "summary": gate.get("summary", ""),
        "task": gate.get("task", "classification"),
        "baseline": baseline,
        "checks": [_check(c) for c in gate.get("checks", [])],
        "notes": list(gate.get("notes", [])),
    }
    out["card"] = {
        "base_model": card.get("base_model", {}),
        "license": card.get("license") or card.get("base_model", {}).get("license"),
        "method": card.get("method"),
        "data": card.get("data", {}).get("files", {}),
        "params": card.get("params", {}),
        "created_at": card.get("environment", {}).get("created_at"),
        "git_revision": card.get("environment", {}).get("git_revision"),
    }
    report = folder / REPORT
    if report.exists():
        found = blocks(section(report.read_text(encoding="utf-8"), REGRESSIONS))
        out["regressions"] = [asdict(b) for b in found]
    else:
        out["regressions"] = []
        out["notes"].append("no release report was packaged with this release (packaged before 0.1 had one)")
    out["source"] = f"model store {release.bento_tag}: gate.json, card.json, {REPORT} (files verified)"
    return out


def _check(c: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "metric", "value", "ci", "threshold", "passed", "outcome", "p_value", "p_adjusted",
            "p_harm_adjusted", "items", "needed", "test", "reason")  # fmt: skip
    return {k: c.get(k) for k in keys}


def canary_view(registry: Any, log: Any, params: Any) -> dict[str, Any]:
    """The canary judge's view now (a dry run: nothing changes; none without a `log`) and its
    decisions so far."""
    from tunegate.serving.rollout import step

    stages = registry.stages()
    out: dict[str, Any] = {
        "canary": asdict(stages["canary"]) if stages["canary"] else None,
        "production": asdict(stages["production"]) if stages["production"] else None,
        "limits": {
            "min_requests": params.release.judge_min_requests,
            "max_error_increase": params.release.judge_max_error_increase,
            "max_p95_ratio": params.release.judge_max_p95_ratio,
            "max_invalid_rate": params.release.judge_max_invalid_rate,
            "min_agreement": params.release.judge_min_agreement,
            "steps": list(params.release.canary_steps),
            "alpha": params.gate.alpha,
        },
        "history": [e for e in audit_trail(registry) if e["judge"]],
        "source": "request log, judged as `tunegate rollout step --dry-run` does; history: registry",
    }
    if log is None:
        return out | {"decision": None}
    try:
        out["decision"] = step(registry, log, params.release, params.gate.alpha, apply=False).to_dict()
    except TunegateError as err:
        out["decision"], out["note"] = None, f"the request log could not be read: {err}"
    return out


def drift_view(reports_dir: Path) -> dict[str, Any]:
    """Every drift report, oldest first, one time line per signal, and the retraining triggers."""
    reports, notes = [], []
    for path in sorted(reports_dir.glob("2*.json")):
        try:
            reports.append(_report(read_json(path), path.name))
        except (TunegateError, KeyError, TypeError, ValueError, AttributeError) as err:  # any shape
            notes.append(f"{path.name} skipped: not a drift report ({err})")
    lines: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        for s in r.pop("signal_rows"):
            lines.setdefault(s["name"], []).append({"time": r["time"]} | s)
    return {
        "reports": reports,
        "signals": lines,
        "triggers": _triggers(reports_dir / "triggers.jsonl", notes),
        "notes": notes,
        "source": f"drift reports in {reports_dir.name}/ (`tunegate drift`), triggers.jsonl",
    }


def _report(raw: dict[str, Any], name: str) -> dict[str, Any]:
    signals = [
        {k: s.get(k) for k in ("name", "method", "score", "threshold", "drifted", "p_value", "note")}
        for s in raw["signals"]
    ]
    html = [Path(h).name for h in raw.get("html", []) if HTML_NAME.match(Path(h).name)]
    return {
        "time": iso_time(str(raw["time"])),
        "file": name,
        "status": raw["status"],
        "drifted": list(raw.get("drifted", [])),
        "requests": raw.get("window", {}).get("requests"),
        "version": raw.get("window", {}).get("version"),
        "html": html,
        "retraining": raw.get("retraining"),
        "signal_rows": signals,
    }


def iso_time(text: str) -> str:
    """A report's time (``20261206T114419996534Z``, as `tunegate drift` names its files) or a
    trigger's (ISO 8601) as ISO 8601 in UTC, which a browser's ``Date.parse`` reads; else as is."""
    for parse in (lambda t: datetime.strptime(t, "%Y%m%dT%H%M%S%fZ"), datetime.fromisoformat):
        try:
            when = parse(text)
        except ValueError:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat(timespec="seconds")
    return text


def _triggers(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            t = json.loads(line)
            out.append({k: t.get(k) for k in ("time", "why", "reports", "exit_code", "verdict")})
            out[-1]["time"] = iso_time(str(t.get("time")))
        except (json.JSONDecodeError, AttributeError):
            notes.append(f"{path.name} line {n} skipped: not JSON")
    return out
