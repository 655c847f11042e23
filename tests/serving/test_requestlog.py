import os
import subprocess
import sys

import pytest

from serving.requestlog import LOST, OPEN, SCHEMA, Entry, FeedbackConflict, RequestLog, caller_key
from serving.routing import caller_point, route
from tunegate.deployment import log_secret

SECRET = b"test-secret"


def test_rows_are_scrubbed_and_read_back_in_order(tmp_path):
    log = RequestLog(tmp_path / "logs/requests.sqlite")
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


def test_routing_is_sticky_monotonic_and_weighted():
    callers = [f"c{i}" for i in range(2000)]
    at10 = {c for c in callers if route(c, {"production": 90, "canary": 10}) == "canary"}
    at25 = {c for c in callers if route(c, {"production": 75, "canary": 25}) == "canary"}
    assert at10 < at25  # raising the weight only moves production callers to the canary
    assert 0.08 < len(at10) / len(callers) < 0.12 and 0.22 < len(at25) / len(callers) < 0.28
    assert all(
        route("c1", {"production": 90, "canary": 10}) == route("c1", {"production": 90, "canary": 10})
        for _ in range(5)
    )
    assert route("anyone", {"production": 100}) == "production"
    assert 0 <= caller_point("x") < 100


def test_feedback_attaches_to_the_answered_row_and_old_logs_gain_the_columns(tmp_path):
    import sqlite3

    old = tmp_path / "old.sqlite"
    before = SCHEMA.replace(",\n    confidence REAL,\n    feedback TEXT,\n    feedback_time TEXT", "")
    assert "feedback" not in before
    with sqlite3.connect(old) as db:  # a log from before confidence and feedback existed
        db.executescript(before)
    log = RequestLog(old)
    log.write(Entry("a", "classify", 200, version="v1", label="card_arrival", confidence=0.9))
    log.write(Entry("a", "classify", 200, version="v2", label="card_lost", shadow=True))
    assert log.answered("a") == {"version": "v1", "endpoint": "classify", "status": 200}
    row = {"request_id": "a", "version": "v1", "label": "card_arrival", "feedback": "card_lost"}
    assert log.feedback("a", "card_lost") == row
    assert log.feedback("a", "card_lost") == row  # the same label again: a no-op
    with pytest.raises(FeedbackConflict, match="already has feedback 'card_lost'"):
        log.feedback("a", "card_arrival")  # one label per request: the first stands
    assert log.feedback("missing", "x") is None
    rows = log.rows()
    assert [r["feedback"] for r in rows] == ["card_lost", None]  # the shadow copy is not the caller's answer
    assert rows[0]["confidence"] == 0.9


def test_a_request_is_on_the_record_from_admission_and_a_crash_leaves_it_marked_lost(tmp_path):
    """A row is opened when the service takes a request and completed at the end; a process
    killed in between leaves the row open, and the next start marks it lost (a 5xx)."""
    path = tmp_path / "requests.sqlite"
    code = (
        "import os, sys; from serving.requestlog import Entry, RequestLog; "
        "log = RequestLog(sys.argv[1]); log.begin(Entry('crashed', 'classify', 0, version='v1')); "
        "os.kill(os.getpid(), 9)"
    )
    died = subprocess.run([sys.executable, "-c", code, str(path)], env=os.environ | {"PYTHONPATH": "."})
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
        db.executescript(SCHEMA.replace(",\n    rating REAL", ""))
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
