"""The train stage: fine-tune the base model on data/prepared (transformers Trainer + PEFT).

1. Validate everything that can be checked before weights load: params ranges (in
   load_params) and the LoRA target modules against the base model's architecture,
   built on the meta device.
2. Tokenize prompt + answer with the shared template; the loss covers only the answer
   (the label), and over-long messages are shortened so no label is cut
   (tunegate/training/objective.py). Self-distilled replay: the base model's own answers to general
   prompts join the training set, so the adapter keeps answering like the base model
   outside the task prompt (the gate's forgetting check measures this).
3. Train (LoRA or full), validating each epoch or every N steps on the gate's own criteria
   (validation answers decoded exactly, and forgetting on general prompts against
   ``train.max_forgetting``: tunegate/training/selection.py), keeping the best checkpoint within the
   budget and stopping early when it no longer improves; a run with none within the budget
   fails here, before evaluation. Checkpoints live outside the stage output, keyed by a
   fingerprint of params, data and base model, so ``dvc repro`` after a crash resumes
   instead of starting over.
4. Save the adapter (safetensors only), ``prompt.json`` and ``card.json`` into the
   output folder in one atomic swap, and training metrics through DVCLive.

Usage (from dvc.yaml):
``python -m tunegate.training.train --params params.yaml --data data/prepared --base models/base
--out models/candidate --metrics metrics/train --checkpoints models/.checkpoints``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunegate.core import model_card
from tunegate.core.artifacts import (
    atomic_dir,
    environment,
    file_hashes,
    read_json,
    read_jsonl,
    record_run,
    refuse_pickle,
    sha256_bytes,
    tree_hash,
    write_json,
)
from tunegate.core.errors import DataError
from tunegate.core.params import Params
from tunegate.core.prompt import PromptTemplate
from tunegate.core.stage import configure_logging
from tunegate.core.task import Task, read_task, write_task
from tunegate.core.threads import torch_threads
from tunegate.training.examples import build_examples, capped, casing_copies, same_share, truncation_copies
from tunegate.training.lora import load_checked_params, lora_config
from tunegate.training.selection import SELECT, choice, curve, over_budget_message

log = logging.getLogger(__name__)


def fingerprint(params: Params, data_manifest: dict[str, Any], base_card: dict[str, Any]) -> str:
    """Identifies a training run: same fingerprint, same run (safe to resume)."""
    key = repr((asdict(params.train), params.base.seed, data_manifest["files"], base_card["tree_sha256"]))
    return sha256_bytes(key.encode())[:16]


def canonical_adapter_config(path: Path) -> None:
    """PEFT writes target_modules from a set, in an order that changes with Python's hash
    seed: sort it, so one recipe gives byte-identical adapter folders (and one model id)."""
    config = read_json(path)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    write_json(path, config)


@dataclass
class TrainResult:
    train_loss: float
    best_val_loss: float
    first_val_loss: float
    steps: int
    epochs: float
    train_tokens: int
    train_seconds: float
    """The optimisation loop (validation passes included), from the first step to the last."""
    replay_seconds: float
    """The base model answering before training: the self-distilled replay and the general
    prompts forgetting is measured on."""
    tokens_per_second: float
    peak_memory_mb: float
    truncated_examples: int
    resumed_from: str | None
    stopped_early: bool
    answer_match: float | None = None
    """The kept checkpoint's share of validation answers decoded exactly (tunegate/training/selection.py)."""
    forgetting: float | None = None
    """The kept checkpoint's forgetting on the general prompts (tunegate/training/forgetting.py)."""
    selection: dict[str, Any] | None = None
    """Which checkpoint was kept and why, with the curve of every validation."""


BASE_CARD_KEYS = ("model_id", "source", "tree_sha256", "license")


