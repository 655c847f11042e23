"""Examples/s of the evaluation path versus a plain transformers + PEFT generate loop.

All contenders predict the same rows with the same model and adapter, greedy and
restricted to the label set, in one run:

- ``plain_peft_generate``: the baseline. transformers ``generate`` on the PEFT model
  (adapter not merged), batches of 16 sorted by length, label constraint through
  ``prefix_allowed_tokens_fn`` (tunegate/evaluation/hf_predict.py).
- ``scorer``: the evaluate stage's default path (tunegate/evaluation/scorer.py): adapter merged,
  shared prompt prefix computed once, decoding stopped once the label is determined.
- ``merged_generate``: the baseline loop with the adapter merged (isolates that saving).
- with ``--vllm``: ``vllm_lora`` (the served engine: base + adapter per request) and
  ``vllm_merged`` (merged weights), each in its own engine process; start-up is
  reported apart from throughput.

Throughput excludes model loading (reported separately). Every path's answers are
compared with the baseline's (agreement). Writes ``bench/results/eval_throughput.json``.

Usage: ``python bench/eval_throughput.py [--rows 168] [--vllm]``

``--generation`` times the generation kind instead (``bench/results/eval_throughput_generation.json``):
the same hold-out records of ``data/prepared-generation`` answered greedily, each path held to
the task's JSON Schema by the same xgrammar grammar, by

- ``plain_peft_generate``: the baseline, transformers ``generate`` on the PEFT model (adapter
  not merged) in batches of 16 (its fastest batch here: larger ones pad more), the grammar as
  a logits processor (``HFEngine.chat`` with ``reference``, the parity reference);
- ``plain_peft_generate_same_batch``: the same loop at the evaluation path's batch;
- ``merged_generate``: the ``generate`` loop on merged weights, batches of 16 (the merge's share);
- ``chat_decode``: the evaluation path of ``eval.engine: scorer`` (``tunegate/evaluation/chat_decode.py``:
  merged weights, the shared prompt prefix once, continuous batching, grouped heads read in
  place), batches of ``--batch-size`` (64, as ``params-generation.yaml``);
- ``vllm_lora``: the served engine, vLLM with the adapter per request and structured outputs,
  ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` as the evaluate stage runs it.

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
from tunegate.core.artifacts import environment, read_json, read_jsonl, write_json
from tunegate.evaluation.hf_predict import load_model, predict, template_for
from tunegate.evaluation.predictors import ModelRef, vllm_classify
from tunegate.evaluation.scorer import score


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
    parser.add_argument("--batch-size", type=int, default=64, help="generation: the evaluation path's batch")
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
    from transformers import AutoTokenizer

    from tunegate.core.greedy import generate_text
    from tunegate.core.task import read_task
    from tunegate.evaluation.generation import prompt_turns
    from tunegate.evaluation.hf_predict import json_constraint
    from tunegate.evaluation.predictors import HFEngine, vllm_generate

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

    schema, as_json = task.output_schema, task.json_answers
    paths = (
        ("plain_peft_generate", "reference", 16),
        ("plain_peft_generate_same_batch", "reference", args.batch_size),
        ("chat_decode", "scorer", args.batch_size),
    )
    for name, kind, batch in paths:
        hf = HFEngine(kind, batch)
        _, load = timed(hf.chat, ref, prompts[:2], 4)  # loads the model, warms up
        texts, secs = timed(hf.chat, ref, prompts, 160, schema, as_json)
        record(name, texts, secs, load)
        del hf
    model, mtok = load_model(args.base, cand, merge=True)
    rendered = [mtok.apply_chat_template(t, add_generation_prompt=True, tokenize=False) for t in prompts]
    constrained = schema is not None or as_json
    processors = json_constraint(mtok, model.config.vocab_size, schema) if constrained else None
    texts, secs = timed(generate_text, model, mtok, rendered, 160, 16, processors)
    record("merged_generate", texts, secs, 0.0)
    del model
    out, timings = vllm_generate(
        [(ref, "rows", prompts)], max_tokens=160, schema=schema, json_answers=as_json
    )
    record("vllm_lora", out["rows"], timings["seconds"]["rows"], timings["startup_seconds"])
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
        "batch_size": args.batch_size,
        "baseline": "plain_peft_generate", "target": "the evaluation path >= 2x the baseline (tokens/s)",
        "results": results, "environment": environment(),
    })  # fmt: skip
    best = max(results, key=lambda n: results[n]["tokens_per_s"])
    print(f"{best}: {results[best]['speedup_vs_baseline']}x the plain PEFT generate loop; wrote {out_path}")


if __name__ == "__main__":
    main()
