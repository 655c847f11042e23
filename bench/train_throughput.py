"""Training throughput: the train stage's loop versus a plain Trainer + PEFT baseline.

Both run in one invocation on the same prepared data, base model, LoRA config,
learning rate, batch size, seed and thread count, for one epoch over the same
stratified subset of training rows (so both see exactly the same examples; a few
steps would not do: length grouping serves the longest batch first), with no
validation inside the timed region:

(a) tunegate: the train stage's own TRL SFTTrainer (length-grouped batches, padding
    to the longest example in each batch, loss on the label only);
(b) baseline: transformers ``Trainer`` + ``peft.get_peft_model``, every example padded
    to ``train.max_seq_len``, random order, no grouping or packing.

Training tokens/s counts real (non-padding) tokens of the batches trained on
(measured by wrapping each trainer's compute_loss), over the optimisation wall time.
Writes ``bench/results/train_throughput.json``.

Usage: ``python bench/train_throughput.py [--rows 160] [--params params.yaml]``

On a GPU machine that cannot receive the base model's weights (the device image this
project measures on takes 64 MiB per call; the weights are 517 MB), ``--random-init``
builds the same architecture from ``config.json`` with seeded random weights and turns
self-distilled replay off: tokens/s depend on the architecture, sequence lengths and
batch shapes, not on the weights' values, so the throughput is the real one; the losses
are not meaningful. ``--precision bf16`` overrides ``train.precision`` for both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunegate.core.artifacts import environment, write_json
from tunegate.core.params import load_params
from tunegate.training.lora import lora_config
from tunegate.training.objective import IGNORE
from tunegate.training.train import TrainRecipe


class TokenCounter:
    """Wraps a trainer's compute_loss; counts real and padded tokens of every batch trained on.

    (Counting in the data collator over-counts: the trainer builds batches it does not train on.)
    """

    def __init__(self, trainer: Any):
        self.real, self.padded, self.batches = 0, 0, 0
        inner = trainer.compute_loss

        def counted(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if model.training:
                self.batches += 1
                ids = inputs["input_ids"]
                self.padded += int(ids.numel())
                mask = inputs.get("attention_mask")
                self.real += int(mask.sum()) if mask is not None else int(ids.numel())
            return inner(model, inputs, *args, **kwargs)

        trainer.compute_loss = counted


def timed_train(trainer: Any) -> dict[str, float]:
    counter = TokenCounter(trainer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "steps": trainer.state.global_step,
        "batches": counter.batches,
        "real_tokens": counter.real,
        "padded_tokens": counter.padded,
        "padding_share": round(1 - counter.real / counter.padded, 4),
        "tokens_per_second": round(counter.real / seconds, 2),
        "final_loss": round(trainer.state.log_history[-1].get("train_loss", float("nan")), 4),
    }


@contextlib.contextmanager
def random_weights(seed: int) -> Any:
    """Within the block, ``from_pretrained`` builds the architecture from its config with
    seeded random weights (same shapes, same compute) instead of loading the weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    saved = AutoModelForCausalLM.__dict__.get("from_pretrained")  # None: inherited

    def from_config(path: Any, dtype: Any = None, **_: Any) -> Any:
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=dtype)

    AutoModelForCausalLM.from_pretrained = staticmethod(from_config)
    try:
        yield
    finally:
        if saved is None:
            del AutoModelForCausalLM.from_pretrained
        else:
            AutoModelForCausalLM.from_pretrained = saved


class ListDataset(list):
    """The two ``datasets.Dataset`` calls used here, for an image without ``datasets``
    (the GPU device's); the Trainer takes any sequence of examples."""

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> ListDataset:
        return cls(rows)

    def map(self, fn: Any, remove_columns: list[str] = ()) -> ListDataset:
        return ListDataset({k: v for k, v in fn(dict(r)).items() if k not in remove_columns} for r in self)


