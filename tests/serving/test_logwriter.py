"""The service's log writer: rows off the event loop in batches, kept while the database is
down (a real PostgreSQL server stopped mid-traffic and started again), refused past the
bound, spooled at shutdown and replayed at the next start. Nothing is lost uncounted."""

from __future__ import annotations

import time

import pytest

from tests.postgres import fresh_database
from tunegate.core.errors import TunegateError
from tunegate.serving.logwriter import LogUnavailable, LogWriter
from tunegate.serving.requestlog import LOST, OPEN, Entry, RequestLog


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


def test_spool_with_a_torn_last_line_and_forged_rows_is_replayed_valid_rows_only(tmp_path):
    """A crash mid-write leaves half a line; a spool can also hold rows that are no valid
    operation, or a finish aimed at another request's outcome: the start replays the valid
    rows, sets the rest aside (counted on /readyz), and never aborts."""
    import json
    import stat

    log = RequestLog(tmp_path / "requests.sqlite")
    log.write(Entry("done", "classify", 200, version="v1", label="top_up"))  # another request, answered
    spool = tmp_path / "spool"
    spool.mkdir()
    from tunegate.serving.requestlog import finished_fields, row_of

    opened = Entry("s1", "classify", OPEN, version="v1", input="hello")
    answered = Entry("s1", "classify", 200, version="v1", label="card_arrival")
    forged = Entry("done", "classify", 500, error="forged")
    good = [
        {"op": "insert", "row": row_of(opened, "host:1")},
        {"op": "finish", "row": {"key": "s1", **finished_fields(answered)}},
        {"op": "finish", "row": {"key": "done", **finished_fields(forged)}},  # valid, but closed: no effect
    ]
    bad = [
        {"op": "drop", "row": {}},
        {"op": "insert", "row": row_of(Entry("s2", "classify", 200), "host:1") | {"evil": 1}},
        {"op": "finish", "row": {"key": "s1", **finished_fields(answered)} | {"status": "200"}},
    ]
    text = "".join(json.dumps(op) + "\n" for op in good + bad) + '{"op": "insert", "row": {"request_'
    (spool / "spool-host-1.jsonl").write_text(text)
    writer = LogWriter(log, spool)
    assert writer.start() == 3
    rows = {r["request_id"]: r for r in log.rows()}
    assert rows["s1"]["status"] == 200 and rows["s1"]["label"] == "card_arrival"
    assert rows["done"]["status"] == 200 and rows["done"]["error"] is None  # never overwritten
    assert "s2" not in rows and writer.health()["spool_rejected"] == 4
    aside = [json.loads(line) for line in (spool / "spool-host-1.jsonl.rejected").read_text().splitlines()]
    assert [a["line"] for a in aside] == [4, 5, 6, 7] and "cut off" in aside[-1]["why"]
    assert not (spool / "spool-host-1.jsonl").exists()
    assert stat.S_IMODE((spool / "spool-host-1.jsonl.rejected").stat().st_mode) == 0o600
    writer.close()


def test_spool_and_request_log_are_private_and_an_unwritable_spool_is_refused_at_start(tmp_path):
    import stat

    log = RequestLog(tmp_path / "logs" / "requests.sqlite")
    assert stat.S_IMODE((tmp_path / "logs" / "requests.sqlite").stat().st_mode) == 0o600
    writer = LogWriter(log, tmp_path / "logs")
    writer.start()
    writer.spool([("insert", {"request_id": "x"})])
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700
    spooled = next((tmp_path / "logs").glob("spool-*.jsonl"))
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    writer.close()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with pytest.raises(TunegateError, match=r"spool folder .* is not writable"):
        LogWriter(log, blocked).start()


