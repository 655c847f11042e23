"""Where a project keeps what the pipeline makes, read from its ``dvc.yaml``.

Paths live in dvc.yaml: each stage's command names them (``--out models/base``). Code
outside the stages that needs one (the service's base model, the CLI's records,
retraining's verdict) asks this module, which reads the flag from the stage's command,
so a path changed in dvc.yaml is changed everywhere.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from tunegate.core.errors import ConfigError


class Layout:
    """A project's paths, each read from its stage's command in a pipeline file when asked:
    ``dvc.yaml``, or another one (``release.pipeline``, e.g. generation/dvc.yaml) whose
    stages it lacks (the shared base stage) are looked up in ``dvc.yaml``."""

    def __init__(self, project: Path, pipeline: str = "dvc.yaml"):
        self.project = project
        self.files = [pipeline] + (["dvc.yaml"] if pipeline != "dvc.yaml" else [])
        self.stages: dict[str, tuple[str, dict]] = {}
        for name in reversed(self.files):
            path = project / name
            if not path.exists():
                raise ConfigError(f"{path} is missing: the project's paths are declared there")
            stages = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {}
            self.stages |= {stage: (name, spec or {}) for stage, spec in stages.items()}

    def stage_arg(self, stage: str, flag: str) -> Path:
        """The path ``flag`` names in ``stage``'s command (relative to the stage's wdir)."""
        file, spec = self.stages.get(stage, (self.files[0], {}))
        cmd = spec.get("cmd")
        words = shlex.split(cmd) if isinstance(cmd, str) else []
        if flag not in words[:-1]:
            raise ConfigError(f"{file}: stage {stage!r} has no `{flag} PATH` in its command")
        wdir = (self.project / file).parent / spec.get("wdir", ".")
        return Path(os.path.normpath(wdir / words[words.index(flag) + 1]))

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


def layout(project: Path = Path("."), pipeline: str = "dvc.yaml") -> Layout:
    """The project's paths, from ``project/<pipeline>`` (and ``dvc.yaml``)."""
    return Layout(project, pipeline)
