"""Grouped key/value heads read in place by PyTorch's attention, for the fast evaluation paths.

Models with grouped-query attention (SmolLM2-135M: 9 query heads on 3 key/value heads) keep
one key and value per group in their cache. Whenever an attention mask is given,
transformers' ``sdpa`` implementation copies every cached key and value once per query head
of its group before calling ``scaled_dot_product_attention``; with the padding masks of
batched decoding that copy, of the whole cache in every layer and pass, cost more than the
attention itself on this CPU (26 % of a decoding step). ``grouped_heads_in_place`` switches a
model to an implementation that passes the grouped heads as they are (``enable_gqa``): the
same arithmetic without the copy. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

GQA_SDPA = "tunegate_sdpa_gqa"


def sdpa_gqa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature; inference only (no dropout)."""
    import torch

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, scale=scaling,
        is_causal=bool(causal and attention_mask is None and query.shape[2] > 1),
        enable_gqa=query.shape[1] != key.shape[1],
    )  # fmt: skip
    return out.transpose(1, 2).contiguous(), None


@contextmanager
def grouped_heads_in_place(model: Any) -> Iterator[None]:
    """Within the block, a model that runs transformers' ``sdpa`` runs ``sdpa_gqa`` (masks are
    built as for sdpa); any other implementation is left alone."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    previous = getattr(model.config, "_attn_implementation", None)
    if previous != "sdpa":
        yield
        return
    AttentionInterface.register(GQA_SDPA, sdpa_gqa)
    AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)
    model.set_attn_implementation(GQA_SDPA)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
