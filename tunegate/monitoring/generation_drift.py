"""Drift for the generation kind: the requests' inputs and the release's answers, against
the release's hold-out (tunegate/core/monitor_reference.py, ``GenerationReference``).

The reference rows are the hold-out records' last user turns, the release's constrained
answers to them and each answer's score on the gate's primary metric. Live traffic from
the training distribution is unseen text answered by the same release, exchangeable with
those rows, so each test keeps its level. Signals (``monitor.signals``), each at
``alpha / n`` (Bonferroni over every test below plus live quality):

- the text descriptors of the last user turn (tunegate/monitoring/descriptors.py) and
  ``embedding``, exactly as for classification (Evidently: ValueDrift with K-S, and
  EmbeddingsDrift with the null-calibrated classifier test);
- ``answer_length``: characters of each answer, Evidently ValueDrift (K-S);
- ``invalid_json``: the share of answers that are not JSON or break the schema, and
  ``empty_answer``: the share that are blank or an empty JSON value; each a two-sided
  Fisher exact test (scipy) of the window's count against the reference's;
- ``null_rate``: one Fisher exact test per field of the answers' JSON objects (the
  schema's properties, in its order): the share of the JSON-object answers that leave the
  field null or out. A release that stops finding amounts shows here before anyone labels a request;
- ``live_quality``: where callers sent reference answers (``POST /feedback``), each answer's
  score on the release's metric against them, compared with the release's own hold-out
  scores by a one-sided Mann-Whitney U test (scipy): drift when live answers score
  significantly lower than the answers the gate approved. Callers' ratings are reported
  beside it (``live_rating``: their mean and count), not judged: ratings have no reference.

Windows smaller than ``monitor.min_window`` (distinct messages) are not judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunegate.core.monitor_reference import GenerationReference
from tunegate.core.task import Task
from tunegate.core.text_metrics import item_scores
from tunegate.monitoring.descriptors import NAMES
from tunegate.monitoring.drift import Correction, Signal, described, draw, embed, not_judged, verdicts
from tunegate.monitoring.window import GenerationWindow

RATES = ("invalid_json", "empty_answer")
FISHER = "share vs the reference's, two-sided Fisher exact test"


def reference_task(reference: GenerationReference) -> Task:
    return Task("generation", reference.output_schema, json_answers=reference.json_answers)


def fields(reference: GenerationReference) -> list[str]:
    """The answers' fields: the schema's properties in its order, else the reference answers' keys."""
    props = (reference.output_schema or {}).get("properties")
    if isinstance(props, dict) and props:
        return list(props)
    if not reference.json_answers:
        return []
    task = reference_task(reference)
    keys = {k for a in reference.answers if isinstance(p := task.check(a).parsed, dict) for k in p}
    return sorted(keys)


def planned_tests(signals: tuple[str, ...], names: list[str]) -> list[str]:
    """The tests the configured signals make (``null_rate``: one per field, when there are fields)."""
    return [
        t for s in signals for t in ([f"null_rate.{f}" for f in names] if s == "null_rate" and names else [s])
    ]


def correction(signals: tuple[str, ...], names: list[str], alpha: float) -> Correction:
    """Bonferroni over every test and live quality."""
    family = len(planned_tests(signals, names)) + 1
    return Correction("Bonferroni", alpha, family, alpha / family)


def flags(answers: list[str], task: Task, names: list[str]) -> dict[str, list[bool]]:
    """Per answer: invalid (not JSON / breaks the schema) and empty; per answer that is a JSON
    object, each field null or left out (answers that are not objects count in invalid_json
    only, so one broken answer does not move every field)."""
    checked = [task.check(a) for a in answers]
    out: dict[str, list[bool]] = {
        "invalid_json": [c.json_valid is False or c.schema_valid is False for c in checked],
        "empty_answer": [not c.text.strip() or c.parsed in ({}, [], "") for c in checked],
    }
    for f in names:
        out[f"null_rate.{f}"] = [c.parsed.get(f) is None for c in checked if isinstance(c.parsed, dict)]
    return out


