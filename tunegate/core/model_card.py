"""The Hugging Face model card (``README.md`` with a YAML header) of a candidate or release.

Generated from what tunegate already records, never written by hand: the candidate's
``card.json`` (base model, license, data hashes, training params) and, once the gate has
judged it, ``eval/gate.json`` (the checks of the hold-out and shifted suites, each with its
interval and threshold, as ``model-index`` results). The header is built with
``huggingface_hub``'s ``ModelCardData``, so the Hub and ``ModelCard.load`` read it.

The train stage writes the card without results (it has not been judged yet); the package
stage writes it again into the release's store folder with the gate's results.
"""

from __future__ import annotations

from typing import Any

PIPELINE_TAG = {"classification": "text-classification", "generation": "text-generation"}
SUITES = ("holdout", "shifted")
"""The suites whose checks become model-index results."""


def _level(gate: dict[str, Any]) -> float:
    """The intervals' confidence level: the record's own, else (records before three outcomes) 1 - alpha."""
    if "interval_level" in gate:
        return float(gate["interval_level"])
    alpha = (gate.get("policy") or {}).get("alpha", 0.05)
    return round(1 - float(alpha), 4)


def eval_results(card: dict[str, Any], gate: dict[str, Any], task: str) -> list[Any]:
    """One model-index result per numeric check of the hold-out and shifted suites; the
    interval, threshold and pass/fail ride along in ``metric_args``."""
    from huggingface_hub import EvalResult

    data = card.get("data", {}).get("files", {})
    results = []
    for check in gate.get("checks", []):
        suite, _, what = check["name"].partition(".")
        if suite not in SUITES or not isinstance(check.get("value"), (int, float)):
            continue
        ci = check.get("ci")
        args = {
            "threshold": check.get("threshold"),
            "passed": bool(check.get("passed")),
            "outcome": check.get("outcome", "passed" if check.get("passed") else "failed"),
        }
        if ci:
            args |= {"ci_low": ci[0], "ci_high": ci[1], "ci_level": _level(gate)}
        digest = data.get(f"{suite}.jsonl")
        results.append(
            EvalResult(
                task_type=PIPELINE_TAG.get(task, "text-generation"),
                dataset_type=f"tunegate/{suite}",
                dataset_name=f"{suite} ({gate.get('verdict', 'not judged')} release gate)",
                dataset_split=suite,
                dataset_revision=f"sha256:{digest}" if digest else None,
                metric_type=what,
                metric_name=f"{suite} {check.get('metric', what)}",
                metric_value=float(check["value"]),
                metric_args=args,
            )
        )
    return results


def header(card: dict[str, Any], gate: dict[str, Any] | None) -> Any:
    """The card's YAML header as ``ModelCardData``."""
    from huggingface_hub import ModelCardData

    task = card.get("task", "classification")
    method = card.get("method", "lora")
    base = card.get("base_model", {})
    inputs = card.get("data", {}).get("inputs", {})
    tags = ["tunegate", method, task]
    if gate is not None:
        tags.append(f"gate-{gate.get('verdict', 'unknown')}")
    return ModelCardData(
        library_name="peft" if method == "lora" else "transformers",
        base_model=base.get("hub_id"),
        license=card.get("license"),
        tags=tags,
        datasets=[f"{name}@sha256:{digest}" for name, digest in sorted(inputs.items())],
        pipeline_tag=PIPELINE_TAG.get(task, "text-generation"),
        model_name=card["model_id"],
        eval_results=eval_results(card, gate, task) if gate is not None else None,
    )


def _body(card: dict[str, Any], gate: dict[str, Any] | None) -> list[str]:
    base, train = card.get("base_model", {}), card.get("params", {}).get("train", {})
    lines = [
        f"# {card['model_id']}",
        "",
        f"A {card.get('method', 'lora')} fine-tune of `{base.get('hub_id') or base.get('source')}` "
        f"(tunegate base `{base.get('model_id')}`) for {card.get('task', 'classification')}, "
        f"made and judged by tunegate. License: {card.get('license')}.",
        "",
    ]
    if gate is None:
        lines += ["Not judged yet: the release gate (`eval/gate.json`) adds its results when packaged.", ""]
    else:
        baseline = gate.get("baseline", {}).get("model_id")
        verdict = gate.get("summary", gate.get("verdict"))
        lines += [f"**Release gate: {verdict}** (baseline `{baseline}`).", ""]
        lines += ["| check | metric | value | interval | threshold | outcome |", "|---|---|---|---|---|---|"]
        for c in gate.get("checks", []):
            ci = c.get("ci")
            shown = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            value = f"{c['value']:.3f}" if isinstance(c.get("value"), float) else str(c.get("value"))
            outcome = c.get("outcome", "passed" if c["passed"] else "failed")
            outcome = outcome.replace("undecided", "not enough evidence")
            cells = [c["name"], c.get("metric"), value, shown, c.get("threshold"), outcome]
            lines.append("| " + " | ".join(str(x) for x in cells) + " |")
        lines.append("")
    lines += ["## Training", ""]
    keys = ("method", "lr", "epochs", "batch_size", "max_seq_len")
    lines += [f"- {k}: {train[k]}" for k in keys if k in train]
    if "lora" in train:
        lines.append(f"- lora: r {train['lora'].get('r')}, alpha {train['lora'].get('alpha')}")
    chosen = (card.get("metrics") or {}).get("selection")
    if chosen:
        lines.append(f"- checkpoint kept: {chosen['reason']} (curves: `dvc plots show metrics/train`)")
    lines += ["", "## Data (sha256)", ""]
    files = card.get("data", {}).get("files", {})
    lines += [f"- `{name}`: `{digest}`" for name, digest in sorted(files.items())]
    lines += [
        "",
        "## Files",
        "",
        f"Adapter tree sha256 `{card.get('tree_sha256')}` (`card.json` lists every file's hash; "
        "tunegate verifies them before serving). Weights are safetensors only.",
        "",
    ]
    return lines


def render(card: dict[str, Any], gate: dict[str, Any] | None = None) -> str:
    """The whole README.md: YAML header, then the body."""
    from huggingface_hub import ModelCard

    text = f"---\n{header(card, gate).to_yaml()}\n---\n\n" + "\n".join(_body(card, gate))
    return str(ModelCard(text))
