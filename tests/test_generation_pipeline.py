"""The generation kind's DVC pipeline (generation/dvc.yaml), run for real in a fresh copy of
the project on the tiny model: base (a local safetensors folder), prepare (chat records with
the ticket schema), a few training steps, evaluate (tunegate/evaluation/chat_decode.py under the schema,
the prompting reference, parity of vLLM and the scorer against transformers + PEFT, the probe),
gate and package."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import COPY, QUICK_TRAIN, ROOT, sh, write_params
from tunegate.core import monitor_reference
from tunegate.core.artifacts import read_json
from tunegate.core.errors import DataError
from tunegate.core.task import read_task

pytestmark = pytest.mark.slow


NEW_TICKET = {
    "intent": "lost_or_stolen_card", "product": "credit_card", "amount": None, "currency": None,
    "urgency": "high", "reference": None, "summary": "Customer's credit card was stolen.",
}  # fmt: skip


def write_reference_feedback(project: Path) -> None:
    """Two /generate requests a caller sent reference answers for, exported as retraining
    does (`tunegate drift --retrain`): the pipeline's prepare stage reads them through DVC."""
    from tunegate.monitoring.retrain import export_references
    from tunegate.serving.requestlog import Entry, RequestLog

    log = RequestLog(project / "logs/requests.sqlite")
    for i, text in enumerate(["someone stole my credit card on the train", "my credit card was taken"]):
        log.write(Entry(f"g{i}", "generate", 200, version="v0", input=text, output="{}"))
        log.feedback(f"g{i}", json.dumps(NEW_TICKET))
    log.close()
    assert (
        export_references(project / "logs/requests.sqlite", project / "data/feedback-generation")["new"] == 2
    )


@pytest.fixture(scope="module")
def generation_project(tmp_path_factory, tiny_base) -> Path:
    dest = tmp_path_factory.mktemp("generation-project")
    for rel in [*COPY, "generation/dvc.yaml", "data/tickets", "data/feedback-generation"]:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    shifted = (ROOT / "data/tickets/shifted.jsonl").read_text().splitlines()[:24]
    (dest / "data/tickets/shifted.jsonl").write_text("\n".join(shifted) + "\n")
    tiny = {"source": str(tiny_base), "gguf_file": None}
    write_params(dest / "params.yaml", base_model=tiny)  # the base stage reads params.yaml
    raw = yaml.safe_load((ROOT / "params-generation.yaml").read_text())
    raw["base_model"] |= tiny
    raw["prepare"] |= {"max_rows": 60, "min_rows_per_label": 5}
    raw["train"] |= QUICK_TRAIN | {"max_train_rows": None, "max_val_rows": None, "max_seq_len": 320}
    raw["eval"] |= {"perturbations": ["typos"], "perturbation_rows": 10, "parity_rows": 6,
                    "max_new_tokens": 40, "few_shot": 1}  # fmt: skip
    (dest / "params-generation.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_reference_feedback(dest)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        assert sh(cmd, dest).returncode == 0
    dvc = str(Path(sys.executable).parent / "dvc")
    result = sh([dvc, "repro", "generation/dvc.yaml"], dest)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dest


def test_generation_pipeline_prepares_chat_records_and_trains_on_assistant_turns(generation_project):
    p = generation_project
    task = read_task(p / "data/prepared-generation")
    assert task.kind == "generation" and task.output_schema["title"] == "Kestrel support ticket"
    assert list(task.output_schema["properties"])[:2] == ["intent", "product"]  # its own order
    manifest = read_json(p / "data/prepared-generation/manifest.json")
    assert (
        manifest["task"] == "generation"
        and sum(manifest["counts"][s] for s in ("train", "val", "holdout")) == 60 + 2  # + the 2 feedback
    )
    assert manifest["counts"]["shifted"] == 24 and manifest["redactions_total"] > 0
    assert manifest["feedback"]["added_to_train"] == 2  # the callers' reference answers, train only
    assert str(Path("data/feedback-generation/feedback.jsonl")) in manifest["inputs"]
    card = read_json(p / "models/candidate-generation/card.json")
    assert card["task"] == "generation" and card["metrics"]["steps"] == 4
    prompt = read_json(p / "models/candidate-generation/prompt.json")
    assert prompt["task"] == "generation" and prompt["system"].startswith("You file support tickets")


def test_generation_pipeline_gates_on_per_item_scores_with_the_task_recorded(generation_project):
    p = generation_project
    gate = read_json(p / "eval/generation/gate.json")
    assert gate["task"] == "generation" and gate["baseline"]["kind"] == "base"
    names = {c["name"] for c in gate["checks"]}
    assert {
        "holdout.field_f1", "holdout.token_f1", "holdout.json_valid", "holdout.schema_valid",
        "holdout.ab_vs_base", "shifted.ab_vs_base", "perturb_typos.drop", "probe.forgetting",
        "parity.served_vs_reference", "parity.evaluation_vs_reference", "license",
    } <= names  # fmt: skip
    assert not {"holdout.macro_f1", "calibration.fitted", "holdout.ab_vs_classical"} & names
    ab = next(c for c in gate["checks"] if c["name"] == "holdout.ab_vs_base")
    assert ab["metric"].startswith("field_f1 delta") and ab["ci"] is not None and ab["p_adjusted"] is not None
    assert any(
        n.startswith("vs prompting (base model, few-shot), holdout: field_f1 delta") for n in gate["notes"]
    )
    # Four steps on a random tiny model write no useful ticket: rejected, and the floor says why.
    assert gate["verdict"] == "rejected"
    assert not next(c for c in gate["checks"] if c["name"] == "holdout.field_f1")["passed"]
    holdout = [json.loads(x) for x in (p / "eval/generation/results/holdout.jsonl").read_text().splitlines()]
    assert holdout and all(set(r["scores"]) == {"candidate", "baseline", "prompting"} for r in holdout)
    # The suites are decoded by the scorer (tunegate/evaluation/chat_decode.py), parity asks vLLM too
    evidence = read_json(p / "eval/generation/results/evidence.json")
    assert evidence["task"] == "generation" and evidence["engine"] == "scorer"
    assert evidence["parity"]["rows"] == 6 and evidence["prompting"]["few_shot"] == 1
    report = (p / "eval/generation/report.md").read_text()
    assert (
        report.startswith("# Release report: REJECTED") and "| holdout | " in report and "prompting" in report
    )
    # 60 records leave a hold-out too small to judge drift against: said, not faked.
    with pytest.raises(DataError, match="the hold-out has 12 records and the drift tests need at least 50"):
        monitor_reference.read(p / "eval/generation/results/monitor_reference.json")
    package = read_json(p / "registry/generation/candidate.json")
    assert package["packaged"] is False and "holdout.field_f1" in package["reason"]