def rate_signal(name: str, ours: list[bool], theirs: list[bool], each: float) -> Signal:
    from scipy.stats import fisher_exact

    if not ours or not theirs:
        return Signal(name, FISHER, each, None, None, "no JSON object answers on one side")
    a, b = sum(ours), sum(theirs)
    table = [[a, len(ours) - a], [b, len(theirs) - b]]
    p = float(fisher_exact(table, alternative="two-sided").pvalue)
    note = (
        f"{a}/{len(ours)} ({a / len(ours):.3f}) vs {b}/{len(theirs)} ({b / len(theirs):.3f}) on the reference"
    )
    return Signal(name, FISHER, each, round(a / len(ours), 4), p < each, note, p)  # score: the window's share


def frame(texts: list[str], answers: list[str], vocab: frozenset[str], vectors: Any) -> Any:
    return described(texts, vocab, vectors, {"answer_length": [float(len(a)) for a in answers]})


def judge_generation(
    reference: GenerationReference,
    window: GenerationWindow,
    signals: tuple[str, ...],
    min_window: int,
    sample: int,
    seed: int,
    alpha: float,
    cache_dir: Path | None = None,
    render: bool = True,
) -> tuple[list[Signal], Any]:
    """Every configured test's verdict and the Evidently snapshot (None when not judged).
    With ``render=False`` (the benchmark's many windows) the embedding verdict comes from the
    same drift method without Evidently's picture; every verdict is the same."""
    from tunegate.monitoring.drift_tests import MIN_CLASSIFIER_SIDE

    names = fields(reference)
    planned = tuple(planned_tests(signals, names))
    window = window.distinct()
    if len(window.texts) < min_window:
        return not_judged(
            planned, f"window has {len(window.texts)} distinct messages; {min_window} are needed"
        ), None
    each = correction(signals, names, alpha).each
    d = draw(len(reference), len(window.texts), signals, sample, seed, cache_dir, reference.sha256)
    ref_texts = [reference.texts[i] for i in d.ref_idx]
    cur_texts = [window.texts[i] for i in d.cur_idx]
    vectors = (embed(ref_texts, d.cache), embed(cur_texts)) if d.embeddings else (None, None)
    ref = frame(ref_texts, [reference.answers[i] for i in d.ref_idx], reference.vocabulary, vectors[0])
    cur = frame(cur_texts, [window.answers[i] for i in d.cur_idx], reference.vocabulary, vectors[1])
    tested = [s for s in signals if s in (*NAMES, "answer_length")]
    judged, snapshot = verdicts(ref, cur, tested, each, d, render, categorical=())
    task = reference_task(reference)
    ours, theirs = flags(window.answers, task, names), flags(reference.answers, task, names)
    for name in (t for t in planned if t in RATES or t.startswith("null_rate.")):
        if task.json_answers or name == "empty_answer":
            judged[name] = rate_signal(name, ours[name], theirs[name], each)
    reasons = {
        "embedding": f"the classifier's test half needs {MIN_CLASSIFIER_SIDE} rows of each side",
        "invalid_json": "the release answers free text, not JSON",
        "null_rate": "the release's answers have no fields",
    }
    return [judged.get(t) or Signal(t, "-", each, None, None, reasons.get(t, "")) for t in planned], snapshot


def live_quality(
    window: GenerationWindow, reference: GenerationReference, min_feedback: int, each: float
) -> Signal:
    """The release's answers scored against callers' reference answers, against its hold-out scores."""
    method = f"{reference.metric} on feedback vs the hold-out's, one-sided Mann-Whitney U"
    n = len(window.references)
    if n < min_feedback:
        return Signal(
            "live_quality", method, each, None, None, f"{n} reference answers sent; {min_feedback} needed"
        )
    task = reference_task(reference)
    live = [item_scores(answer, ref, task).get(reference.metric, 0.0) for answer, ref in window.references]
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(live, reference.scores, alternative="less").pvalue)
    mean, held = sum(live) / n, sum(reference.scores) / len(reference.scores)
    note = (
        f"mean {mean:.3f} on {n} reference answers vs {held:.3f} on {len(reference.scores)} hold-out records"
    )
    return Signal("live_quality", method, each, round(mean, 4), p < each, note, p)


def live_rating(window: GenerationWindow) -> Signal:
    """Callers' ratings: reported, never judged (there is no reference rating to compare with)."""
    n = len(window.ratings)
    mean = None if not n else round(sum(window.ratings) / n, 4)
    note = f"{n} ratings" + ("" if not n else f", mean {mean:.3f}") + "; reported, not judged (no reference)"
    return Signal("live_rating", "mean rating in [0, 1]", 0.0, mean, None, note)
