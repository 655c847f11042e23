"""Per-deployment secrets: what keys the request log's caller hashes.

A constant, public salt lets anyone recover a caller id from its hash by guessing
(``customer-42`` fell in 43 guesses). The secret comes from ``TUNEGATE_LOG_SECRET`` (hex
or any string; replicas of one deployment set the same value), or else from
``<project>/.tunegate/log-secret``, generated on first use (32 random bytes, mode 0600,
kept out of git by ``.gitignore``). Replicas that share the project folder share it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

ENV = "TUNEGATE_LOG_SECRET"
FILE = ".tunegate/log-secret"


def log_secret(project: Path) -> bytes:
    """The deployment's secret for keyed hashes of caller ids (created on first use)."""
    given = os.environ.get(ENV)
    if given:
        return given.encode()
    path = project / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # two replicas starting at once keep one secret
            os.link(tmp, path)
        tmp.unlink()
    value = path.read_text().strip()
    if len(value) < 32:
        raise PermissionError(f"{path} holds no usable secret; delete it to have a new one made")
    return value.encode()
