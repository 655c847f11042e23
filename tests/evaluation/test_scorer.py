"""The fast evaluation path gives exactly the reference's greedy label-constrained answers."""

import pytest

from tunegate.core.artifacts import read_jsonl
from tunegate.evaluation.hf_predict import load_model, predict, template_for
from tunegate.evaluation.scorer import common_prefix, score


def test_common_prefix_leaves_every_sequence_a_token():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix([[1, 2], [1, 2]]) == 1  # never the whole of the shortest sequence
    assert common_prefix([[7], [7, 8]]) == 0
    assert common_prefix([]) == 0


@pytest.fixture(scope="module")
def tiny_adapter(tiny_base, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # B starts at zero (a no-op adapter); give it small random weights
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("with_adapter", [False, True])
def test_scorer_matches_reference_generate(
    tiny_base, tiny_adapter, prepared_sample, with_adapter, monkeypatch
):
    import tunegate.evaluation.scorer as scorer

    outcomes = []

    def counted(*args, **kwargs):
        verified = scorer_verify(*args, **kwargs)
        outcomes.append(verified is not None)
        return verified

    scorer_verify = scorer.verify_drafts
    monkeypatch.setattr(scorer, "verify_drafts", counted)
    adapter = tiny_adapter if with_adapter else None
    template = template_for(tiny_base, prepared_sample / "labels.json")
    rows = read_jsonl(prepared_sample / "holdout.jsonl")[:40]
    rows += read_jsonl(prepared_sample / "shifted.jsonl")[:24]
    reference = predict(*load_model(tiny_base, adapter), template, rows, batch_size=8)
    fast = score(*load_model(tiny_base, adapter, merge=True), template, rows, batch_size=16)
    assert [p.id for p in fast] == [r["id"] for r in rows]
    assert [p.label for p in fast] == [p.label for p in reference]
    # The raw confidence (the calibration's input) is the same path probability on both.
    assert [p.confidence for p in fast] == pytest.approx([p.confidence for p in reference], abs=1e-4)
    assert all(0 < p.confidence <= 1 for p in fast)
    merged = load_model(tiny_base, adapter, merge=True)  # without confidences: stops once settled
    plain = score(*merged, template, rows, batch_size=16, with_confidence=False)
    assert [p.label for p in plain] == [p.label for p in fast] and {p.confidence for p in plain} == {None}
    if with_adapter:  # the random adapter spreads answers over labels: not trivially constant
        assert len({p.label for p in fast}) > 1
    assert outcomes and not any(outcomes)  # random weights leave the labels' own tokens: stepped on


@pytest.mark.slow
def test_drafts_that_greedy_decoding_picks_are_kept_in_one_pass_with_the_same_answers(
    tiny_base, tiny_adapter, prepared_sample, monkeypatch
):
    """A trained model follows its labels' own tokens, and the scorer then verifies the rest
    of each answer in one pass. The tiny random model does not, so the drafts here are the
    paths step-by-step decoding took (one row per batch): every one must be kept, with the
    same labels and path probabilities as stepping."""
    import tunegate.evaluation.scorer as scorer
    from tunegate.evaluation.labels import LabelConstraint

    template = template_for(tiny_base, prepared_sample / "labels.json")
    rows = read_jsonl(prepared_sample / "holdout.jsonl")[:12]
    model, tokenizer = load_model(tiny_base, tiny_adapter, merge=True)
    real_decode, paths, current, outcomes = scorer.decode_batch, [], {}, []

    def recording(*args, **kwargs):
        out = real_decode(*args, **kwargs)
        paths.extend(answer for answer, _, _ in out)
        return out

    with monkeypatch.context() as m:
        m.setattr(scorer, "decode_batch", recording)
        m.setattr(scorer, "verify_drafts", lambda *args, **kwargs: None)
        stepped = scorer.score(model, tokenizer, template, rows, batch_size=1)
    queue = iter(paths)

    def drafting(*args, **kwargs):
        current["path"] = next(queue)
        return real_decode(*args, **kwargs)

    def draft(self, prefix):
        path, prefix = current["path"], list(prefix)
        return path[len(prefix) :] if path[: len(prefix)] == prefix and self.resolved(prefix) else []

    real_verify = scorer.verify_drafts
    monkeypatch.setattr(scorer, "decode_batch", drafting)
    monkeypatch.setattr(LabelConstraint, "draft", draft)

    def verify(*args, **kwargs):
        outcomes.append(real_verify(*args, **kwargs))
        return outcomes[-1]

    monkeypatch.setattr(scorer, "verify_drafts", verify)
    drafted = scorer.score(model, tokenizer, template, rows, batch_size=1)
    assert [p.label for p in drafted] == [p.label for p in stepped]
    assert [p.confidence for p in drafted] == pytest.approx([p.confidence for p in stepped], abs=1e-5)
    assert len(outcomes) >= 6 and all(v is not None for v in outcomes)  # every draft kept


@pytest.mark.slow
def test_vllm_engine_serves_base_and_adapter_in_one_engine(tiny_base, tiny_adapter, prepared_sample):
    """One vLLM engine answers for the base model and, per request, for the adapter, and
    both answer as the transformers + PEFT reference does.

    A tiny random model is the hard case: it is far from confident, so greedy decoding
    often prefers a non-canonical spelling of a label ("c" + "ard_..."), which vLLM's
    guided choice allows. The reference's label constraint has the same semantics
    (tunegate/evaluation/labels.py); with a canonical-tokens-only trie, agreement here was 0.0.
    """
    from tunegate.evaluation.predictors import ModelRef, vllm_classify

    template = template_for(tiny_base, prepared_sample / "labels.json")
    rows = read_jsonl(prepared_sample / "holdout.jsonl")[:16]
    cand = ModelRef("candidate", tiny_base, tiny_adapter, "lora:tiny", "")
    base = ModelRef("base", tiny_base, None, "base:tiny", "")
    timings: dict = {}
    served = vllm_classify([(cand, "cand", rows), (base, "base", rows)], template, 1, timings)
    assert set(timings["seconds"]) == {"cand", "base"}  # both jobs ran in the one engine
    reference = predict(*load_model(tiny_base), template, rows, batch_size=8)
    assert [p.label for p in served["base"]] == [p.label for p in reference]
    assert all(p.label in template.labels for p in served["cand"])  # structured outputs hold
    with_adapter = predict(*load_model(tiny_base, tiny_adapter), template, rows, batch_size=8)
    assert [p.label for p in served["cand"]] == [p.label for p in with_adapter]
    # vLLM reports logprobs after the structured-output mask; both other engines compute that.
    assert [p.confidence for p in served["cand"]] == pytest.approx(
        [p.confidence for p in with_adapter], abs=1e-3
    )
    assert [p.label for p in served["cand"]] != [p.label for p in served["base"]]  # the adapter was applied
