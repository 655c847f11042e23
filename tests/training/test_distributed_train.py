"""The train stage on two processes (torchrun, DDP over gloo on this CPU) against one process
with the same effective batch, on the tiny model: both ranks train in step, only rank 0
writes, the card says how the run was spread, and the two results agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_params
from tunegate.core.artifacts import read_json

RECIPE = {
    "max_steps": 8,
    "eval_every": 4,
    "lr": 5e-3,
    "max_train_rows": 96,
    "early_stopping_patience": 0,
    "max_seq_len": 96,
    "threads": 1,  # one core per process
    "max_forgetting": None,  # a random tiny model forgets everything at lr 5e-3
}
# The best validation loss of the two runs may differ by this share: the processes see
# the same examples in another order (each its shard of a length-grouped epoch), and the
# mean loss is taken per process before DDP averages it. Measured here: 0.2%.
TOLERANCE = 0.02


def train(
    tmp_path: Path, name: str, prepared: Path, base: Path, batch: int, procs: int
) -> subprocess.CompletedProcess:
    params = write_params(tmp_path / f"{name}.yaml", train=RECIPE | {"batch_size": batch})
    stage = ["-m", "tunegate.training.train", "--params", str(params), "--data", str(prepared),
             "--base", str(base),
             "--out", str(tmp_path / name / "candidate"), "--metrics", str(tmp_path / name / "metrics"),
             "--checkpoints", str(tmp_path / name / "checkpoints")]  # fmt: skip
    if procs > 1:
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(procs), *stage]
    else:
        cmd = [sys.executable, *stage]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_distributed_train_two_ranks_match_one_process(tmp_path, prepared_sample, tiny_base):
    two = train(tmp_path, "ddp", prepared_sample, tiny_base, batch=4, procs=2)
    assert two.returncode == 0, two.stderr[-3000:]
    one = train(tmp_path, "single", prepared_sample, tiny_base, batch=8, procs=1)
    assert one.returncode == 0, one.stderr[-3000:]

    # Both ranks trained: 8 optimizer steps each on half of every batch, and DDP kept
    # their weights equal (each rank's digest before rank 0's best checkpoint is reloaded).
    ranks = [line for line in two.stderr.splitlines() if " rank " in line and " of 2: " in line]
    assert len(ranks) == 2, two.stderr[-3000:]
    assert {line.split(" rank ")[1][0] for line in ranks} == {"0", "1"}
    assert all("8 optimizer steps" in line and "batches of 4 per epoch" in line for line in ranks)
    digests = {line.rsplit(": ", 1)[1] for line in ranks}
    assert len(digests) == 1, ranks

    # Only rank 0 wrote: one candidate line, one folder, DVCLive metrics once.
    assert two.stderr.count("candidate lora:") == 1
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["candidate", "checkpoints", "metrics"]
    assert (tmp_path / "ddp/metrics/metrics.json").exists()

    card, single = (
        read_json(tmp_path / "ddp/candidate/card.json"),
        read_json(tmp_path / "single/candidate/card.json"),
    )
    assert card["distributed"] == {
        "world_size": 2, "backend": "gloo", "per_device_batch": 4, "grad_accum": 1, "effective_batch": 8,
    }  # fmt: skip
    assert single["distributed"]["world_size"] == 1 and single["distributed"]["effective_batch"] == 8
    assert card["metrics"]["steps"] == single["metrics"]["steps"] == 8

    # The same effective batch gives the same result within the tolerance.
    ddp_loss, one_loss = card["metrics"]["best_val_loss"], single["metrics"]["best_val_loss"]
    assert abs(ddp_loss - one_loss) <= TOLERANCE * one_loss, (ddp_loss, one_loss)
    assert card["metrics"]["best_val_loss"] < card["metrics"]["first_val_loss"]  # it learned


@pytest.mark.parametrize("var", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_distributed_sharded_launch_is_refused_before_anything_loads(var, tmp_path):
    """An FSDP or DeepSpeed launch (the variable `accelerate launch` sets for it) is a clear
    error, not a run whose rank-0-only save would wait forever for the other ranks."""
    env = os.environ | {"PYTHONPATH": str(ROOT), var: "true"}
    cmd = [sys.executable, "-m", "tunegate.training.train", "--params", str(ROOT / "params.yaml"), "--data",
           str(tmp_path), "--base", str(tmp_path), "--out", str(tmp_path / "c"), "--metrics",
           str(tmp_path / "m"), "--checkpoints", str(tmp_path / "k")]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "supports DDP only" in done.stderr and var in done.stderr
    assert not (tmp_path / "c").exists()
