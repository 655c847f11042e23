"""The HTTP API: OpenAI-compatible endpoints, /classify, and the admin actions.

`Runtime` holds what is live: the engine, the release in each stage (adapter verified
against the registry before it is loaded), the routing weights and the request log.
`serving/service.py` wraps this app in a BentoML service; the routes find the runtime on
``app.state.runtime``.

Public model name (``serve.public_model``, default ``tunegate``) is routed between
production and canary by weight, sticky per caller (the OpenAI ``user`` field, or the
``X-Caller-Id`` header). ``tunegate:<stage>`` pins a stage. Every response names the
release that answered in ``X-Tunegate-Version`` and ``X-Tunegate-Stage``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from serving.requestlog import Entry, RequestLog
from serving.routing import caller_hash, route
from tunegate.artifacts import read_json, verified_card
from tunegate.errors import ArtifactError, RegistryError, TunegateError
from tunegate.params import Params
from tunegate.prompt import PromptTemplate

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


# -- request bodies ------------------------------------------------------------------------


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class _Sampling(BaseModel):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="one choice per request")


class ChatRequest(_Sampling):
    messages: list[ChatMessage]

    @field_validator("messages")
    @classmethod
    def _non_empty(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not v or not any(m.content.strip() for m in v):
            raise ValueError("messages must hold at least one non-empty message")
        return v


class CompletionRequest(_Sampling):
    prompt: str = Field(..., min_length=1)


class ClassifyRequest(BaseModel):
    text: str = Field(..., min_length=1, max_length=4000)
    user: str | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        return v


class FeedbackRequest(BaseModel):
    request_id: str = Field(..., min_length=1, max_length=64)
    label: str = Field(..., min_length=1)


class PromoteRequest(BaseModel):
    version: str
    stage: Literal["staging", "canary", "production"]
    weight: int | None = Field(None, gt=0, lt=100)
    force: bool = False
    reason: str = ""


class RollbackRequest(BaseModel):
    to: str | None = None
    stage: Literal["production", "canary"] = "production"
    reason: str = ""


# -- runtime -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    stage: str
    version: str
    path: Path
    template: PromptTemplate
    lora: Any


class Runtime:
    def __init__(self, project: Path, params: Params, engine: Any = None):
        from serving.registry import Registry

        self.project = project
        self.params = params
        self.registry = Registry.from_params(project, params)
        self.log = RequestLog(project / params.serve.request_log)
        self.engine = engine
        self.live: dict[str, Live] = {}
        self.weights: dict[str, int] = {}
        self.ready = False
        self.in_flight = 0
        self.seen: tuple = ()
        self.background: list[asyncio.Future] = []
        self.shadows: set[asyncio.Future] = set()
        self.base_dir = project / "models/base"
        self.base_card = verified_card(self.base_dir)
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        await self.engine.start()
        await self.reload()
        self.ready = True
        self.background = [asyncio.ensure_future(self.watch())]

    async def watch(self) -> None:
        """Follow the registry (promotions made with the CLI reach the live service within
        serve.watch_seconds) and, when release.judge_every_minutes is set, run the canary
        judge on that schedule."""
        from serving.rollout import step

        serve, release = self.params.serve, self.params.release
        last_judged = time.monotonic()
        while serve.watch_seconds > 0:
            await asyncio.sleep(serve.watch_seconds)
            try:
                due = (
                    release.judge_every_minutes
                    and time.monotonic() - last_judged >= release.judge_every_minutes * 60
                )
                if due:
                    last_judged = time.monotonic()
                    alpha = self.params.gate.alpha
                    decision = await asyncio.to_thread(step, self.registry, self.log, release, alpha)
                    log.info("rollout judge: %s %s", decision.action, "; ".join(decision.reasons))
                if await asyncio.to_thread(self.snapshot) != self.seen:
                    await self.reload()
            except TunegateError as err:  # keep serving what is loaded; say why the change was not taken
                log.error("registry change not applied: %s", err)

    def snapshot(self) -> tuple:
        """What the registry says should be live: (stage, version, weight) per stage."""
        return tuple(
            (s, a.version if a else None, a.weight if a else 0) for s, a in self.registry.stages().items()
        )

    async def reload(self) -> dict[str, Any]:
        """Re-read the registry; verify and load the adapters of every stage; swap atomically."""
        from serving.package import resolve

        async with self._reload_lock:
            seen = await asyncio.to_thread(self.snapshot)
            stages = await asyncio.to_thread(self.registry.stages)
            releases = await asyncio.to_thread(self.registry.releases)
            weights = await asyncio.to_thread(self.registry.weights)
            live = {}
            for stage, held in stages.items():
                if held is None:
                    continue
                release = releases[held.version]
                path = await asyncio.to_thread(resolve, release.bento_tag, release.tree_sha256)
                card = read_json(path / "card.json")
                if card["base_model"]["tree_sha256"] != self.base_card["tree_sha256"]:
                    raise ArtifactError(
                        f"{release.version} was trained on {card['base_model']['model_id']}, "
                        f"but this service runs {self.base_card['model_id']}"
                    )
                lora = await self.engine.load_adapter(release.version, path)
                live[stage] = Live(stage, release.version, path, PromptTemplate.load(path), lora)
            known = {x.version for x in self.live.values()}
            for fresh in [x for x in live.values() if x.version not in known]:
                await self.warm_up(fresh)
            self.live, self.weights, self.seen = live, weights, seen
            log.info("live: %s; weights %s", {s: x.version for s, x in live.items()}, weights)
            return {"live": {s: x.version for s, x in live.items()}, "weights": weights}

    async def warm_up(self, live: Live) -> None:
        """One label-constrained answer from a release before it takes traffic: the first
        request to use an adapter or a guided-decoding grammar pays for loading and
        compiling it, and that should be neither a caller nor a readiness probe."""
        prompt = live.template.render(self.engine.tokenizer, "warm-up")
        await complete(self, live, prompt, classify_sampling(live.template), f"warm-up-{uuid.uuid4().hex}")

    def pick(self, model: str, caller: str | None) -> Live:
        public = self.params.serve.public_model
        if model == public:
            if not self.weights:
                raise ApiError(
                    503,
                    "no release is live yet: `tunegate promote VERSION --to canary` (or --to production)",
                )
            return self.live[route(caller, self.weights)]
        if model.startswith(public + ":"):
            stage = model.split(":", 1)[1]
            if stage in self.live:
                return self.live[stage]
            raise ApiError(404, f"stage {stage!r} holds no release", "model_not_found")
        raise ApiError(
            404,
            f"unknown model {model!r}; this service serves {', '.join(self.model_names())}",
            "model_not_found",
        )

    def model_names(self) -> list[str]:
        public = self.params.serve.public_model
        return [public, *(f"{public}:{s}" for s in self.live)] if self.live else []


# -- the app -------------------------------------------------------------------------------

app = FastAPI(title="tunegate", description="Evaluation-gated releases, served on vLLM.")


def runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None or not rt.ready:
        raise ApiError(503, "the service is starting: engine and adapters are not loaded yet", "unavailable")
    return rt


@app.exception_handler(ApiError)
async def _api_error(_: Request, err: ApiError) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": err.message, "type": err.kind}}, err.status, headers=err.headers
    )


@app.exception_handler(RequestValidationError)
async def _bad_request(_: Request, err: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(x) for x in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()
    )
    return JSONResponse({"error": {"message": problems, "type": "invalid_request_error"}}, 400)


def check_token(request: Request, env: str, required: bool = True) -> None:
    expected = os.environ.get(env)
    if not required:
        return
    if not expected:
        raise ApiError(403, f"this endpoint is disabled: set {env} on the server", "forbidden")
    header = request.headers.get("authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "missing or wrong bearer token", "unauthorized", {"WWW-Authenticate": "Bearer"})


def public_auth(request: Request, rt: Runtime) -> None:
    check_token(request, "TUNEGATE_API_KEY", rt.params.serve.require_api_key)


class Slot:
    """One unit of capacity; past serve.max_concurrency requests get 429, health stays green."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.held = False

    def __enter__(self) -> Slot:
        if not self.held:  # entering a held slot again (a stream's generator) is a no-op
            if self.rt.in_flight >= self.rt.params.serve.max_concurrency:
                raise ApiError(
                    429,
                    f"at capacity ({self.rt.in_flight} requests in flight); retry shortly",
                    "rate_limit_exceeded",
                    {"Retry-After": "1"},
                )
            self.rt.in_flight += 1
            self.held = True
        return self

    def __exit__(self, *_: Any) -> None:
        if self.held:
            self.rt.in_flight -= 1
            self.held = False


