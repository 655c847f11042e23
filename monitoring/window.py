"""A window of production traffic: the answered /classify requests of the request log.

Rows without usable text are skipped and counted. Feedback given as the declared
out-of-scope label (``data.oos_label``) counts as a wrong answer in live accuracy: the
model answered an intent for a message that has none.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tunegate.errors import DataError


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

    def distinct(self) -> Window:
        """One request per message (case and spacing ignored), the first of each. The
        reference's rows were de-duplicated by the prepare stage; a window keeps its repeats
        (a popular message, a retrying client, a bot), and a repeat that lands on both halves
        of the embedding classifier's split is an easy, false 'difference'. The tests
        compare distinct messages with distinct messages; the report counts the repeats."""
        seen: set[str] = set()
        keep = []
        for i, text in enumerate(self.texts):
            key = " ".join(text.lower().split())
            if key not in seen:
                seen.add(key)
                keep.append(i)
        return Window(
            [self.texts[i] for i in keep], [self.labels[i] for i in keep], self.skipped, self.start, self.end,
            self.feedback, [self.confidence[i] for i in keep], self.version, self.versions,
        )  # fmt: skip


def read_window(log: Path, hours: float | None = None, last: int | None = None) -> Window:
    """The /classify requests of a window of the request log."""
    if not log.exists():
        raise DataError(f"request log {log} does not exist; serve some traffic first (`tunegate serve`)")
    query = "FROM requests WHERE endpoint = 'classify' AND shadow = 0 AND status = 200"
    args: list[Any] = []
    if hours is not None:
        query += " AND time >= ?"
        args.append((datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="microseconds"))
    query += " ORDER BY id DESC"
    if last is not None:
        query += " LIMIT ?"
        args.append(last)
    try:
        with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as db:
            columns = {r[1] for r in db.execute("PRAGMA table_info(requests)")}
            # Logs from before feedback and confidence existed lack those columns.
            feedback = "feedback" if "feedback" in columns else "NULL"
            confidence = "confidence" if "confidence" in columns else "NULL"
            abstained = "abstained" if "abstained" in columns else "NULL"
            rows = db.execute(
                f"SELECT time, input, label, {feedback}, {confidence}, version, {abstained} " + query, args
            ).fetchall()
    except sqlite3.DatabaseError as err:
        raise DataError(f"{log} is not a tunegate request log: {err}") from err
    good = [r for r in reversed(rows) if isinstance(r[1], str) and r[1].strip()]
    versions = Counter(r[5] for r in good if r[5] is not None)
    return Window(
        [r[1] for r in good], [r[2] for r in good], len(rows) - len(good),
        good[0][0] if good else None, good[-1][0] if good else None,
        [(r[2], r[3]) for r in good if r[3] is not None and not r[6]],  # answers the callers got
        [float(r[4]) if isinstance(r[4], (int, float)) else None for r in good],
        versions.most_common(1)[0][0] if versions else None,
        dict(versions),
    )  # fmt: skip


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
