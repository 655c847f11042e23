"""Sanity reference: how separable is the prepared data for a bag-of-words model?

Trains TF-IDF (word 1-2 grams + char 2-5 grams) + logistic regression on train+val of
``data/prepared`` and scores the hold-out and shifted sets. A fine-tuned LLM that does
not beat this is not worth releasing; a score near 1.0 would mean the data is trivial.

Usage: ``python bench/tfidf_baseline.py [--prepared data/prepared]``
Writes ``bench/results/tfidf_baseline.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunegate.core.artifacts import environment, read_json, read_jsonl, write_json
from tunegate.evaluation import classical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/tfidf_baseline.json"))
    args = parser.parse_args()

    train = read_jsonl(args.prepared / "train.jsonl") + read_jsonl(args.prepared / "val.jsonl")
    model = classical.fit(train)  # the gate's classical reference (which fits on train only)
    results = {}
    for suite in ("holdout", "shifted"):
        rows = read_jsonl(args.prepared / f"{suite}.jsonl")
        if not rows:
            continue
        pred = classical.predict(model, rows)
        gold = [r["label"] for r in rows]
        results[suite] = {
            "n": len(rows),
            "accuracy": round(accuracy_score(gold, pred), 4),
            "macro_f1": round(f1_score(gold, pred, average="macro"), 4),
        }
    manifest = read_json(args.prepared / "manifest.json")
    out = {
        "model": classical.MODEL,
        "data": {"inputs": manifest["inputs"], "train_rows": len(train)},
        "results": results,
        "environment": environment(),
    }
    write_json(args.out, out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
