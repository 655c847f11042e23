"""The tunegate command line. Domain errors become one clear line and a non-zero exit.

Heavy libraries are imported inside the commands that need them, so ``tunegate --help``
is instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer

from tunegate.core.command import fail
from tunegate.core.errors import TunegateError
from tunegate.core.stage import configure_logging

app = typer.Typer(
    help="tunegate: evaluation-gated model releases (fine-tune, gate, roll out, monitor).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    configure_logging(verbose)
    if not verbose:  # one INFO line per HTTP request drowns what replay and query print
        logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def params(path: Path = typer.Option(Path("params.yaml"), "--params", help="params.yaml to check.")) -> None:
    """Validate params.yaml and print the resolved configuration (defaults filled in)."""
    from tunegate.core.params import load_params

    try:
        resolved = load_params(path)
    except TunegateError as err:
        fail(err)
    typer.echo(json.dumps(resolved.to_dict(), indent=2))


@app.command()
def gate(
    check: bool = typer.Option(
        False,
        "--check",
        help="Exit 0 when the candidate is approved, 1 when rejected, 3 when there is not enough evidence.",
    ),
    path: Path | None = typer.Option(None, "--gate-file", help="The gate stage's record (dvc.yaml's)."),
    format_: str = typer.Option(
        "text", "--format", help="text (one line) or markdown (a pull-request comment: checks, regressions)."
    ),
) -> None:
    """Show the release verdict from eval/gate.json (written by `dvc repro`)."""
    from tunegate.core.errors import ConfigError
    from tunegate.core.layout import layout
    from tunegate.evaluation.comment import comment_for
    from tunegate.evaluation.gate import EXIT_CODES
    from tunegate.evaluation.gate import check as read_verdict

    gate_file = path or layout().gate_record
    try:
        if format_ not in ("text", "markdown"):
            raise ConfigError(f"--format {format_!r}: use text or markdown")
        verdict, reason = read_verdict(gate_file)
        typer.echo(comment_for(gate_file) if format_ == "markdown" else reason, nl=format_ == "text")
    except TunegateError as err:
        fail(err)
    if check and EXIT_CODES[verdict]:
        raise typer.Exit(EXIT_CODES[verdict])


@app.command()
def plan(
    params_path: Path = typer.Option(
        Path("params.yaml"), "--params", help="params.yaml (gate.margins, alpha)."
    ),
    disagreement: float | None = typer.Option(
        None,
        "--disagreement",
        help="Share of items two releases answer differently (default: the last gate's).",
    ),
    items: int | None = typer.Option(None, "--items", help="Plan for a hold-out of this many items instead."),
) -> None:
    """What the suites can show before evaluating: per suite compared with production, the
    margin, the smallest margin its items detect at power 0.8 and the items that would show it."""
    from tunegate.core.artifacts import read_json
    from tunegate.core.errors import ArtifactError, ConfigError
    from tunegate.core.layout import layout
    from tunegate.core.params import load_params
    from tunegate.evaluation.plan import DEFAULT_DISAGREEMENT, observed_disagreement
    from tunegate.evaluation.plan import plan as plan_rows

    try:
        params = load_params(params_path)
        gate_file = layout(Path("."), params.release.pipeline).gate_record if items is None else None
        record = read_json(gate_file) if gate_file is not None and gate_file.exists() else {}
        if items is not None:
            sizes = {"holdout": items}
        elif record:
            found = Path(record.get("results", "eval/results")) / "evidence.json"
            if not found.exists():
                raise ArtifactError(f"{found} is missing: run `dvc repro`, or plan a size with --items N")
            evidence = read_json(found)
            sizes = {k: v["rows"] for k, v in evidence["suites"].items() if v["versus_baseline"]}
        else:
            raise ArtifactError("no gate record yet: run `dvc repro` first, or plan a size with --items N")
        if disagreement is not None and not 0 < disagreement <= 1:
            raise ConfigError(f"--disagreement {disagreement} is outside (0, 1]")
        seen = observed_disagreement(record)
        rate = disagreement or seen or DEFAULT_DISAGREEMENT
        source = (
            "given" if disagreement else "the last gate's" if seen else "assumed: no release to compare yet"
        )
        metric = params.gate.primary_metric if record.get("task") == "generation" else "accuracy"
        margins = {s: params.gate.margin_for(metric, s) for s in sizes}
        rows = plan_rows(sizes, metric, margins, rate, params.gate.alpha)
    except TunegateError as err:
        fail(err)
    typer.echo(f"disagreement rate {rate:.3f} ({source}); alpha {params.gate.alpha}, power 0.8")
    typer.echo(f"{'suite':<12} {'items':>6} {'margin':>7} {'detects':>8} {'needed':>7}  enough?")
    for r in rows:
        needed = "-" if r.needed is None else str(r.needed)
        typer.echo(
            f"{r.suite:<12} {r.items:>6} {r.margin:>7.3f} {r.detectable:>8.3f} {needed:>7}  "
            f"{'yes' if r.enough else 'no: not enough evidence is likely'}"
        )


def _registry(params_path: Path):
    from tunegate.core.params import load_params
    from tunegate.serving.registry import Registry

    registry = Registry.from_params(Path("."), load_params(params_path))
    registry.sync()  # with release.remote: what every machine sees, not this clone's last fetch
    return registry


PARAMS_OPTION = typer.Option(
    Path("params.yaml"), "--params", help="params.yaml (release.name, lock timeout)."
)


@app.command()
def promote(
    version: str = typer.Argument(..., help="A registered release, e.g. v0.0.3 (see `tunegate status`)."),
    to: str = typer.Option(..., "--to", help="staging, canary or production."),
    weight: int | None = typer.Option(None, "--weight", help="Canary traffic share in percent."),
    force: bool = typer.Option(
        False, "--force", help="Skip the verdict and stage-order checks (needs --reason)."
    ),
    reason: str = typer.Option("", "--reason", help="Why; recorded in GTO and registry/audit.jsonl."),
    params_path: Path = PARAMS_OPTION,
) -> None:
    """Move a release to the next stage (staging -> canary -> production), or set the canary weight."""
    try:
        a = _registry(params_path).promote(version, to, weight=weight, force=force, reason=reason)
    except TunegateError as err:
        fail(err)
    share = f" at {a.weight}% of traffic" if a.stage == "canary" else ""
    typer.echo(f"{version} is in {a.stage}{share}{' (forced)' if a.forced else ''}")


@app.command()
def rollback(
    to: str | None = typer.Option(
        None, "--to", help="An earlier production release (default: the previous one)."
    ),
    stage: str = typer.Option("production", "--stage", help="production, or canary to withdraw the canary."),
    reason: str = typer.Option("", "--reason", help="Why; recorded."),
    params_path: Path = PARAMS_OPTION,
) -> None:
    """Restore the previous production release exactly (or withdraw the canary)."""
    try:
        a = _registry(params_path).rollback(to=to, stage=stage, reason=reason)
    except TunegateError as err:
        fail(err)
    typer.echo("the canary is withdrawn" if a is None else f"production is {a.version} again")


@app.command()
def register(
    candidate_record: Path | None = typer.Option(
        None, "--record", help="The package stage's record (dvc.yaml's)."
    ),
    params_path: Path = PARAMS_OPTION,
) -> None:
    """Register the packaged candidate at the current commit (when the package stage could not).

    What is registered comes from the BentoML store after verification (the model exists,
    its files hash to the record's tree sha256, its gate record approved it), not from the
    record's word."""
    from tunegate.core.artifacts import read_json, write_json
    from tunegate.core.errors import RegistryError
    from tunegate.core.layout import layout
    from tunegate.serving.package import verify_registration

    try:
        if candidate_record is None:
            from tunegate.core.params import load_params

            candidate_record = layout(Path("."), load_params(params_path).release.pipeline).candidate_record
        record = read_json(candidate_record) if candidate_record.exists() else None
        if not record or not record.get("packaged"):
            raise RegistryError(
                f"{candidate_record}: no packaged candidate; run `dvc repro` (approved candidates only)"
            )
        version = _registry(params_path).register(verify_registration(record))
        # the pointer says what is true now: anything that reads it finds the release
        done = {k: v for k, v in record.items() if k != "registration"} | {"version": version}
        write_json(candidate_record, done)
    except TunegateError as err:
        fail(err)
    typer.echo(f"{record['bento_tag']} is release {version}")


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    params_path: Path = PARAMS_OPTION,
) -> None:
    """Which release each stage holds, its traffic share, gate verdict, when and by whom, and
    what the running service (if any) serves for it: `serving`, or `degraded: why`."""
    from tunegate.core.params import load_params
    from tunegate.serving.logstore import configured, local_dir
    from tunegate.serving.status import serving_states

    try:
        rows = _registry(params_path).status()
        states = serving_states(local_dir(configured(load_params(params_path).serve.request_log), Path.cwd()))
    except TunegateError as err:
        fail(err)
    for row in rows:
        row["serving"] = states.get(row["stage"], "-")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    cols = ("stage", "version", "traffic", "verdict", "since", "by", "reason", "serving")
    cells = [
        [str(r[c] if r[c] is not None else "-")[:60] + ("%" if c == "traffic" else "") for c in cols]
        for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    for line in ([*cols], *cells):
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@app.command()
def serve(
    port: int | None = typer.Option(None, "--port", help="Default: serve.port in params.yaml."),
    host: str | None = typer.Option(None, "--host", help="Default: serve.host in params.yaml."),
    params_path: Path = PARAMS_OPTION,
) -> None:
    """Start the BentoML service on vLLM with the live releases (see `tunegate status`)."""
    import os

    from tunegate.core.params import load_params

    try:
        params = load_params(params_path)
    except TunegateError as err:
        fail(err)
    project = Path(".").resolve()
    env = os.environ | {
        "TUNEGATE_PROJECT": str(project),
        "TUNEGATE_PARAMS": str(params_path.resolve()),
        "TUNEGATE_SERVER_PID": str(os.getpid()),  # exec keeps the pid: the workers' parent
    }
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "tunegate.serving.service:TuneGate",
        "--working-dir",
        str(project),
    ]
    cmd += ["--host", host or params.serve.host, "--port", str(port or params.serve.port)]
    sys.stdout.flush()
    # Become the BentoML server (no wrapper process): a supervisor's SIGTERM reaches it directly.
    os.execve(sys.executable, cmd, env)


