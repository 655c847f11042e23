"""Injected regressions for bench/gate_power.py: real candidates through train, evaluate, gate.

A reference candidate (the pipeline's recipe on clean data) becomes production; a sibling
(the same recipe, another seed) must then be approved against it, and each candidate
trained on damaged data must be rejected by the check one would expect. One kind at a time:

- classification (``params.yaml``, ``data/prepared``): 30% of labels shuffled, three intents
  left out, only long messages;
- generation (``params-generation.yaml``, ``data/prepared-generation``): 30% of the training
  records' answers swapped between records (each such record keeps its message and gets
  another record's ticket).

Both run the same three stage commands (``stages``) on a copy of the prepared data.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunegate.core.artifacts import read_json, read_jsonl, sha256_file, write_json

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Kind:
    """Where a task kind's pipeline keeps its inputs and what its gate calls the primary check."""

    name: str
    params: str  # the params file
    data: str  # its prepared data
    gate_file: str  # the pipeline's own gate record (for --reuse-reference)
    primary: str  # the hold-out check reported beside the verdict
    cases: tuple[tuple[str, int, str, str], ...]  # (candidate, seed, damage, expected)


CLASSIFICATION = Kind(
    "classification", "params.yaml", "data/prepared", "eval/gate.json", "holdout.accuracy",
    (
        ("reference", 42, "clean", "approved (first release, vs base)"),
        ("sibling_seed", 7, "clean", "approved against the reference as production"),
        ("shuffled_30pct", 42, "shuffled_30pct", "rejected: accuracy / A/B vs production"),
        ("missing_3_intents", 42, "missing_3_intents", "rejected: min_class_recall, macro-F1 A/B"),
        ("long_only", 42, "long_only", "rejected: shifted drop / short-message slice"),
    ),
)  # fmt: skip
GENERATION = Kind(
    "generation", "params-generation.yaml", "data/prepared-generation", "eval/generation/gate.json",
    "holdout.field_f1",
    (
        ("reference", 42, "clean", "approved (first release, vs base)"),
        ("sibling_seed", 7, "clean", "approved against the reference as production"),
        ("sibling_seed_13", 13, "clean", "approved against the reference as production"),
        ("swapped_30pct", 42, "swapped_30pct", "rejected: field F1 A/B vs production"),
    ),
)  # fmt: skip
KINDS = {k.name: k for k in (CLASSIFICATION, GENERATION)}
CASES = tuple(dict.fromkeys(c[0] for k in KINDS.values() for c in k.cases))


def damage(kind: str, rows: list[dict[str, Any]], labels: list[str], seed: int) -> list[dict[str, Any]]:
    """The training rows with one injected fault (``clean``: unchanged copies)."""
    rng = random.Random(seed)
    rows = [json.loads(json.dumps(r)) for r in rows]
    if kind == "shuffled_30pct":
        for r in rng.sample(rows, int(0.3 * len(rows))):
            r["label"] = rng.choice([x for x in labels if x != r["label"]])
    elif kind == "missing_3_intents":
        dropped = set(labels[:3])
        rows = [r for r in rows if r["label"] not in dropped]
    elif kind == "long_only":
        rows = [r for r in rows if len(r["text"].split()) > 20]
    elif kind == "swapped_30pct":
        swap_answers(rng.sample(rows, int(0.3 * len(rows))))
    elif kind != "clean":
        raise ValueError(f"unknown damage {kind!r}")
    return rows


def swap_answers(chosen: list[dict[str, Any]]) -> None:
    """Give each chosen record the final answer of the next one (a cyclic shift, so no record
    keeps its own unless two answers are the same text)."""
    answers = [r["messages"][-1]["content"] for r in chosen]
    for r, answer in zip(chosen, answers[1:] + answers[:1], strict=True):
        r["messages"][-1]["content"] = answer
        r["answer"] = answer


