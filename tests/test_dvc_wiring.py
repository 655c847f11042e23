"""dvc.yaml's deps cover every file each stage runs.

A stage's command is ``python -m some.module``; the files it runs are that module's import
closure within the repository (imports inside functions included, and modules it starts as
a subprocess, ``python -m tunegate.evaluation.vllm_predict``). A file missing from the stage's deps
means editing it leaves a stale output that ``dvc repro`` will not recompute.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tunegate",)
MODULE_NAME = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.\w+)+$")


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    init = path / "__init__.py"
    return init if init.is_file() else None


def has_code(path: Path) -> bool:
    """A package __init__ counts when it holds more than a docstring."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def direct(path: Path) -> set[Path]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            found.add(node.value)  # a module started as a subprocess
    files = {module_file(n) for n in found if n.split(".")[0] in PACKAGES}
    return {f for f in files if f is not None and (f.name != "__init__.py" or has_code(f))}


def closure(module: str) -> set[str]:
    start = module_file(module)
    assert start is not None, f"no module {module}"
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(direct(path) - seen)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def missing(stages: dict) -> list[str]:
    """``stage: file`` for each file a stage runs that its deps do not cover."""
    out = []
    for name, stage in stages.items():
        module = re.search(r"python -m ([\w.]+)", stage["cmd"]).group(1)
        deps = [str(d).rstrip("/") for d in stage.get("deps", [])]
        for path in sorted(closure(module)):
            if not any(path == d or path.startswith(d + "/") for d in deps):
                out.append(f"{name}: {path}")
    return out


def stages(file: str = "dvc.yaml") -> dict:
    return yaml.safe_load((ROOT / file).read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("file", ["dvc.yaml", "generation/dvc.yaml"])
def test_every_stage_lists_the_files_it_runs(file):
    assert missing(stages(file)) == []


def test_generation_pipeline_runs_the_same_stage_modules_on_its_own_params():
    """generation/dvc.yaml: every stage of dvc.yaml but base (and its own judge stage),
    reading params-generation.yaml."""
    gen, main = stages("generation/dvc.yaml"), stages()
    assert set(gen) - {"judge"} == set(main) - {"base"}
    for name, stage in gen.items():
        module = re.search(r"python -m ([\w.]+)", stage["cmd"]).group(1)
        assert name == "judge" or module == re.search(r"python -m ([\w.]+)", main[name]["cmd"]).group(1)
        assert "--params params-generation.yaml" in stage["cmd"] and stage["wdir"] == ".."


def test_the_wiring_check_names_a_removed_dep():
    """The check can fail: drop one file from a stage's deps and it is named."""
    declared = stages()
    for name, path in (("gate", "tunegate/evaluation/metrics.py"), ("train", "tunegate/core/params.py")):
        assert path in closure(re.search(r"-m ([\w.]+)", declared[name]["cmd"]).group(1))
        broken = stages()
        broken[name]["deps"].remove(path)
        assert missing(broken) == [f"{name}: {path}"]


def test_the_closure_follows_lazy_imports_and_subprocess_modules():
    evaluate = closure("tunegate.evaluation.evaluate")
    assert "tunegate/evaluation/vllm_predict.py" in evaluate  # started with python -m
    assert "tunegate/core/inference.py" in evaluate  # imported by vllm_predict
    assert "tunegate/core/greedy.py" in closure("tunegate.training.train")  # imported inside a method
