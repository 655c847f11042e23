"""bench/recipes.py: the declared rule that picks a default recipe, and the Banking77 dataset it builds."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("recipes", ROOT / "bench/recipes.py")
recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipes)


def cell(dataset: str, recipe: str, verdict: str, value: float) -> dict:
    return {"dataset": dataset, "kind": "classification", "recipe": recipe, "verdict": verdict,
            "primary": {"value": value}}  # fmt: skip


def test_a_recipe_rejected_on_one_dataset_is_not_chosen_however_high_its_mean():
    cells = [
        cell("sample", "fast", "approved", 0.95),
        cell("banking", "fast", "rejected", 0.97),
        cell("sample", "slow", "approved", 0.90),
        cell("banking", "slow", "approved", 0.88),
    ]
    choice = recipes.choose(cells, "classification")
    assert choice["qualifying"] == {"slow": pytest.approx(0.89)}
    assert choice["chosen"] == "slow"


def test_a_recipe_not_run_on_every_dataset_does_not_qualify_and_is_named():
    cells = [cell("sample", "a", "approved", 0.9), cell("banking", "a", "approved", 0.9)]
    cells.append(cell("sample", "b", "approved", 0.99))
    choice = recipes.choose(cells, "classification")
    assert choice["chosen"] == "a"
    assert choice["cells_missing"] == {"b": ["banking"]}
    undecided = recipes.choose([cell("sample", "b", "not enough evidence", 0.99)], "classification")
    assert undecided["chosen"] is None


@pytest.mark.skipif(not recipes.BANKING77.exists(), reason="../shared/data/banking77 is absent")
def test_the_banking77_subset_keeps_its_hold_out_and_its_unknown_intents_apart(tmp_path):
    train_csv, holdout_csv = recipes.banking77_csvs(tmp_path)

    def rows(path: Path) -> list[dict]:
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    train, holdout = rows(train_csv), rows(holdout_csv)
    in_scope = {r["label"] for r in train} - {"oos"}
    assert len(in_scope) == 15 and {r["label"] for r in holdout} - {"oos"} == in_scope
    assert all(sum(r["label"] == i for r in train) == 40 for i in in_scope)
    assert sum(r["label"] == "oos" for r in train) == 100
    assert sum(r["label"] == "oos" for r in holdout) == 50
    assert not {r["text"] for r in train} & {r["text"] for r in holdout}
    again, _ = recipes.banking77_csvs(tmp_path / "again")
    assert rows(again) == train  # the same seed draws the same subset