def run(cmd: list[str]) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def gate(pfile: Path, out: Path, model: Path) -> None:
    """The gate stage on one candidate's evaluation (its card informs the advice on a rejection)."""
    run([sys.executable, "-m", "tunegate.evaluation.gate", "--params", str(pfile),
         "--results", str(out / "results"), "--out", str(out / "gate.json"),
         "--report", str(out / "report.md"), "--candidate", str(model)])  # fmt: skip


def stages(pfile: Path, data: Path, model: Path, out: Path, pointer: Path, work: Path) -> dict:
    """train, evaluate and gate one candidate (the pipeline's stage commands); its gate record."""
    py, base = sys.executable, str(ROOT / "models/base")
    run([py, "-m", "tunegate.training.train", "--params", str(pfile), "--data", str(data), "--base", base,
         "--out", str(model), "--metrics", str(work / "metrics" / model.name),
         "--checkpoints", str(work / "checkpoints" / model.name)])  # fmt: skip
    run([py, "-m", "tunegate.evaluation.evaluate", "--params", str(pfile), "--data", str(data),
         "--base", base,
         "--candidate", str(model), "--production", str(pointer), "--out", str(out)])  # fmt: skip
    gate(pfile, out, model)
    return read_json(out / "gate.json")


def injected(
    kind: Kind,
    workdir: Path,
    only: tuple[str, ...],
    *,
    steps: int | None = None,
    reuse: Path | None = None,
    eval_overrides: dict[str, Any] | None = None,
) -> list[dict]:
    """Run the kind's cases (the reference always: it is production for the rest)."""
    data = workdir / "prepared"
    shutil.copytree(ROOT / kind.data, data)
    labels = read_json(data / "labels.json") if (data / "labels.json").exists() else []
    clean_train = read_jsonl(data / "train.jsonl")
    params = yaml.safe_load((ROOT / kind.params).read_text())
    if steps:  # a smaller budget than the params file's recipe
        params["train"] |= {"max_steps": steps, "eval_every": max(steps // 2, 1)}
    params["eval"] |= eval_overrides or {}
    pointer = workdir / "production.json"
    write_json(pointer, {"version": None})

    table = []
    for name, seed, fault, expected in kind.cases:
        if name not in only and name != "reference":
            continue
        rows = damage(fault, clean_train, labels, seed)
        (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        manifest = read_json(data / "manifest.json")
        manifest["files"]["train.jsonl"] = sha256_file(data / "train.jsonl")  # a distinct run fingerprint
        write_json(data / "manifest.json", manifest)
        params["base"]["seed"] = seed
        if name == "reference" and reuse is not None:
            # The pipeline's own candidate is this recipe on clean data (training is seeded):
            # reuse it and its gate record instead of training it again.
            gate = read_json(ROOT / kind.gate_file)
            table.append(
                row(kind, name, len(rows), gate, f"{expected}; reused {reuse.name}, {kind.gate_file}")
            )
            write_json(pointer, {"version": "reference", "model_dir": str(reuse)})
            continue
        pfile = workdir / f"params-{name}.yaml"
        pfile.write_text(yaml.safe_dump(params), encoding="utf-8")
        model = workdir / "models" / name
        gate = stages(pfile, data, model, workdir / "eval" / name, pointer, workdir)
        table.append(row(kind, name, len(rows), gate, expected))
        print(json.dumps(table[-1]), flush=True)
        if name == "reference":
            write_json(pointer, {"version": "reference", "model_dir": str(model)})
    return table


def row(kind: Kind, name: str, train_rows: int, gate: dict, expected: str) -> dict:
    checks = {c["name"]: c for c in gate["checks"]}
    return {
        "kind": kind.name,
        "candidate": name,
        "train_rows": train_rows,
        "baseline": gate["baseline"]["kind"],
        "verdict": gate["verdict"],
        "expected": expected,
        "failed_checks": [c["name"] for c in gate["checks"] if not c["passed"]],
        "model_id": gate["candidate"]["model_id"],
        "baseline_model_id": gate["baseline"].get("model_id"),
        "primary_check": kind.primary,
        "primary_value": checks[kind.primary]["value"],
    }
