"""One trial of the search: train a recipe on each search view, score it on validation.

Each fold is a real train-stage run (tunegate/training/train.py's ``TrainRecipe``, the same code
``dvc repro`` runs), with one extra Trainer callback that reports the validation loss to
Optuna at every ``train.eval_every`` steps and stops a trial the pruner gives up on. The
finished model is scored on the view's validation rows (the first ``train.max_val_rows``
of them, the rows train validated on) with the task's primary metric, and its forgetting
is measured on the general prompts (tunegate/tuning/forgetting.py). Nothing else is opened.

Pruning steps are the optimiser steps counted across folds (fold 2's first report comes
after fold 1's last), the resource Hyperband allocates; the value reported is minus the
validation loss, so that larger is better as for the objective.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_jsonl
from tunegate.core.params import Params
from tunegate.core.task import read_task
from tunegate.training.examples import capped
from tunegate.training.train import TrainRecipe


@dataclass
class FoldResult:
    fold: int
    value: float
    val_loss: float
    forgetting_kl: float
    steps: int
    seconds: float


class Reporter:
    """Where a trial's validation losses go: an Optuna trial, or nowhere (seed reruns)."""

    def __init__(self, trial: Any | None = None, warmup_evals: int = 1):
        self.trial, self.warmup = trial, warmup_evals
        self.offset, self.evals, self.steps = 0, 0, 0

    def report(self, val_loss: float, step: int) -> bool:
        """Record one validation pass; True when the trial should stop (pruned)."""
        self.steps = self.offset + step
        if self.trial is None or step == 0:  # the pass before training: the base model's loss
            return False
        self.evals += 1
        self.trial.report(-val_loss, self.steps)
        return self.evals > self.warmup and self.trial.should_prune()

    def next_fold(self) -> None:
        self.offset = self.steps


def pruning_callback(reporter: Reporter) -> Any:
    """A transformers TrainerCallback feeding ``reporter``; raises optuna.TrialPruned."""
    import optuna
    from transformers import TrainerCallback

    class PruneOnValidation(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if (
                metrics
                and "eval_loss" in metrics
                and reporter.report(metrics["eval_loss"], state.global_step)
            ):
                raise optuna.TrialPruned(
                    f"pruned at step {reporter.steps} (val loss {metrics['eval_loss']:.4f})"
                )

    return PruneOnValidation()


class TrialRecipe(TrainRecipe):
    """The train stage's recipe with the pruning callback added to its Trainer."""

    def __init__(self, *args: Any, callback: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.callback = callback

    def build_trainer(self, live: Any | None = None) -> Any:
        trainer = super().build_trainer(live)
        trainer.add_callback(self.callback)
        return trainer


@dataclass(frozen=True)
class Context:
    """What every trial of a study shares."""

    base_dir: Path
    views: list[Path]
    objective: str
    general: list[str]
    general_answers: list[str]
    work: Path


def run_trial(params: Params, ctx: Context, reporter: Reporter, tag: str) -> list[FoldResult]:
    """Train and score the recipe in ``params`` on every view; each fold's figures."""
    from tunegate.tuning.forgetting import kl_from_base

    results = []
    for i, view in enumerate(ctx.views):
        work = ctx.work / tag / f"fold-{i}"
        shutil.rmtree(work, ignore_errors=True)
        started = time.perf_counter()
        recipe = TrialRecipe(
            params, view, ctx.base_dir, work / "checkpoints", callback=pruning_callback(reporter)
        )
        try:
            recipe.setup()
            trained = recipe.train(None)
            recipe.save(work / "model", trained)
            del recipe.trainer, recipe.model
            value = validation_score(params, view, ctx.base_dir, work / "model", ctx.objective)
            kl = kl_from_base(ctx.base_dir, work / "model", ctx.general, ctx.general_answers)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        seconds = time.perf_counter() - started
        results.append(FoldResult(i, value, trained.best_val_loss, kl, trained.steps, seconds))
        reporter.next_fold()
    return results


def validation_score(params: Params, view: Path, base_dir: Path, model_dir: Path, metric: str) -> float:
    """The mean of ``metric`` over the rows train validated on (the view's val split)."""
    from tunegate.evaluation.models import base_ref, candidate_ref
    from tunegate.evaluation.predictors import HFEngine

    rows = capped(read_jsonl(view / "val.jsonl"), params.train.max_val_rows, params.base.seed)
    ref = candidate_ref(model_dir, base_ref(base_dir))
    task = read_task(view)
    if task.kind == "classification":
        from tunegate.evaluation.hf_predict import template_for

        predictions = HFEngine("scorer").classify(ref, template_for(model_dir), rows, with_confidence=False)
        truth, guess = [r["label"] for r in rows], [p.label for p in predictions]
        if metric == "macro_f1":
            from sklearn.metrics import f1_score

            return float(
                f1_score(truth, [g or "" for g in guess], labels=sorted(set(truth)), average="macro")
            )
        return sum(t == g for t, g in zip(truth, guess, strict=True)) / len(rows)
    from tunegate.core.text_metrics import item_scores
    from tunegate.evaluation.generation import prompt_turns

    answers = HFEngine("reference").chat(
        ref,
        [prompt_turns(r) for r in rows],
        params.eval.max_new_tokens,
        task.output_schema,
        task.json_answers,
    )
    scores = [item_scores(a, r["answer"], task)[metric] for a, r in zip(answers, rows, strict=True)]
    return sum(scores) / len(scores)


def summary(folds: list[FoldResult]) -> dict[str, Any]:
    """The trial's figures over folds: mean and spread (population sd over folds)."""
    import statistics

    values = [f.value for f in folds]
    return {
        "value": statistics.fmean(values),
        "value_sd": statistics.pstdev(values) if len(values) > 1 else 0.0,
        "forgetting_kl": statistics.fmean(f.forgetting_kl for f in folds),
        "val_loss": statistics.fmean(f.val_loss for f in folds),
        "steps": sum(f.steps for f in folds),
        "seconds": round(sum(f.seconds for f in folds), 1),
        "folds": [asdict(f) for f in folds],
    }
