from serving.requestlog import SCHEMA, Entry, RequestLog
from serving.routing import caller_hash, caller_point, route


def test_rows_are_scrubbed_and_read_back_in_order(tmp_path):
    log = RequestLog(tmp_path / "logs/requests.sqlite")
    log.write(
        Entry("a", "classify", 200, caller=caller_hash("alice"), input="mail me: jo@example.com", output="x")
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
    assert log.answered("a") == {"version": "v1", "endpoint": "classify"}
    row = {"request_id": "a", "version": "v1", "label": "card_arrival", "feedback": "card_lost"}
    assert log.feedback("a", "card_lost") == row
    assert log.feedback("missing", "x") is None
    rows = log.rows()
    assert [r["feedback"] for r in rows] == ["card_lost", None]  # the shadow copy is not the caller's answer
    assert rows[0]["confidence"] == 0.9
