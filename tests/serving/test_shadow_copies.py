"""Shadow copies only for admitted requests, bounded, and cancelled with a request that got
no answer (tunegate/serving/app.py ``answered``, tunegate/serving/recording.py ``shadow``).

A stand-in engine here (an async generator that waits): what is tested is the admission,
the bound and the cancellation around it; the real engine answers shadow copies in
tests/serving/test_service.py (the test project has serve.shadow: [staging])."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from tunegate.core.params import Params, ServeParams
from tunegate.serving.api import ApiError
from tunegate.serving.app import answered
from tunegate.serving.recording import shadow


class Engine:
    def __init__(self, fail: set[str] = frozenset()):
        self.started, self.cancelled, self.fail = [], [], fail

    async def generate(self, prompt, sampling, request_id, lora):
        self.started.append(request_id)
        try:
            await asyncio.sleep(0.3 if "-shadow-" in request_id else 0.05)  # a copy outlives its request
            if request_id in self.fail:
                raise RuntimeError("engine failure")
            yield SimpleNamespace(outputs=[SimpleNamespace(text="ok", logprobs=None, token_ids=[1])])
        except asyncio.CancelledError:
            self.cancelled.append(request_id)
            raise


def stand_in(engine: Engine, max_concurrency: int = 2) -> SimpleNamespace:
    written = []
    return SimpleNamespace(
        params=Params(serve=ServeParams(shadow=["staging"], max_concurrency=max_concurrency)),
        in_flight=0,
        shadows=set(),
        engine=engine,
        live={"staging": SimpleNamespace(stage="staging", version="v2", lora=None)},
        writer=SimpleNamespace(write=written.append),
        written=written,
    )


class Caller:
    async def is_disconnected(self) -> bool:
        return False


PRODUCTION = SimpleNamespace(stage="production", version="v1", lora=None)


async def ask(rt, request_id: str):
    def copies():
        return shadow(rt, PRODUCTION, "hello", None, request_id, "chat")

    return await answered(Caller(), rt, PRODUCTION, "hello", None, request_id, copies)


def test_shadow_copies_only_for_the_requests_admitted():
    """24 concurrent requests at max_concurrency 2: 22 refused with 429, and only the 2
    admitted ones started a shadow copy."""
    engine = Engine()
    rt = stand_in(engine)

    async def run():
        results = await asyncio.gather(*(ask(rt, f"r{i}") for i in range(24)), return_exceptions=True)
        await asyncio.gather(*list(rt.shadows), return_exceptions=True)
        return results

    results = asyncio.run(run())
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(refused) == 22 and {r.status for r in refused} == {429}
    copies = [r for r in engine.started if "-shadow-" in r]
    assert len(copies) == 2 and len(rt.written) == 2 and rt.in_flight == 0


def test_shadow_copies_are_cancelled_with_a_request_that_got_no_answer():
    engine = Engine(fail={"r0"})
    rt = stand_in(engine)

    async def run():
        with pytest.raises(RuntimeError):
            await ask(rt, "r0")
        await asyncio.sleep(0.4)

    asyncio.run(run())
    assert engine.cancelled == ["r0-shadow-staging"] and rt.written == []  # nothing to compare


def test_shadow_copies_are_bounded():
    engine = Engine()
    rt = stand_in(engine, max_concurrency=3)
    rt.shadows = {object(), object(), object()}  # as many copies running as requests may
    assert shadow(rt, PRODUCTION, "hello", None, "r9", "chat") == []
