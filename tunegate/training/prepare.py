"""The prepare stage: raw labelled data -> validated, scrubbed, de-duplicated, split data.

Writes ``{train,val,holdout,shifted}.jsonl`` (``id, text, label``), the out-of-scope suites
``{val,holdout}_oos.jsonl`` (rows labelled ``data.oos_label``: no intent; empty when none
is declared), ``probe.jsonl``, ``replay.jsonl``,
``labels.json`` and ``manifest.json`` into the output folder, all at once (atomic).
Same inputs and seed give byte-identical outputs: the manifest holds no timestamps.

Usage (from dvc.yaml): ``python -m tunegate.training.prepare --params params.yaml --out data/prepared``
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import atomic_dir, jsonl_text, sha256_bytes, sha256_file, write_json
from tunegate.core.errors import DataError
from tunegate.core.params import Params, load_params
from tunegate.core.sample_size import DEFAULT_DISAGREEMENT, plan
from tunegate.core.stage import configure_logging
from tunegate.core.task import Task, for_kind, write_task
from tunegate.training.clean import CleanReport, Row, deduplicate, near_key, validate
from tunegate.training.records import load_generation_feedback, prepare_generation
from tunegate.training.sources import Loaded, RawRow, load_source
from tunegate.training.splits import Prepared, by_label, cap_rows, check_label_counts, stratified_split

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "holdout", "shifted", "val_oos", "holdout_oos")


def prepare_dataset(
    loaded: Loaded,
    shifted: list[RawRow] | None,
    probe: list[dict[str, Any]] | None,
    params: Params,
    replay: list[dict[str, Any]] | None = None,
    feedback: list[RawRow] | None = None,
) -> Prepared:
    """Validate, scrub, de-duplicate and split. Raises DataError when the data cannot be used."""
    clean = Cleaner(params)
    leakage: dict[str, int] = {}
    parts = _split(loaded, clean, params, leakage)
    labels = sorted(by_label(parts["train"]))
    _check_labels_known("holdout", parts["holdout"], labels)
    train_keys = {near_key(r.text) for r in parts["train"]}
    leakage["holdout_rows_also_in_train"] = sum(near_key(r.text) in train_keys for r in parts["holdout"])
    leakage["val_rows_also_in_train"] = sum(near_key(r.text) in train_keys for r in parts["val"])

    parts["shifted"] = []
    if shifted is not None:
        rows, _ = _scope(clean("shifted", shifted), params.data.oos_label)  # its out-of-scope rows: counted
        _check_labels_known("shifted", rows, labels)
        parts["shifted"] = [r for r in rows if near_key(r.text) not in train_keys]
        leakage["shifted_rows_removed_as_train_duplicates"] = len(rows) - len(parts["shifted"])

    added = None
    if feedback:
        added = _feedback_rows(clean("feedback", feedback), parts, labels)
        parts["train"] = parts["train"] + added.pop("rows")

    replay = replay or []
    if replay and probe:
        probe_keys = {near_key(q["question"]) for q in probe}
        kept = [r for r in replay if near_key(r["prompt"]) not in probe_keys]
        leakage["replay_prompts_removed_as_probe_duplicates"] = len(replay) - len(kept)
        replay = kept

    splits = {name: _records(parts[name]) for name in SPLITS}
    manifest = {
        "params": {
            "seed": params.base.seed,
            "data": classification_data(params),
            "prepare": asdict(params.prepare),
        },
        "inputs": loaded.inputs,
        "counts": {name: len(rows) for name, rows in splits.items()}
        | {"probe": len(probe or []), "replay": len(replay)},
        "label_counts": {
            name: {label: len(g) for label, g in by_label(parts[name]).items()} for name in SPLITS
        },
        "cleaning": {name: r.to_dict() for name, r in sorted(clean.reports.items())},
        "redactions_total": sum(sum(r.redactions.values()) for r in clean.reports.values()),
        "leakage": leakage,
    }
    if added is not None:
        manifest["feedback"] = added
    return Prepared(splits=splits, labels=labels, probe=probe or [], manifest=manifest, replay=replay)


def classification_data(params: Params) -> dict[str, Any]:
    """The data params classification reads (the generation kind's table columns left out, so
    a classification manifest is what it was before they existed)."""
    return {k: v for k, v in asdict(params.data).items() if k not in ("input_column", "output_column")}


class Cleaner:
    """Validate, scrub and de-duplicate one input's rows, keeping a report per input."""

    def __init__(self, params: Params):
        self.params, self.reports = params, {}

    def __call__(self, name: str, rows: list[RawRow], seen: dict[str, str] | None = None) -> list[Row]:
        p = self.params.prepare
        report = self.reports[name] = CleanReport()
        valid = validate(
            rows, report, min_chars=p.min_chars, max_chars=p.max_chars, scrub_pii=p.scrub_pii,
            oos_label=self.params.data.oos_label,
        )  # fmt: skip
        _check_invalid_share(name, report, p.max_invalid_share)
        return deduplicate(valid, report, p.dedup, seen)


