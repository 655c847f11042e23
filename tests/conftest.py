"""Shared fixtures: the repository root, the external Banking77 folder, params helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = Path(os.environ.get("TUNEGATE_BANKING77", ROOT.parent / "shared" / "data" / "banking77"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def write_params(path: Path, **sections: dict[str, Any]) -> Path:
    """Write a params.yaml: the shipped one with the given sections' keys replaced."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def banking77() -> Path:
    if not (BANKING77 / "train.csv").exists():
        pytest.skip(f"Banking77 not found at {BANKING77} (external data, optional)")
    return BANKING77


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    from tests.tiny import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory) -> Path:
    """data/prepared built from the embedded sample, once per session."""
    from training.prepare import main as prepare_main

    folder = tmp_path_factory.mktemp("prepared")
    params = write_params(
        folder / "params.yaml",
        data={
            "source": str(ROOT / "data/sample/messages.csv"),
            "shifted_source": str(ROOT / "data/sample/shifted.csv"),
            "probe_source": str(ROOT / "data/sample/probe.jsonl"),
            "replay_source": str(ROOT / "data/sample/replay.jsonl"),
        },
    )
    prepare_main(["--params", str(params), "--out", str(folder / "out")])
    return folder / "out"
