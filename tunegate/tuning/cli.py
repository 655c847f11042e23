"""``tunegate tune``: search the recipe, apply the best, measure its spread, report.

    tunegate tune                      # run (or resume) the study in params.yaml's tune:
    tunegate tune --workers 2          # two processes on one storage (one thread each)
    tunegate tune --apply              # write the best feasible recipe into params.yaml
    tunegate tune --seeds 3            # retrain params.yaml's recipe with 3 seeds: its spread
    tunegate tune --report             # tune/<study>/report.md and history.svg

Without --apply, --seeds or --report it searches; with them it does only those (add
--search to do both). The same command on another machine with ``--storage
postgresql://...`` joins the same study.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import typer

from tunegate.core.params import Params, load_params

log = logging.getLogger(__name__)


def tune(
    params_path: Path = typer.Option(
        Path("params.yaml"), "--params", help="The params file (its tune: section)."
    ),
    trials: int | None = typer.Option(
        None, "--trials", help="Finished trials in the study (default tune.trials)."
    ),
    workers: int = typer.Option(
        1, "--workers", help="Worker processes on this machine, sharing the storage."
    ),
    storage: str | None = typer.Option(None, "--storage", help="An Optuna RDB URL (default tune.storage)."),
    search: bool = typer.Option(
        False, "--search", help="Search even when --apply/--seeds/--report are given."
    ),
    apply: bool = typer.Option(False, "--apply", help="Write the best feasible recipe into the params file."),
    seeds: int | None = typer.Option(None, "--seeds", help="Retrain the params file's recipe with K seeds."),
    report: bool = typer.Option(False, "--report", help="Write tune/<study>/report.md and history.svg."),
    worker: bool = typer.Option(
        False, "--worker", hidden=True, help="Run trials only (spawned by --workers)."
    ),
) -> None:
    """Search the fine-tuning recipe with Optuna on validation data (never the gate's suites)."""
    from tunegate.core.command import fail
    from tunegate.core.errors import TunegateError

    try:
        run(params_path, trials, workers, storage, search, apply, seeds, report, worker)
    except TunegateError as err:
        fail(err)


def run(params_path, trials, workers, storage, search, apply, seeds, report, worker) -> None:
    from tunegate.core.layout import Layout
    from tunegate.tuning.record import apply_recipe, best_recipe, record_dir, write_record
    from tunegate.tuning.study import Search, context, open_study, storage_url

    project = Path.cwd()
    params = load_params(params_path)
    layout = Layout(project, params.release.pipeline)
    prepared, base = layout.stage_arg("train", "--data"), layout.base_model
    url = storage or storage_url(params, project)
    budget = trials or params.tune.trials
    folder = record_dir(params, project)
    work = project / "tune" / ".work" / folder.name
    searching = search or not (apply or seeds or report)
    if searching or worker:
        # Views, base answers, the study and trial 0 exist before any worker starts.
        ctx = context(params, prepared, base, work, project)
        study = open_study(params, url)
        if workers > 1 and not worker:
            Search(params, ctx).seed_default(study)
            threads = max(1, (os.cpu_count() or 1) // workers)
            spawn(params_path, budget, url, workers, threads, study)
        else:
            threads = int(os.environ.get("TUNEGATE_TUNE_THREADS", 0)) if worker else 0
            Search(worker_params(params, threads), ctx).optimize(study, budget)
        if worker:
            return
        study = open_study(params, url)
        path = write_record(study, params, context_objective(params, prepared), project)
        typer.echo(f"study record: {path}")
    if apply:
        recipe = best_recipe(params, project)
        params = apply_recipe(params_path, recipe)
        typer.echo(f"applied {recipe} to {params_path}; `dvc repro` trains and gates it")
    if seeds:
        from tunegate.tuning.spread import seed_spread, write_spread

        ctx = context(params, prepared, base, work, project)
        record = seed_spread(params, ctx, seeds)
        path = write_spread(record, folder)
        value = record["spread"]["value"]
        typer.echo(
            f"{ctx.objective} over seeds {record['seeds']}: {value['mean']:.4f} "
            f"(sd {value['sd']:.4f}); {path}"
        )
    if report:
        from tunegate.tuning.report import write_report

        typer.echo(f"report: {write_report(open_study(params, url), folder)}")


def context_objective(params: Params, prepared: Path) -> str:
    from tunegate.core.task import read_task
    from tunegate.core.tune_params import objective_of

    return objective_of(params.tune, read_task(prepared).kind, params.gate.primary_metric)


def worker_params(params: Params, threads: int) -> Params:
    if not threads:
        return params
    from tunegate.tuning.space import with_recipe

    return with_recipe(params, {"train.threads": threads})


def spawn(params_path: Path, budget: int, url: str, workers: int, threads: int, study) -> None:
    """Start ``workers`` worker processes on the same study and wait for all of them.

    The first worker takes the queued default trial (trial 0) before the others start:
    on SQLite, which has no ``SELECT ... FOR UPDATE``, two workers starting together can
    both pop the one waiting trial, and the second to finish it fails ("Cannot tell a
    COMPLETE trial"). PostgreSQL locks the row; a worker on another machine is safe there."""
    from optuna.trial import TrialState

    cmd = [sys.executable, "-m", "tunegate.cli", "tune", "--params", str(params_path),
           "--trials", str(budget), "--storage", url, "--worker"]  # fmt: skip
    env = os.environ | {"TUNEGATE_TUNE_THREADS": str(threads)}
    procs = [subprocess.Popen(cmd, env=env)]
    while procs[0].poll() is None and study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        time.sleep(0.2)  # polling the study for the first worker's pop, not a fixed wait
    procs += [subprocess.Popen(cmd, env=env) for _ in range(workers - 1)]
    codes = [p.wait() for p in procs]
    log.info("%d workers on %s finished with exit codes %s", workers, socket.gethostname(), codes)
    if any(codes):
        from tunegate.core.errors import TunegateError

        raise TunegateError(f"{codes.count(0)} of {workers} tune workers succeeded (exit codes {codes})")
