"""The request log: one SQLite row per request, personal data scrubbed before it is written.

SQLite in WAL mode takes concurrent readers (the canary judge, the drift monitor) while
the service writes. Inputs and outputs pass through the same scrubber as training data
(card numbers, IBANs, emails, phone numbers); caller ids are kept only as salted hashes.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from training.pii import scrub

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    request_id TEXT NOT NULL,
    caller TEXT,
    endpoint TEXT NOT NULL,
    stage TEXT,
    version TEXT,
    shadow INTEGER NOT NULL DEFAULT 0,
    input TEXT,
    output TEXT,
    label TEXT,
    valid INTEGER,
    latency_ms REAL,
    status INTEGER NOT NULL,
    error TEXT,
    confidence REAL,
    feedback TEXT,
    feedback_time TEXT
);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
"""


ANSWER = "request_id = ? AND shadow = 0"  # the answer the caller got, not a shadow copy
ADDED_COLUMNS = (("confidence", "REAL"), ("feedback", "TEXT"), ("feedback_time", "TEXT"))


@dataclass
class Entry:
    request_id: str
    endpoint: str
    status: int
    caller: str | None = None
    stage: str | None = None
    version: str | None = None
    shadow: bool = False
    input: str | None = None
    output: str | None = None
    label: str | None = None
    valid: bool | None = None
    latency_ms: float | None = None
    error: str | None = None
    confidence: float | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))


class RequestLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a service crash; no fsync per row
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(requests)")}
        for name, kind in ADDED_COLUMNS:  # logs written by an older version gain the new columns
            if name not in columns:
                self._db.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")

    def write(self, entry: Entry) -> None:
        row = asdict(entry)
        for key in ("input", "output"):
            if row[key] is not None:
                row[key] = scrub(row[key]).text
        row["shadow"] = int(row["shadow"])
        row["valid"] = None if row["valid"] is None else int(row["valid"])
        cols = ", ".join(row)
        with self._lock:
            self._db.execute(
                f"INSERT INTO requests ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )

    def feedback(self, request_id: str, label: str) -> dict[str, Any] | None:
        """Attach a caller's true label to an answered request; returns the row, or None if unknown."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._lock:
            cur = self._db.execute(
                f"UPDATE requests SET feedback = ?, feedback_time = ? WHERE {ANSWER}",
                (label, now, request_id),
            )
            if cur.rowcount == 0:
                return None
            row = self._db.execute(
                f"SELECT request_id, version, label, feedback FROM requests WHERE {ANSWER}", (request_id,)
            ).fetchone()
        return dict(zip(("request_id", "version", "label", "feedback"), row, strict=True))

    def answered(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT version, endpoint FROM requests WHERE {ANSWER}", (request_id,)
            ).fetchone()
        return None if row is None else {"version": row[0], "endpoint": row[1]}

    def rows(self, since: datetime | None = None, minutes: float | None = None) -> list[dict[str, Any]]:
        if minutes is not None:
            since = datetime.now(UTC) - timedelta(minutes=minutes)
        query, args = "SELECT * FROM requests", []
        if since is not None:
            query, args = query + " WHERE time >= ?", [since.isoformat(timespec="microseconds")]
        with self._lock:
            cur = self._db.execute(query + " ORDER BY id", args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()
