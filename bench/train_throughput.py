"""Training throughput: the train stage's loop versus a plain Trainer + PEFT baseline.

Both run in one invocation on the same prepared data, base model, LoRA config,
learning rate, batch size, seed and thread count, for the same number of optimizer
steps, with no validation inside the timed region:

(a) tunegate: the train stage's own TRL SFTTrainer (length-grouped batches, padding
    to the longest example in each batch, loss on the label only);
(b) baseline: transformers ``Trainer`` + ``peft.get_peft_model``, every example padded
    to ``train.max_seq_len``, random order, no grouping or packing.

Training tokens/s counts real (non-padding) tokens, measured by wrapping each data
collator, over the optimisation wall time. Writes ``bench/results/train_throughput.json``.

Usage: ``python bench/train_throughput.py [--steps 8] [--params params.yaml]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.train import TrainRecipe
from tunegate.artifacts import environment, write_json
from tunegate.params import load_params


class CountingCollator:
    """Wraps a collator; counts real and padded tokens of every batch it builds."""

    def __init__(self, inner: Any):
        self.inner, self.real, self.padded, self.batches = inner, 0, 0, 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        self.batches += 1
        self.padded += int(batch["input_ids"].numel())
        self.real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else self.padded
        return batch


def timed_train(trainer: Any) -> dict[str, float]:
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "steps": trainer.state.global_step,
        "real_tokens": counter.real,
        "padded_tokens": counter.padded,
        "padding_share": round(1 - counter.real / counter.padded, 4),
        "tokens_per_second": round(counter.real / seconds, 2),
        "final_loss": round(trainer.state.log_history[-1].get("train_loss", float("nan")), 4),
    }


def run_tunegate(recipe: TrainRecipe) -> dict[str, float]:
    trainer = recipe.build_trainer()
    return timed_train(trainer)


def run_baseline(recipe: TrainRecipe, steps: int) -> dict[str, float]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    p, tok = recipe.p, recipe.tokenizer
    template = recipe.template

    def encode(example: dict[str, Any]) -> dict[str, Any]:
        text = example["prompt"][1]["content"]
        label = example["completion"][0]["content"]
        prompt_ids = tok(template.render(tok, text), add_special_tokens=False)["input_ids"]
        answer_ids = tok(label + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = (prompt_ids + answer_ids)[: p.max_seq_len]
        labels = ([-100] * len(prompt_ids) + answer_ids)[: p.max_seq_len]
        pad = p.max_seq_len - len(ids)
        return {
            "input_ids": ids + [tok.pad_token_id] * pad,
            "attention_mask": [1] * len(ids) + [0] * pad,
            "labels": labels + [-100] * pad,
        }

    data = Dataset.from_list(recipe.train_examples).map(encode, remove_columns=["prompt", "completion"])
    model = AutoModelForCausalLM.from_pretrained(recipe.base_dir, dtype=torch.float32, use_safetensors=True)
    lp = p.lora
    model = get_peft_model(
        model,
        LoraConfig(
            r=lp.r,
            lora_alpha=lp.alpha,
            lora_dropout=lp.dropout,
            target_modules=list(lp.target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    args = TrainingArguments(
        output_dir="/tmp/tunegate-bench-baseline",
        max_steps=steps,
        per_device_train_batch_size=p.batch_size,
        learning_rate=p.lr,
        lr_scheduler_type="cosine",
        seed=recipe.params.base.seed,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=steps,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator)
    return timed_train(trainer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_throughput.json"))
    args = parser.parse_args()

    params = load_params(
        args.params,
        overrides={
            "train.max_steps": args.steps,
            "train.eval_every": args.steps * 10,
            "train.early_stopping_patience": 0,
        },
    )
    recipe = TrainRecipe(params, args.data, args.base, Path("/tmp/tunegate-bench-checkpoints"))
    recipe.setup()
    ours = run_tunegate(recipe)
    print("tunegate", json.dumps(ours), flush=True)
    baseline = run_baseline(recipe, args.steps)
    print("baseline", json.dumps(baseline), flush=True)
    result = {
        "what": "training tokens/s (real tokens over optimisation wall time), same data/model/steps",
        "config": {
            "steps": args.steps,
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
