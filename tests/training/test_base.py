"""The base stage: real GGUF -> safetensors (via the pipeline fixture), and what it refuses."""

from __future__ import annotations

import json

import pytest

from tunegate.core.artifacts import file_hashes, read_json, verify_hashes
from tunegate.core.errors import ArtifactError
from tunegate.training.base import check_safe, drop_loading_settings
from tunegate.training.base import main as base_main


@pytest.mark.slow
def test_gguf_becomes_a_safetensors_checkpoint_with_card(project):
    out = project / "models/base"
    names = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in names and "tokenizer.json" in names and "config.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    card = read_json(out / "card.json")
    assert card["license"] == "apache-2.0"
    assert card["architecture"] == "LlamaForCausalLM"
    assert len(card["source_sha256"]) == 64
    verify_hashes(out, card["files"])
    assert "quantization_config" not in read_json(out / "config.json")
    assert "local_files_only" not in read_json(out / "tokenizer_config.json")


@pytest.mark.slow
def test_converted_model_answers_a_general_question(project):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = project / "models/base"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "paris" in answer.lower()


@pytest.mark.slow
def test_local_folder_source_is_copied_and_hashed(project, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        f"base_model:\n  source: {project / 'models/base'}\n  gguf_file: null\n  license: mit\n"
    )
    base_main(["--params", str(params), "--out", str(tmp_path / "base")])
    card = read_json(tmp_path / "base/card.json")
    assert card["files"] == file_hashes(project / "models/base")
    assert card["license"] == "mit"
    # The stage is reproducible to the byte (no time, host or revision in its card), so a
    # rerun leaves DVC's hash, and with it the fine-tune downstream, unchanged.
    assert {"created_at", "git_revision", "platform"}.isdisjoint(card["environment"])
    base_main(["--params", str(params), "--out", str(tmp_path / "again")])
    assert file_hashes(tmp_path / "again", exclude=()) == file_hashes(tmp_path / "base", exclude=())


@pytest.mark.parametrize("name", ["pytorch_model.bin", "pytorch_model.BIN", "weights.Pt"])
def test_pickle_weights_are_refused(tmp_path, name):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / name).write_bytes(b"\x80\x04not really")
    with pytest.raises(ArtifactError, match="pickle-format weights"):
        check_safe(tmp_path, None)


@pytest.mark.parametrize("config", ["config.json", "tokenizer_config.json"])
def test_remote_code_is_refused_wherever_it_is_mapped(tmp_path, config):
    (tmp_path / config).write_text(json.dumps({"auto_map": {"AutoModel": "modeling.X"}}))
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    with pytest.raises(ArtifactError, match=f"{config}: maps to custom code"):
        check_safe(tmp_path, None)


def test_an_empty_weights_file_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"model\.safetensors is empty or truncated"):
        check_safe(tmp_path, None)


def test_missing_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="no safetensors weights"):
        check_safe(tmp_path, "x.gguf")


def test_tampered_file_fails_verification(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"weights")
    hashes = file_hashes(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(b"weights, edited")
    with pytest.raises(ArtifactError, match="sha256 differs"):
        verify_hashes(tmp_path, hashes)


def test_the_tokenizer_config_is_the_same_bytes_whether_the_hub_was_offline_or_not(tmp_path):
    """transformers writes local_files_only (HF_HUB_OFFLINE, which make sets) into the saved
    tokenizer config: kept, one GGUF gave two base model ids, one per way of running the stage."""
    written = {}
    for offline in (True, False):
        config = tmp_path / f"{offline}" / "tokenizer_config.json"
        config.parent.mkdir()
        settings = {"model_max_length": 8192, "local_files_only": offline, "eos_token": "x"}
        config.write_text(json.dumps(settings))
        drop_loading_settings(config)
        written[offline] = config.read_bytes()
    assert written[True] == written[False]
    assert json.loads(written[True]) == {"model_max_length": 8192, "eos_token": "x"}
