"""The generation kind's fast decoder (tunegate/evaluation/chat_decode.py) picks exactly the tokens
transformers ``generate`` picks, on a real (tiny, random) model, constrained or not."""

import pytest

from tests.conftest import ROOT
from tunegate.core.artifacts import read_json, read_jsonl
from tunegate.core.greedy import generate_text
from tunegate.evaluation.chat_decode import greedy_chat
from tunegate.evaluation.hf_predict import grammar_processors, json_grammar, load_model


@pytest.fixture(scope="module")
def chats(tiny_base):
    model, tok = load_model(tiny_base)
    records = read_jsonl(ROOT / "data/tickets/tickets.jsonl")[:9]
    records += read_jsonl(ROOT / "data/tickets/shifted.jsonl")[:4]  # other lengths, same system turn
    rendered = [
        tok.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=False)
        for r in records
    ]
    return model, tok, rendered


def reference(model, tok, prompts, max_new_tokens, grammar=None):
    processors = grammar_processors(grammar) if grammar is not None else None
    return generate_text(model, tok, prompts, max_new_tokens, batch_size=4, processors=processors)


@pytest.mark.slow
def test_generation_fast_decoder_matches_generate_under_the_schema(chats):
    model, tok, prompts = chats
    grammar = json_grammar(tok, model.config.vocab_size, read_json(ROOT / "data/tickets/schema.json"))
    fast = greedy_chat(model, tok, prompts, 20, batch_size=5, grammar=grammar)
    assert fast == reference(model, tok, prompts, 20, grammar)
    assert all(a.lstrip().startswith("{") for a in fast)  # the grammar held: a JSON object begins
    assert len(set(fast)) > 1  # the rows' answers are their own, not one answer copied


@pytest.mark.slow
def test_generation_fast_decoder_drops_rows_that_end_and_keeps_the_order(chats):
    """Under a grammar that allows a few tokens at each step and the end token after the first
    (the random model then ends rows at different steps), rows leave the batch as they end;
    the answers are still generate's, in the prompts' order."""
    import xgrammar as xgr

    model, tok, prompts = chats
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size)
    grammar = xgr.GrammarCompiler(info).compile_regex(r"[ab]{1,40}")
    fast = greedy_chat(model, tok, prompts, 30, batch_size=8, grammar=grammar)
    assert fast == reference(model, tok, prompts, 30, grammar)
    lengths = {len(tok(a, add_special_tokens=False)["input_ids"]) for a in fast}
    assert len(lengths) > 1, fast  # rows ended at different steps
    unconstrained = greedy_chat(model, tok, prompts, 6, batch_size=16)
    assert unconstrained == reference(model, tok, prompts, 6)
