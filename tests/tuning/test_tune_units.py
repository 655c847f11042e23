"""The recipe search's pure parts: the space's checks, recipes applied to params, folds and
search views, and --apply's round trip (no model, milliseconds)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, write_params
from tunegate.core.artifacts import read_jsonl
from tunegate.core.errors import ConfigError
from tunegate.core.params import load_params
from tunegate.core.tune_params import TuneParams, dimension_problems
from tunegate.tuning.folds import JUDGED, fold_parts, search_views
from tunegate.tuning.record import apply_recipe
from tunegate.tuning.space import current, with_recipe


def test_tune_space_refuses_what_the_gate_reads_and_bad_distributions():
    assert dimension_problems("train.lr", {"log_uniform": [1e-4, 1e-3]}) == []
    assert dimension_problems("train.lora.r", {"choice": [8, 16]}) == []
    assert "only the recipe" in dimension_problems("gate.alpha", {"uniform": [0.01, 0.1]})[0]
    assert "not a searchable" in dimension_problems("train.nonsense", {"int": [1, 2]})[0]
    assert "not a searchable" in dimension_problems("train.precision", {"choice": ["bf16"]})[0]
    assert "must be one of" in dimension_problems("train.lr", {"normal": [0, 1]})[0]
    assert "below high" in dimension_problems("train.epochs", {"int": [3, 1]})[0]
    assert "> 0" in dimension_problems("train.lr", {"log_uniform": [0, 1e-3]})[0]
    assert "integers" in dimension_problems("train.epochs", {"int": [1, 2.5]})[0]
    assert TuneParams().problems() == []
    assert any("folds" in p for p in TuneParams(folds=2).problems())


def test_tune_section_is_checked_with_the_rest_of_params(tmp_path):
    bad = write_params(tmp_path / "p.yaml", tune={"space": {"eval.batch_size": {"int": [1, 4]}}, "trials": 0})
    with pytest.raises(ConfigError) as err:
        load_params(bad)
    text = str(err.value)
    assert "tune.space.eval.batch_size" in text and "tune.trials" in text
    wrong = write_params(tmp_path / "q.yaml", tune={"objective": "field_f1"})
    with pytest.raises(ConfigError, match=r"tune\.objective"):
        load_params(wrong)


def test_tune_recipe_is_applied_and_checked_like_params_yaml(tmp_path):
    params = load_params(ROOT / "params.yaml")
    tuned = with_recipe(params, {"train.lr": 2e-4, "train.lora.r": 8}, seed=7)
    assert (tuned.train.lr, tuned.train.lora.r, tuned.base.seed) == (2e-4, 8, 7)
    assert tuned.train.lora.target_modules == params.train.lora.target_modules
    with pytest.raises(ConfigError, match=r"train\.lr"):
        with_recipe(params, {"train.lr": -1.0})
    dims = TuneParams(
        space={"train.lr": {"log_uniform": [1e-4, 1e-3]}, "train.epochs": {"int": [5, 9]}}
    ).dimensions()
    assert current(params, dims) == {"train.lr": params.train.lr}  # epochs 1 is outside [5, 9]


def rows(n: int, labels: int) -> list[dict]:
    return [{"id": f"r{i}", "text": f"message {i}", "label": f"l{i % labels}"} for i in range(n)]


def test_tune_folds_are_disjoint_cover_the_pool_stratified_and_seeded():
    pool = rows(60, 3)
    parts = fold_parts(pool, 5, seed=0)
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(60)) and len(set(flat)) == 60
    for part in parts:  # 12 rows per fold, 4 of each label
        assert sorted({pool[i]["label"] for i in part}) == ["l0", "l1", "l2"]
        assert [pool[i]["label"] for i in part].count("l0") == 4
    assert parts == fold_parts(pool, 5, seed=0) and parts != fold_parts(pool, 5, seed=1)
    chats = [{"id": f"c{i}", "messages": []} for i in range(10)]  # no label: plain k-fold
    assert sorted(i for p in fold_parts(chats, 3, 0) for i in p) == list(range(10))


def test_tune_search_views_hold_no_judged_suite(tmp_path, prepared_sample):
    views = search_views(prepared_sample, 3, seed=0, work=tmp_path)
    train, val = read_jsonl(prepared_sample / "train.jsonl"), read_jsonl(prepared_sample / "val.jsonl")
    seen_val = []
    for view in views:
        names = {p.name for p in view.iterdir()}
        assert not any(n.startswith(JUDGED) for n in names), names
        assert {"train.jsonl", "val.jsonl", "manifest.json", "labels.json"} <= names
        fold_train, fold_val = read_jsonl(view / "train.jsonl"), read_jsonl(view / "val.jsonl")
        assert not {r["id"] for r in fold_train} & {r["id"] for r in fold_val}
        assert len(fold_train) + len(fold_val) == len(train) + len(val)
        seen_val += [r["id"] for r in fold_val]
        manifest = json.loads((view / "manifest.json").read_text())
        assert "holdout.jsonl" not in manifest["files"]
    assert sorted(seen_val) == sorted(r["id"] for r in train + val)
    (plain,) = search_views(prepared_sample, 1, seed=0, work=tmp_path / "one")
    assert read_jsonl(plain / "val.jsonl") == val


def test_tune_apply_writes_the_recipe_and_keeps_comments(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    applied = apply_recipe(path, {"train.lr": 0.00031, "train.lora.r": 8})
    assert (applied.train.lr, applied.train.lora.r) == (0.00031, 8)
    text = path.read_text()
    assert "# " in text and text.count("\n") >= (ROOT / "params.yaml").read_text().count("\n") - 1
    before = path.read_text()
    with pytest.raises(ConfigError, match=r"train\.lora\.r"):
        apply_recipe(path, {"train.lora.r": -3})
    assert path.read_text() == before  # a refused recipe leaves the file as it was


def test_tune_general_prompts_are_disjoint_from_the_probe_and_the_replay_prompts():
    """The forgetting constraint must not be measured on what the gate's probe judges or
    on what replay trains on."""
    general = {r["prompt"].strip().lower() for r in read_jsonl(ROOT / TuneParams().general_source)}
    probe = {r["question"].strip().lower() for r in read_jsonl(ROOT / "data/sample/probe.jsonl")}
    replay = {r["prompt"].strip().lower() for r in read_jsonl(ROOT / "data/sample/replay.jsonl")}
    assert len(general) >= 20
    assert not general & probe
    assert not general & replay
