"""The classical reference: TF-IDF features and logistic regression on the same training split.

Seconds on a CPU, and on many intent datasets as accurate as a fine-tuned language model.
The evaluate stage fits it on ``train.jsonl`` (what the candidate trained on; validation
stays out, as the candidate used it only to stop) and records its answer to every suite
item beside the candidate's, so the gate can compare the two on the same items
(tunegate/evaluation/policy_classical.py). A release owner should see it before shipping a model
that costs a GPU to serve.
"""

from __future__ import annotations

from typing import Any

MODEL = "tf-idf (word 1-2 grams + char 2-5 grams) + logistic regression (C=10), scikit-learn"


def fit(rows: list[dict[str, Any]], seed: int = 0) -> Any:
    """The fitted pipeline (text -> label)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
        LogisticRegression(max_iter=2000, C=10.0, random_state=seed),
    )
    return model.fit([r["text"] for r in rows], [r["label"] for r in rows])


def predict(model: Any, rows: list[dict[str, Any]]) -> list[str]:
    return [str(x) for x in model.predict([r["text"] for r in rows])] if rows else []
