"""Per-item scores of a generated answer against its reference. Pure, no model.

Every score is in [0, 1], one per item, so that the gate's statistics (means with bootstrap
intervals, paired tests, evaluation/stats.py) treat them like classification's 0/1 scores:

- ``exact_match``: the normalised answers are equal (JSON answers: the parsed values are);
- ``token_f1``: SQuAD-style overlap of normalised tokens (lower case, punctuation and
  English articles removed);
- ``rouge_l``: ROUGE-L F-measure (rouge-score, stemmed);
- ``chrf``: chrF (sacrebleu), divided by 100;
- with JSON answers: ``json_valid`` and, with a schema, ``schema_valid`` (0/1);
  ``field_f1``: F1 of the (field, value) pairs, where a null is a value (predicting a field
  the reference leaves null is wrong, and so is leaving out a field it has), and per field
  ``field.<name>``: exact agreement of the value, or for a free-text field (a string the
  schema does not restrict by enum or pattern) the token F1 of the two texts.
"""

from __future__ import annotations

import json
import math
import re
import string
from functools import cache
from typing import Any

from tunegate.task import Task

ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCT = str.maketrans({c: " " for c in string.punctuation})
TEXT_METRICS = ("exact_match", "token_f1", "rouge_l", "chrf")


def normalise(text: str) -> str:
    return " ".join(ARTICLES.sub(" ", text.lower().translate(PUNCT)).split())


def token_f1(answer: str, reference: str) -> float:
    a, r = normalise(answer).split(), normalise(reference).split()
    if not a or not r:
        return float(a == r)
    common = sum(min(a.count(t), r.count(t)) for t in set(a))
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, reference: str) -> float:
    if not answer.strip() or not reference.strip():
        return float(answer.strip() == reference.strip())
    return float(_rouge().score(reference, answer)["rougeL"].fmeasure)


def chrf(answer: str, reference: str) -> float:
    import sacrebleu

    if not answer.strip() or not reference.strip():
        return float(answer.strip() == reference.strip())
    return float(sacrebleu.sentence_chrf(answer, [reference]).score) / 100


def free_text_fields(schema: dict[str, Any] | None) -> set[str]:
    """The schema's string properties with no enum, const or pattern: scored as text."""
    out = set()
    for name, prop in ((schema or {}).get("properties") or {}).items():
        types = prop.get("type")
        types = {types} if isinstance(types, str) else set(types or ())
        if "string" in types and not ({"enum", "const", "pattern", "format"} & set(prop)):
            out.add(name)
    return out


def _same(a: Any, b: Any) -> bool:
    """Field values agree: numbers by value (1 == 1.0), strings ignoring case and outer spaces."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


MISSING = object()


def field_scores(parsed: Any, reference: dict[str, Any], free_text: set[str]) -> dict[str, float]:
    """``field_f1`` and ``field.<name>`` for a parsed answer (None or a non-object: all 0)."""
    answer = parsed if isinstance(parsed, dict) else {}
    names = sorted(set(reference) | set(answer))
    out: dict[str, float] = {}
    for name in names:
        got, want = answer.get(name, MISSING), reference.get(name, MISSING)
        if got is MISSING or want is MISSING:
            out[f"field.{name}"] = 0.0
        elif name in free_text and isinstance(got, str) and isinstance(want, str):
            out[f"field.{name}"] = token_f1(got, want)
        else:
            out[f"field.{name}"] = float(_same(got, want))
    agree = sum(out[f"field.{n}"] for n in names if n not in free_text)
    closed = [n for n in names if n not in free_text]
    predicted = sum(1 for n in closed if n in answer)
    wanted = sum(1 for n in closed if n in reference)
    if not closed:
        f1 = 1.0
    elif not predicted or not agree:
        f1 = 0.0
    else:
        precision, recall = agree / predicted, agree / wanted
        f1 = 2 * precision * recall / (precision + recall)
    out["field_f1"] = f1
    # per field: the reference's fields (an extra field in the answer counts in field_f1 only)
    return {k: v for k, v in out.items() if k == "field_f1" or k.removeprefix("field.") in reference}


def item_scores(answer: str, reference: str, task: Task) -> dict[str, float]:
    """Every score of one answer against its reference answer (see the module docstring)."""
    out = {
        "token_f1": token_f1(answer, reference),
        "rouge_l": rouge_l(answer, reference),
        "chrf": chrf(answer, reference),
    }
    if not task.json_answers:
        out["exact_match"] = float(normalise(answer) == normalise(reference))
        return dict(sorted(out.items()))
    checked = task.check(answer)
    ref = json.loads(reference)
    out["exact_match"] = float(checked.json_valid is True and json.dumps(checked.parsed, sort_keys=True)
                               == json.dumps(ref, sort_keys=True))  # fmt: skip
    out["json_valid"] = float(bool(checked.json_valid))
    if task.output_schema is not None:
        out["schema_valid"] = float(bool(checked.schema_valid))
    if isinstance(ref, dict):
        out |= field_scores(checked.parsed, ref, free_text_fields(task.output_schema))
    return dict(sorted(out.items()))


def agreement(one: str, other: str) -> float:
    """How far two answers to one request agree, in [0, 1] (the canary judge's shadow pairs):
    two JSON objects by field (the mean over both answers' fields of: token F1 for two
    strings, equality otherwise, 0 for a field one of them lacks); other text by token F1."""
    try:
        a, b = json.loads(one), json.loads(other)
    except (TypeError, ValueError):
        return token_f1(one, other)
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return float(_same(a, b)) if not isinstance(a, str) else token_f1(one, other)
    names = set(a) | set(b)
    if not names:
        return 1.0
    per = [
        0.0 if n not in a or n not in b
        else token_f1(a[n], b[n]) if isinstance(a[n], str) and isinstance(b[n], str)
        else float(_same(a[n], b[n]))
        for n in names
    ]  # fmt: skip
    return sum(per) / len(per)
