"""The tunegate command line. Domain errors become one clear line and a non-zero exit.

Heavy libraries are imported inside the commands that need them, so ``tunegate --help``
is instant.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from tunegate.errors import TunegateError

app = typer.Typer(
    help="tunegate: evaluation-gated model releases (fine-tune, gate, roll out, monitor).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(err: TunegateError) -> None:
    typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
    raise typer.Exit(err.exit_code)


def run_stage(main: Callable[[], None]) -> None:
    """Run a DVC stage's main(): a TunegateError prints one message and exits non-zero."""
    try:
        main()
    except TunegateError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
def params(path: Path = typer.Option(Path("params.yaml"), "--params", help="params.yaml to check.")) -> None:
    """Validate params.yaml and print the resolved configuration (defaults filled in)."""
    from tunegate.params import load_params

    try:
        resolved = load_params(path)
    except TunegateError as err:
        fail(err)
    typer.echo(json.dumps(resolved.to_dict(), indent=2))


@app.command()
def gate(
    check: bool = typer.Option(
        False, "--check", help="Exit 0 when the candidate is approved, 1 when rejected (for CI)."
    ),
    path: Path = typer.Option(Path("eval/gate.json"), "--gate-file", help="The gate stage's record."),
) -> None:
    """Show the release verdict from eval/gate.json (written by `dvc repro`)."""
    from evaluation.gate import check as read_verdict

    try:
        approved, reason = read_verdict(path)
    except TunegateError as err:
        fail(err)
    typer.echo(reason)
    if check and not approved:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print tunegate's version and the versions of the libraries it runs on."""
    from tunegate.artifacts import environment

    typer.echo(json.dumps(environment()["libraries"], indent=2))


if __name__ == "__main__":
    app()
