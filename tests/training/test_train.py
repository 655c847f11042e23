"""The train stage end to end on a tiny random Llama (real transformers, PEFT, DVCLive; CPU, seconds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_params
from tunegate.core.artifacts import read_json, verify_hashes
from tunegate.core.errors import ConfigError, DataError
from tunegate.training.train import main as train_main

QUICK = {
    "max_steps": 12,
    "eval_every": 4,
    "batch_size": 8,
    "lr": 5e-3,
    "max_train_rows": 96,
    "early_stopping_patience": 0,
    "max_seq_len": 96,
    "max_forgetting": None,  # a random tiny model forgets everything at lr 5e-3: see the forget tests
}


def stage_args(tmp_path: Path, params: Path, prepared: Path, base: Path) -> list[str]:
    """The train stage's command-line arguments, every path under tmp_path."""
    return [
        "--params",
        str(params),
        "--data",
        str(prepared),
        "--base",
        str(base),
        "--out",
        str(tmp_path / "candidate"),
        "--metrics",
        str(tmp_path / "metrics"),
        "--checkpoints",
        str(tmp_path / "checkpoints"),
    ]


def run_train(tmp_path: Path, prepared: Path, base: Path, **train) -> Path:
    params = write_params(tmp_path / "params.yaml", train=QUICK | train)
    train_main(stage_args(tmp_path, params, prepared, base))
    return tmp_path / "candidate"


@pytest.mark.slow
def test_lora_writes_exactly_the_adapter_template_and_card(tmp_path, prepared_sample, tiny_base):
    out = run_train(tmp_path, prepared_sample, tiny_base)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "card.json",
        "prompt.json",
    ]
    card = read_json(out / "card.json")
    verify_hashes(out, card["files"])
    assert "README.md" not in card["files"]  # derived from card.json, rewritten at packaging
    from huggingface_hub import ModelCard

    hf = ModelCard.load(out / "README.md").data  # our card, not PEFT's template
    assert hf.library_name == "peft" and hf.model_name == card["model_id"] and not hf.eval_results
    assert card["base_model"]["tree_sha256"] == read_json(tiny_base / "card.json")["tree_sha256"]
    assert card["data"]["files"] == read_json(prepared_sample / "manifest.json")["files"]
    assert card["labels"] == read_json(prepared_sample / "labels.json")
    assert card["params"]["train"]["lora"]["r"] == 16
    modules = read_json(out / "adapter_config.json")["target_modules"]
    assert modules == sorted(modules) and len(modules) > 1  # PEFT's set order would vary per process
    assert card["environment"]["libraries"]["peft"]
    m = card["metrics"]
    assert m["best_val_loss"] < m["first_val_loss"], m  # validation loss went down
    assert m["steps"] == 12
    # What changes on every run stays out of the card (hashed by DVC): in the untracked run record.
    assert not {"train_seconds", "tokens_per_second"} & set(m) and "created_at" not in card["environment"]
    run = read_json(tmp_path / "metrics/run.json")
    assert run["tokens_per_second"] > 0 and run["model_id"] == card["model_id"]
    assert run["environment"]["created_at"]
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    live = read_json(tmp_path / "metrics/metrics.json")
    assert live["best_val_loss"] == pytest.approx(m["best_val_loss"], abs=1e-3)
    assert (tmp_path / "metrics/plots/metrics/eval/loss.tsv").read_text().count("\n") >= 3


@pytest.mark.slow
def test_full_method_saves_a_whole_model(tmp_path, prepared_sample, tiny_base):
    out = run_train(tmp_path, prepared_sample, tiny_base, method="full", max_steps=4, eval_every=2, lr=1e-3)
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "prompt.json", "card.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert read_json(out / "card.json")["method"] == "full"


def test_bad_params_fail_before_weights_load_listing_every_problem(tmp_path, tiny_base):
    params = write_params(
        tmp_path / "params.yaml",
        train={
            "lr": -0.1,
            "lora": {"r": 0, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "qkv_fused"]},
        },
    )
    with pytest.raises(ConfigError) as info:
        train_main(
            [
                "--params",
                str(params),
                "--base",
                str(tiny_base),
                "--data",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "cand"),
                "--metrics",
                str(tmp_path / "metrics"),
                "--checkpoints",
                str(tmp_path / "checkpoints"),
            ]
        )
    problems = info.value.problems
    assert any(p.startswith("train.lr: -0.1 must be > 0") for p in problems)
    assert any(p.startswith("train.lora.r: 0 must be >= 1") for p in problems)
    assert any("['qkv_fused'] not in the base model" in p for p in problems)
    assert len(problems) == 3
    assert not (tmp_path / "cand").exists()


