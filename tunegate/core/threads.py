"""How many threads a torch process takes on this machine."""

from __future__ import annotations

import os


def torch_threads() -> int:
    """``OMP_NUM_THREADS`` when it is set (a process that shares the machine with others, such
    as one of `make test`'s two workers, tests/conftest.py), else every core: two processes
    that each take every core slow each other many times over."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1
