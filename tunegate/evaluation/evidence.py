"""The evidence the evaluate stage hands the gate, typed, with a schema version.

``eval/results/`` holds it: ``evidence.json`` (an ``Evidence``: the models, the suites and
their hashes, probe, parity, calibration) and one ``<suite>.jsonl`` per suite (a record
per item: gold, the candidate's and the baseline's answers, the hold-out's slice,
confidences). The gate reads both back through ``load_evidence`` (hash-checked, schema
checked), so it decides from what was evaluated and nothing else, and can be re-run on
old evidence of the same schema.

A suite reaches the policy as ``SuiteOutcome``: per-item **scores** for candidate and
baseline on the same items (classification: 1 right, 0 wrong, plus the answered labels
for per-class metrics). The policy decides from scores and thresholds without knowing
what task produced them. Pure: no model, no statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunegate.core.artifacts import read_json, read_jsonl, sha256_file, write_json
from tunegate.core.errors import DataError

SCHEMA = 3
"""evidence.json's layout (1: before the version was written; 3: the threshold search records
every floor, tunegate/evaluation/threshold.py). The gate refuses another."""
SuiteKind = Literal["holdout", "shifted", "perturbation"]
"""What a suite is for: the gate judges each kind by its own checks."""


PROMPTING = "prompting"
"""Who the prompting reference is in suite records (the base model with eval.few_shot examples)."""


@dataclass(frozen=True)
class Scores:
    """One model's per-item scores on a suite, in item order. ``answers``: the labels
    answered (None: not a valid label), for classification's per-class metrics."""

    values: tuple[float, ...]
    answers: tuple[str | None, ...] | None = None

    @classmethod
    def of_answers(cls, answers: Sequence[str | None], gold: Sequence[str]) -> Scores:
        return cls(tuple(float(a == g) for a, g in zip(answers, gold, strict=True)), tuple(answers))


@dataclass(frozen=True)
class SuiteOutcome:
    """One suite's items: gold labels (None for tasks without them) and each model's scores."""

    name: str
    kind: SuiteKind
    gold: tuple[str, ...] | None
    candidate: Scores
    baseline: Scores | None
    metric: str = "accuracy"
    """What the mean score is called in check names (``holdout.accuracy``)."""
    others: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """The candidate's other per-item scores by name (generation: json_valid, rouge_l, ...),
    for floors on them."""
    ids: tuple[str, ...] | None = None
    """Item ids; a perturbation suite's are its source hold-out items' (its variants cluster)."""

    @classmethod
    def classified(
        cls,
        name: str,
        kind: SuiteKind,
        gold: Sequence[str],
        candidate: Sequence[str | None],
        baseline: Sequence[str | None] | None,
        ids: Sequence[str] | None = None,
    ) -> SuiteOutcome:
        """A classification suite: scores are 1 where the answer is the gold label."""
        base = Scores.of_answers(baseline, gold) if baseline is not None else None
        item_ids = tuple(str(i) for i in ids) if ids is not None else None
        return cls(name, kind, tuple(gold), Scores.of_answers(candidate, gold), base, ids=item_ids)

    @property
    def rows(self) -> int:
        return len(self.candidate.values)


@dataclass(frozen=True)
class Evaluated:
    """What the stage wrote, and the figures its log line reports."""

    metrics: dict[str, Any]
    """eval/metrics.json (DVC metrics: per suite, per model)."""
    holdout_accuracy: float
    """The hold-out's primary score (accuracy; generation: gate.primary_metric)."""
    baseline_accuracy: float
    threshold: float
    """The abstention threshold of the release's calibration (NaN for generation)."""
    metric: str = "accuracy"
    """What holdout_accuracy and baseline_accuracy measure."""


@dataclass(frozen=True)
class ModelIdentity:
    role: str
    model_id: str
    tree_sha256: str
    path: str
    kind: Literal["production", "base"] | None = None
    """The baseline's: the model in production, or the base model on a first release."""
    license: str | None = None
    """The base model's."""


@dataclass(frozen=True)
class SuiteInfo:
    kind: SuiteKind
    rows: int
    versus_baseline: bool
    sha256: str = ""
    """Of the suite's ``<name>.jsonl``."""


@dataclass(frozen=True)
class ProbeResult:
    """The forgetting probe: general questions, candidate vs base model."""

    rows: int
    candidate: dict[str, float] | None = None
    base: dict[str, float] | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    missing: str | None = None

    @property
    def forgetting(self) -> tuple[float, float] | None:
        """(candidate, base) probe accuracy, None when the probe did not run."""
        if self.candidate is None or self.base is None:
            return None
        return self.candidate["accuracy"], self.base["accuracy"]


@dataclass(frozen=True)
class ParityResult:
    """Agreement of the evaluated and served answers with the transformers reference."""

    rows: int = 0
    rates: dict[str, float] | None = None
    disagreements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    served_engine: str | None = None
    missing: str | None = None
    confidence_gap: float | None = None
    """The largest |served - evaluated| raw confidence on the parity rows both answered alike:
    how far the monitoring reference (the evaluation's answers) stands from what is served."""


