"""The recipe search on the tiny model: real Optuna trials that are real train runs, a trial
the median pruner stops, a resumed budget, --apply, the seed spread and the report; and two
worker processes on one SQLite storage through the real `tunegate tune` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import QUICK_TRAIN, ROOT, write_params
from tunegate.artifacts import read_json
from tunegate.params import load_params

TRAIN = QUICK_TRAIN | {"lr": 5e-3, "early_stopping_patience": 0, "max_seq_len": 96}
TUNE = {
    "trials": 2,
    "startup_trials": 1,
    "warmup_evals": 0,
    "space": {"train.lr": {"log_uniform": [1.0e-7, 1.0e-2]}},
    "max_forgetting_kl": 50.0,  # a random tiny model: the constraint is not what is tested here
    "general_max_tokens": 8,
}


def tiny_project(tmp_path: Path, prepared: Path, base: Path, **tune) -> Path:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "models").mkdir()
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    (project / "data/prepared").symlink_to(prepared)
    (project / "models/base").symlink_to(base)
    (project / "data/general").mkdir()
    lines = (ROOT / "data/general/prompts.jsonl").read_text().splitlines()[:6]
    (project / "data/general/prompts.jsonl").write_text("\n".join(lines) + "\n")
    write_params(project / "params.yaml", train=TRAIN, tune=TUNE | tune)
    return project


@pytest.mark.slow
def test_tune_study_prunes_resumes_applies_and_reports(tmp_path, prepared_sample, tiny_base, monkeypatch):
    from tuning.record import apply_recipe, best_recipe, write_record
    from tuning.report import write_report
    from tuning.spread import seed_spread, write_spread
    from tuning.study import Search, context, open_study

    project = tiny_project(tmp_path, prepared_sample, tiny_base)
    monkeypatch.chdir(project)
    params = load_params(project / "params.yaml")
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    ctx = context(params, project / "data/prepared", project / "models/base", project / "tune/.work", project)
    assert len(ctx.general_answers) == 6 and ctx.objective == "accuracy"
    search = Search(params, ctx)

    study = open_study(params, url)
    search.optimize(study, 1)  # trial 0: the params file's recipe, run to the end
    (first,) = study.trials
    assert first.state.name == "COMPLETE" and first.params == {"train.lr": 5e-3}
    assert 0 <= first.value <= 1 and first.user_attrs["forgetting_kl"] >= 0
    assert first.user_attrs["steps"] == 4 and len(first.user_attrs["folds"]) == 1

    # Resume the same study with a budget of 2: one more trial, a learning rate too small
    # to move the validation loss, which the median pruner stops at its first report.
    study = open_study(params, url)
    study.enqueue_trial({"train.lr": 1e-7})
    search.optimize(study, 2)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED"], states
    assert study.trials[1].last_step == 2  # pruned at the first validation pass (eval_every 2)
    search.optimize(open_study(params, url), 2)  # the budget is spent: nothing more runs
    assert len(open_study(params, url).trials) == 2

    record = read_json(write_record(study, params, ctx.objective, project))
    assert [t["state"] for t in record["trials"]] == ["complete", "pruned"]
    assert record["trials"][0]["default"] is True and record["best"]["number"] == 0
    assert best_recipe(params, project) == {"train.lr": 5e-3}
    (project / "params.yaml").write_text(
        (project / "params.yaml").read_text().replace("lr: 0.005", "lr: 0.001")
    )
    assert apply_recipe(project / "params.yaml", best_recipe(params, project)).train.lr == 5e-3

    spread = seed_spread(params, ctx, 2)
    assert spread["seeds"] == [params.base.seed, params.base.seed + 1]
    assert spread["spread"]["value"]["sd"] >= 0 and len(spread["runs"]) == 2
    folder = project / "tune" / "intent-classifier-tune"
    write_spread(spread, folder)
    report = write_report(study, folder).read_text()
    assert "| 1 | pruned |" in report and "Run-to-run spread (2 seeds" in report
    ET.fromstring((folder / "history.svg").read_text())  # a well-formed SVG

    # The spread reaches the release report: the gate stage reads this spread.json for the
    # recipe it measured (evidence here is synthetic; tests/evaluation/test_gate.py).
    from evaluation.gate import add_spread
    from evaluation.report import render_report
    from tests.evaluation.test_gate import decide_on, write_results

    _, gate, evidence, records = decide_on(write_results(tmp_path / "results", 0.95))
    applied = load_params(project / "params.yaml")
    add_spread(gate, folder / "spread.json", applied)
    assert gate["spread"]["seeds"] == spread["seeds"]
    assert gate["spread"]["sd"] == pytest.approx(spread["spread"]["value"]["sd"])
    assert "## Margins and run-to-run spread" in render_report(gate, evidence, records)


@pytest.mark.slow
def test_tune_two_workers_share_one_study(tmp_path, prepared_sample, tiny_base):
    project = tiny_project(tmp_path, prepared_sample, tiny_base, pruner="none")
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    cmd = [sys.executable, "-m", "tunegate.cli", "tune", "--trials", "2", "--workers", "2", "--storage", url]
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_json(project / "tune/intent-classifier-tune/trials.json")
    done = [t for t in record["trials"] if t["state"] == "complete"]
    assert len(done) == 2, record["trials"]
    assert len({t["worker"] for t in done}) == 2  # one trial from each process
    assert "2/2 finished" in proc.stderr
