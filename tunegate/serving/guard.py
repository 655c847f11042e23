"""The ASGI middleware in front of the whole BentoML app (its own routes included).

- Request bodies over ``serve.max_body_bytes`` get 413 before the app sees a byte of them
  (the Content-Length is checked first; a chunked body is counted as it arrives).
- ``/metrics`` needs the API key (or the admin token) when ``serve.require_api_key`` is on,
  unless ``serve.public_metrics`` is set.
- ``/readyz`` answers from the runtime: 200 or 503 with ``{"ready": ...}``; the detail (every
  stage's state, why a degraded stage is not served, the request log's and the watch loop's
  health, which name releases, databases and errors) only to the admin token.
- ``/docs.json`` is the API's one OpenAPI 3.0 document (`tunegate/serving/openapi.py`).
- Every ``/ui`` response carries a Content-Security-Policy (scripts, styles and requests to
  this origin only; no framing), ``X-Frame-Options: DENY``, ``X-Content-Type-Options:
  nosniff`` and ``Referrer-Policy: no-referrer``; the drift reports (Evidently pages with
  inline scripts) are sandboxed instead, so their scripts run without this origin.
"""

from __future__ import annotations

import json
from typing import Any

from tunegate.serving.api import error_body
from tunegate.serving.auth import ADMIN, bearer, holds, metrics_allowed

Message = dict[str, Any]

UI_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
UI_HEADERS = [
    (b"content-security-policy", UI_CSP),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip
REPORT_CSP = b"sandbox allow-scripts; default-src 'self' 'unsafe-inline' data: blob:; frame-ancestors 'none'"


def with_headers(send, headers: list[tuple[bytes, bytes]]):
    """`send` that adds `headers` to the response start (replacing any of the same name)."""
    names = {k for k, _ in headers}

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = message | {"headers": kept + headers}
        await send(message)

    return sending


def ui_headers(path: str) -> list[tuple[bytes, bytes]]:
    if path.startswith("/ui/reports/"):
        return [(b"content-security-policy", REPORT_CSP), *UI_HEADERS[1:]]
    return UI_HEADERS


async def respond(send, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (extra or [])})
    await send({"type": "http.response.body", "body": data, "more_body": False})


class Guard:
    def __init__(self, app, api) -> None:
        self.app, self.api = app, api  # api: the FastAPI app, whose state holds the runtime

    @property
    def params(self):
        rt = getattr(self.api.state, "runtime", None)
        return rt.params if rt is not None else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, params = scope["path"], self.params
        if path == "/ui" or path.startswith("/ui/"):
            send = with_headers(send, ui_headers(path))
        if path == "/readyz" and scope["method"] == "GET":
            return await self.readyz(send, scope)
        if path == "/docs.json" and scope["method"] == "GET":
            from tunegate.serving.openapi import document

            return await respond(send, 200, document(self.api))
        if params is None:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        serve = params.serve
        if path == "/metrics" and not metrics_allowed(headers, serve.require_api_key, serve.public_metrics):
            extra = [(b"www-authenticate", b"Bearer")]
            return await respond(send, 401, error_body("/metrics needs the API key", "unauthorized"), extra)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            return await self.limited(scope, receive, send, headers, serve.max_body_bytes)
        return await self.app(scope, receive, send)

    async def readyz(self, send, scope) -> None:
        rt = getattr(self.api.state, "runtime", None)
        if rt is None:
            return await respond(send, 503, {"ready": False})
        ok, body = rt.readiness()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        await respond(send, 200 if ok else 503, body if holds(bearer(headers), ADMIN) else {"ready": ok})

    async def limited(self, scope, receive, send, headers: dict[str, str], limit: int) -> None:
        too_big = error_body(f"the request body is larger than {limit} bytes", "request_too_large")
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            return await respond(send, 400, error_body("invalid Content-Length", "invalid_request_error"))
        if length is not None and int(length) > limit:
            return await respond(send, 413, too_big)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body arrived
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await respond(send, 413, too_big)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as the app expects

        await self.app(scope, replay, send)
