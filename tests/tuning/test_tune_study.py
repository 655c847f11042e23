"""The recipe search on the tiny model: real Optuna trials that are real train runs, a trial
the median pruner stops, a resumed budget, --apply, the seed spread and the report; and two
worker processes on one SQLite storage through the real `tunegate tune` command. A study killed
mid-trial (SIGKILL) resumes: the dead worker's stale trial is failed and retried with its recipe."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import QUICK_TRAIN, ROOT, write_params
from tests.postgres import fresh_database
from tunegate.core.artifacts import read_json
from tunegate.core.params import load_params
from tunegate.tuning.study import sqlalchemy_url

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
    from tunegate.tuning.record import apply_recipe, best_recipe, write_record
    from tunegate.tuning.report import write_report
    from tunegate.tuning.spread import seed_spread, write_spread
    from tunegate.tuning.study import Search, context, open_study

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
    from tests.evaluation.test_gate import decide_on, write_results
    from tunegate.evaluation.gate import add_spread
    from tunegate.evaluation.report import render_report

    _, gate, evidence, records = decide_on(write_results(tmp_path / "results", 0.95))
    applied = load_params(project / "params.yaml")
    add_spread(gate, folder / "spread.json", applied)
    assert gate["spread"]["seeds"] == spread["seeds"]
    assert gate["spread"]["sd"] == pytest.approx(spread["spread"]["value"]["sd"])
    assert "## Margins and run-to-run spread" in render_report(gate, evidence, records)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_tune_two_workers_share_one_study(engine, tmp_path, prepared_sample, tiny_base, request):
    """Two worker processes, one study: on an SQLite file, and on a real PostgreSQL server
    (the URL a second machine would pass to the same command)."""
    project = tiny_project(tmp_path, prepared_sample, tiny_base, pruner="none")
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_server"))
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
    if engine == "postgresql":  # the trials are in the server's database, not in a local file
        import optuna

        stored = optuna.load_study(study_name="intent-classifier-tune", storage=sqlalchemy_url(url)).trials
        assert sorted(t.state.name for t in stored) == ["COMPLETE", "COMPLETE"]
        assert not list(project.glob("tune/*.sqlite"))


def test_tune_storage_that_is_down_is_a_clear_error(tmp_path):
    """A PostgreSQL URL nobody answers on: a ConfigError naming the storage, password hidden."""
    from tunegate.core.errors import ConfigError
    from tunegate.tuning.study import open_study

    params = load_params(write_params(tmp_path / "params.yaml"))
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=r"tune.storage postgresql\+psycopg://u:\*\*\*@127.0.0.1") as err:
        open_study(params, f"postgresql://u:secret@127.0.0.1:{port}/nothing")
    assert "secret" not in str(err.value)


@pytest.mark.slow
def test_tune_study_killed_mid_trial_resumes_with_that_trial_retried(tmp_path, prepared_sample, tiny_base):
    import optuna

    project = tiny_project(tmp_path, prepared_sample, tiny_base, pruner="none", trials=1)
    quick = (project / "params.yaml").read_text()
    # The first run's trial cannot finish before it is killed, however fast the machine.
    slow = TRAIN | {"max_steps": 100_000}
    write_params(project / "params.yaml", train=slow, tune=TUNE | {"pruner": "none", "trials": 1})
    db = tmp_path / "killed.sqlite"
    url = f"sqlite:///{db}"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tunegate.cli", "tune", "--storage", url]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=log, start_new_session=True)
    try:  # wait for readiness: trial 0 running, its heartbeat written (a state, not a delay)
        running = "SELECT COUNT(*) FROM trials JOIN trial_heartbeats USING (trial_id) WHERE state = 'RUNNING'"
        for _ in range(3000):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            if db.exists() and sqlite_count(db, running):
                break
            time.sleep(0.2)
        else:
            pytest.fail("trial 0 never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # mid-trial, as a lost machine would
        proc.wait()
    # Age the dead worker's heartbeat past the grace period instead of waiting it out.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')")
    (project / "params.yaml").write_text(quick)  # the retried trial runs the quick recipe

    again = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = optuna.load_study(study_name="intent-classifier-tune", storage=url).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == trials[0].params  # the same recipe, retried
    assert trials[1].system_attrs["failed_trial"] == trials[0].number
    assert "1/1 finished" in again.stderr


def sqlite_count(db: Path, query: str) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(query).fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not created yet
        return 0
