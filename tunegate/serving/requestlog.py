"""The request log: one row per request, personal data scrubbed before it is written.

Every admitted request is on the record: its row is opened (``status`` 0) when the
service takes it (`begin`) and completed (`finish`) with the outcome (200, a 4xx, a 5xx, 499 for a client
that hung up) when it ends, so a crash cannot lose it: rows a dead process left open are
closed as ``LOST`` (a 5xx the canary judge counts) when the service starts again.
Each row names the process that wrote it (``instance``), so a replica closes only what
a dead process on its own host left behind.

The log is a database (tunegate/serving/logstore.py): an SQLite file in WAL mode by default (it
takes concurrent readers, the canary judge and the drift monitor, while the service
writes), or a PostgreSQL database several replicas share. Inputs and outputs pass through
`tunegate.core.pii.clean_text`, the scrubber training data goes through; caller ids and client
addresses are kept only as keyed hashes (`caller_key`), with a per-deployment secret
(`tunegate.secrets`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import socket
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError

from tunegate.core.deployment import ENV as SECRET_ENV
from tunegate.core.errors import ConfigError, TunegateError
from tunegate.core.pii import clean_text
from tunegate.serving.logstore import (
    database_url,
    deployment,
    engine_for,
    instances,
    migrate,
    named,
    requests,
    sqlite_path,
    unreachable,
    upsert_seen,
)

if TYPE_CHECKING:
    from tunegate.serving.logreader import LogReader

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
    tokens: int | None = None
    """Completion tokens generated (for tunegate/serving/prometheus.py; not a column of the log)."""


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


def _dead(instance: str | None, host: str, me: str, cutoff: str | None, last_sign: str | None) -> bool:
    """Whether the process that opened rows is gone (see `RequestLog.close_lost`)."""
    if instance is None:
        return True
    if instance == me:
        return False
    name, _, pid = instance.rpartition(":")
    if name == host and pid.isdigit() and not _alive(int(pid)):
        return True
    return cutoff is not None and last_sign is not None and last_sign < cutoff


def scrubbed(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its texts scrubbed of personal data (tunegate/core/pii.py)."""
    return row | {k: clean_text(row[k]) for k in ("input", "output") if row.get(k) is not None}


def _row(entry: Entry, scrub: bool = True) -> dict[str, Any]:
    row = asdict(entry)
    del row["tokens"]
    if scrub:
        row = scrubbed(row)
    for key in ("shadow", "pinned"):
        row[key] = int(row[key])
    for key in ("valid", "abstained"):
        row[key] = None if row[key] is None else int(row[key])
    return row


def row_of(entry: Entry, instance: str, scrub: bool = True) -> dict[str, Any]:
    """The row to insert for an entry: scrubbed (unless the caller scrubs it later, off the
    event loop), booleans as 0/1, the writing process named."""
    return _row(entry, scrub) | {"instance": instance}


FINISHED = ("status", "output", "label", "valid", "latency_ms", "error", "confidence", "abstained")
"""What `finish` writes into an opened row."""


def finished_fields(entry: Entry, scrub: bool = True) -> dict[str, Any]:
    row = _row(entry, scrub)
    return {k: row[k] for k in FINISHED}


def _answer(request_id: str) -> Any:
    """The answer the caller got, not a shadow copy."""
    return and_(requests.c.request_id == request_id, requests.c.shadow == 0)


