"""Plan before spending (`tunegate plan`): the kernel's sample-size arithmetic
(tunegate/core/sample_size.py) fed with the disagreement rate an earlier gate measured.
"""

from __future__ import annotations

from scipy import stats as sps

from tunegate.core.sample_size import DEFAULT_DISAGREEMENT, PlanRow, detectable, items_needed, plan

__all__ = ["DEFAULT_DISAGREEMENT", "PlanRow", "detectable", "items_needed", "observed_disagreement", "plan"]


def observed_disagreement(gate_record: dict) -> float | None:
    """The disagreement rate an earlier gate measured on its hold-out A/B against production,
    read back from its interval: r = n se^2 for a paired 0/1 difference. None on a first release
    (the base model disagrees with a fine-tune on most items: no guide to the next release)."""
    for check in gate_record.get("checks", []):
        if check.get("name") == "holdout.ab_vs_production" and check.get("ci") and check.get("items"):
            lo, hi = check["ci"]
            level = float(gate_record.get("interval_level", 0.9))
            se = (hi - lo) / (2 * sps.norm.ppf(1 - (1 - level) / 2))
            return max(min(se**2 * check["items"], 1.0), 1e-4)
    return None
