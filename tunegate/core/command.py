"""What every command module shares (tunegate/cli.py, tunegate/monitoring/cli.py, tunegate/tuning/cli.py): a
domain error ends the command with one clear line and its exit code. Not a stage dependency:
the stages raise ``TunegateError`` (tunegate/core/errors.py) and never exit through typer."""

from __future__ import annotations

from typing import NoReturn

import typer

from tunegate.core.errors import TunegateError


def fail(err: TunegateError) -> NoReturn:
    """End the command with the error's line (red, on stderr) and its exit code."""
    typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
    raise typer.Exit(err.exit_code) from err