class TrainRecipe:
    """setup -> train -> save, in the manner of torchtune's recipes."""

    def __init__(self, params: Params, data_dir: Path, base_dir: Path, checkpoints: Path):
        self.params, self.p = params, params.train
        self.data_dir, self.base_dir = data_dir, base_dir
        self.base_card = read_json(base_dir / "card.json")
        self.manifest = read_json(data_dir / "manifest.json")
        self.labels = tuple(read_json(data_dir / "labels.json"))
        self.task = read_task(data_dir)
        self.template = task_template(self.task, self.labels, data_dir, params)
        self.run_id = fingerprint(params, self.manifest, self.base_card)
        self.work = checkpoints / f"train-{self.run_id}"

    def setup(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        refuse_pickle(self.base_dir)
        torch.set_num_threads(self.p.threads or torch_threads())
        torch.manual_seed(self.params.base.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        train_rows = read_jsonl(self.data_dir / "train.jsonl")
        val_rows = read_jsonl(self.data_dir / "val.jsonl")
        if not train_rows or not val_rows:
            raise DataError(f"{self.data_dir}: train and val splits must not be empty")
        train_rows = capped(train_rows, self.p.max_train_rows, self.params.base.seed)
        seed = self.params.base.seed
        copies = casing_copies(train_rows, self.p.augment_casing, seed)
        copies += truncation_copies(train_rows, self.p.augment_truncation, seed)
        growth = (len(train_rows) + len(copies)) / len(train_rows)
        train_rows += copies
        val_rows = capped(val_rows, self.p.max_val_rows, self.params.base.seed)
        self.train_examples, cut_train = build_examples(
            train_rows, self.tokenizer, self.template, self.p.max_seq_len
        )
        self.val_examples, cut_val = build_examples(
            val_rows, self.tokenizer, self.template, self.p.max_seq_len
        )
        self.truncated = cut_train + cut_val
        if self.task.kind == "generation" and self.truncated:
            log.warning(
                "%d records are longer than train.max_seq_len=%d tokens and are left out (never cut)",
                self.truncated, self.p.max_seq_len,
            )  # fmt: skip
        if not self.train_examples or not self.val_examples:
            raise DataError(f"no training or validation record fits train.max_seq_len={self.p.max_seq_len}")
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.p.precision]
        self.model = AutoModelForCausalLM.from_pretrained(self.base_dir, dtype=dtype, use_safetensors=True)
        # Augmented copies must not dilute the replay that keeps general behaviour: its share of
        # the training examples stays what it is without augmentation.
        started = time.perf_counter()
        self.general = self.general_references()
        self.replay_examples = same_share(self.self_distilled_replay(), growth)
        self.replay_seconds = time.perf_counter() - started
        self.train_examples += self.replay_examples
        log.info(
            "training %s on %d rows (%d of them replay, %d val), %d truncated, run %s",
            self.p.method,
            len(self.train_examples),
            len(self.replay_examples),
            len(self.val_examples),
            self.truncated,
            self.run_id,
        )

    def general_references(self) -> list[Any] | None:
        """The base model's answers to the general prompts forgetting is measured on (before
        the adapter exists); None when train.forgetting_source is not set."""
        from tunegate.training.forgetting import base_references, general_prompts

        if not self.p.forgetting_source:
            return None
        prompts = general_prompts(self.p.forgetting_source, self.p.forgetting_rows)
        return base_references(self.model, self.tokenizer, prompts, self.p.replay_max_tokens)

    def self_distilled_replay(self) -> list[dict[str, Any]]:
        """The base model's own answers to general prompts, as training examples: fine-tuning
        then keeps the model's behaviour outside the task prompt (less forgetting) without
        any outside data. Computed before the adapter exists, greedy, so deterministic."""
        from tunegate.core.greedy import generate_text
        from tunegate.core.prompt import general_prompt
        from tunegate.training.objective import tokenize_answer

        path = self.data_dir / "replay.jsonl"
        if self.p.replay_rows == 0 or not path.exists():
            return []
        rows = read_jsonl(path)
        if self.p.replay_rows is not None:
            rows = rows[: self.p.replay_rows]
        prompts = [general_prompt(self.tokenizer, r["prompt"]) for r in rows]
        self.model.eval()
        answers = generate_text(self.model, self.tokenizer, prompts, self.p.replay_max_tokens)
        self.tokenizer.padding_side = "right"
        return [
            tokenize_answer(self.tokenizer, prompt, answer.strip(), self.p.max_seq_len)
            for prompt, answer in zip(prompts, answers, strict=True)
            if answer.strip()
        ]

    def _config(self) -> Any:
        import torch
        from transformers import TrainingArguments

        p = self.p
        strategy = "steps" if p.eval_every else "epoch"
        return TrainingArguments(
            output_dir=str(self.work),
            # Without a GPU: the CPU, and under torchrun (WORLD_SIZE > 1) Accelerate's
            # multi-CPU DDP over gloo; without use_cpu each process would train on its own.
            use_cpu=not torch.cuda.is_available(),
            learning_rate=p.lr,
            num_train_epochs=p.epochs,
            max_steps=p.max_steps or -1,
            per_device_train_batch_size=p.batch_size,
            per_device_eval_batch_size=p.batch_size * 2,
            gradient_accumulation_steps=p.grad_accum,
            warmup_steps=p.warmup_ratio,
            weight_decay=p.weight_decay,
            lr_scheduler_type="cosine",
            eval_strategy=strategy,
            save_strategy=strategy,
            eval_steps=p.eval_every,
            save_steps=p.eval_every,
            logging_steps=5,
            save_total_limit=2,
            load_best_model_at_end=True,
            metric_for_best_model=SELECT,  # the gate's criteria on validation (selection.py)
            greater_is_better=True,
            prediction_loss_only=True,
            bf16=p.precision == "bf16",
            fp16=p.precision == "fp16",
            train_sampling_strategy="group_by_length" if p.group_by_length else "random",
            seed=self.params.base.seed,
            data_seed=self.params.base.seed,
            report_to="none",
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            remove_unused_columns=False,
        )

    def build_trainer(self, live: Any | None = None) -> Any:
        """The Trainer for this run (also used by bench/train_throughput.py)."""
        from datasets import Dataset
        from peft import get_peft_model
        from transformers import EarlyStoppingCallback

        from tunegate.training.distributed import LastStepDigest, several_processes
        from tunegate.training.live import LiveCallback
        from tunegate.training.objective import AnswerLossTrainer, PadToLongest

        model = self.model
        if self.p.method == "lora":
            model = get_peft_model(model, lora_config(self.p.lora))
        callbacks = [LiveCallback(live)] if live is not None else []
        self.last_step = LastStepDigest() if several_processes() else None
        if self.last_step is not None:
            callbacks.append(self.last_step)
        if self.p.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=self.p.early_stopping_patience))
        trainer = AnswerLossTrainer(
            model=model,
            args=self._config(),
            train_dataset=Dataset.from_list(self.train_examples),
            eval_dataset=Dataset.from_list(self.val_examples),
            data_collator=PadToLongest(self.tokenizer.pad_token_id),
            processing_class=self.tokenizer,
            callbacks=callbacks,
        )
        trainer.general, trainer.forgetting_budget = self.general, self.p.max_forgetting
        return trainer

    def train(self, live: Any) -> TrainResult:
        self.trainer = self.build_trainer(live)
        resume = last_checkpoint(self.work)
        if resume:
            log.info("resuming from %s", resume)
        first = None if resume else self.trainer.evaluate()
        first_val = None if first is None else first["eval_loss"]
        start = time.perf_counter()
        output = self.trainer.train(resume_from_checkpoint=resume)
        seconds = time.perf_counter() - start
        state = self.trainer.state
        evals = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
        if first_val is None:
            first_val = evals[0]
        # the validation before any step (the base model) is not in the log train() starts
        points = curve(([first | {"step": 0}] if first else []) + state.log_history)
        kept = choice(points, state.best_global_step, self.p.max_forgetting)
        if not kept.within_budget:
            raise DataError(over_budget_message(kept, self.p.lr, self.p.replay_rows))
        log.info("kept %s", kept.reason)
        tokens = count_train_tokens(self.trainer.train_dataset) * state.epoch
        steps_run = state.global_step - (int(Path(resume).name.split("-")[-1]) if resume else 0)
        share = steps_run / max(state.global_step, 1)
        # Throughput counts optimisation only: validation passes run inside train().
        eval_seconds = sum(h.get("eval_runtime", 0.0) for h in state.log_history)
        train_only = max(seconds - eval_seconds, 1e-9)
        return TrainResult(
            train_loss=float(output.training_loss),
            best_val_loss=next(p.loss for p in points if p.step == kept.step),
            first_val_loss=float(first_val),
            steps=state.global_step,
            epochs=float(state.epoch),
            train_tokens=int(tokens),
            train_seconds=seconds,
            replay_seconds=self.replay_seconds,
            tokens_per_second=tokens * share / train_only,
            peak_memory_mb=peak_memory_mb(),
            truncated_examples=self.truncated,
            resumed_from=resume,
            stopped_early=state.global_step < state.max_steps,
            answer_match=kept.answer_match,
            forgetting=kept.forgetting,
            selection=kept.to_dict(),
        )

    def save(self, out: Path, result: TrainResult) -> dict[str, Any]:
        from tunegate.training.distributed import distribution

        with atomic_dir(out) as tmp:
            self.trainer.model.save_pretrained(tmp, safe_serialization=True)
            if self.p.method == "full":
                self.tokenizer.save_pretrained(tmp)  # a whole model: loadable on its own
            else:
                (tmp / "README.md").unlink(missing_ok=True)  # PEFT's template card, replaced below
                canonical_adapter_config(tmp / "adapter_config.json")
            self.template.save(tmp)
            if self.task.kind != "classification":
                write_task(tmp, self.task)
            refuse_pickle(tmp)
            files = file_hashes(tmp)
            card = {
                "kind": "candidate",
                **({"task": self.task.kind} if self.task.kind != "classification" else {}),
                "method": self.p.method,
                "model_id": f"{self.p.method}:{tree_hash(files)[:12]}",
                "run_id": self.run_id,
                "base_model": {k: self.base_card[k] for k in BASE_CARD_KEYS} | {"hub_id": self.hub_id()},
                "license": self.base_card["license"],
                "data": {"files": self.manifest["files"], "inputs": self.manifest["inputs"]},
                "labels": list(self.labels),
                "prompt_template": self.template.template_id,
                "params": {"seed": self.params.base.seed, "train": asdict(self.p)},
                "metrics": {k: v for k, v in asdict(result).items() if k not in TIMINGS},
                "distributed": distribution(self.trainer),
                "files": files,
                "tree_sha256": tree_hash(files),
                "environment": environment(),
            }
            write_json(tmp / "card.json", card)
            # The Hugging Face card (PEFT writes a template; this one says what tunegate knows).
            # Not among the hashed files: it is derived from card.json, and the package stage
            # writes it again with the gate's results.
            (tmp / "README.md").write_text(model_card.render(card), encoding="utf-8")
        return card

    def hub_id(self) -> str | None:
        """The base's Hub id: a Hub source's own, else the declared base_model.hub_id."""
        return self.base_card.get("provenance", {}).get("hub_id") or self.params.base_model.hub_id

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def task_template(task: Task, labels: tuple[str, ...], data_dir: Path, params: Params) -> PromptTemplate:
    """The prompt saved with the model. Generation: the training records' most common system
    turn (or task.system_prompt) is the one a request that sends only text is given."""
    if task.kind == "classification":
        return PromptTemplate(labels=labels)
    from collections import Counter

    systems = Counter(
        r["messages"][0]["content"]
        for r in read_jsonl(data_dir / "train.jsonl")
        if r["messages"][0]["role"] == "system"
    )
    system = systems.most_common(1)[0][0] if systems else (params.task.system_prompt or "")
    return PromptTemplate(system=system, task=task.kind, output_schema=task.output_schema)