@pytest.mark.slow
def test_a_killed_run_leaves_no_candidate_and_resumes(tmp_path, prepared_sample, tiny_base):
    params = write_params(tmp_path / "params.yaml", train=QUICK | {"max_steps": 40, "eval_every": 4})
    args = [
        sys.executable,
        "-m",
        "tunegate.training.train",
        *stage_args(tmp_path, params, prepared_sample, tiny_base),
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    marker = None
    while time.monotonic() < deadline and proc.poll() is None:  # wait for the first checkpoint to be whole
        marker = next(tmp_path.glob("checkpoints/train-*/checkpoint-8/trainer_state.json"), None)
        if marker:
            break
        time.sleep(0.2)
    assert marker is not None, "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "candidate").exists()  # nothing a later stage could mistake for finished

    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    card = read_json(tmp_path / "candidate/card.json")
    assert card["metrics"]["resumed_from"].endswith(("checkpoint-8", "checkpoint-12", "checkpoint-16"))
    assert card["metrics"]["steps"] == 40


def test_casing_copies_are_seeded_case_changed_and_keep_the_label():
    from tunegate.training.examples import casing_copies

    rows = [{"id": f"r{i}", "text": f"My card number {i} is Lost", "label": "lost"} for i in range(200)]
    copies = casing_copies(rows, 0.3, seed=42)
    assert 40 <= len(copies) <= 80 and copies == casing_copies(rows, 0.3, seed=42)
    assert all(c["text"] in (c["text"].upper(), c["text"].lower()) and c["label"] == "lost" for c in copies)
    assert {c["text"].isupper() for c in copies} == {True, False}  # both forms occur
    assert casing_copies(rows, 0.0, seed=42) == []
    assert casing_copies([{"id": "x", "text": "123 ?", "label": "a"}], 1.0, seed=1) == []  # nothing to change


def test_truncation_copies_are_seeded_shorter_prefixes_and_leave_chat_records_whole():
    from tunegate.training.examples import truncation_copies

    text = "I lost my card yesterday on the train home and need a new one"
    rows = [{"id": f"r{i}", "text": text, "label": "lost"} for i in range(200)]
    copies = truncation_copies(rows, 0.3, seed=42)
    assert 40 <= len(copies) <= 80 and copies == truncation_copies(rows, 0.3, seed=42)
    assert all(text.startswith(c["text"]) and len(c["text"]) < len(text) for c in copies)
    assert {len(c["text"].split()) for c in copies} <= set(range(5, 12))  # 40% to 80% of 14 words
    assert all(c["label"] == "lost" and c["id"].endswith("-cut") for c in copies)
    assert truncation_copies([{"id": "x", "text": "card lost now", "label": "a"}], 1.0, seed=1) == []
    chat = [{"id": "c", "messages": [{"role": "user", "content": text}], "input": text}]
    assert truncation_copies(chat, 1.0, seed=1) == []


def test_replay_keeps_its_share_when_the_task_rows_grow():
    from tunegate.training.examples import same_share

    replay = list(range(96))
    assert same_share(replay, 1.0) == replay
    grown = same_share(replay, 1.3)
    assert len(grown) == 125 and grown[:96] == replay and grown[96:] == replay[:29]
    assert same_share([], 2.0) == []


GENERAL = {"forgetting_source": str(ROOT / "data/general/prompts.jsonl"), "lr": 3e-3}


@pytest.mark.slow
def test_forget_budget_crossed_during_training_keeps_the_earlier_checkpoint(
    tmp_path, prepared_sample, tiny_base
):
    """Unbounded, the run records answers and forgetting at every validation; with a budget
    under the later checkpoints' forgetting, the same run keeps the best checkpoint within it."""
    free = read_json(run_train(mkdir(tmp_path / "free"), prepared_sample, tiny_base, **GENERAL) / "card.json")
    points = free["metrics"]["selection"]["curve"]
    assert points[0]["step"] == 0 and points[0]["forgetting"] == 0.0  # the base model, before any step
    trained = [p for p in points if p["step"] > 0]
    assert [p["step"] for p in trained] == [4, 8, 12]
    assert free["metrics"]["selection"]["within_budget"] is True
    last = trained[-1]["forgetting"]
    assert last > min(p["forgetting"] for p in trained[:-1])
    budget = round((last + min(p["forgetting"] for p in trained[:-1])) / 2, 6)
    bound = read_json(
        run_train(mkdir(tmp_path / "bound"), prepared_sample, tiny_base, **GENERAL, max_forgetting=budget)
        / "card.json"
    )
    kept = bound["metrics"]["selection"]
    within = [p for p in trained if p["forgetting"] <= budget]
    best = max(within, key=lambda p: (p["answer_match"], -p["loss"]))
    assert kept["within_budget"] and kept["step"] == best["step"] < 12
    assert bound["metrics"]["forgetting"] <= budget < last
    assert f"within the forgetting budget {budget}" in kept["reason"]


@pytest.mark.slow
def test_forget_budget_no_checkpoint_within_fails_the_stage_before_evaluation(
    tmp_path, prepared_sample, tiny_base
):
    with pytest.raises(
        DataError, match=r"every one of 3 checkpoints forgot more than train.max_forgetting 1e-06"
    ):
        run_train(tmp_path, prepared_sample, tiny_base, **GENERAL, max_forgetting=1e-6)
    assert not (tmp_path / "candidate").exists()


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
