"""The release dashboard in the browser: ``/ui`` on the running service, or a static site.

The pages are three static files (``tunegate/serving/ui_static/``: ``index.html``, ``app.js``,
``style.css``; no JS library, no build step: charts are SVG drawn by ``app.js``) that read
JSON views (`tunegate/serving/dashboard.py`) by relative URL:

- served: ``/ui/api/releases.json``, ``/ui/api/release/<version>.json``,
  ``/ui/api/canary.json``, ``/ui/api/drift.json`` computed per request, the drift reports'
  Evidently pages under ``/ui/reports/``; reading them needs ``TUNEGATE_VIEWER_KEY``, the
  admin token or (with ``serve.require_api_key`` on) an API key, and is anonymous only over
  a loopback connection (tunegate/serving/auth.py ``viewer_auth``). The promote and rollback buttons
  call ``/admin/promote`` and ``/admin/rollback`` with the admin token the person types in;
  ``app.js`` keeps it in a variable of the open tab, never in the page, storage or a cookie.
- built (`tunegate ui build --out site/`): the same files, with every view computed once
  into ``site.js`` (a script, so the site also opens from ``file://``), and the Evidently
  pages copied into ``reports/``; read-only, no buttons.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from tunegate.core.errors import RegistryError, TunegateError
from tunegate.serving import dashboard
from tunegate.serving.api import ApiError
from tunegate.serving.auth import viewer_auth
from tunegate.serving.runtime import of_request as runtime

STATIC = Path(__file__).with_name("ui_static")
FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
router = APIRouter(include_in_schema=False)


def _static(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type=FILES[name], headers={"Cache-Control": "no-cache"})


@router.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/")
def ui_index() -> FileResponse:
    return _static("index.html")


@router.get("/ui/{name}")
def ui_file(name: str) -> Response:
    if name == "site.js":  # the live service: views come from /ui/api/
        return Response('window.TUNEGATE_SITE = {"mode": "live"};', media_type="text/javascript")
    if name not in FILES:
        raise ApiError(404, f"no page file {name!r}", "not_found")
    return _static(name)


def _reader(request: Request) -> Any:
    rt = runtime(request)
    viewer_auth(request, rt)
    return rt


def _view(work: Any) -> Any:
    try:
        return work()
    except RegistryError as err:
        raise ApiError(404, str(err), "not_found") from err
    except TunegateError as err:
        raise ApiError(503, str(err), "unavailable") from err


@router.get("/ui/api/releases.json")
def api_releases(request: Request) -> dict[str, Any]:
    rt = _reader(request)
    return _view(lambda: dashboard.releases_view(rt.registry))


@router.get("/ui/api/release/{version}.json")
def api_release(request: Request, version: str) -> dict[str, Any]:
    rt = _reader(request)
    return _view(lambda: dashboard.release_view(rt.registry, version))


@router.get("/ui/api/canary.json")
def api_canary(request: Request) -> dict[str, Any]:
    rt = _reader(request)
    return _view(lambda: dashboard.canary_view(rt.registry, rt.log, rt.params))


@router.get("/ui/api/drift.json")
def api_drift(request: Request) -> dict[str, Any]:
    rt = _reader(request)
    return dashboard.drift_view(rt.project / rt.params.monitor.reports_dir)


@router.get("/ui/reports/{name}")
def ui_report(request: Request, name: str) -> FileResponse:
    rt = _reader(request)
    folder = (rt.project / rt.params.monitor.reports_dir).resolve()
    path = folder / name
    if not dashboard.HTML_NAME.match(name) or not path.is_file():
        raise ApiError(404, f"no drift report page {name!r}", "not_found")
    return FileResponse(path, media_type="text/html")


def build_site(project: Path, params: Any, out: Path) -> dict[str, Any]:
    """Write the dashboard as a static site into `out` (replacing it); returns its views."""
    from tunegate.serving.registry import Registry

    site: dict[str, Any] = {"mode": "static", "notes": []}
    reports_dir = project / params.monitor.reports_dir
    try:
        registry = Registry.from_params(project, params)
        releases = dashboard.releases_view(registry)
        site["api/releases.json"] = releases
        for r in releases["releases"]:
            site[f"api/release/{r['version']}.json"] = dashboard.release_view(registry, r["version"])
        site["api/canary.json"] = _canary_snapshot(project, params, registry)
    except RegistryError as err:
        site["notes"].append(f"no registry: {err}")
    site["api/drift.json"] = drift = dashboard.drift_view(reports_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "reports").mkdir(parents=True)
    for name in FILES:
        shutil.copy2(STATIC / name, tmp / name)
    for report in drift["reports"]:
        for page in report["html"]:
            if (reports_dir / page).is_file():
                shutil.copy2(reports_dir / page, tmp / "reports" / page)
    script = "window.TUNEGATE_SITE = " + json.dumps(site, default=str).replace("</", "<\\/") + ";\n"
    (tmp / "site.js").write_text(script, encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return site


def _canary_snapshot(project: Path, params: Any, registry: Any) -> dict[str, Any]:
    from tunegate.serving.logstore import configured, database_url, sqlite_path
    from tunegate.serving.requestlog import RequestLog

    url = database_url(configured(params.serve.request_log), project)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        view = dashboard.canary_view(registry, None, params)
        return view | {"note": f"no request log at {path}: nothing served yet"}
    try:
        log_ = RequestLog(url, project)
    except TunegateError as err:  # a database that is down: the page says so
        note = f"the request log could not be read: {err}"
        return dashboard.canary_view(registry, None, params) | {"note": note}
    try:
        return dashboard.canary_view(registry, log_, params)
    finally:
        log_.close()