def last_checkpoint(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder))


def count_train_tokens(dataset: Any) -> int:
    """Real (non-padding) tokens in one pass over the training set."""
    return sum(len(ids) for ids in dataset["input_ids"])


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train stage: LoRA (or full) fine-tuning")
    parser.add_argument("--params", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging()

    from tunegate.training.distributed import check_launcher, log_rank

    check_launcher()
    params = load_checked_params(args.params, args.base)
    recipe = TrainRecipe(params, args.data, args.base, args.checkpoints)
    recipe.setup()
    # Under torchrun or `accelerate launch` every process trains (DDP); only rank 0 logs
    # metrics and writes the candidate.
    main_process = int(os.environ.get("RANK", "0")) == 0
    with live_or_none(args.metrics, main_process) as live:
        result = recipe.train(live)
        if live is not None:
            for key in SUMMARY:
                live.summary[key] = round(getattr(result, key), 4)
    log_rank(recipe.trainer, recipe.last_step)
    if not main_process:
        return
    card = recipe.save(args.out, result)
    timings = {key: round(getattr(result, key), 4) for key in TIMINGS}
    record_run(args.metrics / "run.json", {"stage": "train", "model_id": card["model_id"]} | timings)
    recipe.cleanup()
    log.info(
        "candidate %s: val loss %.4f -> %.4f, %.0f tokens/s, %.0f s",
        card["model_id"],
        result.first_val_loss,
        result.best_val_loss,
        result.tokens_per_second,
        result.train_seconds,
    )


SUMMARY = ("train_loss", "best_val_loss", "first_val_loss", "steps", "epochs")
"""The DVCLive summary (metrics/train/metrics.json, tracked by git): the same on every run."""
TIMINGS = ("train_seconds", "replay_seconds", "tokens_per_second", "peak_memory_mb")
"""What differs on every run of the same inputs: in the stage's run record
(metrics/train/run.json, untracked), never in the card or the tracked metrics."""


@contextlib.contextmanager
def live_or_none(folder: Path, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from dvclive import Live

    with Live(dir=str(folder), save_dvc_exp=False, report=None, dvcyaml=None) as live:
        yield live


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
