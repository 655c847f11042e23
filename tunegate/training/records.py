"""prepare for the generation kind: chat records -> validated, scrubbed, de-duplicated, split.

A source is JSONL in the OpenAI chat fine-tuning format (``{"messages": [{"role", "content"},
...]}``, multi-turn allowed), or any table prepare reads for classification with
``data.input_column`` (the user's message) and ``data.output_column`` (the answer), which
become a system (``task.system_prompt``), user and assistant turn. A record is kept when it
has a user turn, ends with a non-empty assistant turn, and (with ``task.output_schema``)
that answer is JSON within the schema; otherwise it is dropped under its reason and row
number, and past ``prepare.max_invalid_share`` the stage fails naming the first ones.
Personal data is scrubbed in every turn (tunegate/core/pii.py); duplicates are found on the
input (every turn before the answer), and so is leakage between train and hold-out.

The prepared records are ``id, messages, input, answer``: ``input`` is the last user turn
(what perturbations change and drift watches), ``answer`` the last assistant turn.
Records longer than ``train.max_seq_len`` tokens are counted by the train stage, which
has the tokenizer (never silently truncated).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import sha256_bytes, sha256_file
from tunegate.core.errors import DataError
from tunegate.core.params import Params
from tunegate.core.pii import normalise, scrub
from tunegate.core.task import Task, read_schema
from tunegate.training.clean import CleanReport, Row, near_key
from tunegate.training.sources import load_source
from tunegate.training.splits import Prepared, stratified_split

ROLES = ("system", "user", "assistant")
PARTS = ("train", "val", "holdout", "shifted")


@dataclass(frozen=True)
class Record:
    where: str
    messages: tuple[dict[str, str], ...]

    @property
    def input_key(self) -> str:
        """What duplicates and leakage are judged on: every turn before the answer."""
        return near_key(" ".join(t["content"] for t in self.messages[:-1] if t["role"] != "system"))


def task_of(params: Params) -> Task:
    """The task prepare validates against: generation, with its schema when one is declared."""
    schema = read_schema(params.task.output_schema) if params.task.output_schema else None
    return Task("generation", schema, json_answers=schema is not None)


def read_records(source: str, params: Params) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """(where, raw record) pairs from a chat JSONL file, or from a table's input/output columns."""
    d, path = params.data, Path(source)
    if path.is_file() and path.suffix == ".jsonl" and _is_chat(path):
        return read_chat_lines(path)
    loaded = load_source(source, d.input_column, d.output_column, d.format, d.hub_revision)
    system = [{"role": "system", "content": params.task.system_prompt}] if params.task.system_prompt else []
    rows = loaded.pool + (loaded.holdout or [])
    return [
        (r.where, r.problem or {"messages": system + [
            {"role": "user", "content": r.text}, {"role": "assistant", "content": r.label},
        ]})
        for r in rows
    ], loaded.inputs  # fmt: skip


def read_chat_lines(path: Path) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """(where, parsed line) pairs of a JSONL file (a line that is not JSON: its reason), and
    the file's hash for the manifest."""
    out: list[tuple[str, Any]] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append((f"{path}:{i}", json.loads(line)))
            except json.JSONDecodeError as err:
                out.append((f"{path}:{i}", f"invalid JSON ({err.msg})"))
    return out, {str(path): sha256_file(path)}


