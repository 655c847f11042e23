"""The watch loop survives any error and /readyz tells a stalled loop (tunegate/serving/runtime.py).

The loop runs here on a stand-in runtime (no engine, no registry: the loop's own logic is
what is tested; the real service runs it in tests/serving/test_service.py)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from tunegate.core.params import Params, ServeParams
from tunegate.serving.runtime import STALLED_ROUNDS, Runtime


def stand_in(failures: list[BaseException]) -> SimpleNamespace:
    rounds = []

    def close_lost(_after):
        rounds.append(time.monotonic())
        if failures:
            raise failures.pop(0)
        return 0

    rt = SimpleNamespace(
        params=Params(serve=ServeParams(watch_seconds=0.01)),
        log=SimpleNamespace(close_lost=close_lost),
        snapshot=lambda: (),
        seen=(),
        background=[],
        watch_error=None,
        watched_at=None,
        rounds=rounds,
    )
    rt.watch_health = lambda: Runtime.watch_health(rt)
    return rt


def test_watch_loop_survives_an_oserror_and_reports_it_until_a_round_succeeds():
    rt = stand_in([OSError(30, "Read-only file system: 'logs/status.json'"), RuntimeError("a bug")])
    errors = []

    async def run():
        task = asyncio.ensure_future(Runtime.watch(rt))
        rt.background = [task]
        while len(rt.rounds) < 2:
            await asyncio.sleep(0.005)
        errors.append(rt.watch_health())
        while len(rt.rounds) < 4:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        alive = not task.done()
        task.cancel()
        return alive

    assert asyncio.run(run())  # neither error ended the loop
    said = errors[0]
    assert said["state"] == "failing" and ("OSError" in said["error"] or "RuntimeError" in said["error"])
    assert rt.watch_error is None  # a later round succeeded
    assert rt.watch_health()["state"] == "stalled"  # the task is cancelled now: gone


def test_a_watch_loop_silent_for_too_long_is_stalled():
    rt = stand_in([])
    rt.watched_at = time.monotonic() - 601
    assert rt.watch_health()["state"] == "stalled"
    rt.watched_at = time.monotonic() - 5 * rt.params.serve.watch_seconds
    assert rt.watch_health()["state"] == "ok" and STALLED_ROUNDS == 10
