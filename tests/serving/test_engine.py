"""The engine wrapper's adapter identity: content, not name.

vLLM caches a LoRA by its integer id; an adapter re-registered under the same id keeps
serving the old weights. `Engine.load_adapter` derives the identity from the adapter's
content hash. vLLM itself is replaced here by a recorder of `add_lora` calls: what is
tested is the identity tunegate assigns (the real engine runs in test_service.py).
"""

import asyncio
import json
from types import SimpleNamespace

import pytest

from tunegate.core.errors import ArtifactError
from tunegate.serving.engine import Engine


def engine(calls: list) -> Engine:
    e = Engine.__new__(Engine)  # no vLLM engine: only the adapter bookkeeping runs

    async def add_lora(request):
        calls.append(request)

    e.llm, e.max_lora_rank, e._lora_ids = SimpleNamespace(add_lora=add_lora), 16, {}
    return e


def test_changed_content_is_a_new_adapter_and_the_same_content_is_the_same(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    calls: list = []
    e = engine(calls)
    first = asyncio.run(e.load_adapter("v1", "a" * 64, tmp_path))
    again = asyncio.run(e.load_adapter("v1", "a" * 64, tmp_path))
    changed = asyncio.run(e.load_adapter("v1", "b" * 64, tmp_path))  # same version name, other bytes
    assert first.lora_int_id == again.lora_int_id != changed.lora_int_id
    assert first.lora_name != changed.lora_name and changed.lora_name == "v1@bbbbbbbbbbbb"
    assert len(calls) == 3


def test_an_adapter_past_the_engines_rank_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 64}))
    with pytest.raises(ArtifactError, match=r"LoRA rank 64 > serve\.max_lora_rank"):
        asyncio.run(engine([]).load_adapter("v1", "a" * 64, tmp_path))
