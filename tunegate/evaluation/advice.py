"""A rejection says what to change: the likely causes of each failed (or undecided) check and
the params to try, read from the checks and, for forgetting, from the training curves the
train stage recorded (card.json ``metrics.selection``, tunegate/training/selection.py).

Advice, never a decision: the report's "What to change" section and `tunegate gate` print it.
Pure: checks as gate.json writes them, the candidate card's training params and curve.
"""

from __future__ import annotations

from typing import Any


def _forgetting(check: dict[str, Any], train: dict[str, Any], selection: dict[str, Any] | None) -> str:
    lr = train.get("lr")
    out = (
        f"probe.forgetting {check['value']:.3f} (limit {check['threshold']}): the fine-tune answers "
        f"general questions worse than the base model."
    )
    trained = [
        p for p in (selection or {}).get("curve", []) if p["step"] > 0 and p.get("forgetting") is not None
    ]
    if trained:
        kept = next((p for p in trained if p["step"] == selection["step"]), trained[-1])
        first = trained[0]
        out += (
            f" During training forgetting went from {first['forgetting']:.3f} at step {first['step']} "
            f"to {kept['forgetting']:.3f} at the kept step {kept['step']}"
        )
        earlier = [p for p in trained if p["forgetting"] < kept["forgetting"]]
        if earlier:
            best = max(earlier, key=lambda p: p["answer_match"])
            out += (
                f"; step {best['step']} forgot {best['forgetting']:.3f} with validation answers "
                f"{best['answer_match']:.3f}: train.max_forgetting {best['forgetting']:.3g} keeps it"
            )
        out += "."
    elif selection is None:
        out += (
            " No training curve was read (the gate stage was given no --candidate card, or"
            " train.forgetting_source was not set to measure it per checkpoint)."
        )
    hints = []
    if lr:
        hints.append(f"a lower train.lr (now {lr:g}; try {lr / 2:g})")
    hints.append("fewer steps (train.epochs or train.max_steps)")
    if train.get("replay_rows") == 0:
        hints.append("replay on (train.replay_rows: null)")
    else:
        hints.append("more replay prompts (data.replay_source)")
    return out + " Try " + ", ".join(hints) + "."


def _floor(check: dict[str, Any], train: dict[str, Any]) -> str:
    context = check.get("context") or {}
    refs = ", ".join(f"{k} {v:.3f}" for k, v in sorted(context.items()))
    seen = f" (on the same items: {refs})" if refs else ""
    under_refs = context and all(check["value"] < v for v in context.values())
    cause = (
        "the references do better: the fine-tune is undertrained or its data disagrees with the hold-out"
        if under_refs
        else "the task is hard for this base model at this size of data"
    )
    epochs = train.get("epochs")
    return (
        f"{check['name']} {check['value']:.3f} under its floor {check['threshold']}{seen}: {cause}. Try more "
        f"training (train.epochs, now {epochs}), more training rows, or a floor this data supports "
        f"(gate.metric_floors / gate.min_*), declared before the next run."
    )


def _drop(check: dict[str, Any]) -> str:
    name = check["name"]
    if "casing" in name:
        fix = "train.augment_casing (a share of training rows also as upper or lower case)"
    elif "truncation" in name:
        fix = "train.augment_truncation (a share of training rows also cut off after their first words)"
    elif name.startswith("slice."):
        fix = "more training rows like this slice (its messages' length)"
    elif name.startswith("shifted"):
        fix = "training rows from the shifted distribution (data.source), or feedback from production"
    else:
        fix = "training rows with the same noise (typos, missing punctuation, cut-off messages)"
    value, limit = check["value"], check["threshold"]
    return f"{name} {value:.3f} over its limit {limit}: the model leans on surface form. Try {fix}."


def _ab(check: dict[str, Any]) -> str:
    return (
        f"{check['name']}: the candidate is shown worse than the baseline ({check['value']:+.3f}). Compare "
        f"the report's largest regressions; a recipe change (train.*) or more data, then `dvc repro`."
    )


def _calibration(check: dict[str, Any]) -> str:
    return (
        f"{check['name']} {check['value']:.3f} ({check['threshold']}): the confidences do not match the "
        f"answers. Try eval.calibration (temperature, isotonic) with more validation rows "
        f"(calibration_min_rows), or the abstention floors (gate.min_coverage, serve threshold)."
    )


def advice(
    checks: list[dict[str, Any]], train: dict[str, Any] | None = None, selection: dict[str, Any] | None = None
) -> list[str]:
    """One line per failed check with what to try; one line for the undecided ones."""
    train = train or {}
    out = []
    for c in checks:
        if c.get("outcome") != "failed":
            continue
        name = c["name"]
        if name == "probe.forgetting":
            out.append(_forgetting(c, train, selection))
        elif name.endswith(".drop"):
            out.append(_drop(c))
        elif "ab_vs_" in name:
            out.append(_ab(c))
        elif name.startswith(("calibration.", "validation.", "holdout_oos.")) or name in (
            "holdout.ece", "holdout.coverage", "holdout.selective_accuracy"
        ):  # fmt: skip
            out.append(_calibration(c))
        elif name.startswith("holdout.") and str(c.get("threshold", "")).startswith(">="):
            out.append(_floor(c, train))
    undecided = [c for c in checks if c.get("outcome") == "undecided" and c.get("needed")]
    if undecided:
        most = max(c["needed"] for c in undecided)
        names = ", ".join(c["name"] for c in undecided)
        out.append(
            f"not enough evidence on {names}: more hold-out items settle it (up to about {most}; "
            f"`tunegate plan` sizes them); a margin or limit may change only before a run, never to "
            f"admit its result."
        )
    return out
