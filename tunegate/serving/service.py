"""The BentoML service: `bentoml serve tunegate.serving.service:TuneGate` (what `tunegate serve` runs).

The project folder and params file come from TUNEGATE_PROJECT and TUNEGATE_PARAMS. The
engine starts in the worker; the live releases' adapters are verified and loaded, stage
by stage, by the startup hook (a stage whose release cannot be served is degraded, the
others serve, and start-up goes on). /readyz is answered by `tunegate/serving/guard.py` from the
runtime's state; /livez is BentoML's own.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml

from tunegate.core.layout import layout
from tunegate.core.params import load_params
from tunegate.serving.app import build_app
from tunegate.serving.guard import Guard
from tunegate.serving.lifeline import SERVER_PID, die_with_parent, expected_parent
from tunegate.serving.metric_paths import install as install_folded_metrics
from tunegate.serving.runtime import Runtime

SERVER = expected_parent(SERVER_PID)
if SERVER is not None and os.getpid() != SERVER:  # a worker (the server imports this module too):
    die_with_parent(SERVER)  # first thing, so a worker whose server is already gone never boots an engine
app = build_app()
install_folded_metrics(app)  # BentoML's per-path request metrics, bounded (tunegate/serving/metric_paths.py)


@bentoml.asgi_app(app, path="/")
@bentoml.service(name="tunegate", workers=1, traffic={"timeout": 300})
class TuneGate:
    def __init__(self) -> None:
        from tunegate.serving.engine import Engine

        if SERVER is None:  # `bentoml serve` run directly: watch whichever process started this worker
            die_with_parent()
        project = Path(os.environ.get("TUNEGATE_PROJECT", ".")).resolve()
        params = load_params(os.environ.get("TUNEGATE_PARAMS", str(project / "params.yaml")))
        serve = params.serve
        base = layout(project, params.release.pipeline).base_model
        engine = Engine(base, serve.max_model_len, serve.kv_cache_gib, serve.max_lora_rank)
        self.runtime = Runtime(project, params, engine)
        app.state.runtime = self.runtime

    @bentoml.on_startup
    async def load_releases(self) -> None:
        await self.runtime.start()

    async def __is_ready__(self) -> bool:
        return self.runtime.readiness()[0]

    async def __is_alive__(self) -> bool:
        """/livez: false once the vLLM engine has died (a supervisor should restart the service)."""
        return not self.runtime.engine.llm.errored

    @bentoml.on_shutdown
    def stop(self) -> None:
        try:
            self.runtime.stop()  # drains or spools the request log; may raise when both fail
        finally:
            self.runtime.engine.shutdown()  # never skipped: the engine's processes end with us


TuneGate.add_asgi_middleware(Guard, api=app)
