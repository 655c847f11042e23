"""The service's side of the request log: rows written off the event loop, in batches, and
none lost without being counted.

The service hands each row to a ``LogWriter`` (``begin``, ``finish``, ``write``: a
queue append, never a database call nor a scrubbing pass) and one flusher thread scrubs
them and applies them in order, many in one transaction (tunegate/serving/requestlog.py ``apply``).
What happens when the database cannot take them (PostgreSQL stopped, a disk full, a lock
held too long):

- the flusher keeps the rows, in order, and retries with a growing pause (0.1 s to 5 s);
  ``/readyz`` turns false (``log: failing``) so a load balancer sends traffic elsewhere;
  PostgreSQL connections and statements time out (tunegate/serving/logstore.py), and a write that
  hangs on a server that stopped answering without closing the connection is reported
  failing after ``stall_seconds`` while the rows stay queued; when it answers, they arrive
  in order;
- the queue is bounded (``serve.log_queue``): once it is full, a new request is refused
  with 503 before it is served, so no request is answered without its row;
- every ``heartbeat_seconds`` (a sixth of ``serve.lost_after_seconds``) the flusher
  records that this process is alive; any replica closes the open rows of a process
  silent for longer than ``serve.lost_after_seconds`` as lost (a replica that died
  on another host is noticed too), and the heartbeat notices a database that went down
  while no request came;
- at shutdown, rows the database has not taken within ``serve.log_drain_seconds`` go to
  a local spool (``<logs>/spool-<instance>.jsonl``, fsynced, 0600; tunegate/serving/spool.py),
  counted in the log line; the next start of any process on that folder replays every
  spool file into the database before it serves, then deletes it. A line a crash cut off,
  or any line that is not a valid operation, is set aside (``.rejected``), counted on
  ``/readyz`` (``log.spool_rejected``) and in the log, and never stops the start. The
  spool folder is checked writable at start (a service that could not spool is not
  started); if it fails at shutdown all the same, the rows go to a spool in the system's
  temporary folder, named in the log, rather than nowhere.

A batch whose commit succeeded but whose acknowledgement was lost would be applied twice
on retry; the window is one network round trip, and a duplicate row is visible (same
``request_id``), not a lost one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import private_dir
from tunegate.core.errors import TunegateError
from tunegate.serving.logstore import TIMEOUT_SECONDS
from tunegate.serving.requestlog import OPEN, Entry, RequestLog, finished_fields, row_of, scrubbed
from tunegate.serving.spool import append_private, read_spool, set_aside

log = logging.getLogger(__name__)


def _request_of(kind: str, row: dict[str, Any]) -> str:
    """The request an op belongs to (an insert's row, or the key a finish completes)."""
    return row["request_id"] if kind == "insert" else row["key"]


class LogUnavailable(TunegateError):
    """The request log cannot take another row now (its queue is full)."""


class LogWriter:
    def __init__(
        self,
        log: RequestLog,
        spool_dir: Path,
        max_pending: int = 10_000,
        batch: int = 500,
        heartbeat_seconds: float = 10.0,
        stall_seconds: float = TIMEOUT_SECONDS,
    ):
        self.log, self.spool_dir = log, spool_dir
        self.max_pending, self.batch, self.heartbeat_seconds = max_pending, batch, heartbeat_seconds
        self._beat_at = 0.0
        self.stall_seconds = stall_seconds
        self._writing_since: float | None = None  # set while a database call is under way
        self.failing: str | None = None
        self.written = self.spooled = self.rejected = 0
        self._ops: deque[tuple[str, dict[str, Any]]] = deque()
        self._queued: Counter[str] = Counter()  # request id -> its ops not yet written
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)

    def start(self) -> int:
        """Replay spools left by earlier processes (rows the database never took), then
        start flushing; returns how many spooled rows were replayed."""
        probe = self.spool_dir / f".writable-{os.getpid()}"
        try:
            private_dir(self.spool_dir)
            append_private(probe, [""])
            probe.unlink()
        except OSError as err:
            raise TunegateError(
                f"the request log's spool folder {self.spool_dir} is not writable: {err}"
            ) from err
        replayed = self.replay_spools()
        self._thread.start()
        return replayed

    # -- what the service calls (never blocks on the database) ------------------------

    def begin(self, entry: Entry) -> str:
        """The row of a request the service has taken; `finish` completes it by its key."""
        entry.status = OPEN
        self._put("insert", row_of(entry, self.log.instance, scrub=False))
        return entry.request_id

    def finish(self, key: str, entry: Entry) -> None:
        self._put("finish", {"key": key, **finished_fields(entry, scrub=False)})

    def write(self, entry: Entry) -> None:
        """One finished row (shadow copies, requests refused before they were taken)."""
        self._put("insert", row_of(entry, self.log.instance, scrub=False))

    def room(self) -> None:
        """Raise LogUnavailable when a new request's rows could not be queued."""
        if len(self._ops) >= self.max_pending:
            raise LogUnavailable(
                f"the request log is not taking rows ({self.failing or 'writer behind'}); "
                f"{len(self._ops)} rows wait"
            )

    def _put(self, kind: str, row: dict[str, Any]) -> None:
        with self._cond:
            if kind == "insert" and len(self._ops) >= self.max_pending:
                raise LogUnavailable(f"the request log queue is full ({self.max_pending} rows wait)")
            self._ops.append((kind, row))  # a finish is always taken: its row is already queued
            self._queued[_request_of(kind, row)] += 1
            self._cond.notify()

    @property
    def pending(self) -> int:
        return len(self._ops)

    def health(self) -> dict[str, Any]:
        """For /readyz: ok, or failing with why; rows waiting, written, spooled."""
        failing = self.failing
        since = self._writing_since
        if failing is None and since is not None and time.monotonic() - since > self.stall_seconds:
            failing = f"the database has not answered for {time.monotonic() - since:.0f} s"
        state = "failing" if failing else ("full" if self.pending >= self.max_pending else "ok")
        out = {"state": state, "pending": self.pending, "written": self.written, "spooled": self.spooled}
        out |= {"spool_rejected": self.rejected} if self.rejected else {}
        return out | ({"error": failing} if failing else {})

    # -- the flusher ---------------------------------------------------------------------

    def _run(self) -> None:
        pause = 0.1
        while True:
            with self._cond:
                while not self._ops and not self._stopping and not self._beat_due():
                    self._cond.wait(max(0.01, self._beat_at + self.heartbeat_seconds - time.monotonic()))
                if not self._ops and self._stopping:
                    return
                batch = [self._ops[i] for i in range(min(self.batch, len(self._ops)))]
            self._writing_since = time.monotonic()
            try:
                if self._beat_due():  # alive, for the other replicas (and a check of the database)
                    self.log.heartbeat()
                    self._beat_at = time.monotonic()
                if batch:  # scrubbed here, in the flusher: never on the event loop
                    self.log.apply([(kind, scrubbed(row)) for kind, row in batch])
            except TunegateError as err:
                self._writing_since = None
                if self.failing is None:
                    log.error("request log: %s; %d rows kept, retrying", err, self.pending)
                self.failing = str(err)
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            self._writing_since = None
            with self._cond:
                for _ in batch:
                    kind, row = self._ops.popleft()
                    rid = _request_of(kind, row)
                    self._queued[rid] -= 1
                    if not self._queued[rid]:
                        del self._queued[rid]
                self._cond.notify_all()  # for `flush` and `flush_request`
            self.written += len(batch)
            if self.failing is not None and batch:
                log.warning("request log: writing again; %d rows waited", len(batch))
            self.failing, pause = None, 0.1

    def _beat_due(self) -> bool:
        return time.monotonic() - self._beat_at >= self.heartbeat_seconds

    def flush(self, timeout: float) -> bool:
        """Wait until every queued row is in the database (or ``timeout``); True if it is."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._ops, timeout)

    def flush_request(self, request_id: str, timeout: float) -> bool:
        """Wait until this request's queued rows are in the database (or ``timeout``); True
        if they are. Returns at once for a request with nothing queued (an unknown id costs
        a caller nothing, however full the queue)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queued.get(request_id), timeout)

    def close(self, drain_seconds: float = 10.0) -> int:
        """Drain the queue into the database for up to ``drain_seconds``; spool the rest.
        Returns the rows spooled."""
        self.flush(drain_seconds)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=drain_seconds + 5) if self._thread.is_alive() else None
        with self._cond:
            left = list(self._ops)
            self._ops.clear()
            self._queued.clear()
        if left:
            self.spool(left)
        return len(left)

    def spool(self, ops: list[tuple[str, dict[str, Any]]]) -> Path:
        """Write rows to this process's spool; to the temporary folder's when that fails."""
        name = f"spool-{self.log.instance.replace(':', '-')}.jsonl"
        lines = [json.dumps({"op": kind, "row": scrubbed(row)}) + "\n" for kind, row in ops]
        try:
            path = private_dir(self.spool_dir) / name
            append_private(path, lines)
        except OSError as err:
            path = private_dir(Path(tempfile.gettempdir()) / "tunegate-spool") / name
            log.error(
                "request log: the spool folder %s failed (%s); spooling to %s", self.spool_dir, err, path
            )
            append_private(path, lines)  # raises only when both fail: loudly, never silently
        self.spooled += len(ops)
        log.warning("request log: %d rows the database did not take are spooled in %s", len(ops), path)
        return path

    def replay_spools(self) -> int:
        """Every spool in the folder into the database (valid lines only; the others set
        aside and counted), then the spool deleted."""
        replayed = 0
        for path in sorted(self.spool_dir.glob("spool-*.jsonl")):
            found = read_spool(path)
            if found.rejected:
                aside = set_aside(path, found.rejected)
                self.rejected += len(found.rejected)
                log.error(
                    "request log: %d line(s) of %s are not valid rows (first: line %d, %s); set aside in %s",
                    len(found.rejected), path.name, *found.rejected[0], aside.name,
                )  # fmt: skip
            self.log.apply(found.ops)  # raises when the database is down: the spool stays for next time
            path.unlink()
            replayed += len(found.ops)
            log.info("request log: %d spooled rows from %s written", len(found.ops), path.name)
        return replayed
