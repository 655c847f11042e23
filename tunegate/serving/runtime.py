"""What is live in the service: the engine, the release each stage serves, routing, capacity.

Loading is per stage. Each release is verified against the registry (its files hashed now,
in a private copy the engine then loads), checked against the service's base model, loaded
and warmed up; a release that fails any step leaves its stage *degraded*, with the reason
logged and shown by ``/readyz`` and ``tunegate status``, while the other stages serve. A
registry change never takes the service down, and an admin action checks that its target
can be served (`prepare`) before it changes the registry.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunegate.core.artifacts import read_json, verified_card
from tunegate.core.calibration import Calibration
from tunegate.core.deployment import log_secret
from tunegate.core.errors import ArtifactError, TunegateError
from tunegate.core.inference import classify_sampling, generate_sampling
from tunegate.core.layout import layout
from tunegate.core.params import Params
from tunegate.core.prompt import PromptTemplate
from tunegate.serving.api import ApiError
from tunegate.serving.logstore import configured, local_dir
from tunegate.serving.logwriter import LogWriter
from tunegate.serving.requestlog import Entry, RequestLog
from tunegate.serving.routing import route, routing_salt
from tunegate.serving.status import write_status

if TYPE_CHECKING:
    from tunegate.serving.prometheus import Metrics

log = logging.getLogger(__name__)
STALLED_ROUNDS, STALLED_SECONDS = 10, 600
"""The watch loop is stalled when no round finished for this many rounds and seconds (a
round may run the canary judge: minutes are normal, ten of them are not)."""


@dataclass(frozen=True)
class Live:
    stage: str
    version: str
    content: str
    """The adapter's tree sha256, as the registry recorded it."""
    path: Path
    template: PromptTemplate
    lora: Any
    calibration: Calibration = field(default_factory=Calibration)
    """The confidence map and abstention threshold the gate judged (packaged with the release)."""


@dataclass(frozen=True)
class StageState:
    stage: str
    version: str | None
    state: Literal["serving", "degraded", "empty"]
    reason: str = ""


async def complete(rt: Runtime, live: Live, prompt: str, sampling: Any, request_id: str) -> Any:
    final = None
    async for out in rt.engine.generate(prompt, sampling, request_id, live.lora):
        final = out
    return final


def of_request(request: Any) -> Runtime:
    """The service's runtime, once it is ready; a 503 before."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None or not rt.ready:
        raise ApiError(503, "the service is starting: engine and adapters are not loaded yet", "unavailable")
    return rt


async def until_disconnect(request: Any, work: Any) -> Any:
    """Await `work`; if the client goes away first, cancel it (which aborts the generation)."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if not done and await request.is_disconnected():
                task.cancel()
                raise ApiError(499, "client disconnected", "cancelled")
        return task.result()
    finally:
        task.cancel()


