"""The layers of the code: nothing below imports from above (docs/architecture.md).

A small AST check over the ``tunegate`` package, function-level imports included (a lazy
import is still a dependency). The kernel (``tunegate/core/``: params, errors, artifacts,
prompt, PII scrubbing, calibration, the stage runner, vLLM's arguments) imports no stage
package; a stage package imports the kernel and the packages below it; the command line
(``tunegate/cli.py``) is the top layer and may import every package. No file is exempt.
"""

from __future__ import annotations

import ast
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"core": 0, "training": 1, "serving": 1, "evaluation": 2, "monitoring": 2, "tuning": 3, "cli": 4}
"""Training and serving stand on the kernel alone; evaluation and monitoring also read
packaged releases and the request log (serving); the recipe search (tuning) runs the train
stage's recipe and scores it with evaluation's predictors; the command line is on top."""


def layer_of(parts: list[str]) -> str | None:
    """The layer a module (``["tunegate", "training", "train"]``) belongs to; None: not ours."""
    if parts[0] != "tunegate" or len(parts) < 2:
        return None
    return parts[1]


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
    own = layer_of(rel.removesuffix(".py").split("/"))
    out = []
    for line, module in imports(path):
        other = layer_of(module.split("."))
        if module == "tunegate" or (other is not None and other != own and LAYER[other] >= LAYER[own]):
            out.append(f"{rel}:{line} imports {module}")
    return out


def test_no_module_imports_from_its_own_layer_or_above():
    files = sorted(
        p for p in (ROOT / "tunegate").rglob("*.py") if p.name != "__init__.py" or p.parent.name != "tunegate"
    )
    assert len(files) > 100
    assert {layer_of(p.relative_to(ROOT).with_suffix("").parts) for p in files} == set(LAYER)
    assert [bad for p in files for bad in upward(p)] == []


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a kernel module importing a stage, a stage importing the CLI."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "tunegate/core").mkdir(parents=True)
    (tmp_path / "tunegate/serving").mkdir()
    kernel = tmp_path / "tunegate/core/params.py"
    kernel.write_text("import yaml\n\ndef f():\n    from tunegate.evaluation.perturb import PERTURBATIONS\n")
    stage = tmp_path / "tunegate/serving/engine.py"
    stage.write_text(
        "from tunegate.cli import app\nfrom tunegate.evaluation import vllm_predict\n"
        "from tunegate.core import x\nfrom tunegate.serving import y\n"
    )
    assert upward(kernel) == ["tunegate/core/params.py:4 imports tunegate.evaluation.perturb"]
    assert upward(stage) == [
        "tunegate/serving/engine.py:1 imports tunegate.cli",
        "tunegate/serving/engine.py:2 imports tunegate.evaluation",
    ]


@pytest.mark.parametrize(
    ("catalogue", "implemented"),
    [
        ("PERTURBATIONS", lambda: tuple(import_module("tunegate.evaluation.perturb").PERTURBATIONS)),
        (
            "DESCRIPTORS",
            lambda: tuple(import_module("tunegate.monitoring.descriptors").describe("a b", frozenset())),
        ),
    ],
)
def test_the_kernels_catalogues_name_what_the_stages_implement(catalogue, implemented):
    """params validates names from the kernel's catalogues; the stage modules implement them."""
    from tunegate.core import catalogues

    assert getattr(catalogues, catalogue) == implemented()
