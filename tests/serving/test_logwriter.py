"""The service's log writer: rows off the event loop in batches, kept while the database is
down (a real PostgreSQL server stopped mid-traffic and started again), refused past the
bound, spooled at shutdown and replayed at the next start. Nothing is lost uncounted."""

from __future__ import annotations

import time

import pytest

from serving.logwriter import LogUnavailable, LogWriter
from serving.requestlog import LOST, OPEN, Entry, RequestLog
from tests.postgres import fresh_database


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def traffic(writer: LogWriter, first: int, count: int) -> None:
    """``count`` requests as the service logs them: opened, then completed."""
    for i in range(first, first + count):
        entry = Entry(f"r{i:04d}", "classify", OPEN, version="v1", input=f"message {i} to jo@example.com")
        key = writer.begin(entry)
        entry.status, entry.label = 200, "card_arrival"
        writer.finish(key, entry)


def test_logwriter_writes_batches_in_order_with_rows_scrubbed(tmp_path):
    log = RequestLog(tmp_path / "requests.sqlite")
    writer = LogWriter(log, tmp_path / "spool", batch=7)
    writer.start()
    traffic(writer, 0, 40)
    writer.write(Entry("r0000", "classify", 200, version="v2", shadow=True, label="top_up"))
    assert writer.flush(30)
    rows = log.rows()
    assert [r["request_id"] for r in rows[:40]] == [f"r{i:04d}" for i in range(40)]
    assert all(r["status"] == 200 and r["label"] == "card_arrival" for r in rows[:40])
    assert "[EMAIL]" in rows[0]["input"] and "jo@example.com" not in rows[0]["input"]
    assert rows[40]["shadow"] == 1 and rows[40]["label"] == "top_up"  # a finish never touches a shadow row
    assert writer.health() == {"state": "ok", "pending": 0, "written": 81, "spooled": 0}
    assert writer.close() == 0


def test_logwriter_postgres_stopped_mid_traffic_keeps_every_row(tmp_path, private_postgres):
    url = fresh_database(private_postgres.url)
    log = RequestLog(url)
    writer = LogWriter(log, tmp_path / "spool", max_pending=500)
    writer.start()
    traffic(writer, 0, 50)
    assert writer.flush(30) and len(log.rows()) == 50

    private_postgres.stop()
    traffic(writer, 50, 50)  # taken while the database is down: queued, not lost
    wait_for(lambda: writer.health()["state"] == "failing")
    health = writer.health()
    assert health["pending"] == 100 and "request log postgresql+psycopg://" in health["error"]

    private_postgres.start()
    assert writer.flush(60), writer.health()
    rows = log.rows()
    assert [r["request_id"] for r in rows] == [f"r{i:04d}" for i in range(100)]
    assert {r["status"] for r in rows} == {200}
    assert writer.health()["state"] == "ok" and writer.health()["written"] == 200
    writer.close()


def test_logwriter_full_queue_refuses_new_requests_and_spools_at_shutdown(tmp_path, private_postgres):
    url = fresh_database(private_postgres.url)
    writer = LogWriter(RequestLog(url), tmp_path / "spool", max_pending=20)
    writer.start()
    private_postgres.stop()
    traffic(writer, 0, 10)  # 20 queued operations: the bound
    with pytest.raises(LogUnavailable, match=r"not taking rows .*20 rows wait"):
        writer.room()  # what admission asks before serving: a 503
    with pytest.raises(LogUnavailable, match="queue is full"):
        writer.begin(Entry("late", "classify", OPEN))
    assert writer.close(drain_seconds=0.5) == 20  # the database is still down: all spooled
    (spool,) = (tmp_path / "spool").glob("spool-*.jsonl")
    assert len(spool.read_text().splitlines()) == 20

    private_postgres.start()
    log = RequestLog(url)  # the next start of a service on the same folder
    again = LogWriter(log, tmp_path / "spool")
    assert again.start() == 20 and not spool.exists()
    rows = log.rows()
    assert [r["request_id"] for r in rows] == [f"r{i:04d}" for i in range(10)]
    assert {r["status"] for r in rows} == {200} and LOST not in {r["status"] for r in rows}
    again.close()


def test_logwriter_heartbeat_marks_this_process_alive_and_notices_a_database_gone(tmp_path, private_postgres):
    import psycopg

    url = fresh_database(private_postgres.url)
    writer = LogWriter(RequestLog(url), tmp_path / "spool", heartbeat_seconds=0.2)
    writer.start()

    def seen() -> list:
        with psycopg.connect(url) as conn:
            query = "SELECT seen FROM instances WHERE instance = %s"
            return conn.execute(query, (writer.log.instance,)).fetchall()

    wait_for(lambda: len(seen()) == 1)
    first = seen()[0][0]
    wait_for(lambda: seen()[0][0] > first)  # beats again, with no traffic at all
    private_postgres.stop()
    wait_for(lambda: writer.health()["state"] == "failing")  # noticed without a request
    private_postgres.start()
    wait_for(lambda: writer.health()["state"] == "ok")
    writer.close()


def test_logwriter_waits_for_one_requests_rows_not_the_whole_queue(tmp_path):
    """What /feedback waits for: an id with nothing queued answers at once, however many
    rows of other requests wait; a queued one waits until its own rows are written."""
    log = RequestLog(tmp_path / "requests.sqlite")
    writer = LogWriter(log, tmp_path / "spool")
    traffic(writer, 0, 300)  # queued, and no flusher yet: the queue is stuck
    started = time.monotonic()
    assert writer.flush_request("never-sent", 5.0)
    assert time.monotonic() - started < 1.0
    assert not writer.flush_request("r0007", 0.2)  # its rows wait behind a stuck queue
    writer.start()
    assert writer.flush_request("r0007", 30)
    assert log.answered("r0007")["status"] == 200
    assert writer.flush(30) and writer.close() == 0
