"""How a pipeline stage runs: one logging set-up, and a domain error as one line and an exit code.

Every DVC stage ends in ``run_stage(main)``; the CLI shares ``configure_logging``. Kernel:
it imports nothing from a stage package.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from tunegate.core.errors import TunegateError

FORMAT = "%(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): a TunegateError prints one message and exits non-zero."""
    try:
        main()
    except TunegateError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
