"""The request log on both engines: an SQLite file, and a real PostgreSQL server (the
store replicas share; tests/postgres.py starts one)."""

import os
import subprocess
import sys
import threading

import pytest

from tests.postgres import fresh_database
from tunegate.core.deployment import log_secret
from tunegate.core.errors import DataError
from tunegate.serving.logstore import SCHEMA_VERSION
from tunegate.serving.requestlog import LOST, OPEN, Entry, FeedbackConflict, RequestLog, caller_key
from tunegate.serving.routing import caller_point, route

SECRET = b"test-secret"
V1_TABLE = """
CREATE TABLE requests (
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
    error TEXT{more}
);
CREATE INDEX requests_time ON requests (time);
"""
"""The table as the first release wrote it (``more``: columns a later release had added)."""
ENGINES = ["sqlite", "postgresql"]


def where(engine: str, tmp_path, request) -> str:
    """A new, empty log on the engine: an SQLite file, or a database on the PostgreSQL server."""
    if engine == "sqlite":
        return str(tmp_path / "logs/requests.sqlite")
    return fresh_database(request.getfixturevalue("postgres_server"))


@pytest.mark.parametrize("engine", ENGINES)
def test_rows_are_scrubbed_and_read_back_in_order(engine, tmp_path, request):
    log = RequestLog(where(engine, tmp_path, request))
    log.write(
        Entry(
            "a",
            "classify",
            200,
            caller=caller_key("alice", SECRET),
            input="mail me: jo@example.com",
            output="x",
        )
    )
    log.write(Entry("b", "chat", 400, input="call +44 20 7946 0958 now", error="bad"))
    rows = log.rows()
    assert [r["request_id"] for r in rows] == ["a", "b"]
    assert "jo@example.com" not in rows[0]["input"] and "[EMAIL]" in rows[0]["input"]
    assert "7946" not in rows[1]["input"] and rows[1]["status"] == 400
    assert rows[0]["caller"] != "alice" and len(rows[0]["caller"]) == 16
    assert log.rows(minutes=1) == rows and log.rows(minutes=-1) == []


SALT = "a-deployment-secret-salt"


def test_routing_is_sticky_monotonic_and_weighted():
    callers = [f"c{i}" for i in range(2000)]
    at10 = {c for c in callers if route(c, {"production": 90, "canary": 10}, SALT) == "canary"}
    at25 = {c for c in callers if route(c, {"production": 75, "canary": 25}, SALT) == "canary"}
    assert at10 < at25  # raising the weight only moves production callers to the canary
    assert 0.08 < len(at10) / len(callers) < 0.12 and 0.22 < len(at25) / len(callers) < 0.28
    assert all(
        route("c1", {"production": 90, "canary": 10}, SALT)
        == route("c1", {"production": 90, "canary": 10}, SALT)
        for _ in range(5)
    )
    assert route("anyone", {"production": 100}, SALT) == "production"
    assert 0 <= caller_point("x", SALT) < 100


def test_evidence_the_routing_salt_is_the_deployments_secret_not_the_constant():
    """A client that knows the code cannot compute which ids reach the canary: the salt is a
    keyed hash of the deployment's secret. With the old public constant, 16 of 16 guesses hit."""
    from tunegate.serving.routing import routing_salt

    salt = routing_salt(b"\x01" * 32)
    assert salt not in ("tunegate", "") and salt == routing_salt(b"\x01" * 32)  # same for every replica
    assert routing_salt(b"\x02" * 32) != salt
    callers = [f"user-{i}" for i in range(400)]
    guessed = {c for c in callers if caller_point(c, "tunegate") < 10}
    real = {c for c in callers if caller_point(c, salt) < 10}
    assert len(guessed & real) < len(real) / 2  # a guess is about as good as chance (10% overlap)


def test_feedback_attaches_to_the_answered_row_and_old_logs_gain_the_columns(tmp_path):
    import sqlite3

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:  # a log from before confidence and feedback existed
        db.executescript(V1_TABLE.format(more=""))
    log = RequestLog(old)
    with sqlite3.connect(old) as db:
        assert db.execute("SELECT version FROM tunegate_schema").fetchall() == [(SCHEMA_VERSION,)]
    log.write(Entry("a", "classify", 200, version="v1", label="card_arrival", confidence=0.9))
    log.write(Entry("a", "classify", 200, version="v2", label="card_lost", shadow=True))
    assert log.answered("a") == {"version": "v1", "endpoint": "classify", "status": 200}
    row = {"request_id": "a", "version": "v1", "label": "card_arrival", "feedback": "card_lost"}
    assert log.feedback("a", "card_lost") == row | {"new": True}
    assert log.feedback("a", "card_lost") == row | {"new": False}  # the same label again: a no-op
    with pytest.raises(FeedbackConflict, match="already has feedback 'card_lost'"):
        log.feedback("a", "card_arrival")  # one label per request: the first stands
    assert log.feedback("missing", "x") is None
    rows = log.rows()
    assert [r["feedback"] for r in rows] == ["card_lost", None]  # the shadow copy is not the caller's answer
    assert rows[0]["confidence"] == 0.9


