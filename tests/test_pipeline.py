"""The real DVC pipeline, run in a fresh copy of the project: prepare, base (the real
SmolLM2 model), a few training steps, evaluate (every suite, the probe, vLLM parity) and
gate, through `dvc repro`; then the CLI, metrics and plots on what it produced."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUICK_EVAL, sh
from tunegate.core.artifacts import read_json


@pytest.mark.slow
def test_repro_builds_prepared_data_and_base_model(project):
    assert (project / "dvc.lock").exists()
    assert (project / "data/prepared/manifest.json").exists()
    assert (project / "models/base/model.safetensors").exists()
    assert (project / "models/base/card.json").exists()
    assert (project / "models/candidate/adapter_model.safetensors").exists()
    assert (project / "metrics/train/metrics.json").exists()


@pytest.mark.slow
def test_second_repro_does_nothing_and_status_is_clean(project):
    dvc = str(Path(sys.executable).parent / "dvc")
    again = sh([dvc, "repro"], project)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
    status = sh([dvc, "status"], project)
    assert status.returncode == 0
    assert "up to date" in status.stdout


@pytest.mark.slow
def test_changed_param_reruns_its_stage_and_what_follows(project, tmp_path):
    dvc = str(Path(sys.executable).parent / "dvc")
    result = sh([dvc, "exp", "run", "train", "-S", "prepare.max_rows=300", "--temp"], project)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Running stage 'prepare'" in result.stdout
    assert "Running stage 'train'" in result.stdout  # downstream of prepare
    assert "Running stage 'base'" not in result.stdout


@pytest.mark.slow
def test_evaluate_and_gate_record_a_verdict_with_every_check(project):
    gate = read_json(project / "eval/gate.json")
    # Four training steps cannot reach the hold-out floor: the gate must say no, and why.
    assert gate["verdict"] == "rejected"
    names = {c["name"] for c in gate["checks"]}
    assert {
        "holdout.accuracy",
        "holdout.ab_vs_base",
        "shifted.ab_vs_base",
        "holdout.macro_f1_ab_vs_base",
        "perturb_typos.drop",
        "perturb_truncation.drop",
        "probe.forgetting",
        "parity.served_vs_reference",
        "parity.evaluation_vs_reference",
        "license",
    } <= names
    for c in gate["checks"]:
        assert {"metric", "value", "ci", "threshold", "passed", "p_value", "reason"} <= set(c)
    assert gate["baseline"]["kind"] == "base"  # first release: registry/production.json is empty
    assert (
        gate["candidate"]["tree_sha256"] == read_json(project / "models/candidate/card.json")["tree_sha256"]
    )
    assert set(gate["data"]) >= {"holdout.jsonl", "train.jsonl"}
    # The monitoring reference: held-out rows with the evaluation's answers and confidences,
    # which parity ties to the served engine's (the largest confidence difference is recorded).
    reference = read_json(project / "eval/results/monitor_reference.json")
    assert len(reference["rows"]) == 50 and {r["split"] for r in reference["rows"]} <= {"val", "holdout"}
    assert all(0 < r["confidence"] <= 1 for r in reference["rows"])
    assert reference["model_id"] == gate["candidate"]["model_id"] and "card" in reference["vocabulary"]
    parity = read_json(project / "eval/results/evidence.json")["parity"]
    assert parity["rows"] == 8 and set(parity["rates"]) == {"served_vs_reference", "evaluation_vs_reference"}
    assert 0 <= parity["confidence_gap"] < 1e-3, parity  # served and evaluated confidences agree
    # The real model: vLLM with the adapter per request, and the scorer, answer as PEFT does.
    assert parity["rates"]["evaluation_vs_reference"] == 1.0
    # Even this undertrained adapter: the reference decodes with guided choice's semantics.
    assert parity["rates"]["served_vs_reference"] == 1.0, parity["disagreements"]
    report = (project / "eval/report.md").read_text()
    assert report.startswith("# Release report: REJECTED")
    assert "| **FAIL** | holdout.accuracy |" in report
    # Calibration and abstention, judged at the threshold the release would serve with.
    assert {"calibration.fitted", "holdout.ece", "holdout.coverage", "holdout.selective_accuracy"} <= names
    assert "holdout_oos.recall" in names  # the sample data declares out-of-scope rows (data.oos_label)
    calibration = read_json(project / "eval/results/calibration.json")
    assert calibration["method"] in ("temperature", "none") and 0 <= calibration["abstain_below"] <= 1
    assert gate["calibration_sha256"] is not None
    hold = [json.loads(line) for line in (project / "eval/results/holdout.jsonl").read_text().splitlines()]
    assert all({"confidence", "raw_confidence", "abstained", "classical"} <= set(r) for r in hold)
    assert "## Calibration and abstention" in report and "classical reference" in report
    # The prompting reference: the base model with eval.few_shot training rows in its prompt (2
    # here, for the suite's time; 5 by default).
    assert (
        all("prompting" in r for r in hold)
        and read_json(project / "eval/metrics.json")["holdout"]["prompting"]
    )
    evidence = read_json(project / "eval/results/evidence.json")
    assert evidence["prompting"]["few_shot"] == QUICK_EVAL["few_shot"]
    assert any(
        n.startswith("vs prompting (base model, few-shot), holdout: accuracy delta") for n in gate["notes"]
    )
    # The package stage ran after the gate, said no, and registered nothing.
    package = read_json(project / "registry/candidate.json")
    assert package["packaged"] is False and "holdout.accuracy" in package["reason"]
    assert sh(["git", "tag"], project).stdout == ""


@pytest.mark.slow
def test_gate_check_exit_codes_and_metrics_and_plots(project, tmp_path):
    tunegate = str(Path(sys.executable).parent / "tunegate")
    dvc = str(Path(sys.executable).parent / "dvc")
    check = sh([tunegate, "gate", "--check"], project)
    assert check.returncode == 1
    verdict, *advice = check.stdout.strip().splitlines()
    assert verdict.startswith("rejected:") and advice and all(line.startswith("- ") for line in advice)
    assert any("holdout.accuracy" in line and "under its floor" in line for line in advice)  # what to change
    metrics = sh([dvc, "metrics", "show", "--json"], project)
    assert metrics.returncode == 0
    assert "accuracy" in metrics.stdout and "shifted" in metrics.stdout and "perturb_typos" in metrics.stdout
    plots = sh([dvc, "plots", "show", "-o", str(tmp_path / "plots")], project)
    assert plots.returncode == 0, plots.stderr[-2000:]
    html = (tmp_path / "plots/index.html").read_text()
    assert "confusion" in html.lower() and "recall_delta" in html and "reliability" in html.lower()


@pytest.mark.slow
def test_rerun_of_train_and_gate_changes_nothing_git_tracks(project):
    """Training and the gate, run again on the same inputs, write byte-identical outputs:
    after committing one run, a forced second leaves `git status` clean (the timings and
    stamps that change went to the untracked run records, metrics/train/run.json)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]
    for cmd in (["git", "add", "-A"], commit):
        assert sh(cmd, project).returncode == 0
    first = read_json(project / "metrics/train/run.json")
    again = sh([dvc, "repro", "-f", "-s", "train", "gate"], project)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Running stage 'train'" in again.stdout and "Running stage 'gate'" in again.stdout
    assert sh(["git", "status", "--porcelain"], project).stdout == ""
    second = read_json(project / "metrics/train/run.json")
    assert second["environment"]["created_at"] >= first["environment"]["created_at"]
    tracked = read_json(project / "metrics/train/metrics.json")
    assert "train_seconds" in first and "train_seconds" not in tracked