def _is_chat(path: Path) -> bool:
    """A JSONL file is chat records when its first parseable row has ``messages``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            return isinstance(row := json.loads(line), dict) and "messages" in row
        except json.JSONDecodeError:
            continue
    return False


def problem(raw: Any, task: Task, max_chars: int) -> str:
    """Why a raw record cannot be trained on or evaluated, "" when it can."""
    if isinstance(raw, str):
        return raw
    turns = raw.get("messages") if isinstance(raw, dict) else None
    if not isinstance(turns, list) or not turns:
        return "no messages list"
    for t in turns:
        if not isinstance(t, dict) or t.get("role") not in ROLES or not isinstance(t.get("content"), str):
            return "a turn is not {role: system|user|assistant, content: string}"
    roles = [t["role"] for t in turns]
    if "assistant" not in roles:
        return "no assistant turn"
    if roles[-1] != "assistant":
        return "the last turn is not the assistant's"
    if "user" not in roles:
        return "no user turn"
    if not turns[-1]["content"].strip():
        return "empty answer"
    if sum(len(t["content"]) for t in turns) > max_chars:
        return f"longer than {max_chars} characters"
    answer = task.check(turns[-1]["content"])
    return f"answer {answer.problem}" if answer.problem and task.json_answers else ""


def clean_records(
    name: str, raws: list[tuple[str, Any]], task: Task, params: Params, report: CleanReport
) -> list[Record]:
    """Validate, normalise and scrub every turn, drop duplicate inputs (the first is kept)."""
    p = params.prepare
    seen: set[str] = set()
    out = []
    for where, raw in raws:
        report.total += 1
        why = problem(raw, task, p.max_chars)
        if why:
            report.drop(Row(where, "", ""), why)
            continue
        turns = []
        for t in raw["messages"]:
            text = normalise(t["content"])
            if p.scrub_pii:
                scrubbed = scrub(text)
                text = scrubbed.text
                report.redactions.update(scrubbed.counts)
            turns.append({"role": t["role"], "content": text})
        if task.json_answers and task.check(turns[-1]["content"]).problem:
            report.drop(Row(where, "", ""), "answer is no longer valid once personal data is scrubbed")
            continue
        record = Record(where, tuple(turns))
        key = record.input_key if p.dedup == "near" else json.dumps(turns[:-1])
        if p.dedup != "none" and key in seen:
            report.duplicates_near += 1
            report.drop(Row(where, "", ""), "duplicate input")
            continue
        seen.add(key)
        out.append(record)
    _check_share(name, report, p.max_invalid_share)
    return out


def _check_share(name: str, report: CleanReport, limit: float) -> None:
    if report.total == 0:
        raise DataError(f"{name}: no records found")
    if report.invalid / report.total > limit:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.dropped.items()))
        raise DataError(
            f"{name}: {report.invalid} of {report.total} records ({report.invalid / report.total:.1%}) are "
            f"malformed, more than prepare.max_invalid_share={limit:.1%} ({reasons}). "
            f"First offending records: {', '.join(report.first_invalid)}"
        )


def split_records(
    records: list[Record], params: Params, holdout: list[Record] | None = None
) -> dict[str, list[Record]]:
    """A seeded random split into train / val / hold-out (one stratum: records have no label).
    A given hold-out stays the hold-out; pool records repeating one of its inputs are dropped."""
    p = params.prepare
    if holdout is not None:
        held = {r.input_key for r in holdout}
        records = [r for r in records if r.input_key not in held]
    least = (2 if holdout is not None else 3) * p.min_rows_per_label
    if len(records) < least:
        raise DataError(
            f"{len(records)} usable records; the splits need at least {least} "
            f"(prepare.min_rows_per_label per split)"
        )
    rows = [Row(r.where, r.input_key, "all") for r in records]
    by_where = {r.where: r for r in records}
    shares = (
        {"val": p.val_fraction}
        if holdout is not None
        else {"holdout": p.holdout_fraction, "val": p.val_fraction}
    )
    parts = stratified_split(rows, shares, params.base.seed)
    out = {name: [by_where[r.where] for r in part] for name, part in parts.items()}
    if holdout is not None:
        out["holdout"] = holdout
    return out


def as_prepared(records: list[Record]) -> list[dict[str, Any]]:
    """Records as written to data/prepared: id (content hash), messages, input, answer; by id."""
    out, used = [], set()
    for r in records:
        rid = sha256_bytes(json.dumps(r.messages, sort_keys=True).encode())[:12]
        while rid in used:
            rid = sha256_bytes(rid.encode())[:12]
        used.add(rid)
        last_user = next(t["content"] for t in reversed(r.messages) if t["role"] == "user")
        out.append(
            {"id": rid, "messages": list(r.messages), "input": last_user, "answer": r.messages[-1]["content"]}
        )
    return sorted(out, key=lambda x: x["id"])


def prepare_generation(
    params: Params, probe: list[dict] | None, replay: list[dict] | None, feedback: list | None = None
) -> tuple[Prepared, Task]:
    """The generation kind's prepared splits and manifest (the stage writes them); `feedback`:
    (where, chat record) pairs from `load_generation_feedback`."""
    task = task_of(params)
    reports: dict[str, CleanReport] = {}
    raws, inputs = read_records(params.data.source, params)
    reports["pool"] = CleanReport()
    pool = clean_records("pool", raws, task, params, reports["pool"])
    if params.prepare.max_rows and len(pool) > params.prepare.max_rows:
        pool = sorted(random.Random(params.base.seed).sample(pool, params.prepare.max_rows), key=pool.index)
    holdout = None
    if params.data.holdout_source:
        raws, more = read_records(params.data.holdout_source, params)
        inputs |= more
        reports["holdout"] = CleanReport()
        holdout = clean_records("holdout", raws, task, params, reports["holdout"])
    parts = split_records(pool, params, holdout)
    train_keys = {r.input_key for r in parts["train"]}
    leakage = {
        "holdout_rows_also_in_train": sum(r.input_key in train_keys for r in parts["holdout"]),
        "val_rows_also_in_train": sum(r.input_key in train_keys for r in parts["val"]),
    }
    parts["shifted"] = []
    if params.data.shifted_source:
        raws, more = read_records(params.data.shifted_source, params)
        inputs |= more
        reports["shifted"] = CleanReport()
        shifted = clean_records("shifted", raws, task, params, reports["shifted"])
        parts["shifted"] = [r for r in shifted if r.input_key not in train_keys]
        leakage["shifted_rows_removed_as_train_duplicates"] = len(shifted) - len(parts["shifted"])
    added = None
    if feedback:
        reports["feedback"] = CleanReport()
        found = clean_records(
            "feedback", with_system(feedback, pool, params), task, params, reports["feedback"]
        )
        added = feedback_records(found, parts)
        parts["train"] = parts["train"] + added.pop("records")
    splits = {name: as_prepared(parts[name]) for name in PARTS} | {"val_oos": [], "holdout_oos": []}
    if params.task.output_schema:
        inputs[params.task.output_schema] = sha256_file(params.task.output_schema)
    manifest = {
        "task": "generation",
        "params": {"seed": params.base.seed, "data": asdict(params.data), "prepare": asdict(params.prepare),
                   "task": asdict(params.task)},
        "inputs": inputs,
        "counts": {name: len(rows) for name, rows in splits.items()}
        | {"probe": len(probe or []), "replay": len(replay or [])},
        "cleaning": {name: r.to_dict() for name, r in sorted(reports.items())},
        "redactions_total": sum(sum(r.redactions.values()) for r in reports.values()),
        "leakage": leakage,
        "multi_turn": {name: sum(sum(t["role"] == "assistant" for t in r["messages"]) > 1 for r in rows)
                       for name, rows in splits.items()},
    }  # fmt: skip
    if added is not None:
        manifest["feedback"] = added
    return Prepared(splits=splits, labels=[], probe=probe or [], manifest=manifest, replay=replay or []), task


def load_generation_feedback(folder: Path) -> tuple[list[tuple[str, Any]] | None, dict[str, str]]:
    """``<folder>/feedback.jsonl`` (chat records written by ``tunegate drift --retrain`` from
    the reference answers callers sent), if it has rows: (where, record) pairs."""
    path = folder / "feedback.jsonl"
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return None, {}
    return read_chat_lines(path)


def with_system(raws: list[tuple[str, Any]], pool: list[Record], params: Params) -> list[tuple[str, Any]]:
    """Feedback records without a system turn get the one a text request was served with: the
    training records' most common system turn (the release's, train.py), or task.system_prompt."""
    systems = Counter(r.messages[0]["content"] for r in pool if r.messages[0]["role"] == "system")
    system = systems.most_common(1)[0][0] if systems else params.task.system_prompt
    out = []
    for where, raw in raws:
        turns = raw.get("messages") if isinstance(raw, dict) else None
        if (
            system
            and isinstance(turns, list)
            and turns
            and isinstance(turns[0], dict)
            and turns[0].get("role") != "system"
        ):
            raw = raw | {"messages": [{"role": "system", "content": system}, *turns]}
        out.append((where, raw))
    return out


def feedback_records(found: list[Record], parts: dict[str, list[Record]]) -> dict[str, Any]:
    """Production requests with callers' reference answers, for the training split only: one
    whose input repeats a hold-out, validation or shifted record is dropped (the next gate
    would be scored on its own training data), one that repeats a training input adds nothing."""
    evaluation = {r.input_key for name in ("holdout", "val", "shifted") for r in parts[name]}
    train = {r.input_key for r in parts["train"]}
    kept = [r for r in found if r.input_key not in evaluation | train]
    return {
        "records": kept,
        "usable": len(found),
        "added_to_train": len(kept),
        "evaluation_duplicates": sum(1 for r in found if r.input_key in evaluation),
        "train_duplicates": sum(1 for r in found if r.input_key in train - evaluation),
    }
