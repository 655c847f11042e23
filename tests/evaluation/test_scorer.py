"""The fast evaluation path gives exactly the reference's greedy label-constrained answers."""

import pytest

from evaluation.hf_predict import load_model, predict, template_for
from evaluation.scorer import common_prefix, score
from tunegate.artifacts import read_jsonl


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
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("with_adapter", [False, True])
def test_scorer_matches_reference_generate(tiny_base, tiny_adapter, prepared_sample, with_adapter):
    adapter = tiny_adapter if with_adapter else None
    template = template_for(tiny_base, prepared_sample / "labels.json")
    rows = read_jsonl(prepared_sample / "holdout.jsonl")[:40]
    rows += read_jsonl(prepared_sample / "shifted.jsonl")[:24]
    reference = predict(*load_model(tiny_base, adapter), template, rows, batch_size=8)
    fast = score(*load_model(tiny_base, adapter, merge=True), template, rows, batch_size=16)
    assert [p.id for p in fast] == [r["id"] for r in rows]
    assert [p.label for p in fast] == [p.label for p in reference]
    if with_adapter:  # the random adapter spreads answers over labels: not trivially constant
        assert len({p.label for p in fast}) > 1