def sampling_for(rt: Runtime, body: _Sampling, prompt: str) -> Any:
    from vllm import SamplingParams

    used = rt.engine.prompt_tokens(prompt)
    room = rt.engine.max_model_len - used
    max_tokens = body.max_tokens if body.max_tokens is not None else min(rt.params.serve.max_tokens, room)
    if max_tokens > room or max_tokens > rt.params.serve.max_tokens:
        raise ApiError(
            400,
            f"max_tokens {max_tokens} is too large: the prompt uses {used} of {rt.engine.max_model_len} "
            f"context tokens (room for {room}); the server caps answers at {rt.params.serve.max_tokens}",
        )
    if room < 1:
        raise ApiError(400, f"the prompt ({used} tokens) fills the {rt.engine.max_model_len}-token context")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
        seed=body.seed,
    )


async def until_disconnect(request: Request, work: Any) -> Any:
    """Await `work`; if the client goes away first, cancel it (which aborts the generation)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if not done and await request.is_disconnected():
            task.cancel()
            raise ApiError(499, "client disconnected", "cancelled")
    return task.result()


async def complete(rt: Runtime, live: Live, prompt: str, sampling: Any, request_id: str) -> Any:
    final = None
    async for out in rt.engine.generate(prompt, sampling, request_id, live.lora):
        final = out
    return final


def headers(live: Live, request_id: str) -> dict[str, str]:
    return {"X-Tunegate-Version": live.version, "X-Tunegate-Stage": live.stage, "X-Request-Id": request_id}


def shadow(
    rt: Runtime, served: Live, prompt: str, sampling: Any, request_id: str, endpoint: str, label_of=None
):
    """Copies of the request to the shadow stages (serve.shadow): answers logged, never returned."""
    for stage in rt.params.serve.shadow:
        target = rt.live.get(stage)
        if target is None or target.version == served.version:
            continue

        async def run(target: Live = target) -> None:
            started = time.perf_counter()
            try:
                out = await complete(rt, target, prompt, sampling, f"{request_id}-shadow-{target.stage}")
                text = out.outputs[0].text
                label = label_of(target, text) if label_of else None
                rt.log.write(
                    Entry(
                        request_id, endpoint, 200, stage=target.stage, version=target.version, shadow=True,
                        input=prompt, output=text, label=label,
                        valid=None if label_of is None else label is not None,
                        latency_ms=(time.perf_counter() - started) * 1000,
                    )
                )  # fmt: skip
            except Exception as err:  # a shadow's failure never reaches the caller
                rt.log.write(
                    Entry(
                        request_id,
                        endpoint,
                        500,
                        stage=target.stage,
                        version=target.version,
                        shadow=True,
                        error=str(err),
                    )
                )

        task = asyncio.ensure_future(run())
        rt.shadows.add(task)
        task.add_done_callback(rt.shadows.discard)


@app.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    rt = runtime(request)
    public_auth(request, rt)
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": created, "owned_by": "tunegate"} for m in rt.model_names()
        ],
    }


async def _generate(request: Request, body: _Sampling, prompt: str, endpoint: str, shape) -> Any:
    rt = runtime(request)
    public_auth(request, rt)
    caller = body.user or request.headers.get("x-caller-id")
    live = rt.pick(body.model, caller)
    request_id = uuid.uuid4().hex
    sampling = sampling_for(rt, body, prompt)
    entry = Entry(
        request_id,
        endpoint,
        200,
        caller=caller_hash(caller),
        stage=live.stage,
        version=live.version,
        input=prompt,
    )
    started = time.perf_counter()
    if body.model == rt.params.serve.public_model:
        shadow(rt, live, prompt, sampling, request_id, endpoint)
    if body.stream:
        slot = Slot(rt)
        slot.__enter__()  # 429 before any byte is sent; the stream gives the slot back when it ends
        return StreamingResponse(
            stream(rt, slot, live, prompt, sampling, request_id, body, shape, entry, started),
            media_type="text/event-stream",
            headers=headers(live, request_id),
        )
    with Slot(rt):
        try:
            out = await until_disconnect(request, complete(rt, live, prompt, sampling, request_id))
        except ApiError as err:
            entry.status, entry.error = err.status, err.message
            rt.log.write(entry)
            raise
    choice = out.outputs[0]
    entry.output, entry.latency_ms = choice.text, (time.perf_counter() - started) * 1000
    rt.log.write(entry)
    usage = {
        "prompt_tokens": len(out.prompt_token_ids),
        "completion_tokens": len(choice.token_ids),
        "total_tokens": len(out.prompt_token_ids) + len(choice.token_ids),
    }
    payload = shape(request_id, body.model, live, choice.text, choice.finish_reason or "stop", usage)
    return JSONResponse(payload, headers=headers(live, request_id))


async def stream(
    rt, slot, live, prompt, sampling, request_id, body, shape, entry, started
) -> AsyncIterator[str]:
    sent = ""
    with slot:
        try:
            async for out in rt.engine.generate(prompt, sampling, request_id, live.lora):
                choice = out.outputs[0]
                delta, sent = choice.text[len(sent) :], choice.text
                chunk = shape(request_id, body.model, live, delta, choice.finish_reason, None, chunk=True)
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:  # the client went away: vLLM aborts the request
            entry.status, entry.error = 499, "client disconnected"
            raise
        finally:
            entry.output, entry.latency_ms = sent, (time.perf_counter() - started) * 1000
            rt.log.write(entry)


def chat_shape(rid, model, live, text, finish, usage, chunk=False) -> dict[str, Any]:
    base = {
        "id": f"chatcmpl-{rid}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": live.version,
    }
    if chunk:
        return base | {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        }
    message = {"role": "assistant", "content": text}
    return base | {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def completion_shape(rid, model, live, text, finish, usage, chunk=False) -> dict[str, Any]:
    base = {
        "id": f"cmpl-{rid}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": live.version,
    }
    out = base | {"choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
    return out if chunk else out | {"usage": usage}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request, body: ChatRequest) -> Any:
    rt = runtime(request)
    messages = [m.model_dump() for m in body.messages]
    prompt = rt.engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return await _generate(request, body, prompt, "chat", chat_shape)


@app.post("/v1/completions")
async def completions(request: Request, body: CompletionRequest) -> Any:
    return await _generate(request, body, body.prompt, "completions", completion_shape)


def classify_sampling(template: PromptTemplate) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return SamplingParams(
        temperature=0.0,
        max_tokens=max(len(label) for label in template.labels) + 1,  # any tokenization, then the end
        logprobs=0,
        structured_outputs=StructuredOutputsParams(choice=list(template.labels)),
    )


def label_of(live: Live, text: str) -> str | None:
    return text.strip() if text.strip() in live.template.labels else None


@app.post("/classify")
async def classify(request: Request, body: ClassifyRequest) -> Any:
    import math

    rt = runtime(request)
    public_auth(request, rt)
    caller = body.user or request.headers.get("x-caller-id")
    live = rt.pick(rt.params.serve.public_model, caller)
    request_id = uuid.uuid4().hex
    prompt = live.template.render(rt.engine.tokenizer, body.text)
    if rt.engine.prompt_tokens(prompt) >= rt.engine.max_model_len - 32:
        raise ApiError(400, f"text is too long for the {rt.engine.max_model_len}-token context")
    entry = Entry(
        request_id,
        "classify",
        200,
        caller=caller_hash(caller),
        stage=live.stage,
        version=live.version,
        input=body.text,
    )
    started = time.perf_counter()
    shadow(rt, live, prompt, classify_sampling(live.template), request_id, "classify", label_of)
    with Slot(rt):
        out = await until_disconnect(
            request, complete(rt, live, prompt, classify_sampling(live.template), request_id)
        )
    choice = out.outputs[0]
    label = label_of(live, choice.text)
    logprob = sum(next(iter(step.values())).logprob for step in choice.logprobs or [] if step)
    entry.output, entry.label, entry.valid = choice.text, label, label is not None
    entry.confidence = math.exp(logprob)
    entry.latency_ms = (time.perf_counter() - started) * 1000
    rt.log.write(entry)
    return JSONResponse(
        {
            "label": label,
            "confidence": round(math.exp(logprob), 4),
            "version": live.version,
            "stage": live.stage,
        },
        headers=headers(live, request_id),
    )


@app.post("/feedback")
async def feedback(request: Request, body: FeedbackRequest) -> JSONResponse:
    """The true label of an answered /classify request (X-Request-Id of its response);
    the drift monitor turns these into live accuracy, and retraining into training data."""
    rt = runtime(request)
    public_auth(request, rt)
    answered = await asyncio.to_thread(rt.log.answered, body.request_id)
    if answered is None or answered["endpoint"] != "classify":
        raise ApiError(404, f"no answered /classify request {body.request_id!r}", "not_found")
    labels = next((x.template.labels for x in rt.live.values() if x.version == answered["version"]), None)
    if labels is not None and body.label not in labels:
        raise ApiError(
            400, f"label {body.label!r} is not one of {answered['version']}'s {len(labels)} labels"
        )
    row = await asyncio.to_thread(rt.log.feedback, body.request_id, body.label)
    return JSONResponse({"request_id": body.request_id, "answered": row["label"], "feedback": body.label})


async def _admin(request: Request, action) -> JSONResponse:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    check_token(request, "TUNEGATE_ADMIN_TOKEN")
    if rt is None:
        raise ApiError(503, "the service is starting", "unavailable")
    try:
        result = await asyncio.to_thread(action, rt) if action else None
        live = await rt.reload()
    except RegistryError as err:
        raise ApiError(409, str(err), "conflict") from err
    except TunegateError as err:
        raise ApiError(422, str(err)) from err
    return JSONResponse({"result": result, **live})


@app.post("/admin/promote")
async def admin_promote(request: Request, body: PromoteRequest) -> JSONResponse:
    def act(rt: Runtime) -> str:
        a = rt.registry.promote(body.version, body.stage, body.weight, body.force, body.reason)
        return f"{a.version} is in {a.stage}"

    return await _admin(request, act)


@app.post("/admin/rollback")
async def admin_rollback(request: Request, body: RollbackRequest) -> JSONResponse:
    def act(rt: Runtime) -> str:
        a = rt.registry.rollback(body.to, body.stage, body.reason)
        return "canary withdrawn" if a is None else f"production is {a.version}"

    return await _admin(request, act)


@app.post("/admin/reload")
async def admin_reload(request: Request) -> JSONResponse:
    return await _admin(request, None)
