"""Who may do what: bearer tokens from the environment, compared in constant time.

- ``TUNEGATE_ADMIN_TOKEN``: everything: admin actions, pinning a stage (``tunegate:canary``),
  feedback, /metrics.
- ``TUNEGATE_API_KEY``: the public API and /metrics, when ``serve.require_api_key`` is on;
  several keys comma-separated, one per client: the key a request holds is who it is for
  the canary judge (`identity`), which no request body or header can choose.
- ``TUNEGATE_FEEDBACK_KEY``: ``POST /feedback`` (its labels become training data, so it is
  never anonymous).
- ``TUNEGATE_VIEWER_KEY``: reading the dashboard's data (``/ui/api/*``, the drift report
  pages), which hold the audit trail with operators' names, evaluation messages and the
  model cards. The admin token and, when ``serve.require_api_key`` is on, an API key read
  them too; anonymously they are read only over a loopback connection that no proxy
  forwarded (a service on 127.0.0.1, a person on the same machine).

The scheme is case-insensitive (``Bearer``, ``bearer``), as RFC 7235 says.
"""

from __future__ import annotations

import hmac
import os

from fastapi import Request

from tunegate.serving.api import ApiError

ADMIN, API_KEY, FEEDBACK = "TUNEGATE_ADMIN_TOKEN", "TUNEGATE_API_KEY", "TUNEGATE_FEEDBACK_KEY"
VIEWER = "TUNEGATE_VIEWER_KEY"


def bearer(headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def holds(given: str | None, env: str) -> bool:
    expected = os.environ.get(env)
    return bool(expected and given) and hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def api_keys() -> list[str]:
    return [k.strip() for k in os.environ.get(API_KEY, "").split(",") if k.strip()]


def matching_key(given: str | None) -> str | None:
    """The API key `given` is, compared in constant time with each; None when it is none."""
    if not given:
        return None
    found = None
    for key in api_keys():  # no early exit: the time does not tell which key matched
        if hmac.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass")):
            found = key
    return found


def identity(request: Request, rt, privileged: bool) -> str | None:
    """Who the request is for the canary judge: the API key it holds when serve.require_api_key
    is on, else the client address (tunegate/serving/clients.py); never a caller-asserted id."""
    from tunegate.serving.clients import client_address

    if privileged:
        return "admin"
    if rt.params.serve.require_api_key:
        key = matching_key(bearer(request.headers))
        return "key:" + key if key else None
    address = client_address(request, rt.params.serve.trusted_proxies)
    return "address:" + address if address else None


def unauthorized(what: str) -> ApiError:
    return ApiError(
        401, f"missing or wrong bearer token ({what})", "unauthorized", {"WWW-Authenticate": "Bearer"}
    )


def admin_auth(request: Request) -> None:
    if not os.environ.get(ADMIN):
        raise ApiError(403, f"this endpoint is disabled: set {ADMIN} on the server", "forbidden")
    if not holds(bearer(request.headers), ADMIN):
        raise unauthorized("the admin token")


def public_auth(request: Request, rt) -> bool:
    """Check the public API key when one is required; returns whether the caller is an admin."""
    given = bearer(request.headers)
    if holds(given, ADMIN):
        return True
    if rt.params.serve.require_api_key:
        if not api_keys():
            raise ApiError(503, f"serve.require_api_key is on but {API_KEY} is not set", "unavailable")
        if matching_key(given) is None:
            raise unauthorized("the API key")
    return False


def loopback_only(request: Request) -> bool:
    """The connection came from and to this machine, and no proxy forwarded it."""
    import ipaddress

    def local(host: str | None) -> bool:
        try:
            return host is not None and ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return host == "localhost"

    server = request.scope.get("server") or (None, None)
    forwarded = "x-forwarded-for" in request.headers or "forwarded" in request.headers
    return not forwarded and local(request.client.host if request.client else None) and local(server[0])


def viewer_auth(request: Request, rt) -> None:
    """Reading the dashboard's data: the viewer key, the admin token, an API key when the API
    needs one; anonymously only over loopback."""
    given = bearer(request.headers)
    if holds(given, VIEWER) or holds(given, ADMIN):
        return
    if rt.params.serve.require_api_key:
        public_auth(request, rt)
        return
    if not loopback_only(request):
        raise unauthorized(f"the dashboard's data: {VIEWER}, the admin token, or a loopback connection")


def feedback_auth(request: Request) -> None:
    if not (os.environ.get(FEEDBACK) or os.environ.get(ADMIN)):
        raise ApiError(403, f"feedback is disabled: set {FEEDBACK} on the server", "forbidden")
    given = bearer(request.headers)
    if not (holds(given, FEEDBACK) or holds(given, ADMIN)):
        raise unauthorized("the feedback key")


def metrics_allowed(headers, require_api_key: bool, public_metrics: bool) -> bool:
    if public_metrics or not require_api_key:
        return True
    given = bearer(headers)
    return matching_key(given) is not None or holds(given, ADMIN)