class RequestLog:
    """The service's request log: the service writes it, the drift monitor and retraining
    read it through the read-only ``reader`` below. ``where``: a database URL or a path to
    an SQLite file (tunegate/serving/logstore.py)."""

    def __init__(self, where: str | Path, project: Path | None = None):
        self.url = database_url(where, project)
        path = sqlite_path(self.url)
        if path is not None:  # callers' messages: readable by this user only (WAL files follow)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            with contextlib.suppress(PermissionError):  # another user's file: theirs to mend
                os.chmod(path, 0o600)
        self.instance = this_instance()
        self._lock = threading.Lock()  # one writer at a time in this process
        self._engine = engine_for(self.url)
        self._run(lambda: migrate(self._engine))

    def _run(self, work: Any) -> Any:
        try:
            return work()
        except DBAPIError as err:
            raise unreachable(self.url, err) from err

    def _insert(self, entry: Entry) -> int:
        row = row_of(entry, self.instance)

        def insert() -> int:
            with self._lock, self._engine.begin() as conn:
                return int(conn.execute(requests.insert().values(**row)).inserted_primary_key[0])

        return self._run(insert)

    def write(self, entry: Entry) -> None:
        """One finished row (shadow copies, requests refused before they were taken)."""
        self._insert(entry)

    def begin(self, entry: Entry) -> int:
        """The row of a request the service has taken; `finish` completes it. Returns its id."""
        entry.status = OPEN
        return self._insert(entry)

    def finish(self, row_id: int, entry: Entry) -> None:
        """Complete an opened row with the request's outcome."""
        done = finished_fields(entry)

        def finish() -> None:
            with self._lock, self._engine.begin() as conn:
                conn.execute(update(requests).where(requests.c.id == row_id).values(done))

        self._run(finish)

    def apply(self, ops: list[tuple[str, dict[str, Any]]]) -> None:
        """A batch from the service's writer (tunegate/serving/logwriter.py), in one transaction:
        ``("insert", row)`` rows first, then ``("finish", {"key": request_id, ...})``
        completions of the caller's answer rows (a finish never precedes its insert in the
        writer's queue, so applying the inserts first keeps every finish after its row)."""
        inserts = [row for kind, row in ops if kind == "insert"]
        finishes = [row for kind, row in ops if kind == "finish"]
        stmt = (
            update(requests)
            .where(
                requests.c.request_id == bindparam("key"),
                requests.c.shadow == 0,
                # only a row still open (or closed as lost while its process was gone):
                # a finish never overwrites another outcome, even one replayed from a spool
                or_(
                    requests.c.status == OPEN, and_(requests.c.status == LOST, requests.c.error == LOST_ERROR)
                ),
            )
            .values({k: bindparam(k) for k in FINISHED})
        )

        def apply() -> None:
            with self._lock, self._engine.begin() as conn:
                if inserts:
                    conn.execute(requests.insert(), inserts)
                if finishes:
                    conn.execute(stmt, finishes)  # executemany

        self._run(apply)

    def heartbeat(self, now: datetime | None = None) -> None:
        """Say this process is alive (the writer does it every few seconds)."""
        seen = (now or datetime.now(UTC)).isoformat(timespec="microseconds")

        def beat() -> None:
            with self._lock, self._engine.begin() as conn:
                upsert_seen(conn, self.instance, seen)

        self._run(beat)

    def close_lost(self, lost_after: float | None = None, now: datetime | None = None) -> int:
        """Mark rows left open by dead processes as lost; returns how many. Dead: a process
        of this host that no longer runs, or (with ``lost_after`` seconds) any process,
        on any host, whose heartbeat is older than that; a process that never sent one is
        judged by its open row's own time."""
        host = socket.gethostname()
        cutoff = None
        if lost_after is not None:
            cutoff = ((now or datetime.now(UTC)) - timedelta(seconds=lost_after)).isoformat(
                timespec="microseconds"
            )

        def close() -> int:
            with self._lock, self._engine.begin() as conn:
                is_open = and_(requests.c.status == OPEN, requests.c.shadow == 0)
                found = conn.execute(
                    select(requests.c.instance, func.max(requests.c.time), instances.c.seen)
                    .select_from(requests.outerjoin(instances, requests.c.instance == instances.c.instance))
                    .where(is_open)
                    .group_by(requests.c.instance, instances.c.seen)
                ).all()
                dead = [
                    i for i, newest, seen in found if _dead(i, host, self.instance, cutoff, seen or newest)
                ]
                lost = 0
                for instance in dead:
                    col = requests.c.instance
                    same = col.is_(None) if instance is None else col == instance
                    lost_row = {"status": LOST, "error": LOST_ERROR}
                    still_open = and_(requests.c.status == OPEN, same)
                    lost += conn.execute(update(requests).where(still_open).values(lost_row)).rowcount
                return lost

        return self._run(close)

    def check_secret(self, secret: bytes) -> str:
        """Record the fingerprint of the secret that keys caller hashes, or check it against
        the one recorded: replicas with different secrets would hash one caller two ways, and
        per-caller caps and stickiness would not hold across them. Returns the fingerprint."""
        mine = hmac.new(secret, b"tunegate request log secret", hashlib.sha256).hexdigest()[:16]

        def check() -> str | None:
            with self._lock, self._engine.begin() as conn:
                where = deployment.c.name == "secret_fingerprint"
                found = conn.execute(select(deployment.c.value).where(where)).scalar()
                if found is None:
                    conn.execute(deployment.insert().values(name="secret_fingerprint", value=mine))
                return found

        found = self._run(check)
        if found is not None and found != mine:
            raise ConfigError(
                f"this process's {SECRET_ENV} (fingerprint {mine}) differs from the one the request log "
                f"{named(self.url)} was written with ({found}): set the same {SECRET_ENV} on every replica"
            )
        return mine

    def feedback(
        self, request_id: str, value: str | float, column: str = "feedback"
    ) -> dict[str, Any] | None:
        """Attach a caller's feedback (the true label, a reference answer, or a ``rating``) to
        an answered request, once: the same value again is a no-op, another raises
        FeedbackConflict. Returns the row (``new``: this call set it), or None if the
        request is unknown. The write is
        one conditional UPDATE (only where the column is still empty), so two replicas
        taking feedback for the same request at once cannot both win."""
        if column not in FEEDBACK_COLUMNS:
            raise ValueError(f"feedback goes to one of {FEEDBACK_COLUMNS}, not {column!r}")
        if isinstance(value, str):
            value = clean_text(value)
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        target = requests.c[column]
        values = {column: value} | ({"feedback_time": now} if column == "feedback" else {})

        def attach() -> Any:
            with self._lock, self._engine.begin() as conn:
                done = update(requests).where(_answer(request_id), target.is_(None)).values(values)
                new = conn.execute(done).rowcount > 0
                found = conn.execute(
                    select(requests.c.request_id, requests.c.version, requests.c.label, target)
                    .where(_answer(request_id))
                    .limit(1)
                ).first()
                return found, new

        row, new = self._run(attach)
        if row is None:
            return None
        if row[3] != value:
            what = "feedback" if column == "feedback" else "a rating"
            raise FeedbackConflict(f"request {request_id} already has {what} {row[3]!r}")
        return {"request_id": row[0], "version": row[1], "label": row[2], column: value, "new": new}

    def answered(self, request_id: str) -> dict[str, Any] | None:
        def read() -> Any:
            with self._engine.connect() as conn:
                query = select(requests.c.version, requests.c.endpoint, requests.c.status)
                return conn.execute(query.where(_answer(request_id)).limit(1)).first()

        row = self._run(read)
        return None if row is None else {"version": row[0], "endpoint": row[1], "status": row[2]}

    def rows(self, since: datetime | None = None, minutes: float | None = None) -> list[dict[str, Any]]:
        """Finished rows (open ones are still being answered), oldest first."""
        if minutes is not None:
            since = datetime.now(UTC) - timedelta(minutes=minutes)
        query = select(requests).where(requests.c.status != OPEN)
        if since is not None:
            query = query.where(requests.c.time >= since.isoformat(timespec="microseconds"))

        def read() -> list[dict[str, Any]]:
            with self._engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(query.order_by(requests.c.id))]

        return self._run(read)

    def count(self) -> int:
        """Rows in the log (every status)."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(requests)).scalar() or 0)

    def close(self) -> None:
        """Nothing to release per log: engines are pooled per URL for the process."""

    @classmethod
    def reader(cls, where: str | Path, project: Path | None = None) -> LogReader:
        """The log opened read-only (a monitor never migrates or writes a service's log)."""
        from tunegate.serving.logreader import LogReader

        return LogReader(database_url(where, project))
