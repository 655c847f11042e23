"""LoRA for the train stage: PEFT's config from ``train.lora``, and params checked against
the base model's architecture (target modules must be its linear layers) before any
weights load, reported with every other params problem at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunegate.core.errors import ConfigError
from tunegate.core.params import Params, load_params
from tunegate.core.train_params import LoraParams, TrainParams


def lora_config(lp: LoraParams) -> Any:
    """The PEFT LoraConfig for params.yaml's train.lora section."""
    from peft import LoraConfig

    return LoraConfig(
        r=lp.r,
        lora_alpha=lp.alpha,
        lora_dropout=lp.dropout,
        target_modules=list(lp.target_modules),
        task_type="CAUSAL_LM",
    )


def linear_module_names(base_dir: Path) -> set[str]:
    """Names of the linear layers in the base architecture, without loading any weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def target_module_problems(modules: list[str], base_dir: Path) -> list[str]:
    known = linear_module_names(base_dir)
    unknown = [m for m in modules if m not in known]
    if not unknown:
        return []
    return [
        f"train.lora.target_modules: {unknown} not in the base model; its linear layers are {sorted(known)}"
    ]


def load_checked_params(path: str | Path, base_dir: Path) -> Params:
    """load_params plus the checks that need the base architecture, all reported together."""
    problems: list[str] = []
    params = None
    try:
        params = load_params(path)
    except ConfigError as err:
        problems.extend(err.problems)
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    train = raw.get("train") or {}
    if train.get("method", "lora") == "lora":
        modules = (train.get("lora") or {}).get("target_modules") or list(TrainParams().lora.target_modules)
        if (base_dir / "config.json").exists():
            problems.extend(target_module_problems(list(modules), base_dir))
    if problems or params is None:
        raise ConfigError(problems)
    return params
