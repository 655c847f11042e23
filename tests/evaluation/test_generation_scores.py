"""Per-item scores of generated answers (tunegate/core/text_metrics.py), checked against values
worked by hand and against the libraries computed independently, and the gate's
continuous-score statistics against scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from tunegate.core.params import GateParams
from tunegate.core.task import Task
from tunegate.core.text_metrics import (
    agreement,
    chrf,
    field_scores,
    free_text_fields,
    item_scores,
    rouge_l,
    token_f1,
)
from tunegate.evaluation.evidence import Evidence, SuiteInfo, scored_outcome
from tunegate.evaluation.policy import decide
from tunegate.evaluation.stats import paired_test

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "data/tickets/schema.json").read_text())
REF = {
    "intent": "card_arrival", "product": "debit_card", "amount": None, "currency": None,
    "urgency": "low", "reference": None, "summary": "Customer is waiting for a new debit card.",
}  # fmt: skip


def test_generation_token_f1_by_hand():
    # "the" is an article, punctuation goes: {card, arrived} vs {card, has, not, arrived}
    assert token_f1("The card arrived.", "card has not arrived") == pytest.approx(
        2 * (2 / 2) * (2 / 4) / (1 + 0.5)
    )
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("a b", "c d") == 0.0


def test_generation_rouge_and_chrf_match_the_libraries():
    import sacrebleu
    from rouge_score import rouge_scorer

    a, r = "customer waits for the new card", "customer is waiting for a new card"
    expect = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(r, a)["rougeL"].fmeasure
    assert rouge_l(a, r) == pytest.approx(expect)
    # LCS by hand with stemming: customer, wait(s/ing), for, new, card = 5 of 6 and 7 tokens
    assert rouge_l(a, r) == pytest.approx(2 * (5 / 6) * (5 / 7) / (5 / 6 + 5 / 7))
    assert chrf(a, r) == pytest.approx(sacrebleu.sentence_chrf(a, [r]).score / 100)
    assert chrf(r, r) == pytest.approx(1.0)


def test_generation_field_scores_treat_null_as_a_value():
    free = free_text_fields(SCHEMA)
    assert free == {"summary"}
    wrong_amount = REF | {"amount": 12.5, "currency": "GBP"}  # predicts fields the reference leaves null
    s = field_scores(wrong_amount, REF, free)
    assert s["field.amount"] == 0.0 and s["field.currency"] == 0.0 and s["field.intent"] == 1.0
    assert s["field_f1"] == pytest.approx(4 / 6)  # 6 closed fields, 4 agree
    missing = {k: v for k, v in REF.items() if k != "reference"}  # leaves out a field: wrong too
    m = field_scores(missing, REF, free)
    assert m["field.reference"] == 0.0
    p, r = 5 / 5, 5 / 6
    assert m["field_f1"] == pytest.approx(2 * p * r / (p + r))
    assert field_scores(None, REF, free)["field_f1"] == 0.0
    assert field_scores(REF | {"summary": "Customer waiting for new card."}, REF, free)["field.summary"] < 1.0


def test_nested_field_f1_counts_each_slot_by_hand():
    """An intent-and-slots answer: one pair per leaf path, so one wrong slot costs one pair."""
    ref = {"intent": "flight", "slots": {"fromloc": "boston", "toloc": "denver", "date": "friday"}}
    got = {"intent": "flight", "slots": {"fromloc": "Boston ", "toloc": "dallas"}}
    s = field_scores(got, ref, set())
    p, r = 2 / 3, 2 / 4  # intent and slots.fromloc agree; 3 pairs answered, 4 wanted
    assert s["field_f1"] == pytest.approx(2 * p * r / (p + r)) == pytest.approx(4 / 7)
    assert s["field.slots.fromloc"] == 1.0 and s["field.slots.toloc"] == 0.0 and s["field.slots.date"] == 0.0
    assert "field.slots" not in s and s["field.intent"] == 1.0
    assert field_scores(ref, ref, set())["field_f1"] == 1.0
    # an empty slot map is a value: answering slots where there are none is wrong
    none = {"intent": "flight", "slots": {}}
    assert field_scores(none, none, set())["field_f1"] == 1.0
    assert field_scores(got, none, set())["field_f1"] == pytest.approx(
        2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2)
    )


def test_nested_lists_are_scored_as_multisets_of_their_items():
    s = field_scores({"tags": ["b", "A", "c"]}, {"tags": ["a", "b", "b"]}, set())
    assert s["field_f1"] == pytest.approx(2 / 3) and s["field.tags"] == pytest.approx(2 / 3)
    items = [{"name": "x", "qty": 1}, {"name": "y", "qty": 2}]
    assert field_scores({"items": items[::-1]}, {"items": items}, set())["field_f1"] == 1.0


def test_nested_schema_free_text_paths_and_shadow_agreement():
    schema = {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["flight", "fare"]},
            "slots": {
                "type": "object",
                "properties": {"note": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
        },
    }
    assert free_text_fields(schema) == {"slots.note"}
    one = json.dumps({"intent": "flight", "slots": {"city": "boston", "date": "friday"}})
    two = json.dumps({"intent": "flight", "slots": {"city": "boston", "date": "monday"}})
    assert agreement(one, two) == pytest.approx(2 / 3) and agreement(one, one) == 1.0


def test_generation_item_scores_mark_invalid_json_and_schema_breaks():
    task = Task("generation", SCHEMA, json_answers=True)
    good = item_scores(json.dumps(REF), json.dumps(REF), task)
    assert good["exact_match"] == good["json_valid"] == good["schema_valid"] == good["field_f1"] == 1.0
    assert item_scores(json.dumps(REF, indent=2), json.dumps(REF), task)["exact_match"] == 1.0  # same JSON
    broken = item_scores('{"intent": "card_arrival"', json.dumps(REF), task)
    assert broken["json_valid"] == broken["schema_valid"] == broken["field_f1"] == 0.0
    off_schema = item_scores(json.dumps(REF | {"urgency": "urgent"}), json.dumps(REF), task)
    assert off_schema["json_valid"] == 1.0 and off_schema["schema_valid"] == 0.0
    free = item_scores("It is on its way.", "It is on the way.", Task("generation"))
    assert "json_valid" not in free and free["exact_match"] == 0.0 and 0 < free["token_f1"] < 1


def test_generation_paired_continuous_test_is_wilcoxon_with_betting_bounds():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.9, 120)
    cand = np.clip(base + rng.normal(0.05, 0.1, 120), 0, 1)
    r = paired_test(cand, base, question="superiority")
    expect = sps.wilcoxon(cand - base, zero_method="zsplit", alternative="greater").pvalue
    assert r.p_value == pytest.approx(expect) and r.test.startswith("wilcoxon")
    assert r.delta == pytest.approx(float(np.mean(cand - base)))
    assert r.lo < r.delta < r.hi
    assert r.p_harm == pytest.approx(
        sps.wilcoxon(cand - base, zero_method="zsplit", alternative="less").pvalue
    )


def records(cand: list[float], base: list[float]) -> list[dict]:
    return [
        {"id": str(i), "slice": "all", "scores": {"candidate": {"token_f1": c, "json_valid": 1.0},
                                                   "baseline": {"token_f1": b, "json_valid": 0.5}}}
        for i, (c, b) in enumerate(zip(cand, base, strict=True))
    ]  # fmt: skip


def test_generation_gate_decides_from_continuous_scores_without_task_code():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 150).tolist()
    cand = np.clip(np.asarray(base) + 0.25, 0, 1).tolist()
    info = SuiteInfo("holdout", 150, True)
    outcome = scored_outcome("holdout", info, records(cand, base), "token_f1")
    assert outcome.metric == "token_f1" and outcome.others == {"json_valid": (1.0,) * 150}
    gate = GateParams(metric_floors={"token_f1": 0.5, "json_valid": 0.95})
    v = decide([outcome], (), gate, baseline_kind="base", license_="apache-2.0", forgetting=(0.5, 0.5),
               parity={"served_vs_reference": 1.0}, floors=dict(gate.metric_floors))  # fmt: skip
    by = {c.name: c for c in v.checks}
    assert by["holdout.token_f1"].passed and by["holdout.json_valid"].passed
    assert by["holdout.ab_vs_base"].passed and "wilcoxon" in by["holdout.ab_vs_base"].test
    floors = {"token_f1": 0.5, "schema_valid": 0.9}
    worse = decide([scored_outcome("holdout", info, records(base, cand), "token_f1")], (), gate,
                   baseline_kind="base", license_="apache-2.0", forgetting=(0.5, 0.5),
                   parity={"served_vs_reference": 1.0}, floors=floors)  # fmt: skip
    failed = {c.name: c.reason for c in worse.failed}
    assert "holdout.ab_vs_base" in failed and "holdout.token_f1" in failed
    assert "was not measured" in failed["holdout.schema_valid"]
    assert not worse.approved


def test_generation_evidence_outcomes_need_the_primary_score():
    ev = Evidence.__new__(Evidence)
    object.__setattr__(ev, "task", "generation")
    object.__setattr__(ev, "suites", {"holdout": SuiteInfo("holdout", 2, True)})
    recs = {"holdout": records([0.5, 0.7], [0.4, 0.4])}
    assert ev.outcomes(recs, "token_f1")[0].candidate.values == (0.5, 0.7)
    from tunegate.core.errors import DataError

    with pytest.raises(DataError, match="no 'field_f1' score"):
        ev.outcomes(recs, "field_f1")


def test_generation_jobs_merge_per_model_and_prompt_shape_and_split_back_in_order():
    """evaluate's jobs (model, "who|suite", prompts) become one engine call per model and prompt
    shape; the answers of a merged call are cut back into the jobs in their order and sizes."""
    from tunegate.evaluation.generation import merged_jobs
    from tunegate.evaluation.predictors import ModelRef

    cand = ModelRef("candidate", Path("b"), Path("a"), "lora:c", "t1")
    base = ModelRef("base", Path("b"), None, "base", "t0")
    turn = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    jobs = [
        (cand, "candidate|holdout", [turn("h1"), turn("h2")]),
        (cand, "candidate|shifted", [turn("s1")]),
        (base, "baseline|holdout", [turn("h1"), turn("h2")]),
        (base, "prompting|holdout", [turn("few h1"), turn("few h2")]),
        (base, "baseline|shifted", [turn("s1")]),
        (base, "prompting|shifted", [turn("few s1")]),
    ]
    groups = merged_jobs(jobs)
    shapes = [(ref.role, [name for name, _ in parts]) for ref, parts, _ in groups]
    assert shapes == [
        ("base", ["baseline|holdout", "baseline|shifted"]),
        ("base", ["prompting|holdout", "prompting|shifted"]),
        ("candidate", ["candidate|holdout", "candidate|shifted"]),
    ]
    for _, parts, prompts in groups:  # every job's prompts, in order, sized as declared
        start = 0
        for name, n in parts:
            assert prompts[start : start + n] == next(p for _, j, p in jobs if j == name)
            start += n
        assert start == len(prompts)


def test_generation_margin_is_tested_on_the_mean_where_most_answers_tie():
    """Per-item field F1 of two generation models mostly ties (the same answer, delta 0). A
    non-inferiority margin asks about the mean: a candidate 8 points worse on average must be
    significantly worse than a 1-point margin, whatever the ties. The signed-rank test of the
    shifted differences cannot see it (every tie becomes a win): that is why a margin gets the
    betting test of the mean, while margin 0 keeps Wilcoxon."""
    rng = np.random.default_rng(3)
    n = 205
    base = rng.uniform(0.5, 1.0, n)
    cand = base.copy()
    hit = rng.choice(n, 30, replace=False)  # 15% of items broken, the rest identical answers
    cand[hit] = np.clip(base[hit] - 0.55, 0, 1)
    d = cand - base
    assert (d == 0).mean() > 0.8 and d.mean() < -0.07
    assert sps.wilcoxon(d + 0.01, zero_method="zsplit", alternative="less").pvalue > 0.99  # the trap
    r = paired_test(cand, base, question="non_inferiority", margin=0.01)
    assert r.test.startswith("betting test")
    assert r.p_harm < 1e-3 and r.hi < -0.01  # harm shown, by the interval too
    inside = paired_test(cand, base, question="non_inferiority", margin=0.2)
    assert inside.p_value < 1e-3 and inside.lo > -0.2  # shown inside a wide margin
    assert paired_test(cand, base, question="superiority").test.startswith("wilcoxon")
    same = paired_test(base, base, question="non_inferiority", margin=0.03)
    assert same.p_value < 0.05 < same.p_harm == 1.0 and same.delta == 0.0 and same.lo > -0.03
    # 205 identical answers cannot rule out that 1% of items score 1 lower (0.99^205 = 0.13):
    # a 0.01 margin is not shown, whatever Student's t with no spread would say
    tight = paired_test(base, base, question="non_inferiority", margin=0.01)
    assert tight.lo < -0.01 and tight.p_value > 0.05


def test_nested_report_has_a_per_path_table_over_the_items_holding_each_path():
    from tunegate.evaluation.report_generation import _paths_section

    ref = {"intent": "flight", "slots": {"city": "boston"}}
    rows = []
    for i, got in enumerate(
        [ref, {"intent": "flight", "slots": {"city": "denver"}}, {"intent": "fare", "slots": {}}]
    ):
        want = ref if i < 2 else {"intent": "fare", "slots": {}}
        rows.append(
            {
                "scores": {
                    "candidate": field_scores(got, want, set()),
                    "baseline": field_scores({}, want, set()),
                }
            }
        )
    table = "\n".join(_paths_section(rows))
    assert "| `intent` | 3 | 1.000 | 0.000 |" in table
    assert "| `slots.city` | 2 | 0.500 | 0.000 |" in table and "| `slots` | 1 | 1.000 | 0.000 |" in table
