"""The search space: Optuna suggestions for ``tune.space``, and a recipe applied to Params.

A trial's recipe is a mapping of dotted ``train.*`` keys to values. Applying it goes back
through ``params_from_dict``, so a suggested recipe is checked exactly as params.yaml is
(a recipe that params.yaml would refuse fails the trial with the same message).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tunegate.core.params import Params, params_from_dict
from tunegate.core.tune_params import Dimension


def suggest(trial: Any, dimensions: list[Dimension]) -> dict[str, Any]:
    """One recipe from an Optuna trial."""
    recipe: dict[str, Any] = {}
    for d in dimensions:
        if d.distribution == "choice":
            recipe[d.key] = trial.suggest_categorical(d.key, list(d.values))
        elif d.distribution == "int":
            recipe[d.key] = trial.suggest_int(d.key, int(d.values[0]), int(d.values[1]))
        else:
            low, high = float(d.values[0]), float(d.values[1])
            recipe[d.key] = trial.suggest_float(d.key, low, high, log=d.distribution == "log_uniform")
    return recipe


def current(params: Params, dimensions: list[Dimension]) -> dict[str, Any]:
    """The recipe params.yaml declares today, on the searched keys (the study's trial 0).
    A value outside a dimension's range or choices is left out (Optuna then samples it)."""
    out = {}
    for d in dimensions:
        value = lookup(params.to_dict(), d.key)
        inside = value in d.values if d.distribution == "choice" else d.values[0] <= value <= d.values[1]
        if value is not None and inside:
            out[d.key] = value
    return out


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def with_recipe(params: Params, recipe: dict[str, Any], seed: int | None = None) -> Params:
    """params with the recipe's keys replaced (and base.seed, when given), checked again."""
    raw = params.to_dict()
    for dotted, value in recipe.items():
        *path, last = dotted.split(".")
        node = raw
        for part in path:
            node = node[part]
        node[last] = list(value) if isinstance(value, tuple) else value
    if seed is not None:
        raw["base"]["seed"] = seed
    return params_from_dict(_plain(raw))


def _plain(tree: Any) -> Any:
    """asdict's tuples as lists, so the typed builder reads them as params.yaml would."""
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_plain(v) for v in tree]
    return tree


def recipe_of(params: Params, keys: list[str]) -> dict[str, Any]:
    raw = dataclasses.asdict(params)
    return {k: lookup(raw, k) for k in keys}
