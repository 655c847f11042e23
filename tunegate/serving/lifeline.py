"""No orphans: every process `tunegate serve` starts dies when the process that started it dies.

`tunegate serve` becomes BentoML's server process; it starts a worker (the service), and the
worker's vLLM starts an engine-core process holding the model. A SIGKILL gives a process no
chance to stop its children, so each child watches its own parent instead: a daemon thread
notices that the parent is gone (the process was re-parented) and ends the child with
SIGKILL. A worker whose server was killed thus frees the port, and an engine whose worker
was killed frees its memory, within about a second each.

(`prctl(PR_SET_PDEATHSIG)` is not used: it fires when the *thread* that forked the child
exits, and vLLM may start its engine from a short-lived thread.)
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_SECONDS = 0.25
SERVER_PID = "TUNEGATE_SERVER_PID"  # set by `tunegate serve` before it becomes the server
ENGINE_PARENT_PID = "TUNEGATE_ENGINE_PARENT_PID"  # set by the worker before vLLM starts its engine
INTERNAL = (SERVER_PID, ENGINE_PARENT_PID)
"""Variables the service sets for its own processes: never part of a deployment's config."""


def die_with_parent(expected: int | None = None) -> None:
    """Watch this process's parent; when it is gone, SIGKILL this process.

    `expected` is the pid the parent must have. A process that starts slowly can find its
    parent already dead (and itself adopted by init): with `expected` it notices and dies
    at once, where a watch of "whatever the parent is now" would never fire."""
    parent = os.getppid()
    if expected is not None and parent != expected:
        os.kill(os.getpid(), signal.SIGKILL)
    if expected is None and parent == 1:
        return  # started by init (a container's entry point) and told nothing: nothing to outlive

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def expected_parent(variable: str) -> int | None:
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() else None


def run_engine_core(*args, **kwargs):
    """vLLM's engine-core entry point, with the parent watch (see `guard_engine_core`)."""
    from vllm.v1.engine.core import EngineCoreProc

    die_with_parent(expected_parent(ENGINE_PARENT_PID))
    original = getattr(EngineCoreProc, "_tunegate_original", None) or EngineCoreProc.run_engine_core
    return original(*args, **kwargs)


def guard_engine_core() -> None:
    """Make the engine-core processes vLLM starts from now on watch their parent (this worker)."""
    from vllm.v1.engine.core import EngineCoreProc

    os.environ[ENGINE_PARENT_PID] = str(os.getpid())
    if getattr(EngineCoreProc, "_tunegate_original", None) is None:
        EngineCoreProc._tunegate_original = EngineCoreProc.run_engine_core
        EngineCoreProc.run_engine_core = staticmethod(run_engine_core)
