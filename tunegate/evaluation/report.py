"""The release report (eval/report.md): verdict first, then the checks, then the evidence.

Pure string building from the gate record, the evaluation evidence and the predictions.
"""

from __future__ import annotations

import math
from typing import Any

from tunegate.core.task import for_kind
from tunegate.evaluation.calibration_fit import record_scores
from tunegate.evaluation.evidence import Evidence
from tunegate.evaluation.outcomes import VERDICT_WORDS, interval_level
from tunegate.evaluation.report_generation import generation_sections
from tunegate.evaluation.spread_note import spread_lines

EXAMPLES = 8


def _num(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.3f}"
    return str(x)


def _ci(ci: Any) -> str:
    return f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else ""


def _cell(text: str, limit: int = 110) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def outcome(check: dict[str, Any]) -> str:
    """A check's outcome from its record (records written before three outcomes: pass or fail)."""
    if "outcome" in check:
        return check["outcome"]
    return "passed" if check["passed"] else "failed"


def mark(check: dict[str, Any]) -> str:
    return {"passed": "pass", "failed": "**FAIL**", "undecided": "*not enough evidence*"}[outcome(check)]


def _accuracy(rows: list[dict[str, Any]], who: str) -> float:
    return sum(r[who] == r["gold"] for r in rows) / len(rows) if rows else math.nan


