"""Where a project keeps what the pipeline makes, read from its ``dvc.yaml``.

Paths live in dvc.yaml: each stage's command names them (``--out models/base``). Code
outside the stages that needs one (the service's base model, the CLI's records,
retraining's verdict) asks this module, which reads the flag from the stage's command,
so a path changed in dvc.yaml is changed everywhere.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from tunegate.errors import ConfigError


class Layout:
    """A project's paths, each read from its stage's command in ``dvc.yaml`` when asked."""

    def __init__(self, project: Path):
        path = project / "dvc.yaml"
        if not path.exists():
            raise ConfigError(f"{path} is missing: the project's paths are declared there")
        self.project = project
        self.stages = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}

    def stage_arg(self, stage: str, flag: str) -> Path:
        """The path ``flag`` names in ``stage``'s command."""
        cmd = (self.stages.get(stage) or {}).get("cmd")
        words = shlex.split(cmd) if isinstance(cmd, str) else []
        if flag not in words[:-1]:
            raise ConfigError(f"dvc.yaml: stage {stage!r} has no `{flag} PATH` in its command")
        return self.project / words[words.index(flag) + 1]

    @property
    def base_model(self) -> Path:
        """The base stage's ``--out``: the base checkpoint the service serves adapters on."""
        return self.stage_arg("base", "--out")

    @property
    def gate_record(self) -> Path:
        """The gate stage's ``--out``: the verdict (``eval/gate.json``)."""
        return self.stage_arg("gate", "--out")

    @property
    def production_pointer(self) -> Path:
        """The evaluate stage's ``--production``: the registry writes it, evaluate reads the
        production release from it; the registry's audit trail and lock sit beside it."""
        return self.stage_arg("evaluate", "--production")

    @property
    def candidate_record(self) -> Path:
        """The package stage's ``--out``: what `tunegate register` registers."""
        return self.stage_arg("package", "--out")


def layout(project: Path = Path(".")) -> Layout:
    """The project's paths, from ``project/dvc.yaml``."""
    return Layout(project)
