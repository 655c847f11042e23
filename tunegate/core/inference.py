"""How tunegate asks vLLM for answers: the engine's arguments and the constrained label sampling.

The evaluate stage (``tunegate/evaluation/vllm_predict.py``) and the service (``tunegate/serving/engine.py``,
``tunegate/serving/runtime.py``) both build their engines and ``/classify`` sampling here, so that
"served equals evaluated" holds by construction, not by two copies kept in step. vLLM is
imported inside the functions: the kernel loads without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ranks vLLM's LoRA kernels accept; an adapter is padded to the next one."""


def supported_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of ``rank``."""
    return next(r for r in LORA_RANKS if r >= rank)


def engine_args(
    base: Path, *, max_model_len: int, max_lora_rank: int = 0, max_loras: int = 0
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` and ``vllm.AsyncEngineArgs``: greedy answers are
    reproducible (seed 0), float32 on the CPU backend, no remote code; the context is capped
    by the base model's own. ``max_loras`` 0: no LoRA support (the base model alone)."""
    from vllm.platforms import current_platform

    cpu = current_platform.is_cpu()
    context = read_json(base / "config.json").get("max_position_embeddings") or max_model_len
    lora = {"enable_lora": True, "max_lora_rank": supported_rank(max_lora_rank), "max_loras": max_loras}
    return {
        "model": str(base),
        "dtype": "float32" if cpu else "bfloat16",
        "max_model_len": min(max_model_len, int(context)),
        "enforce_eager": cpu,
        "enable_prefix_caching": True,
        "trust_remote_code": False,
        "seed": 0,
        **(lora if max_loras else {}),
    }


def classify_sampling(labels: tuple[str, ...]) -> Any:
    """Greedy decoding restricted to the label set, one token of room for the end, with the
    chosen tokens' logprobs (after the structured-output mask: the raw answer confidence)."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return SamplingParams(
        temperature=0.0,
        max_tokens=max(len(label) for label in labels) + 1,  # any tokenization, then the end
        logprobs=0,
        structured_outputs=StructuredOutputsParams(choice=list(labels)),
    )


def generate_sampling(
    max_tokens: int, schema: dict[str, Any] | None = None, json_answers: bool = False
) -> Any:
    """Greedy decoding of a generation answer: constrained to `schema` when there is one (vLLM
    structured outputs, ``json=``), to some JSON object when answers are JSON without a schema,
    else free text. The evaluate stage and ``/generate`` ask the same way."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    constraint = None
    if schema is not None:
        constraint = StructuredOutputsParams(json=schema)
    elif json_answers:
        constraint = StructuredOutputsParams(json_object=True)
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, structured_outputs=constraint)
