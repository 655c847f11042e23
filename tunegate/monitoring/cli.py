"""``tunegate drift``: production traffic against the release's held-out reference.

Registered on the command line by ``tunegate/cli.py``; the signals, the report and the
retraining policy live in ``tunegate/monitoring/drift_report.py`` and ``tunegate/monitoring/retrain.py``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tunegate.core.command import fail
from tunegate.core.errors import ConfigError, TunegateError


def drift(
    window: str | None = typer.Option(
        None, "--window", help="How far back, e.g. 24h or 90m (default: the whole log)."
    ),
    last: int | None = typer.Option(None, "--last", help="Only the last N requests."),
    log_path: str | None = typer.Option(
        None, "--log", help="Request log: an SQLite file or a database URL (default: serve.request_log)."
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="A monitoring reference file (default: monitor.reference)."
    ),
    retrain: bool = typer.Option(False, "--retrain", help="If the retraining policy fires, run `dvc repro`."),
    params_path: Path = typer.Option(Path("params.yaml"), "--params", help="The params file."),
) -> None:
    """Compare production traffic with the release's held-out reference (Evidently). Exit 0:
    no drift, 3: drift, 4: window too small to judge, 2: error."""
    from tunegate.core.params import load_params
    from tunegate.core.stage import configure_logging
    from tunegate.monitoring.drift_report import main_report
    from tunegate.monitoring.retrain import due, reports, trigger
    from tunegate.serving.logstore import configured

    configure_logging()  # each long step on stderr (the verdict lines stay on stdout)
    try:
        params = load_params(params_path)
        m = params.monitor
        hours = _hours(window) if window else None
        log = log_path or configured(params.serve.request_log)
        record, html = main_report(log, reference or m.reference, Path(m.reports_dir), params, hours, last)
    except TunegateError as err:
        fail(err)
    fix, ref = record.correction, record.reference
    for sig in record.signals:
        verdict = {True: "DRIFT", False: "ok", None: "not judged"}[sig.drifted]
        score = "-" if sig.score is None else f"{sig.score:.3g}"
        p = "" if sig.p_value is None or sig.p_value == sig.score else f", p {sig.p_value:.3g}"
        note = f"; {sig.note}" if sig.note else ""
        if sig.caveat:  # a score not to be trusted for this window says so where it is read
            verdict, note = f"{verdict}?", f"{note}; {sig.caveat}"
        typer.echo(
            f"{sig.name:<16} {verdict:<10} {score:>9}  ({sig.method}, threshold {sig.threshold:.3g}{p}{note})"
        )
    w = record.window
    typer.echo(
        f"family-wise: {fix.method} over {fix.family} signals, each at {fix.each:.3g} "
        f"(alpha {fix.alpha:g}); reference {ref.path} ({ref.rows} rows)"
    )
    typer.echo(f"{record.status}: {w.requests} requests ({w.skipped_rows} rows skipped); report {html}")
    decision = due(reports(Path(m.reports_dir)), m.retrain_on, m.consecutive_windows)
    record.retraining = decision._asdict()
    record.write(html.parent)
    typer.echo(f"retraining policy: {'fires' if decision.fires else 'quiet'} ({decision.why})")
    if retrain and decision.fires:
        try:
            entry = trigger(
                Path("."), Path(m.reports_dir), decision.why, [f"{record.time}.json"], log,
                Path(m.feedback_dir), params.data.oos_label, params.base.task, params.release.pipeline,
            )  # fmt: skip
        except TunegateError as err:
            fail(err)
        fb = entry["feedback"]
        what = "requests with reference answers" if params.base.task == "generation" else "labelled requests"
        typer.echo(f"feedback: {fb['new']} new {what}, {fb['total']} in {fb['path']}")
        typer.echo(f"dvc repro exited {entry['exit_code']}; gate verdict: {entry['verdict']}")
    raise typer.Exit({"no_drift": 0, "drift": 3, "insufficient": 4}[record.status])


def _hours(text: str) -> float:
    units = {"h": 1.0, "m": 1 / 60, "d": 24.0}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError):
        raise ConfigError(f"--window {text!r}: use a number and a unit, e.g. 24h, 90m or 7d") from None
