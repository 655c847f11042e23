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

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline, make_union

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunegate.artifacts import environment, read_json, read_jsonl, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/tfidf_baseline.json"))
    args = parser.parse_args()

    train = read_jsonl(args.prepared / "train.jsonl") + read_jsonl(args.prepared / "val.jsonl")
    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    model.fit([r["text"] for r in train], [r["label"] for r in train])
    results = {}
    for suite in ("holdout", "shifted"):
        rows = read_jsonl(args.prepared / f"{suite}.jsonl")
        if not rows:
            continue
        pred = model.predict([r["text"] for r in rows])
        gold = [r["label"] for r in rows]
        results[suite] = {
            "n": len(rows),
            "accuracy": round(accuracy_score(gold, pred), 4),
            "macro_f1": round(f1_score(gold, pred, average="macro"), 4),
        }
    manifest = read_json(args.prepared / "manifest.json")
    out = {
        "model": "tfidf(word 1-2 + char 2-5) + logistic regression (C=10)",
        "data": {"inputs": manifest["inputs"], "train_rows": len(train)},
        "results": results,
        "environment": environment(),
    }
    write_json(args.out, out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
