"""One drift report: find the reference, judge a window, write ``<timestamp>.html`` and ``.json``.

The reference is the monitoring reference packaged with the release that answered most
of the window (``monitor.reference: release``: looked up in the registry, read from the
model store and checked against the hash recorded when it was packaged), or a reference
file named explicitly (``--reference`` or a path in ``monitor.reference``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tunegate.core import monitor_reference
from tunegate.core.artifacts import make_private, private_dir, write_json
from tunegate.core.errors import DataError
from tunegate.core.monitor_reference import GenerationReference, MonitorReference
from tunegate.monitoring.abstention import NAME as ABSTENTION
from tunegate.monitoring.abstention import abstention_rate
from tunegate.monitoring.drift import Correction, Signal, correction, judge_window, live_accuracy
from tunegate.monitoring.estimate import NAME as ESTIMATED
from tunegate.monitoring.estimate import estimated_accuracy, reliability_note
from tunegate.monitoring.generation_drift import correction as generation_correction
from tunegate.monitoring.generation_drift import fields, judge_generation, live_quality, live_rating
from tunegate.monitoring.window import GenerationWindow, Window, read_generation_window, read_window
from tunegate.serving.logstore import named

logger = logging.getLogger(__name__)
"""Each long step of a report (`tunegate drift` sends it to stderr): never silent."""


@dataclass(frozen=True)
class WindowSummary:
    requests: int
    distinct_messages: int
    skipped_rows: int
    start: str | None
    end: str | None
    version: str | None
    versions: dict[str, int]


@dataclass(frozen=True)
class ReferenceSummary:
    path: str
    sha256: str
    rows: int
    model_id: str


@dataclass
class DriftRecord:
    """One report: ``reports/drift/<time>.json`` is its ``to_dict()``."""

    time: str
    status: Literal["drift", "no_drift", "insufficient"]
    drifted: list[str]
    signals: list[Signal]
    correction: Correction
    estimated_accuracy_unreliable: str | None
    """Why the label-free estimate cannot be trusted for this window, or None."""
    window: WindowSummary
    reference: ReferenceSummary
    log: str
    html: list[str]
    retraining: dict[str, Any] | None = None
    """The retraining policy's decision, added by `tunegate drift` after the report."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.retraining is None:
            del out["retraining"]
        return out

    def write(self, out_dir: Path) -> None:
        """The record beside its page, this user's only (it holds production messages)."""
        path = out_dir / f"{self.time}.json"
        write_json(path, self.to_dict())
        make_private(path)


def locate_reference(
    setting: str, window: Window | GenerationWindow, project: Path, params: Any
) -> tuple[Path, str | None]:
    """The reference file for `window` and the sha256 it must have: a path (no recorded
    hash), or (``release``) its release's packaged one."""
    if setting != "release":
        return Path(setting), None
    if window.version is None:
        raise DataError("the window's requests name no release version; pass --reference FILE")
    from tunegate.serving.package import release_reference
    from tunegate.serving.registry import Registry

    release = Registry.from_params(project, params).release(window.version)
    return release_reference(release.bento_tag, release.tree_sha256)


def locate_calibration(window: Window, project: Path, params: Any) -> tuple[Any, str]:
    """The calibration of the release that answered most of the window (verified against the
    hash recorded at packaging), or (None, why not)."""
    if window.version is None:
        return None, "the window's requests name no release version"
    from tunegate.core.errors import TunegateError
    from tunegate.serving.package import release_calibration
    from tunegate.serving.registry import Registry

    try:
        release = Registry.from_params(project, params).release(window.version)
        return release_calibration(release.bento_tag, release.tree_sha256), ""
    except TunegateError as err:
        return None, str(err)


