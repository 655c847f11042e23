"""The service's one OpenAPI document (``/docs.json``), valid OpenAPI 3.0.

FastAPI writes OpenAPI 3.1 schemas (``exclusiveMinimum: 0``, ``anyOf`` with ``null``,
``const``) and BentoML used to mix them into its own 3.0.2 document, which validators and
schema-driven clients refuse. Here the app's schemas are translated to 3.0 forms, every
operation lists the error statuses the service really answers with (in OpenAI's error
shape), and BentoML's probes are described too.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}
CHUNK = {
    "description": "one server-sent event; its data is a JSON chunk as OpenAI's, an error body, or [DONE]",
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}
PUBLIC_ERRORS = {
    400: "bad request (the message names the field)",
    401: "missing or wrong bearer token",
    403: "not allowed with this token (pinning a stage needs the admin token)",
    404: "unknown model, stage or request",
    409: "conflict (feedback already given, registry refused)",
    413: "request body too large",
    422: "refused: the target release cannot be served",
    429: "at capacity; retry after the Retry-After seconds",
    500: "the engine failed (logged)",
    503: "starting, or the routed release is degraded",
}


def to_30(node: Any) -> Any:
    """One JSON schema (sub)tree, from OpenAPI 3.1 / JSON Schema 2020-12 to OpenAPI 3.0."""
    if isinstance(node, list):
        return [to_30(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_30(v) for k, v in node.items() if k not in ("examples", "$schema")}
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[flag], out[bound] = out[bound], True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del out[key]
            if len(rest) == 1:
                only = rest[0]
                out |= {"allOf": [only]} if "$ref" in only else only
            else:
                out[key] = rest
            out["nullable"] = True
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        out["nullable"] = out.get("nullable", False) or len(types) < len(out["type"])
        out["type"] = types[0] if len(types) == 1 else "string"
    return out


def _errors(codes: dict[int, str]) -> dict[str, Any]:
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {str(code): {"description": why, "content": body} for code, why in codes.items()}


def _probe(description: str, codes: dict[str, str]) -> dict[str, Any]:
    return {"get": {"tags": ["infrastructure"], "summary": description,
                    "responses": {c: {"description": d} for c, d in codes.items()}}}  # fmt: skip


@cache
def _document(api_id: int, raw_json: str) -> dict[str, Any]:
    import json

    raw = json.loads(raw_json)
    doc = to_30(raw)
    doc["openapi"] = "3.0.3"
    doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's validation error: this service answers 400
            responses |= _errors(PUBLIC_ERRORS)
            op["security"] = [{"bearer": []}, {}]
            if path == "/v1/chat/completions" or path == "/v1/completions":
                ok = responses.get("200", {}).setdefault("content", {})
                ok["text/event-stream"] = {"schema": CHUNK}
            del method
    doc["paths"]["/livez"] = _probe("liveness", {"200": "alive"})
    doc["paths"]["/readyz"] = _probe(
        "readiness, with each stage's state", {"200": "ready", "503": "not ready"}
    )
    doc["paths"]["/metrics"] = _probe("Prometheus metrics", {"200": "metrics", "401": "API key needed"})
    return doc


def document(api) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the FastAPI app `api` (computed once per app)."""
    import json

    return copy.deepcopy(_document(id(api), json.dumps(api.openapi(), sort_keys=True)))