def use_list_datasets() -> None:
    import types

    shim = types.ModuleType("datasets")
    shim.Dataset = ListDataset
    sys.modules["datasets"] = shim


def run_tunegate(recipe: TrainRecipe) -> dict[str, float]:
    trainer = recipe.build_trainer()
    return timed_train(trainer)


def run_baseline(recipe: TrainRecipe) -> dict[str, float]:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    p, tok = recipe.p, recipe.tokenizer

    def pad_to_max(example: dict[str, Any]) -> dict[str, Any]:
        """The stage's own tokens, padded to max_seq_len (the plain recipe)."""
        ids, labels = example["input_ids"], example["labels"]
        pad = p.max_seq_len - len(ids)
        return {
            "input_ids": ids + [tok.pad_token_id] * pad,
            "attention_mask": [1] * len(ids) + [0] * pad,
            "labels": labels + [IGNORE] * pad,
        }

    data = Dataset.from_list(recipe.train_examples).map(pad_to_max, remove_columns=["length"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[p.precision]
    model = AutoModelForCausalLM.from_pretrained(recipe.base_dir, dtype=dtype, use_safetensors=True)
    model = get_peft_model(model, lora_config(p.lora))
    args = TrainingArguments(
        output_dir="/tmp/tunegate-bench-baseline",
        num_train_epochs=1,
        per_device_train_batch_size=p.batch_size,
        learning_rate=p.lr,
        lr_scheduler_type="cosine",
        seed=recipe.params.base.seed,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10,
        dataloader_num_workers=0,
        bf16=p.precision == "bf16",
        fp16=p.precision == "fp16",
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator)
    return timed_train(trainer)


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--rows", type=int, default=160, help="training rows (stratified subset)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_throughput.json"))
    parser.add_argument("--random-init", action="store_true", help="random weights (see above)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    args = parser.parse_args()
    if importlib.util.find_spec("datasets") is None:
        use_list_datasets()

    overrides: dict[str, Any] = {
        "train.epochs": 1,
        "train.max_steps": None,
        "train.max_train_rows": args.rows,
        "train.eval_every": 10**6,
        "train.early_stopping_patience": 0,
    }
    if args.precision:
        overrides["train.precision"] = args.precision
    if args.batch_size:
        overrides["train.batch_size"] = args.batch_size
    if args.random_init:
        overrides["train.replay_rows"] = 0  # a random model's answers are not worth training on
    params = load_params(args.params, overrides=overrides)
    weights = random_weights(params.base.seed) if args.random_init else contextlib.nullcontext()
    recipe = TrainRecipe(params, args.data, args.base, Path("/tmp/tunegate-bench-checkpoints"))
    with weights:
        recipe.setup()
    ours = run_tunegate(recipe)
    print("tunegate", json.dumps(ours), flush=True)
    with random_weights(params.base.seed) if args.random_init else contextlib.nullcontext():
        baseline = run_baseline(recipe)
    print("baseline", json.dumps(baseline), flush=True)
    result = {
        "what": "training tokens/s (real tokens over optimisation wall time), same data/model/examples",
        "config": {
            "rows": len(recipe.train_examples),
            "batch_size": params.train.batch_size,
            "max_seq_len": params.train.max_seq_len,
            "method": params.train.method,
            "threads": params.train.threads or "all cores",
            "base": str(args.base),
            "precision": params.train.precision,
            "weights": "random (same architecture; throughput only)" if args.random_init else "base model",
            "replay_rows": len(recipe.replay_examples),
            "device": device_name(),
        },
        "tunegate": ours,
        "baseline_trainer_peft_padded": baseline,
        "ratio": round(ours["tokens_per_second"] / baseline["tokens_per_second"], 3),
        "target_ratio": 1.5,
        "environment": environment(),
    }
    write_json(args.out, result)
    print(f"ratio tunegate/baseline = {result['ratio']}")


if __name__ == "__main__":
    main()