def main_report(
    log: str | Path,
    reference_setting: str,
    out_dir: Path,
    params: Any,
    hours: float | None = None,
    last: int | None = None,
    project: Path = Path("."),
) -> tuple[DriftRecord, Path]:
    """Compute drift for a window and write the report; returns the record and the HTML path.
    The window is the /classify or the /generate traffic, as ``base.task`` says."""
    generation = params.base.task == "generation"
    logger.info("reading the %s window from %s", "/generate" if generation else "/classify", named(log))
    window = (read_generation_window if generation else read_window)(log, hours, last)
    if not window.texts:
        span = f"the last {hours:g} h" if hours is not None else "the log"
        raise DataError(
            f"no answered /{'generate' if generation else 'classify'} requests with text in {span} "
            f"of {named(log)} "
            f"({window.skipped} rows skipped as corrupt or empty): nothing to compare"
        )
    ref_path, recorded = locate_reference(reference_setting, window, project, params)
    reference = monitor_reference.read(ref_path, sha256=recorded)
    if generation != isinstance(reference, GenerationReference):
        kind = "generation" if isinstance(reference, GenerationReference) else "classification"
        raise DataError(
            f"{reference.source} is a {kind} release's reference; base.task is {params.base.task}"
        )
    m = params.monitor
    logger.info(
        "judging %d requests against %s (%d rows): %s", len(window.texts), reference.source, len(reference),
        ", ".join(m.signals),
    )  # fmt: skip
    if isinstance(reference, GenerationReference):
        assert isinstance(window, GenerationWindow)
        fix = generation_correction(m.signals, fields(reference), m.alpha)
        results, snapshot, estimate_note = generation_signals(window, reference, out_dir, params, fix.each)
    else:
        assert isinstance(window, Window)
        fix = correction(m.signals, m.alpha)
        results, snapshot, estimate_note = judge_signals(
            window, reference, out_dir, params, project, fix.each
        )
    judged = [s for s in results if s.drifted is not None]
    # Too few requests: traffic signals were not judged, so neither is the window.
    status = (
        "insufficient" if snapshot is None else ("drift" if any(s.drifted for s in judged) else "no_drift")
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    private_dir(out_dir)  # the report holds production messages (scrubbed): this user's only
    html = out_dir / f"{stamp}.html"
    record = DriftRecord(
        time=stamp,
        status=status,
        drifted=[s.name for s in judged if s.drifted],
        signals=results,
        correction=fix,
        estimated_accuracy_unreliable=estimate_note,
        window=WindowSummary(
            len(window.texts), len(window.distinct().texts), window.skipped, window.start, window.end,
            window.version, window.versions,
        ),
        reference=ReferenceSummary(reference.source, reference.sha256, len(reference), reference.model_id),
        log=named(log),
        html=[html.name],
    )  # fmt: skip
    if snapshot is not None:
        logger.info("writing the Evidently report %s", html)
        snapshot.save_html(str(html))
    else:
        html.write_text(
            f"<html><body><h1>Drift: not judged</h1><p>{results[0].note}</p></body></html>", encoding="utf-8"
        )
    record.write(out_dir)
    make_private(html)
    return record, html


def generation_signals(
    window: GenerationWindow, reference: GenerationReference, out_dir: Path, params: Any, each: float
) -> tuple[list[Signal], Any, None]:
    """The generation kind's verdicts (tunegate/monitoring/generation_drift.py): traffic, answers, live
    quality, and callers' ratings (reported, not judged)."""
    m = params.monitor
    results, snapshot = judge_generation(
        reference, window, m.signals, m.min_window, m.sample, params.base.seed, m.alpha, out_dir / "cache"
    )
    results += [live_quality(window, reference, m.min_feedback, each), live_rating(window)]
    return results, snapshot, None


def judge_signals(
    window: Window, reference: MonitorReference, out_dir: Path, params: Any, project: Path, each: float
) -> tuple[list[Signal], Any, str | None]:
    """Every signal's verdict (traffic, live accuracy, and the two that need the release's
    calibration: the label-free estimate and the abstention rate), the Evidently snapshot
    (None when the window is too small) and the estimate's reliability note."""
    m = params.monitor
    results, snapshot = judge_window(
        reference, window, m.signals, m.min_window, m.sample, params.base.seed, m.alpha, out_dir / "cache"
    )
    results.append(
        live_accuracy(window, params.gate.min_accuracy, m.min_feedback, each, params.data.oos_label)
    )
    estimate_note = None
    if ESTIMATED in m.signals or ABSTENTION in m.signals:
        cal, why = locate_calibration(window, project, params)
        found = {
            ESTIMATED: estimated_accuracy(window, cal, params.gate.min_accuracy, m.min_window, each, why),
            ABSTENTION: abstention_rate(window, reference, cal, m.min_window, each, why),
        }
        results = [found.get(s.name, s) for s in results]  # each configured signal, once
        estimate_note = reliability_note(results)
        if estimate_note and found[ESTIMATED].score is not None:
            found[ESTIMATED].caveat = estimate_note
    return results, snapshot, estimate_note
