"""The run-to-run spread of a recipe: the same recipe retrained with K seeds.

``tunegate tune --seeds K`` retrains the params file's recipe (after ``--apply``: the
study's best) with seeds base.seed, base.seed + 1, ... on the same search views, and
records each validation figure's mean, standard deviation (ddof 1) and range in
``tune/<study>/spread.json``, keyed by a hash of the ``train`` section, so the gate uses
it only for the recipe it was measured on (tunegate/evaluation/spread_note.py).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import write_json
from tunegate.core.params import Params
from tunegate.core.tune_params import recipe_hash
from tunegate.tuning.space import with_recipe
from tunegate.tuning.trial import Context, Reporter, run_trial, summary

FIGURES = ("value", "val_loss", "forgetting_kl")


def seed_spread(params: Params, ctx: Context, seeds: int) -> dict[str, Any]:
    runs = []
    for k in range(seeds):
        seed = params.base.seed + k
        folds = run_trial(with_recipe(params, {}, seed=seed), ctx, Reporter(None), f"seed-{seed}")
        runs.append({"seed": seed} | summary(folds))
    spread = {}
    for name in FIGURES:
        values = [r[name] for r in runs]
        spread[name] = {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    return {
        "recipe_hash": recipe_hash(params.train),
        "train": asdict(params.train),
        "objective": ctx.objective,
        "seeds": [r["seed"] for r in runs],
        "runs": runs,
        "spread": spread,
    }


def write_spread(record: dict[str, Any], folder: Path) -> Path:
    path = folder / "spread.json"
    write_json(path, record)
    return path
