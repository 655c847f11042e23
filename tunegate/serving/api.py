"""What the HTTP API accepts and returns: request bodies, response shapes and `ApiError`.

Bodies are strict: a field the service does not implement (``tools``, ``logprobs``...) is
a 400 naming it rather than being ignored, booleans are JSON
booleans, strings must be valid Unicode (a lone surrogate is a 400, not a tokenizer
crash), and every number has the range the engine accepts. What current OpenAI clients
send is taken: ``max_completion_tokens`` (``max_tokens``' newer name), ``stream_options``
(``include_usage``: a last chunk with the usage), ``response_format`` (text, any JSON
object, or a JSON schema the answer is constrained to) and content as an array of text
parts. Error bodies carry ``message``, ``type``, ``param`` (the field at fault) and ``code``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from tunegate.core.errors import TunegateError


class ApiError(TunegateError):
    """A request the service refuses or could not answer: an HTTP status and an OpenAI-style body."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", headers=None,
        param: str | None = None, code: str | None = None,
    ):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}
        self.param, self.code = param, code


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]
Stop = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_encodable)]
SEED_MAX = 2**53 - 1
"""The largest integer every JSON parser reads exactly."""
NOT_BLANK = {"pattern": r"\S"}
MAX_TEXT_CHARS = 8000
"""The longest /generate text (and /feedback reference answer) a request may carry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    """One part of a message's content; only text parts (this service reads no images or audio)."""

    type: Literal["text"]
    text: Text


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: (
        Annotated[Text, Field(json_schema_extra={"example": "Where is my card?"})]
        | Annotated[list[TextPart], Field(min_length=1, max_length=64)]
    )

    @property
    def text(self) -> str:
        """The content as one string (text parts joined, as OpenAI does)."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def turn(self) -> dict[str, str]:
        return {"role": self.role, "content": self.text}


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class JsonSchemaFormat(_Strict):
    name: Annotated[Text, Field(min_length=1, max_length=64)]
    schema_: dict[str, Any] = Field(alias="schema")
    description: Text | None = None
    strict: StrictBool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only with it")
        if self.json_schema is not None:
            from jsonschema import Draft202012Validator, SchemaError

            try:
                Draft202012Validator.check_schema(self.json_schema.schema_)
            except SchemaError as err:
                raise ValueError(f"json_schema.schema is not a JSON schema: {err.message}") from None
        return self


class Sampling(_Strict):
    model: Annotated[Text, Field(max_length=128, json_schema_extra={"example": "tunegate"})]
    max_tokens: int | None = Field(None, ge=1, json_schema_extra={"example": 8})
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    stop: Stop | Annotated[list[Stop], Field(max_length=4)] | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    user: Annotated[Text, Field(max_length=256)] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: int | None = Field(None, ge=1, description="max_tokens' newer name")
    n: int = Field(1, ge=1, le=1, description="one choice per request")

    @model_validator(mode="after")
    def _one_limit_and_stream_options_with_a_stream(self) -> Sampling:
        if self.max_completion_tokens is not None:
            if self.max_tokens is not None and self.max_tokens != self.max_completion_tokens:
                raise ValueError("max_tokens and max_completion_tokens differ: send one")
            self.max_tokens = self.max_completion_tokens
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        return self

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=256)
    response_format: ResponseFormat | None = None


class CompletionRequest(Sampling):
    prompt: Annotated[Text, Field(min_length=1, json_schema_extra={"example": "Where is my card?"})]


class ClassifyRequest(_Strict):
    text: Annotated[
        Text,
        Field(min_length=1, max_length=4000, json_schema_extra=NOT_BLANK | {"example": "my card is lost"}),
    ]
    user: Annotated[Text, Field(max_length=256)] | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        return v


class GenerateRequest(_Strict):
    """A generation release's task input: the user's message as ``text``, or the conversation as
    ``messages``; exactly one of them. Either is framed by the release's own system turn (the
    one it was trained with); ``messages`` may start with a system turn of its own only where
    serve.caller_system_prompt allows it."""

    text: (
        Annotated[Text, Field(min_length=1, max_length=MAX_TEXT_CHARS, json_schema_extra=NOT_BLANK)] | None
    ) = None
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=64)
    user: Annotated[Text, Field(max_length=256)] | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("text is blank")
        return v

    def turns(self, system: str, caller_system: bool = False) -> list[dict[str, str]]:
        """The prompt's turns: the release's system turn (or, where `caller_system` allows it,
        the caller's own first turn), then the text or the messages."""
        if (self.text is None) == (self.messages is None):
            raise ApiError(400, "send exactly one of text and messages")
        systems = [i for i, m in enumerate(self.messages or []) if m.role == "system"]
        if systems and (not caller_system or systems != [0]):
            why = (
                "a system turn may only open the messages"
                if caller_system
                else "this release's system turn is fixed (serve.caller_system_prompt is off)"
            )
            raise ApiError(
                400, f"messages[{systems[-1] if caller_system else systems[0]}] is a system turn: {why}"
            )
        head = [{"role": "system", "content": system}] if system else []
        if self.messages is None:
            return head + [{"role": "user", "content": self.text or ""}]
        if self.messages[-1].role != "user":
            raise ApiError(400, "the last message must be the user's: the release writes the next turn")
        turns = [m.turn() for m in self.messages]
        return turns if turns[0]["role"] == "system" else head + turns


class GenerateResponse(BaseModel):
    output: Any = Field(
        description="The answer: the parsed JSON object for a release with an output schema "
        "(constrained to it), else the text; null when a JSON answer could not be parsed"
    )
    valid: bool = Field(description="False when the answer is empty, is not JSON, or breaks the schema")
    problem: str | None = Field(None, description="Why the answer is not valid, when it is not")
    text: str = Field(description="The answer as generated")
    version: str
    stage: str


class FeedbackRequest(_Strict):
    """One of: ``label`` (a /classify answer's true label), ``reference`` (the answer a
    /generate request should have had) or ``rating`` (how good a /generate answer was, 0 to 1)."""

    request_id: Annotated[Text, Field(min_length=1, max_length=64)]
    label: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    reference: Annotated[Text, Field(min_length=1, max_length=MAX_TEXT_CHARS)] | None = None
    rating: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one(self) -> FeedbackRequest:
        given = [k for k in ("label", "reference", "rating") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"send exactly one of label, reference, rating (got {given or 'none'})")
        return self


class PromoteRequest(_Strict):
    version: Annotated[Text, Field(min_length=1, max_length=64)]
    stage: Literal["staging", "canary", "production"]
    weight: int | None = Field(None, gt=0, lt=100)
    force: StrictBool = False
    reason: Annotated[Text, Field(max_length=500)] = ""


class RollbackRequest(_Strict):
    to: Annotated[Text, Field(min_length=1, max_length=64)] | None = None
    stage: Literal["production", "canary"] = "production"
    reason: Annotated[Text, Field(max_length=500)] = ""


class ClassifyResponse(BaseModel):
    label: str | None = Field(
        description="The intent, or null: the release abstained (hand the message to a person) "
        "or its answer was not a valid label"
    )
    confidence: float | None = Field(
        description="Calibrated: the probability that the answered label is right (the release's "
        "calibration, fitted on validation and judged by the gate); null for an invalid answer"
    )
    abstained: bool = Field(
        description="True when the calibrated confidence was under the release's abstention threshold"
    )
    version: str
    stage: str


def chat_shape(rid, model, version, text, finish, usage, chunk=False) -> dict[str, Any]:
    base = {
        "id": f"chatcmpl-{rid}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": version,
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


def completion_shape(rid, model, version, text, finish, usage, chunk=False) -> dict[str, Any]:
    base = {
        "id": f"cmpl-{rid}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": version,
    }
    out = base | {"choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
    return out if chunk else out | {"usage": usage}


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: what went wrong, its type, the field at fault and a code."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_param(errors: list[dict[str, Any]]) -> tuple[str | None, str]:
    """The first failing field's path (``messages.0.content``) and the error's code."""
    if not errors:
        return None, "invalid_value"
    first = errors[0]
    path = ".".join(str(x) for x in first["loc"][1:] if not str(x).startswith(("list[", "constrained-str")))
    return path or None, "unsupported_parameter" if first["type"] == "extra_forbidden" else "invalid_value"


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line naming every problem; an unknown field is named as unsupported."""
    out = []
    for e in errors:
        where = ".".join(str(x) for x in e["loc"][1:]) or "body"
        if e["type"] == "extra_forbidden":
            out.append(f"{where}: not supported by this service")
        else:
            out.append(f"{where}: {e['msg']}")
    return "; ".join(out)
