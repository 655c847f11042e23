"""What pruning saves: the same study run with the params file's pruner and without one.

Both studies are the real ``tunegate tune`` command on the project's prepared data and
base model, with the same space, budget and sampler seed, each on its own SQLite storage
under a temporary folder; only ``tune.pruner`` differs. Reported: the training steps run
(a pruned trial counts the steps it ran before it was stopped), the wall time of each
study, the trials pruned, and whether both found the same best recipe. The sampler sees
different histories once a trial is pruned (a pruned trial has no value), so the two
studies may also propose different recipes after the first prune: that is part of what
pruning does, and the result says how the best recipes compare.

    .venv/bin/python bench/tune_pruning.py --trials 6 --max-train-rows 96 --epochs-max 2 --eval-every 10

``--max-train-rows`` and ``--epochs-max`` shrink each trial so that both studies fit an
hour on 2 cores; ``--eval-every`` makes the shorter trials still report their validation
loss to the pruner more than once. The result records all three.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tunegate.core.artifacts import environment, write_json  # noqa: E402


def study_params(
    params: Path,
    out: Path,
    pruner: str,
    trials: int,
    rows: int | None,
    epochs: int | None,
    eval_every: int | None = None,
) -> Path:
    raw = yaml.safe_load(params.read_text())
    tune = raw.setdefault("tune", {})
    tune |= {"pruner": pruner, "trials": trials, "study_name": f"bench-pruning-{pruner}"}
    tune["storage"] = f"sqlite:///{out.parent / f'study-{pruner}.sqlite'}"
    if rows:
        raw.setdefault("train", {})["max_train_rows"] = rows
    if eval_every:
        raw.setdefault("train", {})["eval_every"] = eval_every
    if epochs and "train.epochs" in tune.get("space", {}):
        low = tune["space"]["train.epochs"]["int"][0]
        tune["space"]["train.epochs"] = {"int": [low, max(low, epochs)]}
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def run_study(params: Path) -> tuple[float, dict]:
    import optuna

    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tunegate.cli", "tune", "--params", str(params)], cwd=ROOT, check=True
    )
    wall = time.perf_counter() - start
    raw = yaml.safe_load(params.read_text())["tune"]
    study = optuna.load_study(study_name=raw["study_name"], storage=raw["storage"])
    trials = []
    for t in study.trials:
        pruned = t.state.name == "PRUNED"
        trials.append({
            "number": t.number,
            "state": t.state.name.lower(),
            "params": t.params,
            "value": t.value,
            "steps": t.last_step if pruned else t.user_attrs.get("steps"),
            "seconds": t.duration.total_seconds() if t.duration else None,
        })  # fmt: skip
    done = [t for t in trials if t["state"] == "complete"]
    best = max(done, key=lambda t: (t["value"], -t["number"]), default=None)
    return wall, {
        "wall_seconds": round(wall, 1),
        "steps": sum(t["steps"] or 0 for t in trials),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "best": best,
        "trials": trials,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--max-train-rows", type=int, default=None)
    ap.add_argument("--epochs-max", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=None, help="train.eval_every for both studies")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/tune_pruning.json")
    args = ap.parse_args()
    pruner = yaml.safe_load(args.params.read_text()).get("tune", {}).get("pruner", "median")
    if pruner == "none":
        sys.exit("the params file's tune.pruner is none: nothing to compare")
    with tempfile.TemporaryDirectory(prefix="tunegate-tune-pruning-") as tmp:
        studies = {}
        for name in (pruner, "none"):
            path = study_params(args.params, Path(tmp) / f"params-{name}.yaml", name, args.trials,
                                args.max_train_rows, args.epochs_max, args.eval_every)  # fmt: skip
            studies[name] = run_study(path)[1]
            for folder in (
                ROOT / "tune" / f"bench-pruning-{name}",
                ROOT / "tune/.work" / f"bench-pruning-{name}",
            ):
                shutil.rmtree(folder, ignore_errors=True)  # the figures are in the result
    with_p, without = studies[pruner], studies["none"]
    same = bool(with_p["best"] and without["best"] and with_p["best"]["params"] == without["best"]["params"])
    result = {
        "params": str(args.params.relative_to(ROOT))
        if args.params.is_relative_to(ROOT)
        else str(args.params),
        "trials": args.trials,
        "max_train_rows": args.max_train_rows,
        "epochs_max": args.epochs_max,
        "eval_every": args.eval_every,
        "pruner": pruner,
        "studies": studies,
        "steps_saved": without["steps"] - with_p["steps"],
        "steps_saved_share": 1 - with_p["steps"] / without["steps"] if without["steps"] else None,
        "seconds_saved": round(without["wall_seconds"] - with_p["wall_seconds"], 1),
        "same_best_recipe": same,
        "environment": environment(),
    }
    write_json(args.out, result)
    print(
        f"{pruner}: {with_p['steps']} steps in {with_p['wall_seconds']} s ({with_p['pruned']} pruned); "
        f"none: {without['steps']} steps in {without['wall_seconds']} s; same best recipe: {same}"
    )


if __name__ == "__main__":
    main()
