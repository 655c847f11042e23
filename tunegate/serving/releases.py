"""What the registry records, and how it talks to git and GTO.

A ``Release`` is a GTO version whose tag message is tunegate's JSON; an ``Assignment``
puts one in a stage. ``actor()`` names who acts. The git and GTO helpers turn their
failures into ``RegistryError``s. ``tunegate/serving/registry.py`` builds the registry on these.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.errors import RegistryError

STAGES = ("staging", "canary", "production")


@dataclass(frozen=True)
class Release:
    version: str
    bento_tag: str
    tree_sha256: str
    model_id: str
    verdict: str
    commit: str
    registered_at: str

    @classmethod
    def from_message(cls, version: str, commit: str, at: Any, message: str) -> Release | None:
        try:
            info = json.loads(message)
        except (json.JSONDecodeError, TypeError):
            return None  # registered by hand, not by tunegate: not servable
        if not isinstance(info, dict) or "bento_tag" not in info:
            return None
        return cls(
            version,
            info["bento_tag"],
            info["tree_sha256"],
            info["model_id"],
            info["verdict"],
            commit,
            str(at),
        )


@dataclass(frozen=True)
class Assignment:
    stage: str
    version: str
    weight: int
    """Percent of public traffic (canary); production takes the rest; staging takes none."""
    at: str
    by: str
    reason: str
    forced: bool


def actor() -> tuple[str, str]:
    """Who acts: TUNEGATE_ACTOR, else the operating-system user running the command (not the
    machine's git identity, which names whoever configured git, not who promoted)."""
    name = os.environ.get("TUNEGATE_ACTOR") or getpass.getuser()
    email = os.environ.get("TUNEGATE_ACTOR_EMAIL") or f"{name}@{socket.gethostname()}"
    return name, email


def counter(ref: str) -> int:
    return int(ref.rsplit("#", 1)[1])


def json_message(message: str) -> dict[str, Any]:
    try:
        out = json.loads(message)
    except (json.JSONDecodeError, TypeError):
        return {}
    return out if isinstance(out, dict) else {}


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RegistryError(f"git {' '.join(args)} failed in {repo}: {out.stderr.strip()}")
    return out.stdout.strip()


@contextlib.contextmanager
def quiet_gto() -> Iterator[None]:
    """GTO prints its own one-line confirmations; tunegate reports actions itself."""
    import io
    from contextlib import redirect_stdout

    try:
        with redirect_stdout(io.StringIO()):
            yield
    except Exception as err:
        if type(err).__module__.startswith("gto"):
            raise RegistryError(f"GTO refused: {err}") from err
        raise
