"""What the running service serves, per stage, for `tunegate status` (which has no HTTP client).

The service writes ``serving-status.json`` beside its request log at each reload: its pid,
the time, and each stage's release and state (``serving``, ``degraded`` with the reason,
``empty``). Reading it needs nothing of the service.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json, write_json

STATUS_FILE = "serving-status.json"


def write_status(folder: Path, described: dict[str, Any]) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(folder / STATUS_FILE, {"pid": os.getpid(), "time": now} | described)


def serving_states(folder: Path) -> dict[str, str]:
    """What the service that writes `folder`/serving-status.json serves per stage, in words:
    ``serving vX``, ``degraded: why`` or ``empty``; ``service stopped`` when its process is gone."""
    path = folder / STATUS_FILE
    if not path.exists():
        return {}
    info = read_json(path)
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return dict.fromkeys(info["stages"], f"service stopped (last seen {info['time']})")
    except PermissionError:
        pass
    words = {}
    for stage, st in info["stages"].items():
        words[stage] = {
            "serving": f"serving {st['version']}", "degraded": f"degraded: {st['reason']}", "empty": "empty",
        }[st["state"]]  # fmt: skip
    return words
