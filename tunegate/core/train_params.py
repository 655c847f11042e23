"""The ``train:`` section of params.yaml: the fine-tuning recipe (and its LoRA settings).

Its own module so that the search's section (tune_params.py), which names the searchable
``train.*`` keys, and params.py, which assembles every section, both import it without
importing each other. Field docstrings document params.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    augment_truncation: float = 0.0
    """Share of labelled training rows that also train as a copy cut to its first 40% to 80% of
    words (seeded; classification only): messages sent too early, which the gate's truncation
    perturbation checks. Chat records are never cut (a cut instruction asks another answer)."""
    replay_rows: int | None = None
    """Self-distilled replay against forgetting: this many prepared replay prompts (null:
    all, 0: off) are answered by the base model before training, and those answers are
    trained on alongside the task, under the default chat prompt."""
    replay_max_tokens: int = 32
    """Length of the base model's replay answers, in tokens."""
    forgetting_source: str | None = None
    """General prompts (JSONL of ``{"prompt": ...}``, disjoint from the gate's probe and the
    replay) on which every validation measures forgetting: the share of the base model's
    answer tokens the model in training no longer predicts first (tunegate/training/forgetting.py).
    null: not measured, checkpoints are chosen on the validation answers alone."""
    forgetting_rows: int | None = None
    """Use the first N general prompts (null: all)."""
    max_forgetting: float | None = None
    """The forgetting budget: the checkpoint kept is the one with the most validation answers
    right among those within it; a run whose every checkpoint is over it fails the stage
    before evaluation. null: no budget (forgetting is still measured and recorded)."""
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
        for name in ("augment_casing", "augment_truncation"):
            if not 0 <= getattr(self, name) <= 1:
                out.append(f"train.{name}: {getattr(self, name)} is outside [0, 1]")
        if self.replay_rows is not None and self.replay_rows < 0:
            out.append(f"train.replay_rows: {self.replay_rows} must be >= 0 or null")
        if not 1 <= self.replay_max_tokens <= 512:
            out.append(f"train.replay_max_tokens: {self.replay_max_tokens} is outside [1, 512]")
        if self.max_forgetting is not None and not 0 < self.max_forgetting <= 1:
            out.append(f"train.max_forgetting: {self.max_forgetting} is outside (0, 1]")
        if self.max_forgetting is not None and not self.forgetting_source:
            out.append(
                "train.max_forgetting needs train.forgetting_source (the general prompts it is measured on)"
            )
        if self.forgetting_rows is not None and self.forgetting_rows < 1:
            out.append(f"train.forgetting_rows: {self.forgetting_rows} must be >= 1 or null")
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
