import pytest

from evaluation.labels import LabelTrie


# A toy tokenizer: one token per character, end token 0.
def encode(s: str) -> list[int]:
    return [ord(c) for c in s]


@pytest.fixture
def trie() -> LabelTrie:
    return LabelTrie.build(["card", "cart", "cash"], encode, end_token=0)


def test_allowed_tokens_follow_the_label_prefixes(trie):
    assert trie.allowed([]) == [ord("c")]
    assert trie.allowed(encode("ca")) == sorted([ord("r"), ord("s")])
    assert trie.allowed(encode("car")) == sorted([ord("d"), ord("t")])
    assert trie.allowed(encode("card")) == [0]  # complete label: only the end token
    assert trie.allowed([*encode("card"), 0]) == [0]


def test_decode_maps_answers_to_labels_or_none(trie):
    assert trie.decode([*encode("cash"), 0, 0]) == "cash"
    assert trie.decode(encode("car")) is None
    assert trie.decode(encode("cars")) is None
    assert trie.max_len == 5


def test_label_that_is_a_prefix_of_another():
    t = LabelTrie.build(["in", "inside"], encode, end_token=0)
    assert t.allowed(encode("in")) == sorted([0, ord("s")])
    assert t.decode([*encode("in"), 0]) == "in"


def test_ambiguous_or_empty_labels_are_rejected():
    with pytest.raises(ValueError, match="same tokens"):
        LabelTrie.build(["a", "a"], encode, end_token=0)
    with pytest.raises(ValueError, match="no tokens"):
        LabelTrie.build([""], encode, end_token=0)


def test_resolved_names_the_label_once_the_prefix_determines_it(trie):
    assert trie.resolved(encode("ca")) is None  # card, cart and cash still possible
    assert trie.resolved(encode("cas")) == "cash"  # the rest would be forced
    assert trie.resolved(encode("car")) is None
    assert trie.resolved(encode("cart")) == "cart"
    assert trie.resolved([*encode("card"), 0]) == "card"
    assert trie.resolved([ord("c"), 0]) is None  # ended early: not a label


def test_a_label_that_prefixes_another_is_not_resolved_early():
    t = LabelTrie.build(["card", "card_lost"], encode, end_token=0)
    assert t.resolved(encode("card")) is None  # could still be card_lost
    assert t.resolved([*encode("card"), 0]) == "card"
    assert t.resolved(encode("card_")) == "card_lost"
