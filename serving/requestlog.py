"""The request log: one SQLite row per request, personal data scrubbed before it is written.

Every admitted request is on the record: its row is opened (``status`` 0) when the
service takes it (`begin`) and completed (`finish`) with the outcome (200, a 4xx, a 5xx, 499 for a client
that hung up) when it ends, so a crash cannot lose it: rows a dead process left open are
closed as ``LOST`` (a 5xx the canary judge counts) when the service starts again.
Each row names the process that wrote it (``instance``), so a replica closes only what
a dead process on its own host left behind.

SQLite in WAL mode takes concurrent readers (the canary judge, the drift monitor) while
the service writes. Inputs and outputs pass through `tunegate.pii.clean_text`, the
scrubber training data goes through; caller ids and client addresses are kept only as
keyed hashes (`caller_key`), with a per-deployment secret (`tunegate.secrets`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tunegate.errors import DataError, TunegateError
from tunegate.pii import clean_text

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
    feedback_time TEXT,
    pinned INTEGER NOT NULL DEFAULT 0,
    client TEXT,
    instance TEXT,
    abstained INTEGER,
    rating REAL
);
CREATE INDEX IF NOT EXISTS requests_time ON requests (time);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
"""

ANSWER = "request_id = ? AND shadow = 0"  # the answer the caller got, not a shadow copy
ADDED_COLUMNS = (
    ("confidence", "REAL"),
    ("feedback", "TEXT"),
    ("feedback_time", "TEXT"),
    ("pinned", "INTEGER NOT NULL DEFAULT 0"),
    ("client", "TEXT"),
    ("instance", "TEXT"),
    ("abstained", "INTEGER"),
    ("rating", "REAL"),
)
FEEDBACK_COLUMNS = ("feedback", "rating")
"""What a caller can attach to an answer: ``feedback`` (/classify: the true label;
/generate: a reference answer, scrubbed like every text) and ``rating`` (/generate: a score
in [0, 1] for the answer)."""
OPEN = 0
"""``status`` of a row whose request is still being answered."""
LOST = 500
LOST_ERROR = "lost: the service process died before the request finished"


class FeedbackConflict(TunegateError):
    """A request already holds another feedback label."""


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
    """The raw confidence (the answer path's probability, as the monitoring reference
    records it); the release's calibration maps it to the one the caller saw."""
    abstained: bool | None = None
    """/classify only: the calibrated confidence was under the release's threshold, so the
    caller got ``label: null`` (``label`` here keeps the model's answer for the monitor)."""
    pinned: bool = False
    """The caller named a stage (``tunegate:canary``) instead of being routed by weight."""
    client: str | None = None
    """Keyed hash of the network peer's address."""
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))


def caller_key(value: str | None, secret: bytes) -> str | None:
    """What the log keeps of a caller id or address: a keyed hash (HMAC-SHA256), never the id.
    Without the deployment's secret, guessing ids and comparing hashes does not work."""
    if not value:
        return None
    return hmac.new(secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]


def this_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(entry: Entry) -> dict[str, Any]:
    row = asdict(entry)
    for key in ("input", "output"):
        if row[key] is not None:
            row[key] = clean_text(row[key])
    for key in ("shadow", "pinned"):
        row[key] = int(row[key])
    for key in ("valid", "abstained"):
        row[key] = None if row[key] is None else int(row[key])
    return row


