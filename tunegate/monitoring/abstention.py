"""The ``abstention_rate`` signal: how often the release hands messages to people, against
how often it does so on its monitoring reference.

The window's share is the service's own record (the request log's ``abstained`` flag, the
release's calibration applied to the raw confidence where an old row lacks it), over the
window's distinct messages, like the other tests. The reference's share is the same
calibration applied to the release's served confidences on its held-out in-scope rows.
Under "no drift" the two are samples of one rate, so a two-sided Fisher exact test (scipy;
conditional, so at most its level) at the family's Bonferroni level keeps the declared
false-alarm rate. It fires when a window abstains significantly more (traffic the model
cannot answer: new intents, another channel, out-of-scope messages, a broken client) or
significantly less (a release that stopped handing over what it should).

Traffic that carries out-of-scope messages abstains more than the in-scope reference: the
signal shows that too. It is reported, and counts towards retraining only when named in
``monitor.retrain_on``.
"""

from __future__ import annotations

from tunegate.core.calibration import Calibration
from tunegate.core.monitor_reference import MonitorReference
from tunegate.monitoring.drift import Signal
from tunegate.monitoring.window import Window

NAME = "abstention_rate"
METHOD = "abstained share vs the reference's, two-sided Fisher exact test"


def abstention_rate(
    window: Window,
    reference: MonitorReference,
    calibration: Calibration | None,
    min_window: int,
    each: float,
    why_none: str = "",
) -> Signal:
    """The signal for a window answered by a release with `calibration` (None: unknown)."""
    if calibration is None:
        return Signal(NAME, METHOD, each, None, None, f"no calibration for the window's release: {why_none}")
    if calibration.abstain_below <= 0:
        return Signal(NAME, METHOD, each, None, None, f"{window.version} never abstains (threshold 0)")
    distinct = window.distinct()
    flags = window_abstained(distinct, calibration)
    if len(flags) < min_window:
        note = f"{len(flags)} distinct messages; {min_window} are needed"
        return Signal(NAME, METHOD, each, None, None, note)
    ref = [
        calibration.answer(c, a is not None)[1]
        for a, c in zip(reference.answers, reference.confidence, strict=True)
    ]
    ours, theirs = sum(flags), sum(ref)
    from scipy.stats import fisher_exact

    table = [[ours, len(flags) - ours], [theirs, len(ref) - theirs]]
    p = float(fisher_exact(table, alternative="two-sided").pvalue)
    note = (
        f"{ours}/{len(flags)} abstained ({ours / len(flags):.3f}) vs {theirs}/{len(ref)} "
        f"({theirs / len(ref):.3f}) on the reference"
    )
    note += f"; each test at {each:.3g}"
    # the score (the window's share) is shown against the reference's share it is tested against
    return Signal(NAME, METHOD, round(theirs / len(ref), 4), round(ours / len(flags), 4), p < each, note, p)


def window_abstained(window: Window, calibration: Calibration) -> list[bool]:
    """Per request: the service's abstained flag, or the calibration's answer where the log
    has none (rows written before the flag existed)."""
    flags = window.abstained or [None] * len(window.texts)
    return [
        bool(flag) if flag is not None else calibration.answer(conf, label is not None)[1]
        for flag, conf, label in zip(flags, window.confidence, window.labels, strict=True)
    ]
