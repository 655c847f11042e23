"""The abstention_rate drift signal: its statistics, on synthetic windows and references
(the real packaged-release path: tests/monitoring/test_drift.py)."""

from __future__ import annotations

import random

import pytest

from tunegate.core.calibration import Calibration
from tunegate.core.monitor_reference import MonitorReference
from tunegate.monitoring.abstention import abstention_rate
from tunegate.monitoring.window import Window

CAL = Calibration("none", abstain_below=0.7, chosen_by="declared")
EACH = 0.05 / 11  # the default family's level


def raw_confidences(n: int, abstain_share: float, rng: random.Random) -> list[float]:
    """Raw confidences of which about `abstain_share` fall below the threshold (0.7)."""
    return [
        rng.uniform(0.3, 0.69) if rng.random() < abstain_share else rng.uniform(0.7, 1.0) for _ in range(n)
    ]


def reference(n: int, share: float, seed: int) -> MonitorReference:
    rng = random.Random(seed)
    return MonitorReference(
        [f"ref {i}" for i in range(n)], ["a"] * n, raw_confidences(n, share, rng), frozenset({"a"}),
        frozenset({"ref"}), "lora:x", "ref.json", "0" * 64,
    )  # fmt: skip


def window(n: int, share: float, seed: int, flags: bool = True) -> Window:
    rng = random.Random(seed)
    conf = raw_confidences(n, share, rng)
    abstained = [c < CAL.abstain_below for c in conf] if flags else []
    texts = [f"message {seed} {i}" for i in range(n)]
    return Window(texts, ["a"] * n, 0, None, None, [], conf, "v0.0.1", {"v0.0.1": n}, abstained)


def test_abstention_rate_is_quiet_on_windows_from_the_reference_distribution() -> None:
    ref = reference(400, 0.15, seed=0)
    alarms = [abstention_rate(window(200, 0.15, seed), ref, CAL, 50, EACH).drifted for seed in range(1, 201)]
    assert None not in alarms
    assert sum(alarms) <= 3  # declared rate 0.0045 per window: about 1 in 200 (Fisher's test is conservative)


def test_abstention_rate_fires_when_the_window_abstains_more_or_less() -> None:
    ref = reference(400, 0.15, seed=0)
    more = abstention_rate(window(200, 0.45, seed=1), ref, CAL, 50, EACH)
    assert more.drifted is True and more.score > 0.3 and more.p_value < EACH
    assert "abstained" in more.note and "on the reference" in more.note
    reference_share = sum(c < CAL.abstain_below for c in ref.confidence) / len(ref)
    assert more.threshold == pytest.approx(reference_share, abs=1e-4)  # shown against the reference's share
    less = abstention_rate(window(200, 0.0, seed=2), ref, CAL, 50, EACH)
    assert less.drifted is True and less.score == 0.0


def test_abstention_rate_uses_the_calibration_where_the_log_has_no_flag() -> None:
    ref = reference(400, 0.15, seed=0)
    flagged = abstention_rate(window(200, 0.45, seed=3), ref, CAL, 50, EACH)
    unflagged = abstention_rate(window(200, 0.45, seed=3, flags=False), ref, CAL, 50, EACH)
    assert flagged.score == unflagged.score and flagged.drifted == unflagged.drifted


def test_abstention_rate_is_not_judged_without_what_it_needs() -> None:
    ref, w = reference(400, 0.15, seed=0), window(200, 0.15, seed=1)
    assert "no calibration" in abstention_rate(w, ref, None, 50, EACH, "unregistered").note
    never = Calibration("none", abstain_below=0.0, chosen_by="never")
    assert abstention_rate(w, ref, never, 50, EACH).drifted is None
    small = abstention_rate(window(30, 0.15, seed=1), ref, CAL, 50, EACH)
    assert small.drifted is None and "30 distinct messages" in small.note
    repeats = Window(["same"] * 200, ["a"] * 200, 0, None, None, [], [0.9] * 200, "v", {}, [False] * 200)
    assert abstention_rate(repeats, ref, CAL, 50, EACH).drifted is None  # one message, many times
