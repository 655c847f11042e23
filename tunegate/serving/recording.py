"""Every request on the record: admission, the request log's row, streams, shadow copies.

A request is *admitted* once it is authorised and a release is chosen for it (`admit`).
From then on its row exists: `recorded` opens it and completes it with the outcome, be it
an answer, a 4xx, a 429, a client that hung up (499) or an engine failure (500, which the
caller sees as a clear 500 and the canary judge counts). A stream's row is completed when
the stream ends, however it ends (`LoggedStream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from tunegate.core.prompt import answer_confidence
from tunegate.serving.api import ApiError, error_body
from tunegate.serving.auth import identity, public_auth
from tunegate.serving.logwriter import LogUnavailable
from tunegate.serving.requestlog import OPEN, Entry, caller_key
from tunegate.serving.runtime import Live, Runtime, Slot, complete

log = logging.getLogger(__name__)


def admit(request: Request, rt: Runtime, model: str, user: str | None, endpoint: str) -> tuple[Live, Entry]:
    """Authorise, route, and describe the request for the log (not yet written)."""
    privileged = public_auth(request, rt)
    try:
        rt.writer.room()  # a request that could not be logged is not served
    except LogUnavailable as err:
        raise ApiError(503, str(err), "service_unavailable") from err
    caller = user or request.headers.get("x-caller-id")
    if caller is not None and len(caller) > 256:
        raise ApiError(400, "the caller id (user or X-Caller-Id) is longer than 256 characters")
    public = rt.params.serve.public_model
    if model == public:
        live, pinned = rt.routed(caller), False
    elif model.startswith(public + ":"):
        if not privileged:
            raise ApiError(
                403 if request.headers.get("authorization") else 401,
                f"pinning a stage ({model}) needs the admin token; callers use {public!r}",
                "forbidden",
            )
        live, pinned = rt.pinned(model.split(":", 1)[1]), True
    else:
        known = ", ".join(rt.model_names(privileged)) or "nothing yet"
        raise ApiError(404, f"unknown model {model!r}; this service serves {known}", "model_not_found")
    # `caller` (self-asserted) keeps a caller on its release; `client` (its API key, else its
    # address) is who the request is to the canary judge.
    who = identity(request, rt, privileged)
    entry = Entry(
        uuid.uuid4().hex, endpoint, OPEN, caller=caller_key(caller, rt.secret), stage=live.stage,
        version=live.version, pinned=pinned, client=caller_key(who, rt.secret),
    )  # fmt: skip
    return live, entry


def headers(live: Live, request_id: str) -> dict[str, str]:
    return {"X-Tunegate-Version": live.version, "X-Tunegate-Stage": live.stage, "X-Request-Id": request_id}


def outcome(entry: Entry, err: BaseException) -> ApiError | None:
    """Record how a request failed; returns the error to raise instead, if any."""
    if isinstance(err, ApiError):
        entry.status, entry.error = err.status, err.message
        return None
    if isinstance(err, asyncio.CancelledError | GeneratorExit):
        entry.status, entry.error = 499, "client disconnected"
        return None
    log.error("request %s failed: %s: %s", entry.request_id, type(err).__name__, err)
    entry.status, entry.error = 500, f"{type(err).__name__}: {err}"
    return ApiError(
        500, f"the engine failed to answer request {entry.request_id}; it is logged", "server_error"
    )


def opened(rt: Runtime, entry: Entry) -> str:
    """The request's row queued; 503 when the queue filled since the admission check (a
    request that could not be logged is not served, at every point)."""
    try:
        return rt.writer.begin(entry)
    except LogUnavailable as err:
        raise ApiError(503, str(err), "service_unavailable") from err


@contextlib.asynccontextmanager
async def recorded(rt: Runtime, entry: Entry) -> AsyncIterator[Entry]:
    """The request's row: opened now, completed with the outcome however the block ends."""
    started = time.perf_counter()
    row = opened(rt, entry)
    try:
        yield entry
        entry.status = 200
    except BaseException as err:
        instead = outcome(entry, err)
        if instead is not None:
            raise instead from err
        raise
    finally:
        entry.latency_ms = (time.perf_counter() - started) * 1000
        rt.finish(row, entry)