@app.command()
def query(
    message: str = typer.Argument(..., help="A customer message to classify (or a prompt with --chat)."),
    url: str = typer.Option("http://127.0.0.1:3000", "--url", help="The service."),
    chat: bool = typer.Option(
        False, "--chat", help="Ask /v1/chat/completions through the openai client instead."
    ),
    user: str | None = typer.Option(None, "--user", help="Caller id (sticky routing)."),
) -> None:
    """Send one message to the service; print the answer and the release that served it."""
    import httpx

    try:
        if chat:
            from openai import OpenAI

            client = OpenAI(base_url=f"{url}/v1", api_key=os.environ.get("TUNEGATE_API_KEY", "none"))
            raw = client.chat.completions.with_raw_response.create(
                model="tunegate",
                messages=[{"role": "user", "content": message}],
                user=user or "cli",
                max_tokens=64,
            )
            answer = raw.parse().choices[0].message.content
            typer.echo(f"{answer}\n(served by {raw.headers.get('x-tunegate-version')})")
            return
        key = os.environ.get("TUNEGATE_API_KEY")
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.post(f"{url}/classify", json={"text": message, "user": user}, headers=auth, timeout=120)
    except (httpx.HTTPError, OSError) as err:
        fail(TunegateError(f"cannot reach {url}: {err}"))
    if r.status_code != 200:
        fail(TunegateError(f"{r.status_code}: {r.text}"))
    typer.echo(json.dumps(r.json()))


