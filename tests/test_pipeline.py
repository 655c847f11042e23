"""The real DVC pipeline, run in a fresh copy of the project (prepare + base, real model)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_params

# The real stages, with a training profile small enough for a test (the default takes minutes).
QUICK_TRAIN = {"max_steps": 4, "eval_every": 2, "batch_size": 8, "max_train_rows": 48, "max_val_rows": 12}

COPY = [
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "training",
    "tunegate",
    "evaluation",
    "serving",
    "monitoring",
    "data/sample",
    ".dvc/config",
    ".dvcignore",
]


def sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(cwd),
        "DVC_NO_ANALYTICS": "1",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A git repository holding a copy of the project, after one `dvc repro`."""
    dest = tmp_path_factory.mktemp("project")
    for rel in COPY:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    write_params(dest / "params.yaml", train=QUICK_TRAIN)
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        assert sh(cmd, dest).returncode == 0
    result = sh([dvc, "repro"], dest)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dest


@pytest.mark.slow
def test_repro_builds_prepared_data_and_base_model(project):
    assert (project / "dvc.lock").exists()
    assert (project / "data/prepared/manifest.json").exists()
    assert (project / "models/base/model.safetensors").exists()
    assert (project / "models/base/card.json").exists()
    assert (project / "models/candidate/adapter_model.safetensors").exists()
    assert (project / "metrics/train/metrics.json").exists()


@pytest.mark.slow
def test_second_repro_does_nothing_and_status_is_clean(project):
    dvc = str(Path(sys.executable).parent / "dvc")
    again = sh([dvc, "repro"], project)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
    status = sh([dvc, "status"], project)
    assert status.returncode == 0
    assert "up to date" in status.stdout


@pytest.mark.slow
def test_changed_param_reruns_its_stage_and_what_follows(project, tmp_path):
    dvc = str(Path(sys.executable).parent / "dvc")
    result = sh([dvc, "exp", "run", "-S", "prepare.max_rows=300", "--temp"], project)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Running stage 'prepare'" in result.stdout
    assert "Running stage 'train'" in result.stdout  # downstream of prepare
    assert "Running stage 'base'" not in result.stdout