class RequestLog:
    """The service's request log (SQLite in WAL mode): the service writes it, the drift
    monitor and retraining read it through the read-only ``reader`` below."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.instance = this_instance()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a service crash; no fsync per row
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(requests)")}
        for name, kind in ADDED_COLUMNS:  # logs written by an older version gain the new columns
            if name not in columns:
                self._db.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")

    def _insert(self, entry: Entry) -> int:
        row = _row(entry) | {"instance": self.instance}
        cols = ", ".join(row)
        with self._lock:
            cur = self._db.execute(
                f"INSERT INTO requests ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            return int(cur.lastrowid or 0)

    def write(self, entry: Entry) -> None:
        """One finished row (shadow copies, requests refused before they were taken)."""
        self._insert(entry)

    def begin(self, entry: Entry) -> int:
        """The row of a request the service has taken; `finish` completes it. Returns its id."""
        entry.status = OPEN
        return self._insert(entry)

    def finish(self, row_id: int, entry: Entry) -> None:
        """Complete an opened row with the request's outcome."""
        row = _row(entry)
        fields = ("status", "output", "label", "valid", "latency_ms", "error", "confidence", "abstained")
        with self._lock:
            self._db.execute(
                f"UPDATE requests SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                [row[k] for k in fields] + [row_id],
            )

    def close_lost(self) -> int:
        """Mark rows left open by dead processes of this host as lost; returns how many."""
        host = socket.gethostname()
        with self._lock:
            found = self._db.execute(
                "SELECT DISTINCT instance FROM requests WHERE status = ? AND shadow = 0", (OPEN,)
            ).fetchall()
            dead = []
            for (instance,) in found:
                name, _, pid = (instance or ":").rpartition(":")
                if instance is None or (name == host and pid.isdigit() and not _alive(int(pid))):
                    dead.append(instance)
            lost = 0
            for instance in dead:
                cur = self._db.execute(
                    "UPDATE requests SET status = ?, error = ? WHERE status = ? AND instance IS ?",
                    (LOST, LOST_ERROR, OPEN, instance),
                )
                lost += cur.rowcount
        return lost

    def feedback(
        self, request_id: str, value: str | float, column: str = "feedback"
    ) -> dict[str, Any] | None:
        """Attach a caller's feedback (the true label, a reference answer, or a ``rating``) to
        an answered request, once: the same value again is a no-op, another raises
        FeedbackConflict. Returns the row, or None if the request is unknown."""
        if column not in FEEDBACK_COLUMNS:
            raise ValueError(f"feedback goes to one of {FEEDBACK_COLUMNS}, not {column!r}")
        if isinstance(value, str):
            value = clean_text(value)
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    f"SELECT request_id, version, label, {column} FROM requests WHERE {ANSWER}",
                    (request_id,),
                ).fetchone()
                if row is not None and row[3] is None:
                    given = "feedback_time = ?, " if column == "feedback" else ""
                    self._db.execute(
                        f"UPDATE requests SET {given}{column} = ? WHERE {ANSWER}",
                        ([now] if given else []) + [value, request_id],
                    )
            finally:
                self._db.execute("COMMIT")
        if row is None:
            return None
        if row[3] is not None and row[3] != value:
            what = "feedback" if column == "feedback" else "a rating"
            raise FeedbackConflict(f"request {request_id} already has {what} {row[3]!r}")
        return {"request_id": row[0], "version": row[1], "label": row[2], column: value}

    def answered(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT version, endpoint, status FROM requests WHERE {ANSWER}", (request_id,)
            ).fetchone()
        return None if row is None else {"version": row[0], "endpoint": row[1], "status": row[2]}

    def rows(self, since: datetime | None = None, minutes: float | None = None) -> list[dict[str, Any]]:
        """Finished rows (open ones are still being answered), oldest first."""
        if minutes is not None:
            since = datetime.now(UTC) - timedelta(minutes=minutes)
        query, args = f"SELECT * FROM requests WHERE status != {OPEN}", []
        if since is not None:
            query, args = query + " AND time >= ?", [since.isoformat(timespec="microseconds")]
        with self._lock:
            cur = self._db.execute(query + " ORDER BY id", args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @classmethod
    def reader(cls, path: str | Path) -> LogReader:
        """The log opened read-only (a monitor never migrates or writes a service's log)."""
        return LogReader(Path(path))


CLASSIFIED = "endpoint = 'classify' AND shadow = 0 AND status = 200"
"""The /classify answers callers got (not shadow copies, not refusals)."""
GENERATED = "endpoint = 'generate' AND shadow = 0 AND status = 200"
"""The /generate answers callers got."""


@dataclass(frozen=True)
class LogReader:
    path: Path

    def _select(
        self, columns: tuple[str, ...], where: str, tail: str, args: list[Any]
    ) -> list[dict[str, Any]]:
        if not self.path.exists():
            raise DataError(
                f"request log {self.path} does not exist; serve some traffic first (`tunegate serve`)"
            )
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                have = {r[1] for r in db.execute("PRAGMA table_info(requests)")}
                # Logs from before a column existed read it as NULL.
                picked = ", ".join(c if c in have else f"NULL AS {c}" for c in columns)
                found = db.execute(f"SELECT {picked} FROM requests WHERE {where} {tail}", args).fetchall()
        except sqlite3.DatabaseError as err:
            raise DataError(f"{self.path} is not a tunegate request log: {err}") from err
        return [dict(zip(columns, row, strict=True)) for row in found]

    def _answers(
        self, where: str, columns: tuple[str, ...], hours: float | None, last: int | None
    ) -> list[dict[str, Any]]:
        """Rows matching `where`, oldest first: all, those of the last ``hours``, and at most
        the ``last`` newest."""
        args: list[Any] = []
        if hours is not None:
            where += " AND time >= ?"
            args.append((datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="microseconds"))
        tail = "ORDER BY id DESC" + (" LIMIT ?" if last is not None else "")
        rows = self._select(columns, where, tail, args + ([last] if last is not None else []))
        return rows[::-1]

    def classified(self, hours: float | None = None, last: int | None = None) -> list[dict[str, Any]]:
        """The answered /classify requests (see `_answers`)."""
        columns = ("time", "input", "label", "feedback", "confidence", "version", "abstained")
        return self._answers(CLASSIFIED, columns, hours, last)

    def generated(self, hours: float | None = None, last: int | None = None) -> list[dict[str, Any]]:
        """The answered /generate requests (see `_answers`): the input (last user turn), the
        answer text, whether it was valid, and any reference answer or rating callers sent."""
        columns = ("request_id", "time", "input", "output", "valid", "feedback", "rating", "version")
        return self._answers(GENERATED, columns, hours, last)

    def with_references(self) -> list[dict[str, Any]]:
        """The answered /generate requests that have a caller's reference answer, oldest first."""
        columns = ("request_id", "time", "input", "feedback", "version", "output", "feedback_time")
        where = GENERATED + " AND feedback IS NOT NULL AND input IS NOT NULL"
        return self._select(columns, where, "ORDER BY id", [])

    def with_feedback(self) -> list[dict[str, Any]]:
        """The answered /classify requests that have a caller's true label, oldest first."""
        columns = ("request_id", "time", "input", "feedback", "version", "label", "feedback_time")
        where = CLASSIFIED + " AND feedback IS NOT NULL AND input IS NOT NULL"
        return self._select(columns, where, "ORDER BY id", [])
