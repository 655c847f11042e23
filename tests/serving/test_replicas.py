"""Two service replicas, as two pods behind a load balancer: real BentoML + vLLM on the tiny
model, each in its own clone of the project (its own git clone of the registry), sharing one
PostgreSQL request log (a real server, tests/postgres.py) and one registry remote (a bare git
repository, ``release.remote: origin``) and one log secret (``TUNEGATE_LOG_SECRET``).

v1 is in production, v2 in canary at 20%, v3 in staging, as in tests/serving/test_service.py.
The tests run in file order: the last one kills replica B.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.postgres import fresh_database
from tests.serving.service_project import (
    AUTH,
    FEEDBACK,
    build_project,
    free_port,
    get,
    launch,
    post,
    stop,
    wait_ready,
)
from tunegate.serving.requestlog import LOST, LOST_ERROR

pytestmark = pytest.mark.slow
WATCH = 2.0  # serve.watch_seconds: how often each replica fetches the registry remote
LOST_AFTER = 6.0  # serve.lost_after_seconds
SECRET = "the-one-log-secret-every-replica-of-this-deployment-shares"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout


def edit_params(path: Path, **changes: dict) -> None:
    raw = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        raw[section].update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def replicas(tiny_base, prepared_sample, postgres_server, tmp_path_factory):
    """Replicas A and B, started together and ready (/readyz) on entry."""
    root = tmp_path_factory.mktemp("replicas")
    serve = {
        "max_model_len": 512,
        "max_tokens": 256,
        "kv_cache_gib": 1,
        "max_concurrency": 4,
        "watch_seconds": WATCH,
        "lost_after_seconds": LOST_AFTER,
    }
    a = build_project(root / "a", tiny_base, prepared_sample, serve)
    remote = root / "registry.git"
    git(root, "init", "-q", "--bare", str(remote))
    git(a["project"], "remote", "add", "origin", str(remote))
    git(a["project"], "push", "-q", "origin", "HEAD:refs/heads/main", "--tags")
    edit_params(a["project"] / "params.yaml", release={"remote": "origin"})
    # Machine B: a clone of the remote, with the project's untracked files (the base model,
    # params.yaml) as a deployment would ship them; its own port. The BentoML store is
    # shared (BENTOML_HOME), as each pod would have the same Bentos.
    b = {**a, "root": root / "b", "project": root / "b/project", "port": free_port()}
    git(root, "clone", "-q", str(remote), str(b["project"]))
    ignore = shutil.ignore_patterns(".git", "logs", "registry")
    shutil.copytree(a["project"], b["project"], ignore=ignore, dirs_exist_ok=True)
    edit_params(b["project"] / "params.yaml", serve={"port": b["port"]})
    b["url"] = f"http://127.0.0.1:{b['port']}"
    database = fresh_database(postgres_server)
    env = a["env"] | {"TUNEGATE_REQUEST_LOG": database, "TUNEGATE_LOG_SECRET": SECRET}
    a["env"] = b["env"] = env
    procs = {}
    try:
        for name, info in (("a", a), ("b", b)):  # both start at once, as a rollout's pods do
            procs[name] = launch(info)
        for name, info in (("a", a), ("b", b)):
            wait_ready(procs[name], info["url"], info["root"] / "service.log")
        yield {"a": a, "b": b, "procs": procs, "database": database, "remote": remote}
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):  # B was killed by the last test
                stop(proc)
            proc.wait(60)


def routed(url: str, caller: str, max_tokens: int = 1) -> httpx.Response:
    """A routed public request (the `user` field picks the caller), retried past a 429."""
    body = {"model": "tunegate", "prompt": "Hello", "max_tokens": max_tokens, "user": caller}
    for _ in range(200):
        r = post(f"{url}/v1/completions", json=body)
        if r.status_code != 429:
            assert r.status_code == 200, r.text
            return r
        time.sleep(0.05)
    raise AssertionError("never got a slot")


def query(database: str, sql: str, **binds) -> list[tuple]:
    engine = create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), binds))
    finally:
        engine.dispose()


def wait_until(predicate, what: str, timeout: float = 60.0) -> float:
    """Poll until ``predicate()`` holds; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def finished(database: str, ids: list[str]) -> int:
    """How many of these requests have a completed row in the shared log."""
    rows = query(
        database, "SELECT count(*) FROM requests WHERE request_id = ANY(:ids) AND status <> 0 AND shadow = 0",
        ids=ids,
    )  # fmt: skip
    return rows[0][0]


