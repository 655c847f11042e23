"""The prompting reference for classification: the base model with `eval.few_shot` training
rows in its prompt, compared with the candidate item by item (McNemar, Holm within its
family), reported or judged by `gate.vs_prompting`."""

from __future__ import annotations

import pytest
from scipy.stats import norm

from tunegate.core.params import GateParams
from tunegate.core.prompt import PromptTemplate
from tunegate.evaluation.checks import finish
from tunegate.evaluation.evaluate import few_shot_rows
from tunegate.evaluation.policy_classical import prompting_label_checks
from tunegate.evaluation.stats import tango


def test_few_shot_rows_cover_as_many_labels_as_k_allows_and_are_seeded():
    train = [
        {"id": f"{lab}{i}", "text": f"{lab} message {i}", "label": lab} for lab in "abcdef" for i in range(5)
    ]
    picked = few_shot_rows(train, 4, seed=1)
    assert len(picked) == 4 and len({r["label"] for r in picked}) == 4
    assert picked == few_shot_rows(train, 4, seed=1) and picked != few_shot_rows(train, 4, seed=2)
    more = few_shot_rows(train, 8, seed=1)
    assert (
        len(more) == 8 and {r["label"] for r in more} == set("abcdef") and len({r["id"] for r in more}) == 8
    )


def test_few_shot_prompt_shows_examples_as_earlier_turns_and_is_never_saved(tmp_path):
    tpl = PromptTemplate(labels=("a", "b"), examples=(("first", "a"), ("second", "b")))
    assert [(m["role"], m["content"]) for m in tpl.messages("third")] == [
        ("system", tpl.system), ("user", "first"), ("assistant", "a"), ("user", "second"),
        ("assistant", "b"), ("user", "third"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="evaluation reference"):
        tpl.save(tmp_path)
    PromptTemplate(labels=("a", "b")).save(tmp_path)
    assert PromptTemplate.load(tmp_path).examples == ()


def records(cand: list[bool], ref: list[bool]) -> list[dict]:
    return [
        {"gold": "a", "candidate": "a" if c else "b", "prompting": "a" if r else "b"}
        for c, r in zip(cand, ref, strict=True)
    ]


def test_classification_prompting_checks_are_non_inferior_by_tangos_score():
    # 30 items: the candidate alone right on 3, the prompt alone right on 9
    cand = [True] * 15 + [True] * 3 + [False] * 9 + [False] * 3
    ref = [True] * 15 + [False] * 3 + [True] * 9 + [False] * 3
    gate = GateParams(vs_prompting="non_inferior")
    checks, notes = prompting_label_checks({"holdout": records(cand, ref)}, gate)
    (check,) = checks
    assert check.name == "holdout.ab_vs_prompting" and not notes
    assert check.value == pytest.approx((3 - 9) / 30) and check.ci[0] < -0.2 < check.ci[1] < 0
    assert check.p_harm == pytest.approx(norm.cdf(tango(3, 9, 30, -0.03)))
    assert check.outcome == "failed"  # not judged yet: a check fails closed until `finish` judges harm
    finish(checks, gate)
    assert check.outcome == "undecided"  # worse than prompting, not shown worse by the margin: 30 items
    reported, notes = prompting_label_checks({"holdout": records(cand, ref)}, GateParams())
    assert reported == [] and notes[0].startswith(
        "vs prompting (base model, few-shot), holdout: accuracy delta"
    )
    none, notes = prompting_label_checks({"holdout": [{"gold": "a", "candidate": "a"}]}, GateParams())
    assert none == [] and "eval.few_shot is 0" in notes[0]
