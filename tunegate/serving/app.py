"""The HTTP API: OpenAI-compatible endpoints, /classify, /feedback and the admin actions
(and /generate, tunegate/serving/generate_api.py).

`build_app(runtime)` makes the FastAPI app; `tunegate/serving/service.py` wraps it in the BentoML
service and `tunegate/serving/guard.py` guards it (body size, /metrics, /readyz, /docs.json).
Request and response bodies are in `tunegate/serving/api.py`, the live state in `tunegate/serving/runtime.py`.

Public model name (``serve.public_model``, default ``tunegate``) is routed between
production and canary by weight, sticky per caller (the OpenAI ``user`` field, or the
``X-Caller-Id`` header). ``tunegate:<stage>`` pins a stage and needs the admin token, so
no anonymous caller reaches staging or chooses which release the canary judge sees. Every
response names the release that answered in ``X-Tunegate-Version`` and ``X-Tunegate-Stage``.
Every request the service takes has a row in the request log (`tunegate/serving/recording.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunegate.core.errors import RegistryError, TunegateError
from tunegate.core.inference import classify_sampling
from tunegate.core.prompt import answer_confidence
from tunegate.serving.api import (
    ApiError,
    ChatRequest,
    ClassifyRequest,
    ClassifyResponse,
    CompletionRequest,
    FeedbackRequest,
    PromoteRequest,
    RollbackRequest,
    Sampling,
    chat_shape,
    completion_shape,
    error_body,
    error_param,
    validation_message,
)  # fmt: skip
from tunegate.serving.auth import admin_auth, feedback_auth, public_auth
from tunegate.serving.generate_api import generation_feedback
from tunegate.serving.generate_api import router as generate_router
from tunegate.serving.recording import LoggedStream, admit, cancel, headers, recorded, shadow
from tunegate.serving.requestlog import OPEN, FeedbackConflict
from tunegate.serving.runtime import Live, Runtime, Slot, complete, until_disconnect
from tunegate.serving.runtime import of_request as runtime
from tunegate.serving.ui import router as ui_router

router = APIRouter()
admin = APIRouter(dependencies=[Depends(admin_auth)])  # the token is checked before the body


def build_app(rt: Runtime | None = None) -> FastAPI:
    app = FastAPI(title="tunegate", description="Evaluation-gated releases, served on vLLM.")
    app.state.runtime = rt
    app.include_router(router)
    app.include_router(generate_router)
    app.include_router(admin)
    app.include_router(ui_router)  # the dashboard: /ui (tunegate/serving/ui.py)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        body = error_body(err.message, err.kind, err.param, err.code)
        return JSONResponse(body, err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if err.status_code < 500 else "server_error"
        return JSONResponse(error_body(str(err.detail), kind), err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, err: RequestValidationError) -> JSONResponse:
        param, code = error_param(err.errors())
        return JSONResponse(
            error_body(validation_message(err.errors()), "invalid_request_error", param, code), 400
        )

    return app


async def sampling_for(rt: Runtime, body: Sampling, prompt: str) -> Any:
    from vllm import SamplingParams

    limit, cap = rt.engine.max_model_len, rt.params.serve.max_tokens
    if rt.engine.surely_too_long(len(prompt)):
        raise ApiError(400, f"the prompt ({len(prompt)} characters) cannot fit the {limit}-token context")
    used = await rt.engine.count_tokens(prompt)
    room = limit - used
    if room < 1:
        raise ApiError(400, f"the prompt ({used} tokens) fills the {limit}-token context")
    max_tokens = body.max_tokens if body.max_tokens is not None else min(cap, room)
    if max_tokens > room or max_tokens > cap:
        field = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        raise ApiError(
            400,
            f"{field} {max_tokens} is too large: the prompt uses {used} of {limit} "
            f"context tokens (room for {room}); the server caps answers at {cap}",
            param=field, code="invalid_value",
        )  # fmt: skip
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        stop=body.stop,
        seed=body.seed,
        structured_outputs=answer_format(getattr(body, "response_format", None)),
    )


def answer_format(fmt: Any) -> Any:
    """vLLM's structured outputs for a chat request's response_format (None: free text)."""
    from vllm.sampling_params import StructuredOutputsParams

    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return StructuredOutputsParams(json_object=True)
    return StructuredOutputsParams(json=fmt.json_schema.schema_)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    import time

    rt = runtime(request)
    privileged = public_auth(request, rt)
    created = int(time.time())
    names = rt.model_names(privileged)
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "tunegate"} for m in names],
    }


async def generate(request: Request, body: Sampling, prompt: str | None, endpoint: str, shape) -> Any:
    rt = runtime(request)
    live, entry = admit(request, rt, body.model, body.user, endpoint)
    if prompt is None:  # chat: the template is rendered once the size is known to be sane
        chars = sum(len(m.text) for m in body.messages)  # type: ignore[attr-defined]
        if rt.engine.surely_too_long(chars):
            raise ApiError(400, f"the messages ({chars} characters) cannot fit the context")
        messages = [m.turn() for m in body.messages]  # type: ignore[attr-defined]
        prompt = rt.engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    sampling = await sampling_for(rt, body, prompt)
    entry.input = prompt

    def copies() -> list:
        return [] if entry.pinned else shadow(rt, live, prompt, sampling, entry.request_id, endpoint)

    if body.stream:
        stream = LoggedStream.start(
            rt, live, entry, lambda: _chunks(rt, live, prompt, sampling, entry, body, shape)
        )
        stream.copies = copies()  # admitted: it holds its slot
        return stream
    async with recorded(rt, entry):
        out = await answered(request, rt, live, prompt, sampling, entry.request_id, copies)
        choice = out.outputs[0]
        entry.output, entry.tokens = choice.text, len(choice.token_ids)
    usage = usage_of(out)
    payload = shape(
        entry.request_id, body.model, live.version, choice.text, choice.finish_reason or "stop", usage
    )
    return JSONResponse(payload, headers=headers(live, entry.request_id))


async def answered(
    request: Request, rt: Runtime, live: Live, prompt, sampling, request_id: str, copies
) -> Any:
    """The engine's answer, holding a capacity slot (429 past serve.max_concurrency); the
    shadow copies start only once the request is admitted, and end with it when it gets no
    answer (an engine error, a hang-up)."""
    with Slot(rt):
        started = copies()
        try:
            return await until_disconnect(request, complete(rt, live, prompt, sampling, request_id))
        except BaseException:
            cancel(started)
            raise


async def _chunks(rt: Runtime, live: Live, prompt, sampling, entry, body, shape) -> AsyncIterator[str]:
    sent, out = "", None
    async for out in rt.engine.generate(prompt, sampling, entry.request_id, live.lora):
        choice = out.outputs[0]
        delta, sent = choice.text[len(sent) :], choice.text
        entry.output, entry.tokens = sent, len(choice.token_ids)
        chunk = shape(
            entry.request_id, body.model, live.version, delta, choice.finish_reason, None, chunk=True
        )
        yield f"data: {json.dumps(chunk)}\n\n"
    if body.include_usage and out is not None:  # stream_options.include_usage: one last chunk
        usage = usage_of(out)
        last = shape(entry.request_id, body.model, live.version, "", None, usage, chunk=True)
        yield f"data: {json.dumps(last | {'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def usage_of(out: Any) -> dict[str, int]:
    prompt, completion = len(out.prompt_token_ids), len(out.outputs[0].token_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, body: ChatRequest) -> Any:
    return await generate(request, body, None, "chat", chat_shape)


@router.post("/v1/completions")
async def completions(request: Request, body: CompletionRequest) -> Any:
    return await generate(request, body, body.prompt, "completions", completion_shape)


def label_of(live: Live, text: str) -> str | None:
    return text.strip() if text.strip() in live.template.labels else None


@router.post("/classify", response_model=ClassifyResponse)
async def classify(request: Request, body: ClassifyRequest) -> Any:
    rt = runtime(request)
    live, entry = admit(request, rt, rt.params.serve.public_model, body.user, "classify")
    if live.template.task != "classification":
        raise ApiError(400, f"{live.version} is a {live.template.task} release: ask /generate")
    prompt = live.template.render(rt.engine.tokenizer, body.text)
    if await rt.engine.count_tokens(prompt) >= rt.engine.max_model_len - 32:
        raise ApiError(400, f"text is too long for the {rt.engine.max_model_len}-token context")
    entry.input = body.text
    sampling = classify_sampling(live.template.labels)
    async with recorded(rt, entry):
        copies = lambda: shadow(rt, live, prompt, sampling, entry.request_id, "classify", label_of)  # noqa: E731
        out = await answered(request, rt, live, prompt, sampling, entry.request_id, copies)
        choice = out.outputs[0]
        label = label_of(live, choice.text)
        entry.output, entry.label, entry.valid = choice.text, label, label is not None
        entry.tokens = len(choice.token_ids)
        entry.confidence = answer_confidence(choice.logprobs)  # raw, as the monitoring reference has it
        confidence, entry.abstained = live.calibration.answer(entry.confidence, label is not None)
    answer = ClassifyResponse(
        label=None if entry.abstained else label,
        confidence=None if confidence is None else round(confidence, 4),
        abstained=entry.abstained,
        version=live.version,
        stage=live.stage,
    )
    return JSONResponse(answer.model_dump(), headers=headers(live, entry.request_id))


@router.post("/feedback", dependencies=[Depends(feedback_auth)])
async def feedback(request: Request, body: FeedbackRequest) -> JSONResponse:
    """Feedback on an answered request (X-Request-Id of its response), once: for /classify
    its true label (one of the release's labels, or ``data.oos_label``); for /generate the
    answer it should have had (``reference``: for a JSON release, JSON within its schema) or
    a ``rating`` in [0, 1]. The drift monitor turns these into live accuracy or live quality,
    and retraining into training data."""
    rt = runtime(request)
    answered = await asyncio.to_thread(rt.log.answered, body.request_id)
    # The answer's row (or its completion) may still be on its way to the log: wait for this
    # request's rows only (an unknown id returns at once, whatever else is queued).
    unfinished = answered is None or answered["status"] == OPEN
    if unfinished and await asyncio.to_thread(rt.writer.flush_request, body.request_id, 5.0):
        answered = await asyncio.to_thread(rt.log.answered, body.request_id)
    if answered is None or answered["endpoint"] not in ("classify", "generate") or answered["status"] != 200:
        raise ApiError(404, f"no answered /classify or /generate request {body.request_id!r}", "not_found")
    version = answered["version"]
    try:
        template = await rt.template_of(version)
    except TunegateError as err:
        raise ApiError(409, f"cannot check the feedback against {version}: {err}", "conflict") from err
    if answered["endpoint"] == "generate":
        value, column = generation_feedback(body, version, template)
    else:
        value, column = classify_feedback(body, version, template.labels, rt.params.data.oos_label)
    try:
        row = await asyncio.to_thread(rt.log.feedback, body.request_id, value, column)
    except FeedbackConflict as err:
        raise ApiError(409, str(err), "conflict") from err
    assert row is not None
    if rt.metrics is not None and answered["endpoint"] == "classify" and row["new"]:  # a repeat counts once
        rt.metrics.labelled(version, row["label"], body.label)
    if answered["endpoint"] == "generate":
        key = "rating" if column == "rating" else "reference"
        return JSONResponse({"request_id": body.request_id, "version": version, key: row[column]})
    return JSONResponse({"request_id": body.request_id, "answered": row["label"], "feedback": body.label})


def classify_feedback(
    body: FeedbackRequest, version: str, labels: tuple[str, ...], oos: str | None
) -> tuple[str, str]:
    if body.label is None:
        raise ApiError(400, f"{body.request_id} is a /classify answer: send its true label")
    if body.label not in labels and body.label != oos:
        also = f" or the out-of-scope label {oos!r}" if oos else " (data.oos_label declares none)"
        raise ApiError(400, f"label {body.label!r} is not one of {version}'s {len(labels)} labels{also}")
    return body.label, "feedback"


async def _admin(request: Request, action, target: str | None = None) -> JSONResponse:
    rt = runtime(request)
    try:
        if target is not None:  # the release must be servable before the registry names it
            await rt.prepare(target)
        result = await asyncio.to_thread(action, rt) if action else None
    except RegistryError as err:
        raise ApiError(409, str(err), "conflict") from err
    except TunegateError as err:
        raise ApiError(422, f"refused, nothing changed: {err}") from err
    return JSONResponse({"result": result, **await rt.reload()})


@admin.post("/admin/promote")
async def admin_promote(request: Request, body: PromoteRequest) -> JSONResponse:
    def act(rt: Runtime) -> str:
        a = rt.registry.promote(body.version, body.stage, body.weight, body.force, body.reason)
        return f"{a.version} is in {a.stage}"

    return await _admin(request, act, body.version)


@admin.post("/admin/rollback")
async def admin_rollback(request: Request, body: RollbackRequest) -> JSONResponse:
    rt = runtime(request)
    target = None
    if body.stage == "production":
        try:
            target = await asyncio.to_thread(rt.registry.rollback_target, body.to)
        except RegistryError as err:
            raise ApiError(409, str(err), "conflict") from err

    def act(rt: Runtime) -> str:
        a = rt.registry.rollback(body.to, body.stage, body.reason)
        return "canary withdrawn" if a is None else f"production is {a.version}"

    return await _admin(request, act, target)


@admin.post("/admin/reload")
async def admin_reload(request: Request) -> JSONResponse:
    return await _admin(request, None)
