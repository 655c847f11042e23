"""Read labelled rows from a file, a folder, a saved dataset, or the Hugging Face Hub.

Every row keeps where it came from (file and row number) so validation errors can
point at it. Rows that cannot even be parsed (bad JSON, wrong field count, invalid
UTF-8) are kept as :class:`RawRow` with ``problem`` set, so the caller counts them
with the other malformed rows instead of crashing on the first one.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import sha256_file
from tunegate.core.errors import DataError

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
HOLDOUT_STEMS = {"test", "holdout"}
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


@dataclass(frozen=True)
class RawRow:
    where: str
    """file:row, for error messages (row 1 is the first data row)."""
    text: Any
    label: Any
    problem: str | None = None


@dataclass
class Loaded:
    pool: list[RawRow]
    holdout: list[RawRow] | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    """sha256 of every input file read, keyed by path (or hub id@revision)."""


def load_source(
    source: str,
    text_column: str,
    label_column: str,
    fmt: str = "auto",
    revision: str | None = None,
    require_label: bool = True,
) -> Loaded:
    """Load a source (see DataParams.source). A folder's test/holdout files become the hold-out."""
    path = Path(source)
    columns = (text_column, label_column if require_label else None)
    if fmt == "hub" or (fmt == "auto" and not path.exists() and HUB_ID.match(source)):
        return _load_hub(source, revision, columns)
    if not path.exists():
        raise DataError(f"data source {source!r} not found (not a file, a folder, or a hub id)")
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return _load_saved_dataset(path, columns)
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"folder {source!r} has no .csv, .jsonl or .parquet files")
        loaded = Loaded(pool=[], holdout=None)
        for f in files:
            rows = read_file(f, columns, fmt)
            loaded.inputs[f.as_posix()] = sha256_file(f)
            if f.stem.lower() in HOLDOUT_STEMS:
                loaded.holdout = (loaded.holdout or []) + rows
            else:
                loaded.pool.extend(rows)
        return loaded
    return Loaded(pool=read_file(path, columns, fmt), inputs={path.as_posix(): sha256_file(path)})


def read_file(path: Path, columns: tuple[str, str | None], fmt: str = "auto") -> list[RawRow]:
    kind = SUFFIXES.get(path.suffix.lower()) if fmt in ("auto", "hub") else fmt
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use .csv, .jsonl or .parquet")
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file: {e}") from e
        return _from_records(records, path.as_posix(), columns)
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    if kind == "jsonl":
        return _read_jsonl(text, path.as_posix(), columns)
    return _read_csv(text, path.as_posix(), columns)


def _check_columns(available: list[str], columns: tuple[str, str | None], where: str) -> None:
    missing = [c for c in columns if c is not None and c not in available]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {missing}; found {available}. "
            "Set data.text_column / data.label_column in params.yaml"
        )


def _bad_encoding(value: Any) -> bool:
    return isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value)


def _row(where: str, record: dict[str, Any], columns: tuple[str, str | None]) -> RawRow:
    text_col, label_col = columns
    text, label = record.get(text_col), record.get(label_col) if label_col else None
    if _bad_encoding(text) or _bad_encoding(label):
        return RawRow(where, None, None, "invalid UTF-8")
    return RawRow(where, text, label)


def _read_csv(text: str, where: str, columns: tuple[str, str | None]) -> list[RawRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{where}: file is empty") from None
    _check_columns(header, columns, where)
    rows, last_line = [], reader.line_num
    try:
        for i, values in enumerate(reader, start=1):
            first, last_line = last_line + 1, reader.line_num
            if not values:
                continue
            loc = f"{where}:{i}"
            if len(values) != len(header):
                rows.append(RawRow(loc, None, None, f"expected {len(header)} fields, got {len(values)}"))
                continue
            if last_line > first and _holds_rows(values, len(header)):
                why = f"a quote opened on line {first} is not closed until line {last_line}: rows merged"
                rows.append(RawRow(loc, None, None, why))
                continue
            rows.append(_row(loc, dict(zip(header, values, strict=True)), columns))
    except csv.Error as e:
        raise DataError(f"{where}: CSV cannot be parsed near row {reader.line_num}: {e}") from e
    return rows


def _holds_rows(values: list[str], width: int) -> bool:
    """Whether a field spanning lines holds lines that look like CSV rows of this width: the
    sign of an unterminated quote that swallowed the rows after it."""
    inner = [line for v in values for line in v.splitlines()[1:]]
    return any(line.count(",") >= width - 1 for line in inner)


def _read_jsonl(text: str, where: str, columns: tuple[str, str | None]) -> list[RawRow]:
    rows, seen_keys = [], set()
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        loc = f"{where}:{i}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            rows.append(RawRow(loc, None, None, f"invalid JSON ({e.msg})"))
            continue
        if not isinstance(record, dict):
            rows.append(RawRow(loc, None, None, "JSON line is not an object"))
            continue
        seen_keys.update(record)
        rows.append(_row(loc, record, columns))
    if rows and not any(r.problem is None for r in rows):
        return rows
    _check_columns(sorted(seen_keys), columns, where)
    return rows


def _from_records(records: list[dict[str, Any]], where: str, columns: tuple[str, str | None]) -> list[RawRow]:
    if records:
        _check_columns(list(records[0]), columns, where)
    return [_row(f"{where}:{i}", r, columns) for i, r in enumerate(records, start=1)]


def _splits_to_loaded(dsd: Any, name: str, columns: tuple[str, str | None], fingerprint: str) -> Loaded:
    from datasets import Dataset

    if isinstance(dsd, Dataset):
        dsd = {"train": dsd}
    loaded = Loaded(pool=[], holdout=None, inputs={name: fingerprint})
    for split in sorted(dsd):
        rows = _from_records(dsd[split].to_list(), f"{name}[{split}]", columns)
        if split in HOLDOUT_STEMS:
            loaded.holdout = (loaded.holdout or []) + rows
        else:
            loaded.pool.extend(rows)
    return loaded


def _load_saved_dataset(path: Path, columns: tuple[str, str | None]) -> Loaded:
    from datasets import load_from_disk

    dsd = load_from_disk(str(path))
    splits = dsd.values() if hasattr(dsd, "values") else [dsd]
    fingerprint = "+".join(d._fingerprint for d in splits)
    return _splits_to_loaded(dsd, path.as_posix(), columns, fingerprint)


def _load_hub(source: str, revision: str | None, columns: tuple[str, str | None]) -> Loaded:
    """A Hub dataset id (or a local dataset folder given as one). Needs network for real ids."""
    from datasets import load_dataset

    try:
        dsd = load_dataset(source, revision=revision)
    except Exception as e:  # datasets raises many types: network, not found, offline
        raise DataError(
            f"hub dataset {source!r} could not be loaded ({type(e).__name__}: {e}). "
            "It needs network access, or HF_DATASETS_OFFLINE=0 and a cached copy"
        ) from e
    fingerprint = "+".join(d._fingerprint for d in dsd.values())
    name = f"hub:{source}@{revision or 'default'}"
    return _splits_to_loaded(dsd, name, columns, fingerprint)
