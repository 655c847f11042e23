"""Bounded labels on BentoML's own request metrics.

BentoML's traffic middleware (the outermost layer of the served app) labels every request
by its path, so a caller sending random paths (``/x1`` ... ``/x30``) or route parameters
(``/ui/api/release/<anything>.json``) adds series to ``/metrics`` without bound. The
service swaps that middleware for `FoldedTrafficMetrics` (`install`, called by
tunegate/serving/service.py before BentoML builds the app): it hands BentoML the path folded to its
route's template, or to ``/{unknown}`` when no route answers it, and everything inside it
(the guard, the API) sees the request's own path again (`RealPath`).
"""

from __future__ import annotations

from typing import Any

REAL = "tunegate.real_path"
"""Scope key: the request's own path while the metrics see the route's template."""
UNKNOWN = "/{unknown}"
"""The one path every request no route answers is counted under."""
BENTO_PATHS = frozenset({"/", "/livez", "/healthz", "/readyz", "/metrics", "/docs.json"})
"""BentoML's own routes (the FastAPI app holds the rest)."""


def labelled(api: Any, scope: dict[str, Any]) -> dict[str, Any]:
    """`scope` with its path folded to the route's template (a wrong method is still the
    route's: the app answers 405) or to UNKNOWN; the real path kept under REAL."""
    from starlette.routing import Match

    if scope["type"] != "http" or scope["path"] in BENTO_PATHS:  # lifespan scopes have no path
        return scope
    path = scope["path"]
    route = next((r for r in api.routes if r.matches(scope)[0] != Match.NONE), None)
    template = UNKNOWN if route is None else route.path if route.param_convertors else None
    if template is None:
        return scope
    return scope | {"path": template, "raw_path": template.encode(), REAL: (path, scope.get("raw_path"))}


class RealPath:
    """The request's own path back, where the metrics saw a template."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        real = scope.get(REAL) if scope["type"] == "http" else None
        if real is not None:
            scope = {k: v for k, v in scope.items() if k != REAL} | {"path": real[0], "raw_path": real[1]}
        await self.app(scope, receive, send)


def folded(base: type, api: Any) -> type:
    """BentoML's traffic-metrics middleware class, labelling by folded paths."""

    class FoldedTrafficMetrics(base):  # type: ignore[misc, valid-type]
        def __init__(self, app, **kwargs: Any) -> None:
            super().__init__(RealPath(app), **kwargs)

        async def __call__(self, scope, receive, send) -> None:
            await super().__call__(labelled(api, scope), receive, send)

    return FoldedTrafficMetrics


def install(api: Any) -> None:
    """Make BentoML build its served app with `FoldedTrafficMetrics` (it imports the class
    when it builds the app, after the service module is imported)."""
    from bentoml._internal.server.http import instruments

    for name in ("RunnerTrafficMetricsMiddleware", "HTTPTrafficMetricsMiddleware"):
        current = getattr(instruments, name)
        if not getattr(current, "tunegate_folded", False):
            patched = folded(current, api)
            patched.tunegate_folded = True
            setattr(instruments, name, patched)
