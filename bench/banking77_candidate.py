"""A Banking77 candidate for the drift benchmark's model signals (predicted label, confidence).

The train stage itself (``python -m tunegate.training.train``, LoRA on ``models/base``) runs on a
prepared folder written here from the benchmark's own split, so the candidate never sees
the reference, the window pool, the test split or the held-out intents. It is capped so a
2-core CPU trains it in about a quarter of an hour: ``ROWS_PER_INTENT`` rows per in-scope
intent, two epochs, no casing copies, no self-distilled replay. Cached in ``bench/.cache``
by the hash of its training rows and parameters.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tunegate.core.artifacts import atomic_write_text, jsonl_text, sha256_file, write_json

ROWS_PER_INTENT = 20
VAL_PER_INTENT = 1
OVERRIDES = {"epochs": 2, "augment_casing": 0.0, "replay_rows": 0, "eval_every": 100}


def per_intent(rows: list[dict], n: int, skip: int, seed: int) -> list[dict]:
    """``n`` rows of each label (after skipping ``skip``), in a seeded order."""
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    out = [r for label in sorted(by_label) for r in by_label[label][skip : skip + n]]
    random.Random(seed).shuffle(out)
    return out


def train_candidate(training_rows: list[dict], cache: Path, params_path: Path) -> Path:
    """Train (or reuse) the capped candidate; returns its folder (adapter, card, prompt)."""
    train = per_intent(training_rows, ROWS_PER_INTENT, 0, 0)
    val = per_intent(training_rows, VAL_PER_INTENT, ROWS_PER_INTENT, 0)
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    params["train"] |= OVERRIDES
    params["data"]["oos_label"] = None
    key = hashlib.sha256(json.dumps([train, val, params["train"]], sort_keys=True).encode()).hexdigest()
    folder = cache / f"banking77-candidate-{key[:12]}"
    out = folder / "candidate"
    if (out / "card.json").exists():
        return out
    data = folder / "prepared"
    ids = [{"id": f"b77-{i:05d}", "label": r["label"], "text": r["text"]} for i, r in enumerate(train + val)]
    atomic_write_text(data / "train.jsonl", jsonl_text(ids[: len(train)]))
    atomic_write_text(data / "val.jsonl", jsonl_text(ids[len(train) :]))
    write_json(data / "labels.json", sorted({r["label"] for r in train}))
    digest = {n: sha256_file(data / n) for n in ("train.jsonl", "val.jsonl")}
    write_json(data / "manifest.json", {"files": digest, "inputs": {"banking77": "bench split"}})
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    print(f"training the Banking77 candidate on {len(train)} rows ({ROWS_PER_INTENT} per intent)", flush=True)
    subprocess.run(
        [
            sys.executable, "-m", "tunegate.training.train", "--params", str(folder / "params.yaml"),
            "--data", str(data), "--base", "models/base", "--out", str(out),
            "--metrics", str(folder / "metrics"), "--checkpoints", str(folder / "checkpoints"),
        ],
        check=True,
    )  # fmt: skip
    return out


def describe(candidate: Path) -> dict[str, Any]:
    """What the benchmark says about the candidate it used."""
    card = json.loads((candidate / "card.json").read_text(encoding="utf-8"))
    return {
        "rows_per_intent": ROWS_PER_INTENT,
        "train_overrides": OVERRIDES,
        "model_id": card.get("model_id"),
        "training_rows": card.get("training", {}).get("rows")
        if isinstance(card.get("training"), dict)
        else None,
    }
