"""The request log's local spool: rows the database did not take at shutdown, one JSON line
per operation, replayed into the database by the next start (tunegate/serving/logwriter.py).

Written private (folder 0700, file 0600: the rows hold callers' messages) and fsynced. Read
defensively, because a spool is what a crash or a full disk leaves behind: a line cut off
mid-write, or any line that is not a valid operation on the request table (an unknown op,
an unknown column, a wrong type, a missing key), is set aside in ``<spool>.rejected``,
counted and reported, and never stops the service from starting. A valid ``finish`` only
ever completes a row that is still open (tunegate/serving/requestlog.py ``apply``), so a spool
cannot overwrite another request's outcome.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import PRIVATE_FILE
from tunegate.serving.logstore import requests
from tunegate.serving.requestlog import FINISHED, Entry

_TYPES: dict[str, tuple[type, ...]] = {
    "Text": (str,), "Integer": (int,), "Float": (int, float),
}  # fmt: skip
_COLUMNS = {c.name: _TYPES[type(c.type).__name__] for c in requests.columns if c.name != "id"}
INSERT_KEYS = frozenset(f.name for f in fields(Entry) if f.name != "tokens") | {"instance"}
"""The keys of every row the writer inserts (tunegate/serving/requestlog.py ``row_of``)."""
FINISH_KEYS = frozenset({"key", *FINISHED})
NOT_NULL = {c.name for c in requests.columns if not c.nullable}


def append_private(path: Path, lines: list[str]) -> None:
    """Append lines to a file only this user may read, and fsync them."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, "".join(lines).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def problem(op: Any) -> str | None:
    """Why a parsed spool line is not a valid operation on the request table; None if it is."""
    if not isinstance(op, dict) or set(op) != {"op", "row"} or not isinstance(op["row"], dict):
        return "not an {op, row} object"
    kind, row = op["op"], op["row"]
    keys = {"insert": INSERT_KEYS, "finish": FINISH_KEYS}.get(kind)
    if keys is None:
        return f"unknown op {kind!r}"
    if set(row) != keys:
        extra, missing = sorted(set(row) - keys), sorted(keys - set(row))
        return f"not the writer's fields (unknown {extra}, missing {missing})"
    for name, value in row.items():
        types = (str,) if name == "key" else _COLUMNS[name]
        if value is None and (name == "key" or name in NOT_NULL):
            return f"{name} is null"
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            return f"{name}: {type(value).__name__} where {types[0].__name__} belongs"
    return None


@dataclass
class Read:
    """A spool file read: the valid operations in order, and the lines set aside (with why)."""

    ops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def read_spool(path: Path) -> Read:
    out = Read()
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            op = json.loads(line)
        except ValueError:
            out.rejected.append((number, "not JSON (cut off by a crash?)"))
            continue
        why = problem(op)
        if why:
            out.rejected.append((number, why))
        else:
            out.ops.append((op["op"], op["row"]))
    return out


def set_aside(path: Path, rejected: list[tuple[int, str]]) -> Path:
    """Copy the rejected lines of `path` into ``<path>.rejected`` (kept for a person to read)."""
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    aside = path.with_name(path.name + ".rejected")
    append_private(
        aside, [json.dumps({"line": n, "why": why, "text": lines[n - 1]}) + "\n" for n, why in rejected]
    )
    return aside
