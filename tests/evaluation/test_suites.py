"""Suites from data/prepared: what is built, and the errors for missing or foreign data."""

import pytest

from tunegate.core.errors import DataError
from tunegate.core.params import params_from_dict
from tunegate.evaluation.suites import build_suites, length_slice, unknown_labels


def test_length_slices_by_word_count():
    edges = (8, 20)
    assert length_slice("one two three", edges) == "words<=8"
    assert length_slice(" ".join(["w"] * 9), edges) == "words9-20"
    assert length_slice(" ".join(["w"] * 20), edges) == "words9-20"
    assert length_slice(" ".join(["w"] * 21), edges) == "words>20"
    assert length_slice("a b", ()) == "all"


def test_suites_from_the_sample(prepared_sample):
    params = params_from_dict({"eval": {"perturbations": ["typos", "casing"], "perturbation_rows": 30}})
    suites = build_suites(prepared_sample, params)
    assert [s.name for s in suites] == ["holdout", "shifted", "perturb_typos", "perturb_casing"]
    assert [s.kind for s in suites] == ["holdout", "shifted", "perturbation", "perturbation"]
    assert [s.versus_baseline for s in suites] == [True, True, False, False]
    typos = suites[2].rows
    assert len(typos) == 30
    assert sum(r["text"] != r["source_text"] for r in typos) > 15  # most rows changed
    again = build_suites(prepared_sample, params)
    assert again[2].rows == typos  # seeded: the same suite every time


def test_shifted_suite_is_absent_when_not_configured(prepared_sample):
    params = params_from_dict({"data": {"shifted_source": None}})
    assert "shifted" not in [s.name for s in build_suites(prepared_sample, params)]


def test_missing_suite_file_is_a_precise_error(tmp_path):
    with pytest.raises(DataError, match=r"holdout\.jsonl: the hold-out suite file is missing"):
        build_suites(tmp_path, params_from_dict({}))


def test_labels_the_candidate_was_not_trained_on_are_named(prepared_sample):
    suites = build_suites(prepared_sample, params_from_dict({"eval": {"perturbations": []}}))
    assert unknown_labels(suites, ("card_arrival",))["holdout"][0] != "card_arrival"
    everything = tuple({r["label"] for s in suites for r in s.rows})
    assert unknown_labels(suites, everything) == {}