rollout_app = typer.Typer(
    help="The staged rollout: judge the canary from the request log.", no_args_is_help=True
)
app.add_typer(rollout_app, name="rollout")


@rollout_app.command("step")
def rollout_step(
    dry_run: bool = typer.Option(False, "--dry-run", help="Judge and print; change nothing."),
    params_path: Path = PARAMS_OPTION,
) -> None:
    """Compare canary with production over the window; advance, promote or roll back."""
    from tunegate.core.params import load_params
    from tunegate.serving.logstore import configured
    from tunegate.serving.requestlog import RequestLog
    from tunegate.serving.rollout import step

    try:
        params = load_params(params_path)
        registry = _registry(params_path)
        log = RequestLog(configured(params.serve.request_log), Path.cwd())
        log.close_lost(params.serve.lost_after_seconds)  # a dead replica's open rows count as lost
        decision = step(registry, log, params.release, params.gate.alpha, apply=not dry_run)
    except TunegateError as err:
        fail(err)
    weight = f" to {decision.weight}%" if decision.action == "advance" else ""
    typer.echo(f"{decision.action}{weight}{' (dry run)' if dry_run else ''}")
    for reason in decision.reasons:
        typer.echo(f"  - {reason}")


@app.command()
def replay(
    file: Path = typer.Argument(
        ..., help="CSV or JSONL with a text column (e.g. data/prepared/shifted.jsonl)."
    ),
    rate: float = typer.Option(5.0, "--rate", help="Requests per second."),
    limit: int | None = typer.Option(None, "--limit", help="Send at most this many."),
    url: str = typer.Option("http://127.0.0.1:3000", "--url", help="The service."),
    text_column: str = typer.Option("text", "--text-column"),
    callers: int = typer.Option(100, "--callers", help="Distinct caller ids to spread the traffic over."),
    feedback: bool = typer.Option(
        False, "--feedback", help="Also send each row's true label (--label-column) to /feedback."
    ),
    label_column: str = typer.Option("label", "--label-column"),
    endpoint: str = typer.Option(
        "classify", "--endpoint", help="classify, or generate (--feedback then sends reference answers)."
    ),
) -> None:
    """Send messages from a file to /classify (or /generate) at a steady rate; print a summary
    per release. With --feedback, a label the service refuses is counted and the replay goes on.
    A generation release's prepared records: --text-column input --label-column answer."""
    from tunegate.serving.replay import ReplayKeys, read_rows, send

    try:
        if rate <= 0:
            raise TunegateError(f"--rate {rate} must be positive")
        rows = read_rows(file, text_column, limit)
        labels = [r.get(label_column) for r in rows] if feedback else None
        if labels is not None and not all(labels):
            raise TunegateError(f"--feedback needs a {label_column!r} value on every row of {file}")
        texts = [r[text_column] for r in rows]
        summary = send(url, texts, labels, rate, callers, ReplayKeys.from_env(), endpoint)
    except TunegateError as err:
        fail(err)
    typer.echo(json.dumps(summary))