@pytest.mark.parametrize("engine", ENGINES)
def test_a_request_is_on_the_record_from_admission_and_a_crash_leaves_it_marked_lost(
    engine, tmp_path, request
):
    """A row is opened when the service takes a request and completed at the end; a process
    killed in between leaves the row open, and the next start marks it lost (a 5xx)."""
    path = where(engine, tmp_path, request)
    code = (
        "import os, sys; from tunegate.serving.requestlog import Entry, RequestLog; "
        "log = RequestLog(sys.argv[1]); log.begin(Entry('crashed', 'classify', 0, version='v1')); "
        "os.kill(os.getpid(), 9)"
    )
    died = subprocess.run([sys.executable, "-c", code, path], env=os.environ | {"PYTHONPATH": "."})
    assert died.returncode == -9
    log = RequestLog(path)
    entry = Entry("live", "classify", 0, version="v1")
    row = log.begin(entry)
    assert log.rows() == []  # open rows are still being answered: not yet in any window
    assert log.close_lost() == 1  # the dead process's row, not this process's open one
    entry.status, entry.output = 200, "card_arrival"
    log.finish(row, entry)
    rows = {r["request_id"]: r for r in log.rows()}
    assert rows["crashed"]["status"] == LOST and "died" in rows["crashed"]["error"]
    assert rows["live"]["status"] == 200 and rows["live"]["output"] == "card_arrival"
    assert OPEN not in {r["status"] for r in rows.values()}


def test_caller_hashes_are_keyed_by_a_per_deployment_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNEGATE_LOG_SECRET", raising=False)
    first = log_secret(tmp_path)
    assert first == log_secret(tmp_path) and len(first) == 64  # made once, then kept
    assert (tmp_path / ".tunegate/log-secret").stat().st_mode & 0o777 == 0o600
    assert log_secret(tmp_path / "other") != first
    assert caller_key("customer-42", first) != caller_key("customer-42", b"tunegate")
    guesses = {caller_key(f"customer-{i}", b"tunegate"): i for i in range(100)}
    assert caller_key("customer-42", first) not in guesses  # guessing with a public salt fails
    monkeypatch.setenv("TUNEGATE_LOG_SECRET", "shared-by-replicas")
    assert log_secret(tmp_path) == b"shared-by-replicas"


def test_generation_feedback_keeps_a_scrubbed_reference_and_a_rating_once_each(tmp_path):
    import sqlite3

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:  # a log from before ratings existed
        db.executescript(V1_TABLE.format(more=", confidence REAL, feedback TEXT, feedback_time TEXT"))
    log = RequestLog(old)
    log.write(Entry("g", "generate", 200, version="v1", input="card gone", output='{"intent": "lost_card"}'))
    ticket = '{"intent": "lost_card", "summary": "Mail me at ann@example.com"}'
    row = log.feedback("g", ticket)
    assert row is not None and "ann@example.com" not in row["feedback"] and "[EMAIL]" in row["feedback"]
    assert log.feedback("g", ticket)["feedback"] == row["feedback"]  # scrubbed the same way: a no-op
    assert log.feedback("g", 0.75, "rating")["rating"] == 0.75
    with pytest.raises(FeedbackConflict, match=r"already has a rating 0\.75"):
        log.feedback("g", 0.5, "rating")
    with pytest.raises(ValueError, match="not 'label'"):
        log.feedback("g", "x", "label")  # only the feedback columns can be written
    (got,) = RequestLog.reader(old).generated()
    assert got["rating"] == 0.75 and got["feedback"] == row["feedback"] and got["output"].startswith("{")


