"""A release's calibration: raw answer confidence -> probability that the answer is right,
and the threshold below which the release abstains.

The raw confidence of a constrained answer is the probability of its token path
(``tunegate.core.prompt.answer_confidence``: what vLLM reports per request, and what the
scorer computes the same way). It is not a probability of being right: a fine-tuned
model is sure of itself on messages that belong to no intent at all. The evaluate stage
fits a monotone map on the validation split (tunegate/evaluation/calibration_fit.py) and records it
here with the abstention threshold; the gate judges the release *at* that threshold,
the package stage ships this file with the release, and the service and the drift
monitor apply the very same map. Fitting needs scipy and scikit-learn; applying needs
neither, so the service and the monitor import only this module.

Methods:

- ``temperature``: the chosen-versus-rest logit divided by a fitted temperature,
  ``sigmoid(logit(p) / T)`` (vLLM returns the chosen path's probability only, so the
  temperature acts on that two-way split rather than on a softmax over every label);
- ``isotonic``: a non-decreasing step function through fitted breakpoints, linearly
  interpolated (scikit-learn's ``IsotonicRegression``, stored as numbers, not a pickle);
- ``none``: the raw confidence.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunegate.core.artifacts import sha256_bytes, write_json
from tunegate.core.errors import ArtifactError

SCHEMA = 1
FILE = "calibration.json"
Method = Literal["temperature", "isotonic", "none"]
METHODS: tuple[str, ...] = ("temperature", "isotonic", "none")
EPS = 1e-6


@dataclass(frozen=True)
class Calibration:
    method: Method = "none"
    temperature: float = 1.0
    """``temperature``: the fitted T (> 0; above 1 softens an over-confident model)."""
    points: tuple[tuple[float, float], ...] = ()
    """``isotonic``: (raw, calibrated) breakpoints, raw increasing."""
    abstain_below: float = 0.0
    """Answers whose calibrated confidence is below this are abstentions (0: never)."""
    chosen_by: str = "none"
    """How the threshold was set: a declared value, or the validation target it meets."""
    fitted: dict[str, Any] = field(default_factory=dict)
    """What the fit saw: rows, errors, negative log-likelihood before and after."""

    def apply(self, raw: float | None) -> float | None:
        """The calibrated confidence of a raw one (None stays None: no answer, no confidence)."""
        if raw is None or not math.isfinite(raw):
            return None
        p = min(max(raw, 0.0), 1.0)
        if self.method == "temperature":
            z = logit(p) / self.temperature
            return 1.0 / (1.0 + math.exp(-z))
        if self.method == "isotonic":
            return interpolate(self.points, p)
        return p

    def abstains(self, calibrated: float | None) -> bool:
        """No valid answer, or one the release is not sure enough of."""
        return calibrated is None or calibrated < self.abstain_below

    def answer(self, raw: float | None, valid: bool) -> tuple[float | None, bool]:
        """(calibrated confidence, abstained) of a served answer. An invalid answer has no
        confidence and is not an abstention (it is counted as invalid)."""
        if not valid:
            return None, False
        conf = self.apply(raw)
        return conf, self.abstains(conf)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA} | asdict(self) | {"points": [list(p) for p in self.points]}


def logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def interpolate(points: tuple[tuple[float, float], ...], x: float) -> float:
    if not points:
        return x
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def write(path: Path, calibration: Calibration) -> None:
    write_json(path, calibration.to_dict())


def parse(data: bytes, source: str) -> Calibration:
    """A calibration from a file's bytes, checked: a wrong schema, an unknown method or
    numbers outside their range are errors naming the file."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{source}: not a calibration file ({err})") from None
    schema = raw.get("schema") if isinstance(raw, dict) else None
    if schema != SCHEMA:
        raise ArtifactError(f"{source}: calibration schema {schema}, expected {SCHEMA}")
    try:
        cal = Calibration(
            method=raw["method"],
            temperature=float(raw["temperature"]),
            points=tuple((float(a), float(b)) for a, b in raw["points"]),
            abstain_below=float(raw["abstain_below"]),
            chosen_by=str(raw["chosen_by"]),
            fitted=dict(raw.get("fitted") or {}),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"{source}: malformed calibration ({err!r})") from None
    problems = check(cal)
    if problems:
        raise ArtifactError(f"{source}: " + "; ".join(problems))
    return cal


def check(cal: Calibration) -> list[str]:
    out = []
    if cal.method not in METHODS:
        out.append(f"unknown calibration method {cal.method!r}; known: {list(METHODS)}")
    if not (math.isfinite(cal.temperature) and cal.temperature > 0):
        out.append(f"temperature {cal.temperature} must be a positive number")
    if not 0 <= cal.abstain_below <= 1:
        out.append(f"abstain_below {cal.abstain_below} is outside [0, 1]")
    xs = [x for x, _ in cal.points]
    ys = [y for _, y in cal.points]
    if cal.method == "isotonic" and not cal.points:
        out.append("an isotonic calibration needs breakpoints")
    if xs != sorted(xs) or ys != sorted(ys) or any(not 0 <= v <= 1 for v in xs + ys):
        out.append("isotonic breakpoints must be non-decreasing and within [0, 1]")
    return out


def read(path: Path, sha256: str | None = None) -> Calibration:
    """Read and check a calibration; with `sha256`, the bytes parsed are the bytes hashed."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ArtifactError(f"{path}: cannot read the calibration ({err.strerror})") from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise ArtifactError(f"{path}: the calibration was changed after it was packaged (sha256 differs)")
    return parse(data, str(path))