def _split(loaded: Loaded, clean: Cleaner, params: Params, leakage: dict[str, int]) -> dict[str, list[Row]]:
    """train / val / holdout (and the out-of-scope val_oos / holdout_oos): a given hold-out
    file stays the hold-out (pool rows near-duplicating it are dropped), else a stratified
    seeded split of the pool. Out-of-scope rows train nothing: they go to the evaluation
    suites, in the proportion of validation to hold-out."""
    p, oos, seed = params.prepare, params.data.oos_label, params.base.seed
    if loaded.holdout is not None:
        holdout, holdout_oos = _scope(clean("holdout", loaded.holdout), oos)
        held_keys = {near_key(r.text) for r in holdout + holdout_oos}
        pool, pool_oos = _scope(clean("pool", loaded.pool), oos)
        before = len(pool)
        pool = [r for r in pool if near_key(r.text) not in held_keys]
        pool_oos = [r for r in pool_oos if near_key(r.text) not in held_keys]
        leakage["pool_rows_removed_as_holdout_duplicates"] = before - len(pool)
        if p.max_rows:
            pool = cap_rows(pool, p.max_rows, seed)
        check_label_counts(pool, max(2, p.min_rows_per_label // 2))
        parts = stratified_split(pool, {"val": p.val_fraction}, seed)
        parts["holdout"] = holdout
        parts["val_oos"], parts["holdout_oos"] = pool_oos, holdout_oos
        return parts
    pool, pool_oos = _scope(clean("pool", loaded.pool), oos)
    if p.max_rows:
        pool = cap_rows(pool, p.max_rows, seed)
    check_label_counts(pool, p.min_rows_per_label)
    parts = stratified_split(pool, {"holdout": p.holdout_fraction, "val": p.val_fraction}, seed)
    share = p.val_fraction / (p.val_fraction + p.holdout_fraction)
    oos_parts = stratified_split(pool_oos, {"val_oos": share}, seed, rest="holdout_oos")
    parts["val_oos"], parts["holdout_oos"] = oos_parts["val_oos"], oos_parts["holdout_oos"]
    return parts


def _scope(rows: list[Row], oos_label: str | None) -> tuple[list[Row], list[Row]]:
    """(in-scope rows, out-of-scope rows)."""
    if oos_label is None:
        return rows, []
    return [r for r in rows if r.label != oos_label], [r for r in rows if r.label == oos_label]


def _feedback_rows(rows: list[Row], parts: dict[str, list[Row]], labels: list[str]) -> dict[str, Any]:
    """Production requests labelled by their callers, for the training split only.

    A feedback row that repeats a hold-out, validation or shifted message is dropped, or
    the next gate would be scored on its own training data; one that repeats a training
    message adds nothing; one with a label the training split lacks cannot be learned.
    """
    known = set(labels)
    evaluation = {near_key(r.text) for name in ("holdout", "val", "shifted") for r in parts[name]}
    train = {near_key(r.text) for r in parts["train"]}
    kept = [r for r in rows if r.label in known and near_key(r.text) not in evaluation | train]
    return {
        "rows": kept,
        "usable": len(rows),
        "added_to_train": len(kept),
        "unknown_label": sum(1 for r in rows if r.label not in known),
        "evaluation_duplicates": sum(1 for r in rows if r.label in known and near_key(r.text) in evaluation),
        "train_duplicates": sum(
            1 for r in rows if r.label in known and near_key(r.text) in train - evaluation
        ),
    }


def load_feedback(folder: Path) -> tuple[list[RawRow] | None, dict[str, str]]:
    """``<folder>/feedback.jsonl`` (written by ``tunegate drift --retrain``), if it has rows."""
    path = folder / "feedback.jsonl"
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return None, {}
    loaded = load_source(str(path), "text", "label", "jsonl")
    return loaded.pool, loaded.inputs


def _check_invalid_share(name: str, report: CleanReport, limit: float) -> None:
    if report.total == 0:
        raise DataError(f"{name}: no rows found")
    share = report.invalid / report.total
    if share > limit:
        examples = report.first_invalid
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report.dropped.items()))
        raise DataError(
            f"{name}: {report.invalid} of {report.total} rows ({share:.1%}) are malformed, more than "
            f"prepare.max_invalid_share={limit:.1%} ({reasons}). First offending rows: {', '.join(examples)}"
        )


def _check_labels_known(name: str, rows: list[Row], labels: list[str]) -> None:
    known = set(labels)
    unknown = [r for r in rows if r.label not in known]
    if unknown:
        names = sorted({r.label for r in unknown})
        raise DataError(
            f"{name} set has {len(unknown)} row(s) with label(s) {names} that the training split does "
            f"not have (first at {unknown[0].where}); known labels: {labels}"
        )


def _records(rows: list[Row]) -> list[dict[str, Any]]:
    """Rows as id/text/label records, ordered by id; ids are content hashes."""
    out, used = [], set()
    for row in rows:
        rid = sha256_bytes(row.text.encode())[:12]
        while rid in used:
            rid = sha256_bytes(rid.encode())[:12]
        used.add(rid)
        out.append({"id": rid, "text": row.text, "label": row.label})
    return sorted(out, key=lambda r: r["id"])


