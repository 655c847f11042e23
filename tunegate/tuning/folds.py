"""What a trial may read: the training and validation rows, as one or k folds.

The search must never open what the gate judges, so a trial does not get the prepared
folder: it gets a *search view*, a folder holding only what the train stage reads
(train, validation, the replay prompts, the label set, the task and a manifest), for the
plain split or for each cross-validation fold. The hold-out, shifted, perturbation and
probe files are simply not there.

Folds (``tune.folds`` = k > 1): train + validation pooled, split by scikit-learn's
``StratifiedKFold`` on the label (classification) or ``KFold`` (chat records, one
stratum), shuffled with ``tune.seed``; fold i validates on its part and trains on the
other k - 1. The parts are disjoint and cover the pool (tests/tuning/test_tune_folds.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import jsonl_text, read_json, read_jsonl, sha256_file, write_json

SEARCH_FILES = ("labels.json", "task.json", "replay.jsonl")
"""Copied into each view when the prepared folder has them (beside train/val and the manifest)."""
JUDGED = ("holdout", "shifted", "probe", "holdout_oos")
"""Prefixes of the files the gate's suites come from: never in a view."""


def fold_parts(rows: list[dict[str, Any]], folds: int, seed: int) -> list[list[int]]:
    """Indices of each fold's validation part: disjoint, covering every row, seeded."""
    from sklearn.model_selection import KFold, StratifiedKFold

    indices = list(range(len(rows)))
    if rows and "label" in rows[0]:
        labels = [r["label"] for r in rows]
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return [sorted(val.tolist()) for _, val in splitter.split(indices, labels)]
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return [sorted(val.tolist()) for _, val in splitter.split(indices)]


def search_views(prepared: Path, folds: int, seed: int, work: Path) -> list[Path]:
    """One view folder per fold (one for the plain split), built once under ``work``."""
    train, val = read_jsonl(prepared / "train.jsonl"), read_jsonl(prepared / "val.jsonl")
    if folds == 1:
        return [write_view(prepared, work / "split", train, val)]
    pool = train + val
    views = []
    for i, part in enumerate(fold_parts(pool, folds, seed)):
        held = set(part)
        fold_train = [r for j, r in enumerate(pool) if j not in held]
        fold_val = [pool[j] for j in part]
        views.append(write_view(prepared, work / f"fold-{i}", fold_train, fold_val))
    return views


def write_view(prepared: Path, folder: Path, train: list[dict], val: list[dict]) -> Path:
    """Writes a view once: a folder already holding the same rows is left alone, so a
    worker joining a running study never rewrites the files another worker trains on."""
    texts = {"train.jsonl": jsonl_text(train), "val.jsonl": jsonl_text(val)}
    if (folder / "manifest.json").exists() and all(
        (folder / n).exists() and (folder / n).read_text(encoding="utf-8") == t for n, t in texts.items()
    ):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in SEARCH_FILES:
        if (prepared / name).exists():
            shutil.copy2(prepared / name, folder / name)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    manifest = read_json(prepared / "manifest.json")
    files = {n: sha256_file(folder / n) for n in sorted(p.name for p in folder.iterdir())}
    manifest["files"] = files  # the run fingerprint: each fold's own rows
    write_json(folder / "manifest.json", manifest)
    return folder
