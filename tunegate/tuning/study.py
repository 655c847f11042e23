"""The study: Optuna over the recipe, stored in an RDB so it resumes and can be shared.

- Storage: ``tune.storage`` (an SQLAlchemy URL: SQLite under the project by default,
  PostgreSQL for workers on several machines). Trials heartbeat; a trial whose process
  died is failed once its heartbeat is stale and retried once (Optuna's
  ``RetryFailedTrialCallback``), so an interrupted study resumes with its budget intact.
- Sampler: TPE (seeded, with the forgetting constraint set by ``Trial.set_constraint``) or random.
  Pruner: median or Hyperband on the validation loss, or none (bench/tune_pruning.py).
- Budget: ``tune.trials`` finished trials (complete or pruned) over every worker; trial 0
  is the recipe params.yaml declares today, so "best against the default" is measured
  under the same objective.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.params import Params
from tunegate.core.tune_params import objective_of
from tunegate.serving.logstore import database_url as sqlalchemy_url  # postgresql:// through psycopg 3
from tunegate.serving.logstore import shown
from tunegate.tuning.space import current, suggest, with_recipe
from tunegate.tuning.trial import Context, Reporter, run_trial, summary

log = logging.getLogger(__name__)
HEARTBEAT_S, GRACE_S = 30, 120


def storage_url(params: Params, project: Path) -> str:
    if params.tune.storage:
        return params.tune.storage
    (project / "tune").mkdir(exist_ok=True)
    return f"sqlite:///{(project / 'tune' / 'study.sqlite').resolve()}"


def study_name(params: Params) -> str:
    return params.tune.study_name or f"{params.release.name}-tune"


def open_study(params: Params, url: str) -> Any:
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import ArgumentError, OperationalError

    tp = params.tune
    url = sqlalchemy_url(url)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except (ArgumentError, OperationalError, ModuleNotFoundError) as err:
            from tunegate.core.errors import ConfigError

            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"tune.storage {shown(url)}: cannot open the study storage ({first})") from err
    if tp.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=tp.seed, n_startup_trials=tp.startup_trials)
    else:
        sampler = optuna.samplers.RandomSampler(seed=tp.seed)
    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=tp.startup_trials),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=params.train.eval_every or 1),
        "none": optuna.pruners.NopPruner,
    }[tp.pruner]()
    return optuna.create_study(
        storage=storage, study_name=study_name(params), direction="maximize",
        sampler=sampler, pruner=pruner, load_if_exists=True,
    )  # fmt: skip


def constraint(trial: Any) -> list[float]:
    """<= 0 is feasible: the trial's forgetting within tune.max_forgetting_kl (set by
    ``Trial.set_constraint``, which TPE reads)."""
    return [trial.constraints.get("forgetting_kl", 0.0)]


def finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def best_feasible(study: Any) -> Any | None:
    """The best complete trial within the forgetting constraint (Optuna's best_trial
    ignores constraints)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if constraint(t)[0] <= 0]
    return max(done, key=lambda t: (t.value, -t.number), default=None)


@dataclass
class Search:
    """A study over one params file's recipe."""

    params: Params
    ctx: Context

    def objective(self, trial: Any) -> float:
        recipe = suggest(trial, self.params.tune.dimensions())
        params = with_recipe(self.params, recipe)
        reporter = Reporter(trial, self.params.tune.warmup_evals)
        folds = run_trial(params, self.ctx, reporter, f"trial-{trial.number}")
        figures = summary(folds)
        for key, value in figures.items():
            trial.set_user_attr(key, value)
        trial.set_constraint("forgetting_kl", figures["forgetting_kl"] - self.params.tune.max_forgetting_kl)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return figures["value"]

    def seed_default(self, study: Any) -> None:
        """Trial 0 is today's recipe, so the search reports the best against it."""
        if not study.trials:
            default = current(self.params, self.params.tune.dimensions())
            study.enqueue_trial(default, user_attrs={"default": True}, skip_if_exists=True)

    def optimize(self, study: Any, trials: int) -> None:
        import optuna
        from optuna.trial import TrialState

        from tunegate.core.errors import TunegateError

        self.seed_default(study)
        left = trials - len(finished(study))
        if left <= 0:
            log.info("study %s already has %d finished trials", study.study_name, len(finished(study)))
            return
        # Counting running trials too: workers sharing the study stop at the budget together.
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        stop = optuna.study.MaxTrialsCallback(trials, states=states)
        study.optimize(
            self.objective, n_trials=left, catch=(TunegateError,), callbacks=[stop, progress(trials)],
            gc_after_trial=True,
        )  # fmt: skip


def progress(budget: int):
    """Logs each finished trial: done, pruned, best so far (what a user watches)."""
    from optuna.trial import TrialState

    def callback(study: Any, trial: Any) -> None:
        done = finished(study)
        pruned = sum(t.state == TrialState.PRUNED for t in done)
        best = best_feasible(study)
        what = (
            f"value {trial.value:.4f}, "
            f"forgetting KL {trial.user_attrs.get('forgetting_kl', float('nan')):.4f}"
            if trial.state == TrialState.COMPLETE
            else trial.state.name.lower()
        )
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no feasible trial yet"
        log.info(
            "[pid %d] trial %d %s; %d/%d finished, %d pruned, %s",
            os.getpid(), trial.number, what, len(done), budget, pruned, best_text,
        )  # fmt: skip

    return callback


def context(params: Params, prepared: Path, base_dir: Path, work: Path, project: Path) -> Context:
    """The search views and the general prompts' base answers (cached per study)."""
    from tunegate.core.artifacts import read_json, write_json
    from tunegate.core.task import read_task
    from tunegate.tuning.folds import search_views
    from tunegate.tuning.forgetting import base_answers, general_prompts

    tp = params.tune
    views = search_views(prepared, tp.folds, tp.seed, work / "views")
    prompts = general_prompts(project / tp.general_source)
    cache = work / "general_answers.json"
    key = {
        "base": read_json(base_dir / "card.json")["tree_sha256"],
        "prompts": prompts,
        "max": tp.general_max_tokens,
    }
    cached = read_json(cache) if cache.exists() else {}
    if cached.get("key") != key:
        cached = {"key": key, "answers": base_answers(base_dir, prompts, tp.general_max_tokens)}
        write_json(cache, cached)
    kind = read_task(prepared).kind
    return Context(base_dir, views, objective_of(tp, kind, params.gate.primary_metric), prompts,
                   cached["answers"], work)  # fmt: skip
