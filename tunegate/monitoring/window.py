"""A window of production traffic: the answered /classify (or /generate) requests of the request log.

Rows without usable text are skipped and counted. Feedback given as the declared
out-of-scope label (``data.oos_label``) counts as a wrong answer in live accuracy: the
model answered an intent for a message that has none.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunegate.core.errors import DataError
from tunegate.serving.requestlog import RequestLog


@dataclass
class Window:
    texts: list[str]
    labels: list[str | None]
    skipped: int
    start: str | None
    end: str | None
    feedback: list[tuple[str | None, str]] = field(default_factory=list)
    """(answered label, true label) where the caller sent feedback on an answer it got (a
    request the release abstained on gave no label to be right or wrong about)."""
    confidence: list[float | None] = field(default_factory=list)
    """Per request (None where the log has none)."""
    version: str | None = None
    """The version that answered most of the window."""
    versions: dict[str, int] = field(default_factory=dict)
    abstained: list[bool | None] = field(default_factory=list)
    """Per request: the service abstained (None where the log has no flag)."""
    abstained_feedback: list[str] = field(default_factory=list)
    """The true labels callers sent for requests the release abstained on."""

    def distinct(self) -> Window:
        """One request per message (case and spacing ignored), the first of each. The
        reference's rows were de-duplicated by the prepare stage; a window keeps its repeats
        (a popular message, a retrying client, a bot), and a repeat that lands on both halves
        of the embedding classifier's split is an easy, false 'difference'. The tests
        compare distinct messages with distinct messages; the report counts the repeats."""
        keep = first_of_each(self.texts)
        return Window(
            [self.texts[i] for i in keep], [self.labels[i] for i in keep], self.skipped, self.start, self.end,
            self.feedback, [self.confidence[i] for i in keep], self.version, self.versions,
            [self.abstained[i] for i in keep] if self.abstained else [], self.abstained_feedback,
        )  # fmt: skip


def first_of_each(texts: list[str]) -> list[int]:
    """The index of each message's first request (case and spacing ignored)."""
    seen: set[str] = set()
    keep = []
    for i, text in enumerate(texts):
        key = " ".join(text.lower().split())
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


@dataclass
class GenerationWindow:
    """The answered /generate requests of a window: the last user turn, the answer text,
    and the reference answers and ratings callers sent (``POST /feedback``)."""

    texts: list[str]
    answers: list[str]
    skipped: int
    start: str | None
    end: str | None
    references: list[tuple[str, str]] = field(default_factory=list)
    """(the answer given, the reference answer a caller sent for it)."""
    ratings: list[float] = field(default_factory=list)
    version: str | None = None
    versions: dict[str, int] = field(default_factory=dict)

    def distinct(self) -> GenerationWindow:
        """One request per message, as `Window.distinct` (feedback is kept whole)."""
        keep = first_of_each(self.texts)
        return GenerationWindow(
            [self.texts[i] for i in keep], [self.answers[i] for i in keep], self.skipped, self.start,
            self.end, self.references, self.ratings, self.version, self.versions,
        )  # fmt: skip


def read_generation_window(
    log: str | Path, hours: float | None = None, last: int | None = None
) -> GenerationWindow:
    """The /generate requests of a window of the request log."""
    rows = RequestLog.reader(log).generated(hours, last)
    good = [
        r for r in rows if isinstance(r["input"], str) and r["input"].strip() and isinstance(r["output"], str)
    ]
    versions = Counter(r["version"] for r in good if r["version"] is not None)
    ratings = [r["rating"] for r in good if isinstance(r["rating"], (int, float)) and 0 <= r["rating"] <= 1]
    return GenerationWindow(
        texts=[r["input"] for r in good],
        answers=[r["output"] for r in good],
        skipped=len(rows) - len(good),
        start=good[0]["time"] if good else None,
        end=good[-1]["time"] if good else None,
        references=[(r["output"], r["feedback"]) for r in good if isinstance(r["feedback"], str)],
        ratings=[float(x) for x in ratings],
        version=versions.most_common(1)[0][0] if versions else None,
        versions=dict(versions),
    )


def read_window(log: str | Path, hours: float | None = None, last: int | None = None) -> Window:
    """The /classify requests of a window of the request log."""
    rows = RequestLog.reader(log).classified(hours, last)
    good = [r for r in rows if isinstance(r["input"], str) and r["input"].strip()]
    versions = Counter(r["version"] for r in good if r["version"] is not None)
    return Window(
        texts=[r["input"] for r in good],
        labels=[r["label"] for r in good],
        skipped=len(rows) - len(good),
        start=good[0]["time"] if good else None,
        end=good[-1]["time"] if good else None,
        # the answers callers got and then labelled (an abstention gave no label to judge)
        feedback=[
            (r["label"], r["feedback"]) for r in good if r["feedback"] is not None and not r["abstained"]
        ],
        confidence=[
            float(r["confidence"]) if isinstance(r["confidence"], (int, float)) else None for r in good
        ],
        version=versions.most_common(1)[0][0] if versions else None,
        versions=dict(versions),
        abstained=[None if r["abstained"] is None else bool(r["abstained"]) for r in good],
        abstained_feedback=[r["feedback"] for r in good if r["feedback"] is not None and r["abstained"]],
    )


def check_family(window: Window, known: frozenset[str]) -> None:
    """A window answered mostly with labels the reference lacks is another model's log."""
    answered = [lab for lab in window.labels if lab is not None]
    foreign = [lab for lab in answered if lab not in known]
    if answered and len(foreign) > len(answered) / 2:
        raise DataError(
            f"{len(foreign)} of {len(answered)} answers in the window are labels the reference does not "
            f"have (e.g. {sorted(set(foreign))[:3]}): this log comes from another model family; "
            f"compare it with that model's reference (--reference / monitor.reference)"
        )
