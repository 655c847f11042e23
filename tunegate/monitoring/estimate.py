"""Accuracy without labels: the window's expected accuracy from calibrated confidences.

A calibrated confidence is the probability that the answer is right, so the mean over the
answered requests estimates their accuracy before any feedback arrives (confidence-based
performance estimation, "CBPE" in NannyML's terms, here for a text classifier whose
calibration was fitted on validation and judged by the gate). Each answer is right or
wrong like a coin with its own probability, so the estimate's standard error is
``sqrt(sum p(1 - p)) / n``. The ``estimated_accuracy`` signal drifts when the estimate is
significantly below ``gate.min_accuracy`` (one-sided, at the Bonferroni level of the
family): the release is expected to answer worse than the gate let it ship at.

It estimates well only where the calibration holds: on traffic like the validation data
it was fitted on. When the embedding or a text descriptor drifted, the window is unlike
that data and the report says the estimate is unreliable (``unreliable_because``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tunegate.core.calibration import Calibration
from tunegate.monitoring.drift import Signal
from tunegate.monitoring.window import Window

NAME = "estimated_accuracy"
SHIFT_SIGNALS = (
    "embedding",
    "length_chars",
    "word_count",
    "non_alpha_share",
    "oov_share",
    "english_share",
)


def estimated_accuracy(
    window: Window,
    calibration: Calibration | None,
    floor: float,
    min_window: int,
    each: float,
    why_none: str = "",
) -> Signal:
    """The CBPE signal of a window answered by a release with `calibration` (None: unknown)."""
    method = "mean calibrated confidence of answered requests (CBPE), one-sided normal test"
    if calibration is None:
        return Signal(NAME, method, floor, None, None, f"no calibration for the window's release: {why_none}")
    if calibration.method == "none":
        return Signal(
            NAME, method, floor, None, None, f"{window.version} has no calibration ({calibration.chosen_by})"
        )
    probs = answered_confidences(window.labels, window.confidence, calibration)
    if len(probs) < min_window:
        return Signal(
            NAME,
            method,
            floor,
            None,
            None,
            f"{len(probs)} answered requests with a confidence; {min_window} needed",
        )
    n = len(probs)
    estimate = sum(probs) / n
    se = math.sqrt(sum(p * (1 - p) for p in probs)) / n
    from scipy.stats import norm

    p_value = float(norm.cdf((estimate - floor) / se)) if se > 0 else float(estimate < floor)
    z = float(norm.ppf(1 - each / 2))
    low, high = estimate - z * se, min(1.0, estimate + z * se)
    note = f"{estimate:.3f} on {n} answered requests, interval [{low:.3f}, {high:.3f}]"
    return Signal(NAME, method, floor, round(estimate, 4), p_value < each, note, p_value)


def answered_confidences(
    labels: Sequence[str | None], raw: Sequence[float | None], calibration: Calibration
) -> list[float]:
    """Calibrated confidences of the requests the release answered (valid, not abstained)."""
    out = []
    for label, r in zip(labels, raw, strict=True):
        conf, abstained = calibration.answer(r, label is not None)
        if conf is not None and not abstained:
            out.append(conf)
    return out


def reliability_note(signals: Sequence[Signal]) -> str | None:
    """Why the estimate cannot be trusted for this window, or None."""
    shifted = [s.name for s in signals if s.name in SHIFT_SIGNALS and s.drifted]
    if not shifted:
        return None
    why = ", ".join(shifted)
    return f"unreliable: the window is unlike the data the calibration was fitted on ({why} drifted)"
