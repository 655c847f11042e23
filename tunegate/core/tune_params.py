"""params.yaml's ``tune`` section: the recipe search (``tunegate tune``, tunegate/tuning/).

The space names ``train.*`` keys only (the recipe: nothing the gate or evaluation reads is
searched), each with one distribution::

    space:
      train.lr: {log_uniform: [1.0e-4, 1.0e-3]}
      train.lora.r: {choice: [8, 16, 32]}
      train.epochs: {int: [1, 3]}
      train.augment_casing: {uniform: [0.0, 0.3]}

``tunegate/core/params.py`` assembles this section with the others into ``Params``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from tunegate.core.train_params import TrainParams

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
OBJECTIVES = {
    "classification": ("accuracy", "macro_f1"),
    "generation": ("exact_match", "token_f1", "rouge_l", "chrf", "field_f1"),
}


def default_space() -> dict[str, dict]:
    return {
        "train.lr": {"log_uniform": [1.0e-4, 1.0e-3]},
        "train.lora.r": {"choice": [8, 16, 32]},
        "train.epochs": {"int": [1, 3]},
    }


@dataclass(frozen=True)
class Dimension:
    """One searched key and its distribution (parsed from ``tune.space``)."""

    key: str  # dotted, e.g. train.lora.r
    distribution: str  # one of DISTRIBUTIONS
    values: tuple[Any, ...]  # (low, high) or the choices


@dataclass(frozen=True)
class TuneParams:
    trials: int = 12
    """Trials in the study, the default recipe (trial 0) included; pruned ones count."""
    space: dict[str, dict] = field(default_factory=default_space)
    """``train.*`` key -> ``{log_uniform|uniform|int: [low, high]}`` or ``{choice: [...]}``."""
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    """Fed by the validation loss train measures every train.eval_every steps."""
    startup_trials: int = 3
    """Trials run to the end before the pruner (and TPE) start using the study's history."""
    warmup_evals: int = 1
    """Validation passes of a trial the pruner never prunes at (the first is noisy)."""
    objective: str | None = None
    """The validation metric to maximise; null: accuracy (classification) or gate.primary_metric."""
    folds: int = 1
    """1: the prepared validation split; k > 1: stratified k-fold over train + validation."""
    seeds: int = 3
    """Seeds the chosen recipe is retrained with (``tunegate tune --seeds``) for its spread."""
    storage: str | None = None
    """An Optuna RDB URL (postgresql://... for workers on several machines); null: SQLite
    at tune/study.sqlite in the project."""
    study_name: str | None = None
    """null: ``<release.name>-tune``."""
    general_source: str = "data/general/prompts.jsonl"
    """General prompts for the forgetting constraint, disjoint from the probe and the replay."""
    general_max_tokens: int = 24
    """Length of the base model's answers the candidate is compared on."""
    max_forgetting_kl: float = 0.3
    """Largest mean per-token KL divergence (nats) of the candidate from the base model on
    the general prompts' answers; trials above it are infeasible."""
    seed: int = 0
    """The sampler's seed (a study is reproducible from its storage and this seed)."""

    def dimensions(self) -> list[Dimension]:
        out = []
        for key, spec in self.space.items():
            ((dist, values),) = spec.items()
            out.append(Dimension(key, dist, tuple(values)))
        return out

    def problems(self) -> list[str]:
        out = [f"tune.{k}: {v} must be >= 1" for k, v in (("trials", self.trials), ("folds", self.folds),
                                                          ("seeds", self.seeds)) if v < 1]  # fmt: skip
        if self.folds == 2:
            out.append("tune.folds: 2 folds train on half the data each; use 1 (the split) or >= 3")
        if self.max_forgetting_kl <= 0:
            out.append(f"tune.max_forgetting_kl: {self.max_forgetting_kl} must be > 0")
        if not self.space:
            out.append("tune.space: empty; name at least one train.* key to search")
        for key, spec in self.space.items():
            out.extend(dimension_problems(key, spec))
        return out


def train_keys() -> dict[str, type]:
    """Every ``train.*`` key that can be searched, with its field's default's type."""
    keys: dict[str, type] = {}
    for f in dataclasses.fields(TrainParams):
        value = getattr(TrainParams(), f.name)
        if dataclasses.is_dataclass(value):
            keys |= {
                f"train.{f.name}.{g.name}": type(getattr(value, g.name)) for g in dataclasses.fields(value)
            }
        elif f.name not in ("method", "precision", "threads"):  # not a recipe choice
            keys[f"train.{f.name}"] = type(value)
    return keys


def dimension_problems(key: str, spec: Any) -> list[str]:
    where = f"tune.space.{key}"
    if not key.startswith("train."):
        return [f"{where}: only the recipe (train.*) is searched; the gate and evaluation keys are not"]
    if key not in train_keys():
        return [f"{where}: not a searchable train key ({', '.join(sorted(train_keys()))})"]
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        return [
            f"{where}: {spec!r} must be one of {{log_uniform|uniform|int: [low, high]}} or {{choice: [...]}}"
        ]
    ((dist, values),) = spec.items()
    if not isinstance(values, list) or not values:
        return [f"{where}.{dist}: {values!r} must be a non-empty list"]
    if dist == "choice":
        return []
    if len(values) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [f"{where}.{dist}: {values!r} must be [low, high] numbers"]
    low, high = values
    if not low < high:
        return [f"{where}.{dist}: low {low} must be below high {high}"]
    if dist == "log_uniform" and low <= 0:
        return [f"{where}.log_uniform: low {low} must be > 0"]
    if dist == "int" and not all(isinstance(v, int) for v in values):
        return [f"{where}.int: {values!r} must be integers"]
    return []


def objective_of(tune: TuneParams, kind: str, primary_metric: str) -> str:
    """The validation metric the study maximises for this task kind."""
    if tune.objective is not None:
        return tune.objective
    return "accuracy" if kind == "classification" else primary_metric


def objective_problems(tune: TuneParams, kind: str) -> list[str]:
    if tune.objective is not None and tune.objective not in OBJECTIVES[kind]:
        return [f"tune.objective: {tune.objective!r} is not a {kind} metric ({', '.join(OBJECTIVES[kind])})"]
    return []


def recipe_hash(train: Any) -> str:
    """A recipe's identity: the ``train`` section (a dataclass) and nothing else, so the
    spread measured with ``tunegate tune --seeds`` is read only for the recipe it measured."""
    from tunegate.core.artifacts import sha256_bytes

    return sha256_bytes(repr(sorted(dataclasses.asdict(train).items())).encode())[:16]