def _json_lines(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: invalid JSON ({e.msg})") from e
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{i}: expected a JSON object")
        yield i, rec


def load_probe(path: str) -> list[dict[str, Any]]:
    """General questions with short answers: {"question": str, "answers": [str, ...]} per line."""
    out = []
    for i, rec in _json_lines(path):
        question, answers = rec.get("question"), rec.get("answers")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{path}:{i}: 'question' must be a non-empty string")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
            raise DataError(f"{path}:{i}: 'answers' must be a non-empty list of strings")
        out.append(
            {
                "id": rec.get("id") or f"probe-{i:03d}",
                "question": question.strip(),
                "answers": [a.lower() for a in answers],
            }
        )
    if not out:
        raise DataError(f"{path}: the probe is empty")
    return out


def load_replay(path: str) -> list[dict[str, Any]]:
    """General instructions for self-distilled replay: {"prompt": str} per line."""
    out = []
    for i, rec in _json_lines(path):
        prompt = rec.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{path}:{i}: 'prompt' must be a non-empty string")
        out.append({"id": rec.get("id") or f"replay-{i:03d}", "prompt": prompt.strip()})
    if not out:
        raise DataError(f"{path}: the replay set is empty")
    return out


def write_prepared(prepared: Prepared, out: Path, task: Task | None = None) -> None:
    """Write every file into `out` at once; the manifest records each file's sha256."""
    with atomic_dir(out) as tmp:
        if task is not None and task.kind != "classification":
            write_task(tmp, task)  # classification folders stay as they were (no task.json)
        for name in SPLITS:
            (tmp / f"{name}.jsonl").write_text(jsonl_text(prepared.splits[name]), encoding="utf-8")
        (tmp / "probe.jsonl").write_text(jsonl_text(prepared.probe), encoding="utf-8")
        (tmp / "replay.jsonl").write_text(jsonl_text(prepared.replay), encoding="utf-8")
        write_json(tmp / "labels.json", prepared.labels)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        write_json(tmp / "manifest.json", prepared.manifest | {"files": files})


def prepare_classification(
    params: Params, probe: list[dict] | None, replay: list[dict] | None, feedback: list[RawRow] | None
) -> tuple[Prepared, Task]:
    """The classification kind: labelled rows from data.source (and its hold-out and shifted sets)."""
    d = params.data
    loaded = load_source(d.source, d.text_column, d.label_column, d.format, d.hub_revision)
    if d.holdout_source:
        extra = load_source(d.holdout_source, d.text_column, d.label_column, d.format, d.hub_revision)
        loaded.holdout = extra.pool + (extra.holdout or [])
        loaded.inputs |= extra.inputs
    shifted = None
    if d.shifted_source:
        extra = load_source(d.shifted_source, d.text_column, d.label_column, d.format, d.hub_revision)
        shifted = extra.pool + (extra.holdout or [])
        loaded.inputs |= extra.inputs
    return prepare_dataset(loaded, shifted, probe, params, replay, feedback), Task("classification")


def small_holdout(params: Params, items: int) -> str | None:
    """Why `items` hold-out rows cannot show non-inferiority at the declared margin against a
    production release (at the assumed disagreement rate); None when they can."""
    metric = "accuracy" if params.base.task == "classification" else params.gate.primary_metric
    margins = {"holdout": params.gate.margin_for(metric, "holdout")}
    row = plan({"holdout": items}, metric, margins, DEFAULT_DISAGREEMENT, params.gate.alpha)[0]
    return None if row.enough else row.sentence(DEFAULT_DISAGREEMENT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="prepare stage: validate, scrub, dedupe and split data")
    parser.add_argument("--params", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--feedback",
        type=Path,
        default=None,
        help="folder with feedback.jsonl: labelled production rows (generation: chat records)",
    )
    args = parser.parse_args(argv)
    configure_logging()

    params = load_params(args.params)
    d = params.data
    probe = load_probe(d.probe_source) if d.probe_source else None
    replay = load_replay(d.replay_source) if d.replay_source else None
    loaders = {"classification": load_feedback, "generation": load_generation_feedback}
    feedback, feedback_inputs = (
        for_kind(loaders, params.base.task, "prepare")(args.feedback)
        if args.feedback is not None
        else (None, {})
    )
    kinds = {"classification": prepare_classification, "generation": prepare_generation}
    prepared, task = for_kind(kinds, params.base.task, "prepare")(params, probe, replay, feedback)
    inputs = prepared.manifest["inputs"]
    inputs |= feedback_inputs
    for path in (d.probe_source, d.replay_source):
        if path:
            inputs[path] = sha256_file(path)
    write_prepared(prepared, args.out, task)
    counts = prepared.manifest["counts"]
    log.info(
        "wrote %s: %s; %d labels; %d redactions",
        args.out,
        counts,
        len(prepared.labels),
        prepared.manifest["redactions_total"],
    )
    small = small_holdout(params, counts.get("holdout", 0))
    if small:
        log.warning("the hold-out is too small to tell: %s", small)


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
