"""A default recipe chosen across datasets: candidate recipes x datasets through train, evaluate, gate.

Everything the choice reads is declared here, before a cell runs, and never changed to admit
a winner (issue 38): the datasets, the recipes of each task kind, the evaluation settings
shared by every cell, and the rule.

- Datasets: ``sample`` (the embedded default, ``data/prepared``); ``banking77-15`` (15 intents
  of ``../shared/data/banking77`` drawn with seed 0, 40 training rows each and 100
  out-of-scope rows from 5 other intents; hold-out from its test split, 20 rows per intent
  and 50 out-of-scope rows from 5 further intents; no shifted suite: the shape of a user's
  first dataset), prepared by the prepare stage itself; ``tickets`` (the generation kind's
  embedded default, ``data/prepared-generation``, after ``make run-generation``).
- Recipes: ``RECIPES`` below, each a set of ``train.*`` values; every other key is the kind's
  params file as committed.
- Each cell runs the pipeline's own stage commands (``bench/injected.py::stages``): train
  (with its forgetting budget), evaluate (with ``EVAL`` below: fewer perturbed rows and
  parity rows than the pipeline, no prompting reference), gate against the base model as a
  first release.
- The rule (``choose``): a recipe qualifies for its kind when the gate approves its candidate
  on every dataset of that kind; among those, the highest mean hold-out primary metric.
  When none qualifies, the table says so and no default is claimed.

Cells are written to ``bench/results/recipes.json`` as each ends, so a run that is cut off
resumes where it stopped (``--cells`` picks some; a cell already there is skipped unless
``--again``). ``--reuse-pipeline`` takes the committed pipeline's own gate record for the
cell whose recipe equals the params file's (evaluated with the pipeline's full settings).

Usage: ``python bench/recipes.py [--cells sample/lr-8.5e-4 banking77-15/lr-5e-4 ...]
[--reuse-pipeline] [--workdir bench/.cache/recipes]`` (a classification cell is about 15 to
20 minutes on 2 CPU cores, a generation cell about 25).
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from injected import gate, run, stages

from tunegate.core.artifacts import atomic_write_text, environment, read_json, sha256_file, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results/recipes.json"
BANKING77 = ROOT.parent / "shared/data/banking77"

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "classification": {
        "lr-8.5e-4": {"lr": 8.504334913615552e-4, "epochs": 1.5},  # the default of 2026-12-06
        "lr-5e-4": {"lr": 5.0e-4, "epochs": 1.5},  # the default before the search raised it
    },
    "generation": {
        "lr-5e-4-2ep": {"lr": 5.0e-4, "epochs": 2},  # the default of 2026-12-06
    },
}
EVAL = {"perturbation_rows": 60, "parity_rows": 16, "few_shot": 0}
PRIMARY = {"classification": "holdout.accuracy", "generation": "holdout.field_f1"}
KIND_OF = {"sample": "classification", "banking77-15": "classification", "tickets": "generation"}


def banking77_csvs(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """The banking77-15 training and hold-out files (see the module doc), written to ``folder``."""

    def by_intent(name: str) -> dict[str, list[str]]:
        with (BANKING77 / name).open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["category"], []).append(r["text"])
        for texts in out.values():
            random.Random(seed).shuffle(texts)
        return out

    train, test = by_intent("train.csv"), by_intent("test.csv")
    intents = sorted(train)
    random.Random(seed).shuffle(intents)
    scope, oos_train, oos_test = intents[:15], intents[15:20], intents[20:25]
    train_rows = [(t, i) for i in scope for t in train[i][:40]] + [
        (t, "oos") for i in oos_train for t in train[i][:20]
    ]
    holdout_rows = [(t, i) for i in scope for t in test[i][:20]] + [
        (t, "oos") for i in oos_test for t in test[i][:10]
    ]
    paths = folder / "train.csv", folder / "holdout.csv"
    for path, rows in zip(paths, (train_rows, holdout_rows), strict=True):
        random.Random(seed).shuffle(rows)
        lines = [["text", "label"], *([t, label] for t, label in rows)]
        folder.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(lines)
    return paths


def dataset(name: str, workdir: Path) -> tuple[str, dict[str, Any], Path]:
    """(kind, params as committed with the dataset's data keys, prepared folder) of one dataset."""
    if name == "tickets":
        params = yaml.safe_load((ROOT / "params-generation.yaml").read_text(encoding="utf-8"))
        return "generation", params, ROOT / "data/prepared-generation"
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    if name == "sample":
        return "classification", params, ROOT / "data/prepared"
    if name != "banking77-15":
        raise SystemExit(f"unknown dataset {name!r}: sample, banking77-15 or tickets")
    if not BANKING77.exists():
        raise SystemExit(f"{BANKING77} is absent: the banking77-15 cells cannot run here")
    folder = (workdir / name).resolve()  # the manifest records the sources by this path
    train_csv, holdout_csv = banking77_csvs(folder)
    params["data"] |= {
        "source": str(train_csv), "holdout_source": str(holdout_csv), "shifted_source": None,
        "text_column": "text", "label_column": "label", "format": "csv",
    }  # fmt: skip
    prepared = folder / "prepared"
    manifest = prepared / "manifest.json"
    inputs = read_json(manifest)["inputs"] if manifest.exists() else {}
    if any(inputs.get(str(f)) != sha256_file(f) for f in (train_csv, holdout_csv)):  # new or changed
        pfile = folder / "params-prepare.yaml"
        atomic_write_text(pfile, yaml.safe_dump(params, sort_keys=False))
        run([sys.executable, "-m", "tunegate.training.prepare", "--params", str(pfile),
             "--out", str(prepared)])  # fmt: skip
    return "classification", params, prepared


def row_of(kind: str, gate: dict, card: dict, source: str, seconds: float | None) -> dict[str, Any]:
    """One cell's figures from its gate record and model card."""
    checks = {c["name"]: c for c in gate["checks"]}
    primary = checks[PRIMARY[kind]]
    selection = card["metrics"].get("selection") or {}
    return {
        "verdict": gate["verdict"],
        "failed": [c["name"] for c in gate["checks"] if not c["passed"] and not c.get("undecided")],
        "undecided": [c["name"] for c in gate["checks"] if c.get("undecided")],
        "primary": {"check": primary["name"], "value": primary["value"], "ci": primary["ci"],
                    "items": primary["items"], "level": gate["interval_level"]},
        "probe_forgetting": checks["probe.forgetting"]["value"] if "probe.forgetting" in checks else None,
        "steps": card["metrics"].get("steps"),
        "kept_step": selection.get("step"),
        "train_forgetting": selection.get("forgetting"),
        "selection": selection.get("reason"),
        "model_id": gate["candidate"]["model_id"],
        "source": source,
        "seconds": seconds,
    }  # fmt: skip


def cell(name: str, recipe: str, workdir: Path) -> dict[str, Any]:
    """Train, evaluate and gate one recipe on one dataset (a failed train stage is its outcome)."""
    kind, params, prepared = dataset(name, workdir)
    params["train"] |= RECIPES[kind][recipe]
    params["eval"] |= EVAL
    params["base"]["seed"] = 42
    folder = workdir / f"{name}--{recipe}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pfile = folder / "params.yaml"
    atomic_write_text(pfile, yaml.safe_dump(params, sort_keys=False))
    pointer = folder / "production.json"
    write_json(pointer, {"version": None})
    model = folder / "models" / "candidate"
    started = time.monotonic()
    try:
        gate = stages(pfile, prepared, model, folder / "eval", pointer, folder)
    except RuntimeError as exc:  # the train stage refuses a run whose every checkpoint forgot too much
        last = [line for line in str(exc).splitlines() if line.strip()][-1:]
        return {"verdict": "stopped at train", "failed": [], "undecided": [], "primary": None,
                "reason": " ".join(last), "source": "this bench",
                "seconds": round(time.monotonic() - started)}  # fmt: skip
    card = read_json(model / "card.json")
    return row_of(kind, gate, card, "this bench", round(time.monotonic() - started))


def pipeline_cell(name: str, recipe: str) -> dict[str, Any] | None:
    """The committed pipeline's own record for this cell, when its recipe is the params file's."""
    files = {
        "sample": ("params.yaml", "eval/gate.json", "models/candidate/card.json"),
        "tickets": ("params-generation.yaml", "eval/generation/gate.json",
                    "models/candidate-generation/card.json"),
    }  # fmt: skip
    if name not in files:
        return None
    kind = KIND_OF[name]
    pfile, gate_file, card_file = (ROOT / f for f in files[name])
    train = yaml.safe_load(pfile.read_text(encoding="utf-8"))["train"]
    if any(train.get(k) != v for k, v in RECIPES[kind][recipe].items()) or not card_file.exists():
        return None
    source = f"the pipeline ({gate_file.relative_to(ROOT)})"
    return row_of(kind, read_json(gate_file), read_json(card_file), source, None)


def kept_cell(name: str, recipe: str, workdir: Path, seconds: float | None) -> dict[str, Any] | None:
    """A cell's row from the evaluation it left in the work folder, gated again by today's gate
    stage (``--render``: seconds, no training or evaluation)."""
    folder = workdir / f"{name}--{recipe}"
    model = folder / "models/candidate"
    if not (folder / "eval/results").exists():  # the cell stopped before evaluation
        return None
    gate(folder / "params.yaml", folder / "eval", model)
    return row_of(KIND_OF[name], read_json(folder / "eval/gate.json"), read_json(model / "card.json"),
                  "this bench", seconds)  # fmt: skip


def choose(cells: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The declared rule: approved on every dataset of the kind, then the highest mean primary."""
    names = sorted({c["dataset"] for c in cells if c["kind"] == kind})
    table: dict[str, dict[str, dict]] = {}
    for c in cells:
        if c["kind"] == kind:
            table.setdefault(c["recipe"], {})[c["dataset"]] = c
    qualifying = {
        recipe: sum(row["primary"]["value"] for row in rows.values()) / len(rows)
        for recipe, rows in table.items()
        if sorted(rows) == names and all(row["verdict"] == "approved" for row in rows.values())
    }
    missing = {r: sorted(set(names) - set(rows)) for r, rows in table.items() if set(rows) != set(names)}
    chosen = max(qualifying, key=qualifying.__getitem__) if qualifying else None
    open_ = [r for r in missing if all(row["verdict"] == "approved" for row in table[r].values())]
    return {"datasets": names, "qualifying": qualifying, "chosen": chosen, "cells_missing": missing,
            "may_still_qualify": open_}  # fmt: skip


def markdown(cells: list[dict[str, Any]], choice: dict[str, dict[str, Any]]) -> str:
    """The results table (``bench/results/recipes.md``; the README's block is written from it)."""
    out = ["| dataset | recipe | verdict | hold-out primary [interval] | probe forgetting drop | "
           "steps (kept) | training forgetting | source |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in cells:
        p = c.get("primary")
        level = f" ({p['level']:.0%})" if p and p.get("level") else ""
        primary = f"{p['check']} {p['value']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}]{level}" if p else "-"
        drop = "-" if c.get("probe_forgetting") is None else f"{c['probe_forgetting']:.3f}"
        named = [f"{what}: {', '.join(c[what])}" for what in ("failed", "undecided") if c.get(what)]
        verdict = c["verdict"] + (f" ({'; '.join(named)})" if named else "")
        verdict += f": {c['reason']}" if c.get("reason") else ""
        steps = f"{c.get('steps')} ({c.get('kept_step')})" if c.get("steps") else "-"
        forgot = "-" if c.get("train_forgetting") is None else f"{c['train_forgetting']:.3f}"
        out.append(f"| {c['dataset']} | {c['recipe']} | {verdict} | {primary} | {drop} | {steps} | "
                   f"{forgot} | {c['source']} |")  # fmt: skip
    out.append("")
    for kind, ch in choice.items():
        missing = "; ".join(f"{r} lacks {', '.join(ds)}" for r, ds in ch["cells_missing"].items())
        verdict = f"`{ch['chosen']}`" if ch["chosen"] else "none qualifies"
        verdict += " yet" if not ch["chosen"] and ch.get("may_still_qualify") else ""
        line = f"- {kind} ({', '.join(ch['datasets'])}): {verdict}"
        out.append(line + (f" ({missing})" if missing else ""))
    return "\n".join(out) + "\n"


def save(cells: list[dict[str, Any]]) -> None:
    cells = sorted(cells, key=lambda c: (c["kind"], c["dataset"], c["recipe"]))
    choice = {k: choose(cells, k) for k in sorted({c["kind"] for c in cells})}
    write_json(
        RESULTS,
        {
            "declared": {"recipes": RECIPES, "eval": EVAL, "rule": choose.__doc__},
            "cells": cells,
            "choice": choice,
            "environment": environment(),
        },
    )
    atomic_write_text(RESULTS.with_suffix(".md"), markdown(cells, choice))


def main(argv: list[str] | None = None) -> None:
    all_cells = [f"{d}/{r}" for d, kind in KIND_OF.items() for r in RECIPES[kind]]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=all_cells, choices=all_cells)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench/.cache/recipes")
    parser.add_argument("--reuse-pipeline", action="store_true")
    parser.add_argument("--again", action="store_true", help="rerun cells already in the results")
    parser.add_argument(
        "--render", action="store_true", help="rebuild the rows from the records the cells left, run nothing"
    )
    args = parser.parse_args(argv)
    cells = read_json(RESULTS)["cells"] if RESULTS.exists() else []
    if args.render:
        for c in cells:
            again = pipeline_cell(c["dataset"], c["recipe"]) if c["source"] != "this bench" else None
            again = again or kept_cell(c["dataset"], c["recipe"], args.workdir, c.get("seconds"))
            c.update(again or {})
        save(cells)
        return
    for key in args.cells:
        name, recipe = key.split("/")
        if not args.again and any(c["dataset"] == name and c["recipe"] == recipe for c in cells):
            continue
        reused = pipeline_cell(name, recipe) if args.reuse_pipeline else None
        row = reused or cell(name, recipe, args.workdir)
        row = {"dataset": name, "kind": KIND_OF[name], "recipe": recipe, **row}
        cells = [c for c in cells if (c["dataset"], c["recipe"]) != (name, recipe)] + [row]
        save(cells)
        print(f"{key}: {row['verdict']} {row.get('primary')} ({row['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
