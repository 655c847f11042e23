"""The optional judge (tunegate/evaluation/judge.py): both orders asked, a tie when they disagree,
position consistency and a sign test beside the verdicts."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from tunegate.evaluation.judge import combine, parse, question, summarize


def test_generation_judge_reads_one_letter_and_ties_when_the_orders_disagree():
    assert parse(" a.") == "A" and parse("B)") == "B" and parse("t") == "T" and parse("Tie") == "T"
    assert parse("Answer A") is None and parse("Both") is None and parse("") is None and parse(None) is None
    assert combine("A", "B") == ("candidate", True)  # the candidate first, then second: preferred both times
    assert combine("B", "A") == ("baseline", True)
    assert combine("A", "A") == ("tie", False)  # it preferred whatever came first
    assert combine("T", "T") == ("tie", True)
    assert combine(None, "B") == ("tie", False)  # an unreadable reply decides nothing
    turns = question({"input": "card gone", "reference": "{}"}, "first answer", "second answer")
    assert (
        "Answer A:\nfirst answer" in turns[1]["content"] and "Answer B:\nsecond answer" in turns[1]["content"]
    )


def test_generation_judge_summary_counts_and_sign_test():
    per_item = [{"verdict": v, "consistent": c, "first": "A", "second": "B"} for v, c in
                [("candidate", True)] * 7 + [("baseline", True)] * 2 + [("tie", False)] * 3]  # fmt: skip
    per_item[-1]["first"] = None
    s = summarize(per_item)
    assert (s["items"], s["candidate_wins"], s["baseline_wins"], s["ties"]) == (12, 7, 2, 3)
    assert s["position_consistency"] == pytest.approx(9 / 12, abs=1e-4) and s["unreadable_replies"] == 1
    assert s["sign_test_p"] == pytest.approx(binomtest(7, 9, 0.5).pvalue)
