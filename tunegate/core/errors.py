"""The small exception family. The CLI turns each into one clear line and an exit code."""

from __future__ import annotations


class TunegateError(Exception):
    """Base class: a problem the user can act on (not a bug)."""

    exit_code = 2


class ConfigError(TunegateError):
    """params.yaml (or a command-line option) holds a value tunegate cannot use."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the configuration:\n{lines}")


class DataError(TunegateError):
    """Input data is missing, malformed, or does not fit the task."""


class ArtifactError(TunegateError):
    """A model or data artifact is missing, unsafe (pickle, remote code) or fails its hash check."""


class RegistryError(TunegateError):
    """The model registry refused an action (bad stage order, lock held, unknown version)."""