def test_spool_that_fails_at_shutdown_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    """Rows the database did not take are never lost at shutdown: a spool folder that broke
    after the start sends them to the temporary folder's spool, named in the log."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    log = RequestLog(tmp_path / "requests.sqlite")
    writer = LogWriter(log, tmp_path / "spool")
    writer.start()
    (tmp_path / "spool").rmdir()
    (tmp_path / "spool").write_text("")  # now a file: nothing can be written under it
    path = writer.spool([("insert", {"request_id": "late"})])
    assert path.parent == tmp_path / "tmp" / "tunegate-spool" and "late" in path.read_text()
    writer.close()


def test_a_queue_that_fills_between_the_room_check_and_the_row_is_a_503(tmp_path):
    """Admission checks the room; a concurrent request may take it before this one's row is
    queued: that is the documented 503, not a 500."""
    from types import SimpleNamespace

    from tunegate.serving.api import ApiError
    from tunegate.serving.recording import opened

    log = RequestLog(tmp_path / "requests.sqlite")
    writer = LogWriter(log, tmp_path / "spool", max_pending=1)  # not started: nothing drains
    writer.room()  # there was room when the request was admitted...
    writer.write(Entry("other", "classify", 200))  # ...and another request took it
    with pytest.raises(ApiError) as refused:
        opened(SimpleNamespace(writer=writer), Entry("late", "classify", OPEN))
    assert refused.value.status == 503 and "queue is full" in refused.value.message


def test_a_database_that_goes_silent_keeps_every_row_and_refuses_past_the_queue(tmp_path, postgres_server):
    """PostgreSQL stops answering without closing its connections (a proxy that holds every
    byte): requests keep being taken while the queue has room, /readyz says the log is
    failing, then new requests get 503; when the server answers again every queued row
    arrives, in order."""
    from urllib.parse import urlsplit

    from tests.stall_proxy import StallProxy
    from tunegate.serving.api import ApiError
    from tunegate.serving.recording import opened

    url = fresh_database(postgres_server)
    where = urlsplit(url)
    proxy = StallProxy(where.hostname, where.port)
    try:
        via = url.replace(f"{where.hostname}:{where.port}", f"127.0.0.1:{proxy.port}")
        writer = LogWriter(RequestLog(via), tmp_path / "spool", max_pending=40, stall_seconds=0.5)
        writer.start()
        traffic(writer, 0, 5)
        assert writer.flush(30)
        proxy.stall()
        rt = type("Rt", (), {"writer": writer})()
        taken, refused = 0, None
        for i in range(5, 100):
            entry = Entry(f"r{i:04d}", "classify", OPEN, version="v1")
            try:
                writer.room()
                key = opened(rt, entry)
            except (LogUnavailable, ApiError) as err:
                refused = err
                break
            entry.status = 200
            writer.finish(key, entry)
            taken += 1
        assert 15 <= taken <= 20 and refused is not None  # 2 rows a request, 40 at most waiting
        wait_for(lambda: writer.health()["state"] == "failing", timeout=10)
        assert "has not answered" in writer.health()["error"]
        proxy.resume()
        assert writer.flush(60), writer.health()
        rows = RequestLog(url).rows()
        assert [r["request_id"] for r in rows] == [f"r{i:04d}" for i in range(5 + taken)]
        assert all(r["status"] == 200 for r in rows) and writer.health()["state"] == "ok"
        writer.close()
    finally:
        proxy.close()


def test_rows_are_scrubbed_by_the_flusher_never_on_the_callers_thread(tmp_path, monkeypatch):
    import threading

    import tunegate.serving.requestlog as requestlog

    threads = []
    real = requestlog.clean_text

    def recording(text):
        threads.append(threading.current_thread().name)
        return real(text)

    monkeypatch.setattr(requestlog, "clean_text", recording)
    log = RequestLog(tmp_path / "requests.sqlite")
    writer = LogWriter(log, tmp_path / "spool")
    writer.start()
    traffic(writer, 0, 3)
    assert threads == []  # begin and finish only queued the rows
    assert writer.flush(30)
    assert threads and set(threads) == {"request-log-writer"}
    assert "[EMAIL]" in log.rows()[0]["input"]
    writer.close()


def test_a_process_killed_while_it_writes_its_spool_leaves_a_spool_the_next_start_replays(tmp_path):
    """SIGKILL a process in the middle of spooling (rows its database did not take), then
    start a writer on the folder as the next service start does: it starts, every complete
    line is in the log, and at most the one line the kill cut off is set aside."""
    import json
    import os
    import signal
    import subprocess
    import sys

    code = f"""
import itertools
from pathlib import Path
from tunegate.serving.logwriter import LogWriter
from tunegate.serving.requestlog import Entry, RequestLog, row_of
log = RequestLog(Path({str(tmp_path / "other.sqlite")!r}))
writer = LogWriter(log, Path({str(tmp_path / "spool")!r}))
pad = "x" * 4000
for n in itertools.count():
    entries = [Entry(f"k{{n:05d}}-{{i:03d}}", "classify", 200, input=pad) for i in range(50)]
    writer.spool([("insert", row_of(e, "host:1")) for e in entries])
    print(n, flush=True)
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    for _ in range(20):  # twenty spool calls done: the kill lands among the next ones
        child.stdout.readline()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    spool = next((tmp_path / "spool").glob("spool-*.jsonl"))
    lines = spool.read_bytes().decode().split("\n")

    def whole(line: str) -> bool:
        try:
            return isinstance(json.loads(line), dict)
        except ValueError:
            return False

    complete = [line for line in lines if whole(line)]
    log = RequestLog(tmp_path / "requests.sqlite")
    writer = LogWriter(log, tmp_path / "spool")
    assert writer.start() == len(complete) >= 1000
    assert writer.health().get("spool_rejected", 0) <= 1
    assert len(log.rows()) == len(complete)
    writer.close()
