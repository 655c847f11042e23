"""``tunegate tune --report``: the study as a person reads it.

``tune/<study>/report.md``: the budget, the trials table (state, recipe, validation value
with its spread over folds, forgetting, steps, seconds), each parameter's importance
(Optuna's fANOVA over the complete trials), the best recipe against the default (trial 0),
and the run-to-run spread when ``--seeds`` has run. ``history.svg`` beside it: every
trial's value in order, pruned trials marked, the best-so-far line (plain SVG, no
plotting library).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json


def importances(study: Any) -> dict[str, float]:
    """fANOVA importances over the complete trials ({} with fewer than two)."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    complete = study.get_trials(states=(TrialState.COMPLETE,))
    if len(complete) < 2 or len({str(t.params) for t in complete}) < 2:
        return {}
    try:
        return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # a parameter with one value in every trial
        return {}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.4f}".rstrip("0").rstrip(".")
    return "-" if value is None else str(value)


def markdown(record: dict[str, Any], weights: dict[str, float], spread: dict[str, Any] | None) -> str:
    keys = list(record["space"])
    trials = record["trials"]
    pruned = sum(t["state"] == "pruned" for t in trials)
    out = [f"# Recipe search: {record['study']}", "",
           f"Objective: {record['objective']}; constraint: {record['constraint']}.",
           f"Budget: {record['budget']}. Trials: {len(trials)} ({pruned} pruned).", "",
           "![history](history.svg)", "", "## Trials", "",
           "| # | state | " + " | ".join(keys)
           + " | value | sd over folds | forgetting KL | steps | seconds |",
           "|---" * (len(keys) + 7) + "|"]  # fmt: skip
    for t in trials:
        cells = [str(t["number"]) + (" (default)" if t.get("default") else ""), t["state"]]
        cells += [_cell(t["params"].get(k)) for k in keys]
        cells += [_cell(t.get(k)) for k in ("value", "value_sd", "forgetting_kl", "steps", "seconds")]
        out.append("| " + " | ".join(cells) + " |")
    if weights:
        out += ["", "## Parameter importance (fANOVA)", "", "| parameter | importance |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in weights.items()]
    default = next((t for t in trials if t.get("default")), None)
    best = record["best"]
    out += ["", "## Best recipe against the default", ""]
    if best is None:
        out.append("No complete trial within the forgetting constraint.")
    else:
        base = default["value"] if default and default.get("value") is not None else None
        out += ["| | " + " | ".join(keys) + " | validation value |", "|---" * (len(keys) + 2) + "|"]
        if default:
            out.append("| default | " + " | ".join(_cell(default["params"].get(k)) for k in keys)
                       + f" | {_cell(base)} |")  # fmt: skip
        out.append(f"| best (trial {best['number']}) | "
                   + " | ".join(_cell(best["params"].get(k)) for k in keys)
                   + f" | {_cell(best['value'])} |")  # fmt: skip
    if spread:
        out += ["", f"## Run-to-run spread ({len(spread['seeds'])} seeds: {spread['seeds']})", "",
                "| figure | mean | sd | min | max |", "|---|---|---|---|---|"]  # fmt: skip
        out += [f"| {k} | {v['mean']:.4f} | {v['sd']:.4f} | {v['min']:.4f} | {v['max']:.4f} |"
                for k, v in spread["spread"].items()]  # fmt: skip
    return "\n".join(out) + "\n"


def history_svg(trials: list[dict[str, Any]], title: str) -> str:
    width, height, left, top, bottom = 640, 300, 60, 40, 40
    values = [t["value"] for t in trials if t.get("value") is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    n = max(len(trials), 2)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (width - left - 20) * i / (n - 1)
        return x, top + (height - top - bottom) * (hi - v) / (hi - lo)

    body = [f'<text x="12" y="24" font-size="15" font-weight="bold">{escape(title)}</text>',
            f'<line x1="{left}" y1="{height - bottom}" x2="{width - 20}" y2="{height - bottom}" '
            'stroke="#999"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
            f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{hi:.3f}</text>',
            f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">{lo:.3f}</text>',
            f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">trial</text>']  # fmt: skip
    best, line = None, []
    for i, t in enumerate(trials):
        if t["state"] == "pruned":
            x, _ = xy(i, lo)
            body.append(
                f'<text x="{x:.1f}" y="{height - bottom - 4}" text-anchor="middle" fill="#c62828">x</text>'
            )
            continue
        if t.get("value") is None:
            continue
        x, y = xy(i, t["value"])
        colour = "#2e7d32" if t.get("feasible", True) else "#9e9e9e"
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
        if t.get("feasible", True):
            best = t["value"] if best is None else max(best, t["value"])
        if best is not None:
            line.append(f"{x:.1f},{xy(i, best)[1]:.1f}")
    if line:
        body.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    body.append(f'<text x="{width - 20}" y="{top - 8}" text-anchor="end" fill="#1565c0">best so far; '
                f'x = pruned, grey = over the forgetting limit</text>')  # fmt: skip
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="Helvetica, Arial, sans-serif" font-size="12">'
            f'<rect width="{width}" height="{height}" fill="white"/>'
            + "".join(body) + "</svg>\n")  # fmt: skip


def write_report(study: Any, folder: Path) -> Path:
    record = read_json(folder / "trials.json")
    spread = read_json(folder / "spread.json") if (folder / "spread.json").exists() else None
    (folder / "history.svg").write_text(history_svg(record["trials"], f"{record['study']}: validation value"))
    path = folder / "report.md"
    path.write_text(markdown(record, importances(study), spread), encoding="utf-8")
    return path