def render_report(
    record: dict[str, Any],
    evidence: Evidence,
    records: dict[str, list[dict]],
    out_of_scope: list[dict] | None = None,
) -> str:
    cand, base = record["candidate"], record["baseline"]
    kind = "production model" if base["kind"] == "production" else "base model, zero-shot (first release)"
    alpha = record["policy"]["alpha"]
    out = [
        f"# Release report: {VERDICT_WORDS[record['verdict']]}",
        "",
        f"**{record['summary']}**",
        "",
        f"- Candidate: `{cand['model_id']}` (tree sha256 `{cand['tree_sha256'][:16]}…`)",
        f"- Baseline: `{base['model_id']}`, the {kind}",
        f"- Engine: {record['engine']}; policy: params.yaml `gate:` (alpha {record['policy']['alpha']}, "
        f"{record['policy']['correction']} correction)",
        "",
        "## Checks",
        "",
        f"A check passes when its interval shows it, fails when harm is shown, and otherwise has "
        f"not enough evidence: each end of the {interval_level(alpha)} is a one-sided "
        f"{100 * (1 - alpha):g}% bound; p is the claim's (adjusted), harm p the harm test's "
        f"({record['policy']['correction']} over every harm test).",
        "",
        f"| | check | metric | value | {interval_level(alpha)} | threshold | p (adjusted) | harm p | items "
        "| reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in record["checks"]:
        p = f"{c['p_value']:.3g} ({c['p_adjusted']:.3g})" if c.get("p_adjusted") is not None else ""
        harm = f"{c['p_harm_adjusted']:.3g}" if c.get("p_harm_adjusted") is not None else ""
        items = "" if c.get("items") is None else str(c["items"])
        out.append(
            f"| {mark(c)} | {c['name']} | {c['metric']} | {_num(c['value'])} | {_ci(c['ci'])} | "
            f"{_cell(c['threshold'])} | {p} | {harm} | {items} | {_cell(c['reason'])} |"
        )
    for c in record.get("noted", []):
        out.append(
            f"| noted | {c['name']} | {c['metric']} | {_num(c['value'])} | {_ci(c['ci'])} | "
            f"{_cell(c['threshold'])} | | | | {_cell(c['reason'])} |"
        )
    out += _floor_context(record["checks"])
    if record.get("advice"):
        out += ["", "## What to change", ""] + [f"- {line}" for line in record["advice"]]
    for c in record["checks"]:
        if "design effect" in c.get("test", ""):
            out.append(f"\nNote: {c['name']}: {c['test']}")
    for note in record.get("notes", []):
        out.append(f"\nNote: {note}")
    out += spread_lines(record.get("spread"))
    kinds = {"classification": _classification_sections, "generation": generation_sections}
    out += for_kind(kinds, evidence.task, "report")(evidence, records, out_of_scope, record["policy"])
    out += _probe_section(evidence)
    out += _parity_section(evidence)
    out += [
        "",
        "## Provenance",
        "",
        f"- Base model: `{record['base']['model_id']}`, license {record['base'].get('license')}",
        "- Data: " + ", ".join(f"{k} `{v[:12]}`" for k, v in sorted(record["data"].items())),
        f"- Evidence: `{record.get('results', 'eval/results')}/evidence.json` "
        f"sha256 `{record['evidence_sha256'][:16]}…`",
        "",
    ]
    return "\n".join(out)


def _floor_context(checks: list[dict[str, Any]]) -> list[str]:
    """Each hold-out floor beside the reference models' value of the same metric."""
    rows = [c for c in checks if c.get("context")]
    if not rows:
        return []
    who = sorted({w for c in rows for w in c["context"]}, key=lambda w: (w not in ("base", "production"), w))
    out = ["", "Floors beside the references (the same metric on the hold-out; reported, not judged):", ""]
    out += ["| check | floor | candidate | " + " | ".join(who) + " |", "|---|---|---|" + "---|" * len(who)]
    for c in rows:
        cells = " | ".join(_num(c["context"].get(w)) if w in c["context"] else "" for w in who)
        out.append(f"| {c['name']} | {_cell(c['threshold'])} | {_num(c['value'])} | {cells} |")
    return out


def _classification_sections(
    evidence: Evidence,
    records: dict[str, list[dict]],
    out_of_scope: list[dict] | None,
    policy: dict[str, Any],
) -> list[str]:
    """Suites with accuracies, calibration and abstention, and the largest regressions."""
    out = _suites_section(evidence, records) + _calibration_section(evidence, records, out_of_scope)
    return (
        out + ["", "## Largest regressions", ""] + _class_regressions(records) + _example_regressions(records)
    )


def _suites_section(evidence: Evidence, records: dict[str, list[dict]]) -> list[str]:
    out = [
        "",
        "## Suites",
        "",
        "| suite | rows | candidate accuracy | baseline accuracy | classical reference accuracy |",
        "|---|---|---|---|---|",
    ]
    for name, rows in records.items():
        versus = evidence.suites[name].versus_baseline
        tfidf = _num(_accuracy(rows, "classical")) if rows and "classical" in rows[0] else "-"
        out.append(
            f"| {name} | {len(rows)} | {_num(_accuracy(rows, 'candidate'))} | "
            f"{_num(_accuracy(rows, 'baseline')) if versus else '(not compared)'} | {tfidf} |"
        )
    return out


def _probe_section(evidence: Evidence) -> list[str]:
    probe, out = evidence.probe, []
    if probe.candidate is not None and probe.base is not None:
        out += [
            "",
            "## Forgetting probe",
            "",
            f"General questions ({probe.rows}), answered under the default chat prompt: "
            f"candidate {_num(probe.candidate['accuracy'])}, base model {_num(probe.base['accuracy'])} "
            "(share of answers containing an expected answer; exact match "
            f"{_num(probe.candidate['exact_match'])} vs {_num(probe.base['exact_match'])}, token F1 "
            f"{_num(probe.candidate['token_f1'])} vs {_num(probe.base['token_f1'])}).",
            "",
            "| question | candidate | base |",
            "|---|---|---|",
        ]
        for ex in probe.examples[:5]:
            out.append(
                f"| {_cell(ex['question'], 60)} | {_cell(ex['candidate'], 60)} | {_cell(ex['base'], 60)} |"
            )
    return out


def _parity_section(evidence: Evidence) -> list[str]:
    parity = evidence.parity
    out = ["", "## Parity", ""]
    if parity.rates:
        rates = ", ".join(f"{k} {v:.3f}" for k, v in parity.rates.items())
        out.append(f"On {parity.rows} hold-out rows ({parity.served_engine}): {rates}.")
        if parity.confidence_gap is not None:
            out.append(
                f"Largest raw-confidence difference, served vs evaluated, on the rows they answer alike: "
                f"{parity.confidence_gap:.2g} (the monitoring reference holds the evaluated answers)."
            )
        for name, diffs in parity.disagreements.items():
            for d in diffs[:EXAMPLES]:
                out.append(f"- {name}: row `{d['id']}`: {d['one']} vs reference {d['reference']}")
    else:
        out.append(parity.missing or "parity was not measured")
    return out


def _calibration_section(
    evidence: Evidence, records: dict[str, list[dict]], out_of_scope: list[dict] | None
) -> list[str]:
    """How sure the candidate is, how right that is, and where it hands messages to people."""
    cal = evidence.calibration
    if not cal:
        return []
    how = f"temperature {cal['temperature']:.3g}" if cal["method"] == "temperature" else cal["method"]
    out = [
        "",
        "## Calibration and abstention",
        "",
        f"Calibration: {how}, fitted on {cal['fitted'].get('rows', 0)} validation answers"
        + (f" (failed: {cal['failed']})" if "failed" in cal else "")
        + f". Abstains below calibrated confidence {cal['abstain_below']:.3f} ({cal['chosen_by']}).",
        *_threshold_lines(cal.get("threshold_search")),
        "",
        "| suite | ECE | Brier | answered | accuracy of answered |",
        "|---|---|---|---|---|",
    ]
    for name, rows in records.items():
        if not rows or "confidence" not in rows[0]:
            continue
        m = record_scores(rows)
        out.append(
            f"| {name} | {_num(m['ece'])} | {_num(m['brier'])} | {_num(m['coverage'])} | "
            f"{_num(m['selective_accuracy'])} |"
        )
    if out_of_scope:
        slipped = sorted(
            (r for r in out_of_scope if not r["abstained"]), key=lambda r: -(r["confidence"] or 0)
        )
        out += [
            "",
            f"Out-of-scope hold-out: {len(out_of_scope) - len(slipped)} of {len(out_of_scope)} abstained on. "
            "The most confident answers to messages that have no intent:",
            "",
        ]
        out += [
            f"- {_cell(r['text'], 90)} -> `{r['candidate']}` ({_num(r['confidence'])})"
            for r in slipped[:EXAMPLES]
        ]
    return out


def _threshold_lines(search: dict[str, Any] | None) -> list[str]:
    """The auto threshold's floors on validation, and which one bound the choice."""
    if not search:
        return []
    out = [
        "",
        f"Validation at the threshold ({search['rows']} in-scope, {search['oos_rows']} out-of-scope rows): "
        + search["explanation"]
        + "."
        + ("" if search["oos_rows"] else " Out-of-scope recall could not be measured on validation."),
        "",
        "| floor | declared by | floor | validation | compared (bound) | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in search["floors"]:
        out.append(
            f"| {f['name']} | `{f['key']}` | {f['floor']} | {_num(f['value'])} | {_num(f['bound'])} | "
            f"{'yes' if f['met'] else '**no**'} |"
        )
    return out


def _class_regressions(records: dict[str, list[dict]]) -> list[str]:
    lines = []
    for name in ("holdout", "shifted"):
        rows = records.get(name)
        if not rows:
            continue
        by_class: dict[str, list[dict]] = {}
        for r in rows:
            by_class.setdefault(r["gold"], []).append(r)
        deltas = sorted(
            (
                (_accuracy(rs, "candidate") - _accuracy(rs, "baseline"), lab, len(rs))
                for lab, rs in by_class.items()
            ),
        )[:3]
        shown = ", ".join(f"{lab} {d:+.2f} (n={n})" for d, lab, n in deltas)
        lines.append(f"- {name}, smallest recall gains versus the baseline: {shown}")
    return lines


def _example_regressions(records: dict[str, list[dict]]) -> list[str]:
    lines = ["", "Messages the baseline got right and the candidate got wrong:", ""]
    lines += ["| suite | message | gold | candidate |", "|---|---|---|---|"]
    shown = 0
    for name in ("holdout", "shifted"):
        for r in records.get(name, []):
            if shown >= EXAMPLES:
                break
            if r["baseline"] == r["gold"] and r["candidate"] != r["gold"]:
                lines.append(f"| {name} | {_cell(r['text'], 90)} | {r['gold']} | {r['candidate']} |")
                shown += 1
    if not shown:
        lines.append("| | (none) | | |")
    hold = {r["id"]: r for r in records.get("holdout", [])}
    broken = [
        (name, r)
        for name, rows in records.items()
        if name.startswith("perturb_")
        for r in rows
        if r["candidate"] != r["gold"] and hold.get(r["id"], {}).get("candidate") == r["gold"]
    ]
    if broken:
        lines += ["", "Hold-out messages the candidate got right until perturbed:", ""]
        lines += ["| suite | perturbed message | gold | candidate |", "|---|---|---|---|"]
        for name, r in broken[:EXAMPLES]:
            lines.append(f"| {name} | {_cell(r['text'], 90)} | {r['gold']} | {r['candidate']} |")
    return lines