def judged_canary_requests(info: dict) -> int:
    """The canary's weighted request count as the canary judge counts it: its dry run
    (`tunegate rollout step --dry-run`'s decision) as the replica's dashboard serves it, whose
    metrics hold the count whatever the verdict (the CLI prints it with some verdicts only: a
    rollback for a slow canary, which this machine's load can cause, names the latency)."""
    got = httpx.get(f"{info['url']}/ui/api/canary.json", timeout=60)
    assert got.status_code == 200, got.text
    decision = got.json()["decision"]
    assert decision is not None, got.json()
    return round(decision["metrics"]["canary"]["weight"])


def test_replica_routes_each_caller_to_the_same_release_as_the_other(replicas):
    a, b = replicas["a"], replicas["b"]
    callers = [f"caller-{i}" for i in range(60)]
    on_a = [routed(a["url"], c).headers["x-tunegate-version"] for c in callers]
    on_b = [routed(b["url"], c).headers["x-tunegate-version"] for c in callers]
    assert on_a == on_b
    assert set(on_a) == set(a["versions"][:2])  # both production and the canary answer


def test_replica_traffic_of_both_counts_for_the_canary_judge(replicas):
    a, b, database = replicas["a"], replicas["b"], replicas["database"]
    canary = a["versions"][1]
    before = judged_canary_requests(a)
    sent = {"a": [], "b": []}
    for name, info in (("a", a), ("b", b)):
        for i in range(50):  # new callers, one request each: each counts fully
            sent[name].append(routed(info["url"], f"judged-{name}-{i}"))
    ids = [r.headers["x-request-id"] for rs in sent.values() for r in rs]
    wait_until(lambda: finished(database, ids) == len(ids), "both replicas' rows")
    on_canary = {n: sum(r.headers["x-tunegate-version"] == canary for r in rs) for n, rs in sent.items()}
    assert on_canary["a"] > 0 and on_canary["b"] > 0
    assert judged_canary_requests(a) - before == on_canary["a"] + on_canary["b"]
    assert judged_canary_requests(b) == judged_canary_requests(a)  # the same log, the same verdict


def test_replica_promotion_through_one_reaches_the_other_within_the_watch_period(replicas):
    a, b = replicas["a"], replicas["b"]
    v3 = a["versions"][2]
    moves = "intent-classifier#canary#*"
    tags_before = set(git(b["project"], "tag", "--list", moves).split())
    r = post(f"{a['url']}/admin/promote", json={"version": v3, "stage": "canary", "weight": 20}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["live"]["canary"] == v3  # A serves it at once
    seen = wait_until(
        lambda: set(git(b["project"], "tag", "--list", moves).split()) != tags_before, "B's fetch"
    )
    # One watch period, plus slack for a tick delayed on a busy 2-core machine (measured
    # here about 1 s; a CI run beside other work took longer).
    assert seen <= WATCH + 10.0, f"B saw the promotion after {seen:.1f} s (watch period {WATCH} s)"

    def b_canary() -> str | None:
        pinned = {"model": "tunegate:canary", "prompt": "Hi", "max_tokens": 1}
        got = post(f"{b['url']}/v1/completions", json=pinned, headers=AUTH)
        return got.headers.get("x-tunegate-version") if got.status_code == 200 else None

    served = seen + wait_until(lambda: b_canary() == v3, "B serving v3 as its canary", timeout=120)
    print(f"replica B fetched the promotion after {seen:.1f} s and served it after {served:.1f} s")
    callers = [f"after-{i}" for i in range(40)]
    on_a = [routed(a["url"], c).headers["x-tunegate-version"] for c in callers]
    on_b = [routed(b["url"], c).headers["x-tunegate-version"] for c in callers]
    assert on_a == on_b and v3 in on_a and a["versions"][1] not in on_a
    on_remote = set(git(replicas["remote"], "tag", "--list", moves).split())
    assert on_remote == set(git(b["project"], "tag", "--list", moves).split()) != tags_before


def test_replica_takes_feedback_on_an_answer_the_other_gave(replicas):
    a, b, database = replicas["a"], replicas["b"], replicas["database"]
    for i in range(100):  # a caller of production (v1 never abstains; v3, the canary by now, always does)
        r = post(f"{b['url']}/classify", json={"text": "my card has not arrived yet", "user": f"fb-{i}"})
        assert r.status_code == 200, r.text
        if r.headers["x-tunegate-stage"] == "production":
            break
    rid, answered = r.headers["x-request-id"], r.json()["label"]
    assert answered is not None
    wait_until(lambda: finished(database, [rid]) == 1, "B's row")
    other = next(x for x in a["labels"] if x != answered)
    key = {"Authorization": f"Bearer {FEEDBACK}"}
    ok = post(f"{a['url']}/feedback", json={"request_id": rid, "label": other}, headers=key)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"request_id": rid, "answered": answered, "feedback": other}
    again = post(f"{b['url']}/feedback", json={"request_id": rid, "label": answered}, headers=key)
    assert again.status_code == 409  # B sees what A wrote: one answer, one feedback


