"""Hold-out quality of a candidate versus the base model zero-shot (reference HF + PEFT path).

Both answer through the same prompt template with greedy decoding restricted to the
label set. Writes ``bench/results/quality-<tag>.json``.

Usage: ``python bench/quality.py --data data/prepared --base models/base
--candidate models/candidate --tag sample [--suites holdout shifted] [--limit N]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunegate.core.artifacts import environment, read_json, read_jsonl, write_json
from tunegate.evaluation.hf_predict import load_model, predict, template_for


def score(rows, preds) -> dict:
    gold = [r["label"] for r in rows]
    pred = [p.label or "<invalid>" for p in preds]
    return {
        "n": len(rows),
        "accuracy": round(accuracy_score(gold, pred), 4),
        "macro_f1": round(f1_score(gold, pred, average="macro", labels=sorted(set(gold))), 4),
        "invalid_rate": round(sum(p.label is None for p in preds) / len(preds), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--base", type=Path, default=Path("models/base"))
    parser.add_argument("--candidate", type=Path, default=Path("models/candidate"))
    parser.add_argument("--tag", default="sample")
    parser.add_argument("--suites", nargs="+", default=["holdout", "shifted"])
    parser.add_argument("--limit", type=int, default=None, help="score the first N rows of each suite")
    args = parser.parse_args()

    template = template_for(args.candidate)
    results: dict = {}
    for name, adapter in (("base_zero_shot", None), ("candidate", args.candidate)):
        model, tokenizer = load_model(args.base, adapter, merge=True)
        results[name] = {}
        for suite in args.suites:
            rows = read_jsonl(args.data / f"{suite}.jsonl")[: args.limit]
            if not rows:
                continue
            start = time.perf_counter()
            preds = predict(model, tokenizer, template, rows)
            results[name][suite] = score(rows, preds) | {"seconds": round(time.perf_counter() - start, 1)}
            print(name, suite, json.dumps(results[name][suite]), flush=True)
    card = read_json(args.candidate / "card.json")
    write_json(
        Path(f"bench/results/quality-{args.tag}.json"),
        {
            "candidate": card["model_id"],
            "train_params": card["params"],
            "train_metrics": card["metrics"],
            "data": card["data"]["inputs"],
            "results": results,
            "environment": environment(),
        },
    )


if __name__ == "__main__":
    main()