@dataclass(frozen=True)
class Evidence:
    candidate: ModelIdentity
    baseline: ModelIdentity
    base: ModelIdentity
    labels: tuple[str, ...]
    engine: str
    suites: dict[str, SuiteInfo]
    probe: ProbeResult
    parity: ParityResult
    data: dict[str, str] = field(default_factory=dict)
    """sha256 per prepared data file."""
    production_pointer: dict[str, Any] = field(default_factory=dict)
    predict: dict[str, Any] = field(default_factory=dict)
    monitor_reference: dict[str, Any] = field(default_factory=dict)
    classical: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    """The calibration block (tunegate/evaluation/calibration_step.py), empty when not evaluated."""
    out_of_scope: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    """The task kind that produced the evidence (tunegate/core/task.py)."""
    prompting: dict[str, Any] = field(default_factory=dict)
    """generation: the prompting reference (the base model with few-shot examples), when evaluated."""
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """evidence.json's content: typed fields left out where None; passthrough blocks as they are."""
        return _plain(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        if d.get("schema") != SCHEMA:
            raise DataError(
                f"evidence schema {d.get('schema', 1)} is not the schema this gate reads ({SCHEMA}): it "
                "was written by another version of the evaluate stage; run `dvc repro evaluate`"
            )
        d = dict(d)
        try:
            return cls(
                **(d | {
                    "candidate": ModelIdentity(**d["candidate"]),
                    "baseline": ModelIdentity(**d["baseline"]),
                    "base": ModelIdentity(**d["base"]),
                    "labels": tuple(d["labels"]),
                    "suites": {k: SuiteInfo(**v) for k, v in d["suites"].items()},
                    "probe": ProbeResult(**d["probe"]),
                    # served_seconds: a timing written before timings moved to eval/run.json
                    "parity": ParityResult(**{k: v for k, v in d["parity"].items() if k != "served_seconds"}),
                })
            )  # fmt: skip
        except (KeyError, TypeError) as err:
            raise DataError(f"evidence.json does not have the schema {SCHEMA} layout: {err}") from err

    def outcomes(
        self, records: dict[str, list[dict[str, Any]]], primary: str = "accuracy"
    ) -> list[SuiteOutcome]:
        """Each suite's records as scores (the baseline's only where it was compared).
        Classification: 1 where the answer is the gold label. Generation: the records'
        per-item `primary` score, and the candidate's other scores beside it."""
        if self.task == "classification":
            return [
                SuiteOutcome.classified(
                    name,
                    self.suites[name].kind,
                    [r["gold"] for r in recs],
                    [r["candidate"] for r in recs],
                    [r["baseline"] for r in recs] if self.suites[name].versus_baseline else None,
                    _ids(recs),
                )
                for name, recs in records.items()
            ]
        return [scored_outcome(name, self.suites[name], recs, primary) for name, recs in records.items()]


def scored_outcome(name: str, info: SuiteInfo, recs: list[dict[str, Any]], primary: str) -> SuiteOutcome:
    """A suite whose records carry per-item scores per model (``scores.<model>.<metric>``)."""
    missing = [r["id"] for r in recs if primary not in r["scores"]["candidate"]]
    if missing:
        raise DataError(
            f"suite {name}: no {primary!r} score for item {missing[0]} (gate.primary_metric); "
            f"the evaluation measured {sorted(recs[0]['scores']['candidate'])}"
        )

    def values(who: str, metric: str) -> tuple[float, ...]:
        return tuple(float(r["scores"][who].get(metric, 0.0)) for r in recs)

    base = Scores(values("baseline", primary)) if info.versus_baseline else None
    # the scores every item has (a nested answer's paths differ from item to item: a floor
    # on one would count the items without it as 0)
    names = (
        sorted(set.intersection(*(set(r["scores"]["candidate"]) for r in recs)) - {primary}) if recs else []
    )
    others = {k: values("candidate", k) for k in names}
    candidate = Scores(values("candidate", primary))
    return SuiteOutcome(name, info.kind, None, candidate, base, primary, others, _ids(recs))


def _ids(recs: Sequence[dict[str, Any]]) -> tuple[str, ...] | None:
    """The records' item ids, when every record has one."""
    return tuple(str(r["id"]) for r in recs) if all("id" in r for r in recs) else None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {k: _plain(v) for k, v in pairs if v is not None}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def slices(records: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Item indices per slice of a suite's records (``slice``: the message-length bucket)."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(r["slice"], []).append(i)
    return out


def write_evidence(path: Path, evidence: Evidence) -> None:
    write_json(path, evidence.to_dict())


def load_evidence(results: Path) -> tuple[Evidence, dict[str, list[dict[str, Any]]]]:
    """``evidence.json`` and each suite's records, refused when a file changed since."""
    path = results / "evidence.json"
    if not path.exists():
        raise DataError(f"{path} is missing; run `dvc repro evaluate` first")
    evidence = Evidence.from_dict(read_json(path))
    records = {}
    for name, info in evidence.suites.items():
        file = results / f"{name}.jsonl"
        if not file.exists():
            raise DataError(f"{file}: predictions for suite {name!r} are missing")
        if sha256_file(file) != info.sha256:
            changed = "predictions changed after evaluation (sha256 differs from evidence.json)"
            raise DataError(f"{file}: {changed}")
        records[name] = read_jsonl(file)
    return evidence, records


def load_out_of_scope(results: Path, evidence: Evidence) -> list[dict[str, Any]] | None:
    """The out-of-scope hold-out's records (hash-checked), or None when there were none."""
    if "sha256" not in evidence.out_of_scope:
        return None
    file = results / "holdout_oos.jsonl"
    if not file.exists() or sha256_file(file) != evidence.out_of_scope["sha256"]:
        raise DataError(f"{file}: missing, or changed after evaluation (sha256 differs from evidence.json)")
    return read_jsonl(file)