class LoggedStream(StreamingResponse):
    """A server-sent-event stream whose log row and capacity slot are released when the
    response ends, whether the stream finished, failed, or the client hung up before or
    during it (Starlette may never start the generator, or leave it suspended)."""

    @classmethod
    def start(cls, rt: Runtime, live: Live, entry: Entry, chunks: Callable[[], AsyncIterator[str]]):
        slot = Slot(rt)
        started = time.perf_counter()
        row = opened(rt, entry)
        try:
            slot.__enter__()  # 429 before any byte is sent
        except ApiError as err:
            outcome(entry, err)
            entry.latency_ms = (time.perf_counter() - started) * 1000
            rt.finish(row, entry)
            raise
        stream = cls(
            _guarded(entry, chunks()), media_type="text/event-stream", headers=headers(live, entry.request_id)
        )
        stream.rt, stream.entry, stream.row, stream.slot, stream.started = rt, entry, row, slot, started
        stream.copies = []
        return stream

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except BaseException as err:
            if self.entry.status == OPEN and not hung_up(err):
                outcome(self.entry, err)
            raise
        finally:
            with contextlib.suppress(BaseException):
                await self.body_iterator.aclose()  # aborts the generation in the engine
            if self.entry.status == OPEN:  # never started, or left suspended by a hang-up
                self.entry.status, self.entry.error = 499, "client disconnected"
            if self.entry.status != 200:
                cancel(self.copies)
            self.slot.__exit__()
            self.entry.latency_ms = (time.perf_counter() - self.started) * 1000
            self.rt.finish(self.row, self.entry)


def hung_up(err: BaseException) -> bool:
    from starlette.requests import ClientDisconnect

    return isinstance(err, OSError | ClientDisconnect | asyncio.CancelledError | GeneratorExit)


async def _guarded(entry: Entry, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """The stream's chunks; an engine failure mid-stream ends it with an error event."""
    try:
        async for chunk in chunks:
            yield chunk
        entry.status = 200
    except Exception as err:
        instead = outcome(entry, err)
        if instead is None:
            raise
        yield f"data: {json.dumps(error_body(instead.message, instead.kind))}\n\n"
    except BaseException as err:
        outcome(entry, err)
        raise
    finally:
        with contextlib.suppress(BaseException):
            await chunks.aclose()


def shadow(
    rt: Runtime, served: Live, prompt: str, sampling: Any, request_id: str, endpoint: str, label_of=None
) -> list[asyncio.Future]:
    """Copies of an admitted request (call it holding the request's capacity slot) to the
    shadow stages (serve.shadow): answers logged, never returned. At most
    serve.max_concurrency copies run at once (past that a copy is skipped, and counted in
    the log); the caller cancels them when its request ends without an answer (`cancel`)."""
    started_copies = []
    for stage in rt.params.serve.shadow:
        target = rt.live.get(stage)
        if target is None or target.version == served.version:
            continue
        if len(rt.shadows) >= rt.params.serve.max_concurrency:
            log.info("shadow copy of %s to %s skipped: %d copies running", request_id, stage, len(rt.shadows))
            continue
        task = asyncio.ensure_future(_copy(rt, target, prompt, sampling, request_id, endpoint, label_of))
        rt.shadows.add(task)
        task.add_done_callback(rt.shadows.discard)
        started_copies.append(task)
    return started_copies


def cancel(copies: list[asyncio.Future]) -> None:
    """End a request's shadow copies (its request ended without an answer)."""
    for task in copies:
        task.cancel()


async def _copy(
    rt: Runtime, target: Live, prompt: str, sampling: Any, request_id: str, endpoint: str, label_of
):
    started = time.perf_counter()
    entry = Entry(request_id, endpoint, 200, stage=target.stage, version=target.version, shadow=True)
    try:
        out = await complete(rt, target, prompt, sampling, f"{request_id}-shadow-{target.stage}")
        entry.output = out.outputs[0].text
        entry.label = label_of(target, entry.output) if label_of else None
        entry.valid = None if label_of is None else entry.label is not None
        if label_of is not None:  # /classify: as the shadow release would have answered
            entry.confidence = answer_confidence(out.outputs[0].logprobs)
            _, entry.abstained = target.calibration.answer(entry.confidence, entry.valid)
    except asyncio.CancelledError:
        return  # its request ended without an answer: nothing to compare, nothing logged
    except Exception as err:  # a shadow's failure never reaches the caller
        entry.status, entry.error = 500, f"{type(err).__name__}: {err}"
    entry.input, entry.latency_ms = prompt, (time.perf_counter() - started) * 1000
    with contextlib.suppress(LogUnavailable):  # a shadow copy is never worth a refusal
        rt.writer.write(entry)