@pytest.mark.slow
def test_a_production_model_becomes_the_baseline(project):
    """Point the registry at a copy of the candidate: the baseline is then production, and an
    identical model passes every A/B check (delta 0, no significant regression). The rerun
    skips the vLLM passes (parity, monitoring reference) and the few-shot reference (other
    tests cover them) to keep the suite's time: the pointer alone is what makes evaluate
    stale, as `dvc status` shows first."""
    dvc = str(Path(sys.executable).parent / "dvc")
    release = project / "releases/v1"
    shutil.copytree(project / "models/candidate", release)
    pointer, params = project / "registry/production.json", project / "params.yaml"
    original, original_params = pointer.read_text(), params.read_text()
    pointer.write_text(json.dumps({"version": "v1", "model_dir": "releases/v1"}))
    try:
        status = sh([dvc, "status", "evaluate"], project)
        assert "registry/production.json" in status.stdout and "params.yaml" not in status.stdout
        raw = yaml.safe_load(original_params)
        raw["eval"].update(parity_rows=0, reference_rows=0, few_shot=0)
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        result = sh([dvc, "repro", "gate"], project)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Running stage 'evaluate'" in result.stdout
        gate = read_json(project / "eval/gate.json")
        assert gate["baseline"]["kind"] == "production"
        ab = [c for c in gate["checks"] if "ab_vs_production" in c["name"]]
        assert len(ab) == 3 and all(c["passed"] and c["value"] == 0 for c in ab)
    finally:  # the last test on `project`: restore the pointer and params, leave the outputs
        pointer.write_text(original)
        params.write_text(original_params)
        shutil.rmtree(release)