@pytest.mark.parametrize("engine", ENGINES)
def test_feedback_from_two_replicas_at_once_lets_exactly_one_label_win(engine, tmp_path, request):
    """Two writers (as two replicas would) give different labels to one answer at the same
    moment: one is kept, the other gets FeedbackConflict naming it; never both, never none."""
    url = where(engine, tmp_path, request)
    RequestLog(url).write(Entry("r", "classify", 200, version="v1", label="card_arrival"))
    barrier, results = threading.Barrier(2), {}

    def give(label: str) -> None:
        log = RequestLog(url)
        barrier.wait()
        try:
            results[label] = log.feedback("r", label)["feedback"]
        except FeedbackConflict as err:
            results[label] = err

    threads = [threading.Thread(target=give, args=(x,)) for x in ("card_lost", "top_up")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [label for label, got in results.items() if got == label]
    lost = [got for got in results.values() if isinstance(got, FeedbackConflict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert f"already has feedback '{won[0]}'" in str(lost[0])
    assert [r["feedback"] for r in RequestLog(url).rows()] == won


def test_postgres_log_is_shared_and_read_only_for_readers(tmp_path, postgres_server):
    """Two writers on one PostgreSQL log (two replicas), one reader: the reader sees both
    writers' answers and cannot write; the schema version is recorded once."""
    import psycopg

    url = fresh_database(postgres_server)
    first, second = RequestLog(url), RequestLog(url)
    first.write(Entry("a", "classify", 200, version="v1", input="where is my card", label="card_arrival"))
    second.write(Entry("b", "classify", 200, version="v2", input="top up failed", label="top_up_failed"))
    got = RequestLog.reader(url).classified()
    assert [r["label"] for r in got] == ["card_arrival", "top_up_failed"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT name, version FROM tunegate_schema").fetchall() == [
            ("requests", SCHEMA_VERSION)
        ]
    from sqlalchemy.exc import DBAPIError

    from tunegate.serving.logstore import database_url, engine_for

    with (
        pytest.raises(DBAPIError, match="read-only transaction"),
        engine_for(database_url(url), True).connect() as c,
    ):
        c.exec_driver_sql("DELETE FROM requests")


def test_a_log_written_by_a_newer_tunegate_is_refused_unchanged(tmp_path):
    import sqlite3

    path = tmp_path / "requests.sqlite"
    RequestLog(path).write(Entry("a", "classify", 200))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tunegate_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(DataError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        RequestLog(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM tunegate_schema").fetchone() == (SCHEMA_VERSION + 1,)


def test_postgres_log_that_is_down_is_a_clear_error_without_the_password(tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://svc:hunter2@127.0.0.1:{port}/log"
    with pytest.raises(DataError, match=r"request log postgresql\+psycopg://svc:\*\*\*@127.0.0.1") as err:
        RequestLog(url)
    assert "hunter2" not in str(err.value)
    with pytest.raises(DataError, match="svc:\\*\\*\\*"):
        RequestLog.reader(url).classified()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_silent_replica_has_its_open_rows_closed_by_another_after_the_timeout(engine, tmp_path, request):
    """Replicas on different hosts: the one still beating closes the open rows of the one that
    went silent, once its heartbeat is older than lost_after, and not before; a process that
    never sent a heartbeat is judged by its open row's time."""
    from datetime import UTC, datetime, timedelta

    url = where(engine, tmp_path, request)
    t0 = datetime.now(UTC)
    other, mine, old = RequestLog(url), RequestLog(url), RequestLog(url)
    other.instance, old.instance = "replica-b:4242", "replica-c:77"  # processes on other hosts
    other.heartbeat(now=t0)
    mine.heartbeat(now=t0)
    other.begin(Entry("theirs", "classify", 0, version="v1"))
    old.begin(Entry("legacy", "classify", 0, version="v1", time=t0.isoformat()))
    mine.begin(Entry("mine", "classify", 0, version="v1"))
    assert mine.close_lost(60, now=t0 + timedelta(seconds=30)) == 0  # all within the timeout
    other.heartbeat(now=t0 + timedelta(seconds=50))  # replica b is still alive at +50 s
    assert mine.close_lost(60, now=t0 + timedelta(seconds=61)) == 1  # replica c: silent, never beat
    assert mine.close_lost(60, now=t0 + timedelta(seconds=111)) == 1  # replica b: silent since +50 s
    lost = {r["request_id"]: r for r in mine.rows()}
    assert set(lost) == {"theirs", "legacy"} and {r["status"] for r in lost.values()} == {LOST}
    assert mine.close_lost(60, now=t0 + timedelta(hours=1)) == 0  # this process's own row stays open


@pytest.mark.parametrize("engine", ENGINES)
def test_replicas_with_different_log_secrets_are_refused(engine, tmp_path, request):
    """The first process records its secret's fingerprint; one with another secret is
    refused with a message naming the variable, never the secret; the same secret passes."""
    from tunegate.core.errors import ConfigError

    url = where(engine, tmp_path, request)
    first = RequestLog(url).check_secret(b"shared-by-replicas")
    assert RequestLog(url).check_secret(b"shared-by-replicas") == first
    with pytest.raises(ConfigError, match=r"TUNEGATE_LOG_SECRET .* differs") as err:
        RequestLog(url).check_secret(b"another-secret")
    assert "another-secret" not in str(err.value) and "shared-by-replicas" not in str(err.value)


def test_the_request_log_url_comes_from_the_environment_when_set(monkeypatch, tmp_path):
    """A database URL carries a password: replicas take it from TUNEGATE_REQUEST_LOG (a
    secret), not from the committed params file; unset, serve.request_log holds."""
    from tunegate.serving.logstore import configured, database_url, local_dir

    monkeypatch.delenv("TUNEGATE_REQUEST_LOG", raising=False)
    assert configured("logs/requests.sqlite") == "logs/requests.sqlite"
    assert (
        database_url("logs/requests.sqlite", tmp_path)
        == f"sqlite:///{tmp_path.resolve()}/logs/requests.sqlite"
    )
    monkeypatch.setenv("TUNEGATE_REQUEST_LOG", "postgresql://svc:pw@db:5432/log")
    assert configured("logs/requests.sqlite") == "postgresql://svc:pw@db:5432/log"
    assert database_url(configured("x")) == "postgresql+psycopg://svc:pw@db:5432/log"
    assert local_dir(configured("x"), tmp_path) == tmp_path / "logs"  # status files stay local
