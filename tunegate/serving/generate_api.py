"""``POST /generate``: a generation release's task endpoint.

The release's prompt (``prompt.json``: its system turn and output schema) frames the input;
the answer is decoded greedily, constrained by vLLM's structured outputs to the schema the
gate judged (``tunegate/core/inference.py``, as the evaluate stage asked), then parsed and
checked (``tunegate/core/task.py``): an answer that still fails the schema, or is cut off by
the token cap, is returned with ``valid: false`` and its problem, never passed off as
valid. Routing, sticky canary, shadows, the request log and per-caller caps are the same
as ``/classify``'s (``tunegate/serving/recording.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tunegate.core.inference import generate_sampling
from tunegate.core.task import Task
from tunegate.serving.api import ApiError, FeedbackRequest, GenerateRequest, GenerateResponse
from tunegate.serving.recording import admit, headers, recorded, shadow
from tunegate.serving.runtime import Slot, complete, until_disconnect
from tunegate.serving.runtime import of_request as runtime

router = APIRouter()


def release_task(template: Any) -> Task:
    return Task("generation", template.output_schema, json_answers=template.output_schema is not None)


@router.post("/generate", response_model=GenerateResponse)
async def generate_answer(request: Request, body: GenerateRequest) -> Any:
    rt = runtime(request)
    live, entry = admit(request, rt, rt.params.serve.public_model, body.user, "generate")
    if live.template.task != "generation":
        raise ApiError(400, f"{live.version} is a {live.template.task} release: ask /classify")
    turns = body.turns(live.template.system, rt.params.serve.caller_system_prompt)
    chars = sum(len(t["content"]) for t in turns)
    if rt.engine.surely_too_long(chars):
        raise ApiError(
            400, f"the input ({chars} characters) cannot fit the {rt.engine.max_model_len}-token context"
        )
    prompt = rt.engine.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    room = rt.engine.max_model_len - await rt.engine.count_tokens(prompt)
    if room < 16:
        raise ApiError(400, f"the input fills the {rt.engine.max_model_len}-token context")
    task = release_task(live.template)
    sampling = generate_sampling(min(rt.params.serve.max_tokens, room), task.output_schema, task.json_answers)
    entry.input = body.text if body.text is not None else turns[-1]["content"]
    shadow(rt, live, prompt, sampling, entry.request_id, "generate")
    async with recorded(rt, entry):
        with Slot(rt):
            out = await until_disconnect(request, complete(rt, live, prompt, sampling, entry.request_id))
        choice = out.outputs[0]
        answer = task.check(choice.text)
        problem = answer.problem
        if choice.finish_reason == "length":  # the cause first: a JSON answer cut short is not JSON
            problem = f"cut off at {sampling.max_tokens} tokens" + (f" ({problem})" if problem else "")
        entry.output, entry.valid, entry.tokens = choice.text, not problem, len(choice.token_ids)
    payload = GenerateResponse(
        output=answer.parsed if task.json_answers else choice.text,
        valid=not problem,
        problem=problem or None,
        text=choice.text,
        version=live.version,
        stage=live.stage,
    )
    return JSONResponse(payload.model_dump(), headers=headers(live, entry.request_id))


def generation_feedback(body: FeedbackRequest, version: str, template: Any) -> tuple[str | float, str]:
    """The value and log column of feedback on a /generate answer: a rating, or a reference
    answer that the release's own task accepts (a JSON release's reference is JSON within
    its schema, or live quality would score answers against something no answer can be)."""
    if body.rating is not None:
        return body.rating, "rating"
    if body.reference is None:
        raise ApiError(400, f"{body.request_id} is a /generate answer: send a reference answer or a rating")
    problem = release_task(template).check(body.reference).problem
    if problem:
        raise ApiError(400, f"the reference answer does not fit {version}'s task: {problem}")
    return body.reference, "feedback"
