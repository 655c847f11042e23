import pytest

from tunegate.evaluation.labels import LabelConstraint

# A toy vocabulary: every character, plus a few multi-character tokens; end token 0.
VOCAB = {ord(c): c for c in "acdhinrst_lo"} | {1: "car", 2: "ca", 3: "card", 4: "sh", 5: "zz", 0: "</s>"}


def encode(s: str) -> list[int]:
    """The 'canonical' tokenization: greedy longest match."""
    ids, i = [], 0
    while i < len(s):
        tid, text = max(((k, v) for k, v in VOCAB.items() if s.startswith(v, i)), key=lambda kv: len(kv[1]))
        ids.append(tid)
        i += len(text)
    return ids


@pytest.fixture
def choice() -> LabelConstraint:
    return LabelConstraint.build(["card", "cart", "cash"], VOCAB, end_token=0, encode=encode)


def test_any_token_that_keeps_the_answer_a_label_prefix_is_allowed(choice):
    # Not only the canonical first token ("card"/"car"/"ca"): any spelling, as xgrammar allows.
    assert choice.allowed([]) == sorted([ord("c"), 1, 2, 3])
    assert choice.allowed([ord("c")]) == sorted([ord("a")])
    assert choice.allowed([2]) == sorted([ord("r"), ord("s"), 4])  # "ca" + r | s | sh
    assert choice.allowed([1]) == sorted([ord("d"), ord("t")])
    assert choice.allowed([3]) == [0]  # a complete label: only the end token
    assert choice.allowed([3, 0]) == [0]
    assert 5 not in choice.texts  # tokens that cannot occur inside a label are never offered


def test_decode_maps_any_spelling_to_its_label(choice):
    assert choice.decode([2, 4, 0, 0]) == "cash"
    assert choice.decode([ord("c"), ord("a"), ord("s"), ord("h"), 0]) == "cash"
    assert choice.decode([1]) is None  # unfinished
    assert choice.decode([1, ord("s")]) is None  # not a label
    assert choice.max_len == 5  # four one-character tokens and the end


def test_label_that_is_a_prefix_of_another():
    c = LabelConstraint.build(["in", "inside"], VOCAB, end_token=0)
    assert c.allowed([ord("i"), ord("n")]) == sorted([0, ord("s")])
    assert c.decode([ord("i"), ord("n"), 0]) == "in"


def test_bad_label_sets_are_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        LabelConstraint.build(["a", "a"], VOCAB, end_token=0)
    with pytest.raises(ValueError, match="empty"):
        LabelConstraint.build([""], VOCAB, end_token=0)
    with pytest.raises(ValueError, match="do not spell it"):  # a tokenizer whose token texts are not faithful
        LabelConstraint.build(["cat"], VOCAB, end_token=0, encode=lambda s: [ord("c"), ord("a")])


def test_resolved_names_the_label_once_the_prefix_determines_it(choice):
    assert choice.resolved([2]) is None  # card, cart and cash still possible
    assert choice.resolved([2, ord("s")]) == "cash"  # the rest would be forced
    assert choice.resolved([1]) is None
    assert choice.resolved([1, ord("t")]) == "cart"
    assert choice.resolved([3, 0]) == "card"
    assert choice.resolved([ord("c"), 0]) is None  # ended early: not a label


def test_a_label_that_prefixes_another_is_not_resolved_early():
    c = LabelConstraint.build(["card", "card_lost"], VOCAB, end_token=0)
    assert c.resolved([3]) is None  # could still be card_lost
    assert c.resolved([3, 0]) == "card"
    assert c.resolved([3, ord("_")]) == "card_lost"


def test_draft_is_the_rest_of_the_settled_labels_own_tokens_and_the_end(choice):
    # encode: "cash" -> ca + sh, "card" -> card
    assert choice.draft([2, ord("s")]) == []  # settled on cash, but off its own tokens (ca + sh)
    assert choice.draft([2]) == []  # not settled: card, cart or cash
    assert choice.draft([3]) == [0]  # the whole label: only the end is left
    assert choice.draft([]) == []
    c = LabelConstraint.build(["cash", "card"], VOCAB, end_token=0, encode=encode)
    assert c.draft([2]) == []  # ca: cash or card
    assert c.draft([2, 4]) == [0]
    one = LabelConstraint.build(["cash"], VOCAB, end_token=0, encode=encode)
    assert one.draft([]) == [2, 4, 0]  # a single label is settled before its first token
    assert LabelConstraint.build(["cash"], VOCAB, end_token=0).draft([]) == []  # no encoder, no draft
