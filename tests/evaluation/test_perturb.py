import pytest

from tunegate.evaluation.perturb import PERTURBATIONS, perturb_suite

ROWS = [
    {
        "id": "r1",
        "text": "Hello, my card has not arrived after two weeks. Can you check?",
        "label": "card_arrival",
    },
    {"id": "r2", "text": "I want to close my account today please.", "label": "close_account"},
]


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_each_suite_changes_text_keeps_labels_and_is_seeded(name):
    a = perturb_suite(ROWS, name, seed=1)
    assert [r["label"] for r in a] == [r["label"] for r in ROWS]
    assert [r["id"] for r in a] == ["r1", "r2"]
    assert any(r["text"] != s["text"] for r, s in zip(a, ROWS, strict=True))
    assert perturb_suite(ROWS, name, seed=1) == a


def test_specific_edits():
    assert perturb_suite(ROWS, "no_punctuation", 0)[0]["text"] == (
        "Hello my card has not arrived after two weeks Can you check"
    )
    cut = perturb_suite(ROWS, "truncation", 0)[0]["text"]
    assert ROWS[0]["text"].startswith(cut) and len(cut.split()) == 7
    cased = perturb_suite(ROWS, "casing", 0)[1]["text"]
    assert cased in (ROWS[1]["text"].upper(), ROWS[1]["text"].lower())


def test_unknown_suite():
    with pytest.raises(KeyError, match="unknown perturbation 'emoji'"):
        perturb_suite(ROWS, "emoji", 0)


def test_typos_touch_about_the_declared_share_of_words():
    import random

    from tunegate.evaluation.perturb import typos

    text = " ".join(["payment"] * 2000)
    noisy = typos(text, random.Random(0), rate=0.08).split()
    changed = sum(a != b for a, b in zip(text.split(), noisy, strict=True))
    assert 0.05 < changed / 2000 < 0.11
