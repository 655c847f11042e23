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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.train import TrainRecipe, lora_config
from training.trainer import IGNORE
from tunegate.artifacts import environment, write_json
from tunegate.params import load_params


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
    model = AutoModelForCausalLM.from_pretrained(recipe.base_dir, dtype=torch.float32, use_safetensors=True)
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
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator)
    return timed_train(trainer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--rows", type=int, default=160, help="training rows (stratified subset)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_throughput.json"))
    args = parser.parse_args()

    params = load_params(
        args.params,
        overrides={
            "train.epochs": 1,
            "train.max_steps": None,
            "train.max_train_rows": args.rows,
            "train.eval_every": 10**6,
            "train.early_stopping_patience": 0,
        },
    )
    recipe = TrainRecipe(params, args.data, args.base, Path("/tmp/tunegate-bench-checkpoints"))
    recipe.setup()
    ours = run_tunegate(recipe)
    print("tunegate", json.dumps(ours), flush=True)
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