ui_app = typer.Typer(help="The release dashboard (served at /ui by `tunegate serve`).", no_args_is_help=True)
app.add_typer(ui_app, name="ui")


@ui_app.command("build")
def ui_build(
    out: Path = typer.Option(..., "--out", help="Folder to write the static site into (replaced)."),
    params_path: Path = PARAMS_OPTION,
) -> None:
    """Write the dashboard's pages as a static site (opens from file:// or any web server)."""
    from tunegate.core.params import load_params
    from tunegate.serving.ui import build_site

    try:
        site = build_site(Path.cwd(), load_params(params_path), out)
    except TunegateError as err:
        fail(err)
    for note in site["notes"]:
        typer.echo(f"note: {note}")
    pages = sum(1 for k in site if k.startswith("api/"))
    typer.echo(f"wrote {out}/index.html ({pages} views); open it in a browser")


@app.command()
def version() -> None:
    """Print tunegate's version and the versions of the libraries it runs on."""
    from tunegate.core.artifacts import environment

    typer.echo(json.dumps(environment()["libraries"], indent=2))


# Commands whose bodies live with their stage: the recipe search (tunegate/tuning/),
# drift (tunegate/monitoring/).
from tunegate.monitoring.cli import drift as _drift  # noqa: E402
from tunegate.tuning.cli import tune as _tune  # noqa: E402

app.command("tune")(_tune)
app.command("drift")(_drift)


if __name__ == "__main__":
    app()
