"""What a study leaves in the project: ``tune/<study>/trials.json`` and the applied recipe.

The record is a committed JSON file rather than a DVC experiment per trial: a trial is
several train runs (one per fold) that are not the pipeline's ``train`` stage outputs, and
pruned trials have no outputs at all, so ``dvc exp`` would record either half-made
experiments or none; the JSON holds every finished trial (params, state, validation
figures per fold, steps and seconds) and is what ``--apply``, ``--seeds`` and ``--report``
read, with the Optuna storage beside it as the resumable working copy.

``--apply`` writes the best feasible recipe into the params file with ruamel's round trip,
so its comments and layout stay; ``dvc repro`` then trains and gates exactly that recipe
(its train stage depends on ``train``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunegate.core.artifacts import environment, read_json, write_json
from tunegate.core.errors import ConfigError
from tunegate.core.params import Params, load_params
from tunegate.tuning.study import best_feasible, constraint, study_name

FIGURES = ("value_sd", "forgetting_kl", "val_loss", "steps", "seconds", "folds", "default", "worker")


def record_dir(params: Params, project: Path) -> Path:
    return project / "tune" / study_name(params)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name.lower(), "params": t.params, "value": t.value}
        row |= {k: t.user_attrs[k] for k in FIGURES if k in t.user_attrs}
        if t.state.name == "COMPLETE":
            row["feasible"] = constraint(t)[0] <= 0
        if t.state.name == "PRUNED":
            row["pruned_at_step"] = t.last_step
        rows.append(row)
    return rows


def write_record(study: Any, params: Params, objective: str, project: Path) -> Path:
    best = best_feasible(study)
    tp = params.tune
    record = {
        "study": study.study_name,
        "objective": f"validation {objective} (maximised)",
        "constraint": f"forgetting KL <= {tp.max_forgetting_kl} on {tp.general_source}",
        "budget": {"trials": tp.trials, "sampler": tp.sampler, "pruner": tp.pruner, "folds": tp.folds},
        "space": tp.space,
        "trials": trial_rows(study),
        "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params},
        "environment": environment(stamped=True),  # a study's record: when and where it ran
    }
    path = record_dir(params, project) / "trials.json"
    write_json(path, record)
    return path


def best_recipe(params: Params, project: Path) -> dict[str, Any]:
    path = record_dir(params, project) / "trials.json"
    if not path.exists():
        raise ConfigError(f"{path}: no study record; run `tunegate tune` first")
    best = read_json(path)["best"]
    if best is None:
        raise ConfigError(f"{path}: no complete trial within the forgetting constraint; nothing to apply")
    return best["params"]


def apply_recipe(params_path: Path, recipe: dict[str, Any]) -> Params:
    """Write the recipe's dotted train.* keys into params_path (comments kept); the file is
    checked before it is replaced, so a bad recipe leaves it untouched."""
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.representer import RoundTripRepresenter

    from tunegate.core.artifacts import atomic_write_text

    class Representer(RoundTripRepresenter):
        """The round trip, except that None stays ``null`` (ruamel writes an empty value)."""

    Representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    yaml = YAML()
    yaml.Representer = Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # long flow lists stay on one line
    doc = yaml.load(params_path.read_text(encoding="utf-8"))
    for dotted, value in recipe.items():
        *path, last = dotted.split(".")
        node = doc
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    out = StringIO()
    yaml.dump(doc, out)
    candidate = params_path.with_suffix(".tune-check.yaml")
    candidate.write_text(out.getvalue(), encoding="utf-8")
    try:
        checked = load_params(candidate)
    finally:
        candidate.unlink(missing_ok=True)
    atomic_write_text(params_path, out.getvalue())
    return checked
