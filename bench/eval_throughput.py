"""Examples/s of the evaluation path versus a plain transformers + PEFT generate loop.

All contenders predict the same rows with the same model and adapter, greedy and
restricted to the label set, in one run:

- ``plain_peft_generate``: the baseline. transformers ``generate`` on the PEFT model
  (adapter not merged), batches of 16 sorted by length, label constraint through
  ``prefix_allowed_tokens_fn`` (evaluation/hf_predict.py).
- ``scorer``: the evaluate stage's default path (evaluation/scorer.py): adapter merged,
  shared prompt prefix computed once, decoding stopped once the label is determined.
- ``merged_generate``: the baseline loop with the adapter merged (isolates that saving).
- with ``--vllm``: ``vllm_lora`` (the served engine: base + adapter per request) and
  ``vllm_merged`` (merged weights), each in its own engine process; start-up is
  reported apart from throughput.

Throughput excludes model loading (reported separately). Every path's answers are
compared with the baseline's (agreement). Writes ``bench/results/eval_throughput.json``.

Usage: ``python bench/eval_throughput.py [--rows 168] [--vllm]``

``--generation`` times the generation kind instead (``bench/results/eval_throughput_generation.json``):
the same hold-out records of ``data/prepared-generation`` answered greedily by

- ``plain_peft_generate``: the baseline, transformers ``generate`` on the PEFT model (adapter
  not merged), batches of 16, held to the same schema by xgrammar as a logits processor
  (``HFEngine.chat``, the parity reference);
- ``merged_generate``: the same loop on merged weights (``eval.engine: scorer``);
- ``vllm_lora``: the evaluate stage's path and the service's, vLLM with the adapter per
  request and the answer constrained to the task's JSON Schema (structured outputs), with
  ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` as the evaluate stage runs it;
- ``vllm_lora_one_core_reserved``: the same with vLLM's CPU default (one core kept for its
  scheduler: on 2 cores the model gets one).

Answers/s and generated tokens/s (the base tokenizer's count of the answers), engine
start-up apart, and exact agreement of each path's answers with the baseline's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from evaluation.hf_predict import load_model, predict, template_for
from evaluation.predictors import ModelRef, vllm_classify
from evaluation.scorer import score
from tunegate.artifacts import environment, read_json, read_jsonl, write_json


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--candidate", type=Path, default=Path("models/candidate"))
    parser.add_argument("--rows", type=int, default=None, help="first N hold-out rows (default: all)")
    parser.add_argument("--vllm", action="store_true", help="also time vLLM (adapter and merged)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--generation", action="store_true", help="time the generation kind instead")
    args = parser.parse_args()
    if args.generation:
        return generation(args)
    args.out = args.out or Path("bench/results/eval_throughput.json")

    rows = read_jsonl(args.data / "holdout.jsonl")[: args.rows]
    template = template_for(args.candidate)
    warm = rows[:8]
    results: dict[str, dict] = {}
    answers: dict[str, list] = {}

    def record(name: str, preds, seconds: float, load_seconds: float, **extra) -> None:
        answers[name] = [p.label for p in preds]
        results[name] = {
            "examples_per_s": round(len(rows) / seconds, 2),
            "seconds": round(seconds, 2),
            "load_seconds": round(load_seconds, 2),
            "accuracy": round(
                sum(p.label == r["label"] for p, r in zip(preds, rows, strict=True)) / len(rows), 4
            ),
            **extra,
        }
        print(name, json.dumps(results[name]), flush=True)

    (model, tok), load = timed(load_model, args.base, args.candidate, False)
    predict(model, tok, template, warm)
    preds, secs = timed(predict, model, tok, template, rows)
    record("plain_peft_generate", preds, secs, load)

    (model, tok), load = timed(load_model, args.base, args.candidate, True)
    score(model, tok, template, warm)
    preds, secs = timed(score, model, tok, template, rows)
    record("scorer", preds, secs, load)
    predict(model, tok, template, warm)
    preds, secs = timed(predict, model, tok, template, rows)
    record("merged_generate", preds, secs, load)

    if args.vllm:
        card = read_json(args.candidate / "card.json")
        with tempfile.TemporaryDirectory(prefix="tunegate-merged-") as merged:
            model.save_pretrained(merged, safe_serialization=True)
            tok.save_pretrained(merged)
            refs = {
                "vllm_lora": ModelRef("candidate", args.base, args.candidate, card["model_id"], ""),
                "vllm_merged": ModelRef("candidate", Path(merged), None, card["model_id"], ""),
            }
            for name, ref in refs.items():
                timings: dict = {}
                preds = vllm_classify([(ref, "rows", rows)], template, timings=timings)["rows"]
                record(name, preds, timings["seconds"]["rows"], timings["startup_seconds"])

    base = answers["plain_peft_generate"]
    for name, res in results.items():
        res["agreement_with_baseline"] = round(
            sum(a == b for a, b in zip(answers[name], base, strict=True)) / len(base), 4
        )
        res["speedup_vs_baseline"] = round(
            res["examples_per_s"] / results["plain_peft_generate"]["examples_per_s"], 2
        )
    out = {
        "benchmark": "eval_throughput",
        "rows": len(rows),
        "baseline": "plain_peft_generate",
        "target": "scorer >= 2x the baseline",
        "results": results,
        "environment": environment(),
    }
    write_json(args.out, out)
    print(
        f"scorer: {results['scorer']['speedup_vs_baseline']}x the plain PEFT generate loop; wrote {args.out}"
    )


def generation(args: argparse.Namespace) -> None:
    """The generation kind's paths (see the module docstring)."""
    import os

    from transformers import AutoTokenizer

    from evaluation.generation import prompt_turns
    from evaluation.predictors import HFEngine, vllm_generate
    from tunegate.task import read_task

    data = args.data if args.data != Path("data/prepared") else Path("data/prepared-generation")
    cand = (
        args.candidate if args.candidate != Path("models/candidate") else Path("models/candidate-generation")
    )
    rows = read_jsonl(data / "holdout.jsonl")[: args.rows]
    prompts = [prompt_turns(r) for r in rows]
    task, card = read_task(cand), read_json(cand / "card.json")
    ref = ModelRef("candidate", args.base, cand, card["model_id"], "")
    tok = AutoTokenizer.from_pretrained(args.base)
    results: dict[str, dict] = {}
    answers: dict[str, list[str]] = {}

    def record(name: str, texts: list[str], seconds: float, load_seconds: float) -> None:
        tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
        answers[name] = texts
        results[name] = {
            "answers_per_s": round(len(texts) / seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "seconds": round(seconds, 2), "load_seconds": round(load_seconds, 2), "tokens": tokens,
            "valid_share": round(sum(task.check(t).valid for t in texts) / len(texts), 4),
        }  # fmt: skip
        print(name, json.dumps(results[name]), flush=True)

    for name, kind in (("plain_peft_generate", "reference"), ("merged_generate", "scorer")):
        hf = HFEngine(kind, 16)
        _, load = timed(hf.chat, ref, prompts[:2], 4)  # loads the model, warms up
        texts, secs = timed(hf.chat, ref, prompts, 160, task.output_schema, task.json_answers)
        record(name, texts, secs, load)
        del hf
    for name, reserved in (("vllm_lora_one_core_reserved", "1"), ("vllm_lora", "0")):
        saved = os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU")
        if reserved is not None:
            os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = reserved
        try:
            out, timings = vllm_generate(
                [(ref, "rows", prompts)],
                max_tokens=160,
                schema=task.output_schema,
                json_answers=task.json_answers,
            )
        finally:
            os.environ.pop("VLLM_CPU_NUM_OF_RESERVED_CPU", None)
            if saved is not None:
                os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = saved
        record(name, out["rows"], timings["seconds"]["rows"], timings["startup_seconds"])
    base = answers["plain_peft_generate"]
    for name, res in results.items():
        res["agreement_with_baseline"] = round(
            sum(a.strip() == b.strip() for a, b in zip(answers[name], base, strict=True)) / len(base), 4
        )
        res["speedup_vs_baseline"] = round(
            res["tokens_per_s"] / results["plain_peft_generate"]["tokens_per_s"], 2
        )
    out_path = args.out or Path("bench/results/eval_throughput_generation.json")
    write_json(out_path, {
        "benchmark": "eval_throughput_generation", "rows": len(rows), "max_new_tokens": 160,
        "baseline": "plain_peft_generate", "target": "the evaluation path >= 2x the baseline (tokens/s)",
        "results": results, "environment": environment(),
    })  # fmt: skip
    best = max(results, key=lambda n: results[n]["tokens_per_s"])
    print(f"{best}: {results[best]['speedup_vs_baseline']}x the plain PEFT generate loop; wrote {out_path}")


if __name__ == "__main__":
    main()