def test_replica_killed_mid_traffic_loses_no_row_of_the_other_and_its_open_rows_close_as_lost(replicas):
    a, b, database, proc_b = replicas["a"], replicas["b"], replicas["database"], replicas["procs"]["b"]
    b_instance = instance_of(database, routed(b["url"], "who-is-b").headers["x-request-id"])
    stop_a, answered_by_a = threading.Event(), []

    def traffic_to_a() -> None:
        i = 0
        while not stop_a.is_set():
            answered_by_a.append(routed(a["url"], f"steady-{i}", max_tokens=4).headers["x-request-id"])
            i += 1

    def slow_to_b(n: int) -> None:
        body = {"model": "tunegate", "prompt": "Tell me a long story", "max_tokens": 256, "user": f"slow-{n}"}
        with contextlib.suppress(httpx.HTTPError):  # the replica dies under it
            httpx.post(f"{b['url']}/v1/completions", json=body, timeout=120)

    steady = threading.Thread(target=traffic_to_a)
    steady.start()
    slow = [threading.Thread(target=slow_to_b, args=(n,)) for n in range(3)]
    for t in slow:
        t.start()

    def open_rows_of_b() -> int:
        sql = "SELECT count(*) FROM requests WHERE instance = :i AND status = 0"
        return query(database, sql, i=b_instance)[0][0]

    wait_until(lambda: open_rows_of_b() > 0, "B's open rows in the log")
    os.killpg(proc_b.pid, signal.SIGKILL)  # the pod is gone: no shutdown, no drain
    proc_b.wait(30)
    for t in slow:
        t.join(130)
    after_kill = len(answered_by_a)
    wait_until(lambda: len(answered_by_a) >= after_kill + 5, "A answering after B died")
    stop_a.set()
    steady.join(130)
    assert len(answered_by_a) > 0
    wait_until(lambda: finished(database, answered_by_a) == len(answered_by_a), "every row of A")
    # A closes B's open rows: its watch tick runs close_lost (dead pid on this host, or a
    # heartbeat older than serve.lost_after_seconds anywhere).
    wait_until(lambda: open_rows_of_b() == 0, "B's open rows closed", timeout=LOST_AFTER + 30)
    sql = "SELECT status FROM requests WHERE instance = :i AND error = :e"
    lost = query(database, sql, i=b_instance, e=LOST_ERROR)
    assert lost and all(status == LOST for (status,) in lost)
    assert get(f"{a['url']}/readyz").status_code == 200


def instance_of(database: str, request_id: str) -> str:
    """The process that logged a request (once its row is written)."""
    sql = "SELECT instance FROM requests WHERE request_id = :r AND status <> 0"
    wait_until(lambda: bool(query(database, sql, r=request_id)), "the request's row")
    return query(database, sql, r=request_id)[0][0]