class Runtime:
    def __init__(self, project: Path, params: Params, engine: Any = None):
        from tunegate.serving.registry import Registry

        self.project = project
        self.params = params
        self.registry = Registry.from_params(project, params)
        self.log_location = configured(params.serve.request_log)
        self.log = RequestLog(self.log_location, project)  # reads, feedback, the judge
        self.writer = LogWriter(  # every request's row, off the event loop (tunegate/serving/logwriter.py)
            self.log,
            local_dir(self.log_location, project),
            max_pending=params.serve.log_queue,
            heartbeat_seconds=max(0.5, params.serve.lost_after_seconds / 6),
        )
        self.secret = log_secret(project)
        self.salt = routing_salt(self.secret)  # secret: no client computes which ids reach the canary
        self.log.check_secret(self.secret)  # every replica of one log keys caller hashes alike
        self.engine = engine
        self.live: dict[str, Live] = {}
        self.states: dict[str, StageState] = {}
        self.weights: dict[str, int] = {}
        self.ready = False
        self.in_flight = 0
        self.seen: tuple = ()
        self.background: list[asyncio.Future] = []
        self.shadows: set[asyncio.Future] = set()
        self.base_card = verified_card(layout(project, params.release.pipeline).base_model)
        self.adapters = Path(tempfile.mkdtemp(prefix="tunegate-adapters-"))
        self.loaded: dict[str, Live] = {}  # content hash -> a verified, loaded, warmed-up adapter
        self.templates: dict[str, PromptTemplate] = {}  # version -> its prompt (labels, task, schema)
        self._reload_lock = asyncio.Lock()
        self.metrics: Metrics | None = None  # made in start(), in the serving worker
        self.watch_error: str | None = None  # the watch loop's last error, until a round succeeds
        self.watched_at: float | None = None  # when the watch loop last finished a round

    async def start(self) -> None:
        from tunegate.serving.prometheus import process_metrics

        self.metrics = process_metrics()  # here, in the worker: see tunegate/serving/prometheus.py
        await self.engine.start()
        replayed = await asyncio.to_thread(self.writer.start)
        if replayed:
            log.warning("request log: %d spooled row(s) from an earlier process written", replayed)
        lost = await asyncio.to_thread(self.log.close_lost, self.params.serve.lost_after_seconds)
        if lost:
            log.warning("request log: %d request(s) left open by a dead process marked lost", lost)
        await self.reload()
        self.ready = True
        self.background = [asyncio.ensure_future(self.watch())]

    def finish(self, row: str, entry: Entry) -> None:
        """A request's outcome: its log row completed, and counted in the metrics."""
        self.writer.finish(row, entry)
        if self.metrics is not None:
            self.metrics.finished(entry)

    def stop(self) -> None:
        for task in self.background:
            task.cancel()
        self.writer.close(self.params.serve.log_drain_seconds)
        self.log.close()
        shutil.rmtree(self.adapters, ignore_errors=True)

    async def watch(self) -> None:
        """Follow the registry (promotions made with the CLI reach the live service within
        serve.watch_seconds) and, when release.judge_every_minutes is set, run the canary
        judge on that schedule."""
        from tunegate.serving.rollout import step

        serve, release = self.params.serve, self.params.release
        last_judged = time.monotonic()
        self.watched_at = time.monotonic()
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
                lost = await asyncio.to_thread(self.log.close_lost, serve.lost_after_seconds)
                if lost:
                    log.warning("request log: %d request(s) of a silent replica marked lost", lost)
                if await asyncio.to_thread(self.snapshot) != self.seen:
                    await self.reload()
            except TunegateError as err:  # keep serving what is loaded; say why the change was not taken
                log.error("registry change not applied: %s", err)
                self.watch_error = str(err)
            except Exception as err:  # any other failure (a folder not writable, a bug): the loop lives on
                self.watch_error = f"{type(err).__name__}: {err}"
                log.exception("watch loop: %s; next round in %s s", self.watch_error, serve.watch_seconds)
            else:
                self.watch_error = None
            self.watched_at = time.monotonic()

    def watch_health(self) -> dict[str, Any]:
        """For /readyz: the watch loop ok, failing (its last round raised) or stalled (no round
        finished for STALLED_ROUNDS rounds, or the task is gone): a replica that no longer
        follows the registry may serve a release that was rolled back, so it is not ready."""
        serve = self.params.serve
        if serve.watch_seconds <= 0 or self.watched_at is None:
            return {"state": "off" if serve.watch_seconds <= 0 else "starting"}
        ago = time.monotonic() - self.watched_at
        dead = any(task.done() for task in self.background)
        state = (
            "stalled"
            if dead or ago > max(STALLED_SECONDS, STALLED_ROUNDS * serve.watch_seconds)
            else ("failing" if self.watch_error else "ok")
        )
        out: dict[str, Any] = {"state": state, "seconds_since_round": round(ago, 1)}
        return out | ({"error": self.watch_error} if self.watch_error else {})

    def snapshot(self) -> tuple:
        """What the registry says should be live: (stage, version, weight) per stage (after
        fetching it, when it follows a remote)."""
        self.registry.sync()
        return tuple(
            (s, a.version if a else None, a.weight if a else 0) for s, a in self.registry.stages().items()
        )

    async def prepare(self, version: str) -> Live:
        """Verify, load and warm up a registered release; raise TunegateError when it cannot be
        served. Loading and warming are cached by content; verification is not. The stage
        field is filled in by the caller."""
        from tunegate.serving.package import release_calibration, verified_copy

        release = await asyncio.to_thread(self.registry.release, version)
        # Verified on every call, cached or not: a store changed since the last load is refused.
        path = await asyncio.to_thread(
            verified_copy, release.bento_tag, release.tree_sha256, self.adapters / release.tree_sha256
        )
        if release.tree_sha256 in self.loaded:
            return self.loaded[release.tree_sha256]
        card = read_json(path / "card.json")
        if card["base_model"]["tree_sha256"] != self.base_card["tree_sha256"]:
            raise ArtifactError(
                f"{version} was trained on {card['base_model']['model_id']}, "
                f"but this service runs {self.base_card['model_id']}"
            )
        template = PromptTemplate.load(path)
        calibration = await asyncio.to_thread(release_calibration, release.bento_tag, release.tree_sha256)
        if calibration.method == "none" and calibration.abstain_below == 0:
            log.warning(
                "%s: %s; served with its raw confidence, never abstains", version, calibration.chosen_by
            )
        try:
            lora = await self.engine.load_adapter(version, release.tree_sha256, path)
            live = Live("", version, release.tree_sha256, path, template, lora, calibration)
            await self.warm_up(live)
        except TunegateError:
            raise
        except Exception as err:  # the engine refused the adapter (bad shapes, bad config)
            raise ArtifactError(
                f"{version}: the engine could not load it: {type(err).__name__}: {err}"
            ) from err
        self.loaded[release.tree_sha256] = live
        self.templates[version] = template
        return live

    async def reload(self) -> dict[str, Any]:
        """Re-read the registry and bring every stage in line, one stage at a time: a stage
        whose release cannot be served is degraded (and not served); the others serve."""
        async with self._reload_lock:
            seen = await asyncio.to_thread(self.snapshot)
            stages = await asyncio.to_thread(self.registry.stages)
            weights = await asyncio.to_thread(self.registry.weights)
            live, states = {}, {}
            for stage, held in stages.items():
                if held is None:
                    states[stage] = StageState(stage, None, "empty")
                    continue
                try:
                    ready = await self.prepare(held.version)
                except Exception as err:  # one bad release never takes the other stages down
                    why = str(err) if isinstance(err, TunegateError) else f"{type(err).__name__}: {err}"
                    log.error("%s: release %s is not served: %s", stage, held.version, why)
                    states[stage] = StageState(stage, held.version, "degraded", why)
                    continue
                live[stage] = replace(ready, stage=stage)
                states[stage] = StageState(stage, held.version, "serving")
            self.live, self.states, self.weights, self.seen = live, states, weights, seen
            if self.metrics is not None:
                self.metrics.weights(weights, live)
            log.info("live: %s; weights %s", {s: x.version for s, x in live.items()}, weights)
            await asyncio.to_thread(self.write_status)
            return self.describe()

    async def template_of(self, version: str) -> PromptTemplate:
        """The prompt of any registered release, live or not (verified from the store): its
        task kind, labels, system turn and output schema."""
        if version not in self.templates:
            from tunegate.serving.package import resolve

            release = await asyncio.to_thread(self.registry.release, version)
            folder = await asyncio.to_thread(resolve, release.bento_tag, release.tree_sha256)
            self.templates[version] = PromptTemplate.load(folder)
        return self.templates[version]

    def describe(self) -> dict[str, Any]:
        return {
            "live": {s: x.version for s, x in self.live.items()},
            "weights": self.weights,
            "stages": {s: asdict(x) for s, x in self.states.items()},
        }

    def write_status(self) -> None:
        """Where `tunegate status` reads what this service serves."""
        write_status(local_dir(self.log_location, self.project), self.describe())

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the stages public traffic is routed to can answer it (or none is promoted)."""
        routed = [s for s in self.weights if self.weights[s] > 0]
        serving = [s for s in routed if s in self.live]
        health, watch = self.writer.health(), self.watch_health()
        ok = self.ready and (not routed or bool(serving)) and health["state"] == "ok"
        ok = ok and watch["state"] != "stalled"
        degraded = {s: x.reason for s, x in self.states.items() if x.state == "degraded"}
        stages = {s: x.state for s, x in self.states.items()}
        return ok, {"ready": ok, "stages": stages, "degraded": degraded, "log": health, "watch": watch}

    async def warm_up(self, live: Live) -> None:
        """One label-constrained answer from a release before it takes traffic: the first
        request to use an adapter or a guided-decoding grammar pays for loading and
        compiling it, and that should be neither a caller nor a readiness probe."""
        prompt = live.template.render(self.engine.tokenizer, "warm-up")
        if live.template.task == "classification":
            sampling = classify_sampling(live.template.labels)
        else:  # the schema's grammar is compiled here, not on a caller's request
            schema = live.template.output_schema
            sampling = generate_sampling(8, schema, schema is not None)
        await complete(self, live, prompt, sampling, f"warm-up-{uuid.uuid4().hex}")

    def routed(self, caller: str | None) -> Live:
        """The release that answers a public request. A degraded canary gives its callers
        back to production; a degraded production is a 503 for its callers."""
        if not self.weights:
            raise ApiError(
                503, "no release is live yet: `tunegate promote VERSION --to canary` (or --to production)",
                "unavailable",
            )  # fmt: skip
        weights = self.weights
        if "canary" in weights and "canary" not in self.live and "production" in weights:
            weights = {"production": 100}
        stage = route(caller, weights, self.salt)
        if stage not in self.live:
            state = self.states.get(stage)
            why = state.reason if state else "not loaded"
            raise ApiError(503, f"the {stage} release cannot be served right now: {why}", "unavailable")
        return self.live[stage]

    def pinned(self, stage: str) -> Live:
        if stage in self.live:
            return self.live[stage]
        state = self.states.get(stage)
        if state is not None and state.state == "degraded":
            raise ApiError(503, f"stage {stage!r} is degraded: {state.reason}", "unavailable")
        raise ApiError(404, f"stage {stage!r} holds no release", "model_not_found")

    def model_names(self, privileged: bool) -> list[str]:
        public = self.params.serve.public_model
        if not self.live:
            return []
        return [public, *(f"{public}:{s}" for s in self.live)] if privileged else [public]


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
