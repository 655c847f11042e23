"""The task kind: the one place where what a release *does* enters the stages.

Two kinds (``base.task``):

- ``classification``: a record is ``id, text, label``; the model writes one label from a
  closed set (structured outputs: a choice); scores are 1 right / 0 wrong.
- ``generation``: a record is ``id, messages`` (the OpenAI chat fine-tuning format: system,
  user and assistant turns, multi-turn allowed); the model writes the last assistant turn,
  optionally a JSON object that ``task.output_schema`` validates (structured outputs: a
  JSON schema); scores are continuous (token F1, ROUGE-L, chrF, field agreement).

Stages ask a :class:`Task` (read from ``task.json`` beside the prepared data and the model)
for what differs, and where a stage's work differs by kind it keeps one table, kind ->
function, read through :func:`for_kind` (prepare, evaluate, the gate's families, the
service's endpoint). Everything else (splitting, the training loop, the gate's statistics,
the registry) is shared and does not know the kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunegate.core.errors import ConfigError, DataError

Kind = Literal["classification", "generation"]

KINDS: tuple[str, ...] = ("classification", "generation")


def for_kind(table: dict[str, Callable[..., Any]], kind: str, stage: str) -> Callable[..., Any]:
    """A stage's implementation for the task kind: each stage keeps one table, kind -> function."""
    if kind not in table:
        raise ConfigError(
            f"base.task: the {stage} stage has no implementation for {kind!r}; it has {sorted(table)}"
        )
    return table[kind]


@dataclass(frozen=True)
class Answer:
    """A generated answer, checked: the text, the JSON it parses to (None when it does not, or
    when no JSON is asked), and the reason it is invalid ("" when valid)."""

    text: str
    parsed: Any = None
    json_valid: bool | None = None
    """None when the task asks no JSON."""
    schema_valid: bool | None = None
    """None when the task has no schema."""
    problem: str = ""
    """Why it is invalid, in words that group alike answers ("not JSON", "breaks the schema at
    amount"); `detail` says exactly where."""
    detail: str = ""

    @property
    def valid(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Task:
    kind: Kind
    output_schema: dict[str, Any] | None = None
    """The JSON Schema answers must satisfy (generation, optional)."""
    json_answers: bool = False
    """Answers are JSON objects (true with a schema; also when every training answer parses)."""

    @property
    def primary_metric(self) -> str:
        return "accuracy" if self.kind == "classification" else "token_f1"

    def check(self, text: str) -> Answer:
        """Whether a generated answer is what the task asks for: JSON when JSON is asked, and
        within the schema when there is one."""
        if not self.json_answers:
            return Answer(text, problem="" if text.strip() else "empty answer")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as err:
            return Answer(text, json_valid=False, schema_valid=False if self.output_schema else None,
                          problem="not JSON", detail=f"{err.msg} at character {err.pos}")  # fmt: skip
        if self.output_schema is None:
            return Answer(text, parsed, json_valid=True)
        problem, detail = schema_problem(parsed, self.output_schema)
        return Answer(text, parsed, True, not problem, problem, detail)


def schema_problem(value: Any, schema: dict[str, Any]) -> tuple[str, str]:
    """The first way `value` breaks `schema` (JSON Schema, its declared draft) and the
    validator's message; ("", "") when it does not."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return "", ""
    where = "/".join(str(p) for p in error.absolute_path) or "the answer"
    return f"breaks the schema at {where}", error.message


def read_schema(path: str | Path) -> dict[str, Any]:
    """A JSON Schema file, checked against its own draft's meta-schema."""
    import jsonschema

    path = Path(path)
    if not path.is_file():
        raise DataError(f"task.output_schema: {path} is not a file")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except json.JSONDecodeError as err:
        raise DataError(f"task.output_schema: {path} is not JSON ({err.msg}, line {err.lineno})") from err
    except jsonschema.exceptions.SchemaError as err:
        raise DataError(f"task.output_schema: {path} is not a valid JSON Schema: {err.message}") from err
    if not isinstance(schema, dict):
        raise DataError(f"task.output_schema: {path} must hold a JSON object")
    return schema


TASK_FILE = "task.json"
"""Written by prepare into data/prepared and by train beside the model: the kind and schema."""


def schema_text(schema: dict[str, Any] | None) -> str | None:
    """A schema as JSON text in its own key order. Stored as a string because artifact JSON is
    written with sorted keys, and the order of ``properties`` is the order structured outputs
    make the model write the fields in: sorted, it would not be the order it was trained on."""
    return None if schema is None else json.dumps(schema, ensure_ascii=False)


def schema_value(raw: Any) -> dict[str, Any] | None:
    """A stored schema (text, or an object from a file written before it was text)."""
    return json.loads(raw) if isinstance(raw, str) else raw


def write_task(folder: Path, task: Task) -> None:
    from tunegate.core.artifacts import write_json

    write_json(
        folder / TASK_FILE,
        {
            "kind": task.kind,
            "output_schema": schema_text(task.output_schema),
            "json_answers": task.json_answers,
        },
    )


def read_task(folder: Path) -> Task:
    """The task recorded in a prepared-data or model folder; classification when none is (a
    folder written before generation existed)."""
    from tunegate.core.artifacts import read_json

    path = folder / TASK_FILE
    if not path.exists():
        return Task("classification")
    raw = read_json(path)
    if raw.get("kind") not in KINDS:
        raise DataError(f"{path}: unknown task kind {raw.get('kind')!r}; kinds: {list(KINDS)}")
    return Task(raw["kind"], schema_value(raw.get("output_schema")), bool(raw.get("json_answers")))
