"""Per-item scores of a generated answer against its reference. Pure, no model.

Every score is in [0, 1], one per item, so that the gate's statistics (means with bootstrap
intervals, paired tests, tunegate/evaluation/stats.py) treat them like classification's 0/1 scores:

- ``exact_match``: the normalised answers are equal (JSON answers: the parsed values are);
- ``token_f1``: SQuAD-style overlap of normalised tokens (lower case, punctuation and
  English articles removed);
- ``rouge_l``: ROUGE-L F-measure (rouge-score, stemmed);
- ``chrf``: chrF (sacrebleu), divided by 100;
- with JSON answers: ``json_valid`` and, with a schema, ``schema_valid`` (0/1);
  ``field_f1``: F1 of the (leaf path, value) pairs, nested objects opened into paths
  (``slots.city``) and lists counted as multisets of their items, where a null is a value
  (predicting a field the reference leaves null is wrong, and so is leaving out a field it
  has), and per path ``field.<path>``: exact agreement of the value (a list: multiset F1),
  or for a free-text field (a string the schema declares without enum or pattern) the
  token F1 of the two texts.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from functools import cache
from typing import Any

from tunegate.core.task import Task

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


def free_text_fields(schema: dict[str, Any] | None, prefix: str = "") -> set[str]:
    """The leaf paths (``slots.city``) of the schema's declared string properties with no
    enum, const, pattern or format: scored as text. Objects open into their properties; a
    value under ``additionalProperties`` (an open map such as slots) is compared exactly."""
    out = set()
    for name, prop in ((schema or {}).get("properties") or {}).items():
        path = f"{prefix}{name}"
        types = prop.get("type")
        types = {types} if isinstance(types, str) else set(types or ())
        if prop.get("properties"):
            out |= free_text_fields(prop, f"{path}.")
        elif "string" in types and not ({"enum", "const", "pattern", "format"} & set(prop)):
            out.add(path)
    return out


def _same(a: Any, b: Any) -> bool:
    """Field values agree: numbers by value (1 == 1.0), strings ignoring case and outer spaces."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return _canonical(a) == _canonical(b)


def _canonical(value: Any) -> str:
    """One spelling per value as `_same` sees it (the key of a list item in a multiset)."""

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return sorted((norm(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
        if isinstance(v, str):
            return v.strip().lower()
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        return v

    return json.dumps(norm(value), sort_keys=True)


def leaves(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """An object's leaf paths: a non-empty object opens into ``name.inner``; a scalar, a null,
    a list (scored as a multiset of its items) and an empty object are leaves."""
    out: dict[str, Any] = {}
    for name, inner in value.items():
        path = f"{prefix}{name}"
        if isinstance(inner, dict) and inner:
            out |= leaves(inner, f"{path}.")
        else:
            out[path] = inner
    return out


def _pairs(value: Any) -> Counter[str]:
    """The (value) pairs one leaf contributes to field F1: a list one per item (an empty list
    one, as a value), anything else one."""
    if isinstance(value, list) and value:
        return Counter(_canonical(x) for x in value)
    return Counter([_canonical(value)])


def _leaf_score(got: Any, want: Any, free: bool) -> float:
    """One leaf's agreement: token F1 for free text, multiset F1 for lists, else equality."""
    if got is MISSING or want is MISSING:
        return 0.0
    if free and isinstance(got, str) and isinstance(want, str):
        return token_f1(got, want)
    if isinstance(got, list) and isinstance(want, list):
        a, b = _pairs(got), _pairs(want)
        return 2 * sum((a & b).values()) / (sum(a.values()) + sum(b.values()))
    return float(_same(got, want))


MISSING = object()


def field_scores(parsed: Any, reference: dict[str, Any], free_text: set[str]) -> dict[str, float]:
    """``field_f1`` over the leaf paths of both objects and ``field.<path>`` for each of the
    reference's leaves (a parsed answer that is None or not an object: all 0).

    field F1 counts (path, value) pairs of the closed (not free-text) leaves, a list's items
    as a multiset: precision over the answer's pairs, recall over the reference's. A slot
    map ``{"slots": {"city": "Boston", "date": "friday"}}`` is two pairs, so one wrong slot
    costs one pair, not the whole object."""
    answer = leaves(parsed) if isinstance(parsed, dict) else {}
    wanted_leaves = leaves(reference)
    paths = sorted(set(wanted_leaves) | set(answer))
    out = {
        f"field.{p}": _leaf_score(answer.get(p, MISSING), wanted_leaves.get(p, MISSING), p in free_text)
        for p in paths
    }
    closed = [p for p in paths if p not in free_text]
    agree = predicted = wanted = 0
    for p in closed:
        a = _pairs(answer[p]) if p in answer else Counter()
        b = _pairs(wanted_leaves[p]) if p in wanted_leaves else Counter()
        agree += _agreeing(a, b, answer.get(p, MISSING), wanted_leaves.get(p, MISSING))
        predicted, wanted = predicted + sum(a.values()), wanted + sum(b.values())
    if not closed:
        f1 = 1.0
    elif not predicted or not agree:
        f1 = 0.0
    else:
        precision, recall = agree / predicted, agree / wanted
        f1 = 2 * precision * recall / (precision + recall)
    out["field_f1"] = f1
    # per path: the reference's leaves (an extra leaf in the answer counts in field_f1 only)
    return {k: v for k, v in out.items() if k == "field_f1" or k.removeprefix("field.") in wanted_leaves}


def _agreeing(a: Counter[str], b: Counter[str], got: Any, want: Any) -> int:
    """Pairs of one leaf both objects hold: a list's shared items, or 1 for equal scalars."""
    if isinstance(got, list) and isinstance(want, list):
        return sum((a & b).values())
    return int(got is not MISSING and want is not MISSING and _same(got, want))


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
    two JSON objects by leaf path (the mean over both answers' leaves of: token F1 for two
    strings, multiset F1 for two lists, equality otherwise, 0 for a leaf one of them lacks);
    other text by token F1."""
    try:
        a, b = json.loads(one), json.loads(other)
    except (TypeError, ValueError):
        return token_f1(one, other)
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return float(_same(a, b)) if not isinstance(a, str) else token_f1(one, other)
    la, lb = leaves(a), leaves(b)
    names = set(la) | set(lb)
    if not names:
        return 1.0
    per = [_leaf_score(la.get(n, MISSING), lb.get(n, MISSING), free=True) for n in names]
    return sum(per) / len(per)
