"""The layers of the code: nothing below imports from above (docs/architecture.md).

A small AST check over the packages, function-level imports included (a lazy import is
still a dependency). The kernel (``tunegate/``: params, errors, artifacts, prompt, PII
scrubbing, calibration, the stage runner, vLLM's arguments) imports no stage package;
a stage package imports the kernel and the packages below it; the CLI alone imports
everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"tunegate": 0, "training": 1, "serving": 1, "evaluation": 2, "monitoring": 2, "tuning": 3}
"""Training and serving stand on the kernel alone; evaluation and monitoring also read
packaged releases and the request log (serving); the recipe search (tuning) runs the train
stage's recipe and scores it with evaluation's predictors."""
TOP = {"tunegate/cli.py"}


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def upward(path: Path) -> list[str]:
    """``file:line imports module`` for each import this file may not make."""
    rel = path.relative_to(ROOT).as_posix()
    if rel in TOP:
        return []
    own = LAYER[rel.split("/")[0]]
    out = []
    for line, module in imports(path):
        package = module.split(".")[0]
        if module == "tunegate.cli" or (
            package in LAYER and package != rel.split("/")[0] and LAYER[package] >= own
        ):
            out.append(f"{rel}:{line} imports {module}")
    return out


def test_no_module_imports_from_its_own_layer_or_above():
    files = [p for package in LAYER for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50
    assert [bad for p in files for bad in upward(p)] == []


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a kernel module importing a stage, a stage importing the CLI."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "tunegate").mkdir()
    (tmp_path / "serving").mkdir()
    kernel = tmp_path / "tunegate" / "params.py"
    kernel.write_text("import yaml\n\ndef f():\n    from evaluation.perturb import PERTURBATIONS\n")
    stage = tmp_path / "serving" / "engine.py"
    stage.write_text(
        "from tunegate.cli import app\nfrom evaluation import vllm_predict\nfrom tunegate import x\n"
    )
    assert upward(kernel) == ["tunegate/params.py:4 imports evaluation.perturb"]
    assert upward(stage) == [
        "serving/engine.py:1 imports tunegate.cli",
        "serving/engine.py:2 imports evaluation",
    ]


@pytest.mark.parametrize(
    ("catalogue", "implemented"),
    [
        ("PERTURBATIONS", lambda: tuple(__import__("evaluation.perturb").perturb.PERTURBATIONS)),
        (
            "DESCRIPTORS",
            lambda: tuple(__import__("monitoring.descriptors").descriptors.describe("a b", frozenset())),
        ),
    ],
)
def test_the_kernels_catalogues_name_what_the_stages_implement(catalogue, implemented):
    """params validates names from the kernel's catalogues; the stage modules implement them."""
    from tunegate import catalogues

    assert getattr(catalogues, catalogue) == implemented()
