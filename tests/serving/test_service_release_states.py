"""The real service with releases in odd states: a client that hangs up mid-generation,
per-release abstention, a tampered release that degrades only its own stage."""

from __future__ import annotations

import json
import sqlite3
import time

import httpx
import pytest

from tests.serving.service_project import (
    ADMIN,
    AUTH,
    BIN,
    CALIBRATIONS,
    FEEDBACK,
    finished_row,
    get,
    post,
    sh,
    tampered,
)

pytestmark = pytest.mark.slow


def test_a_client_that_disconnects_stops_its_generation(served):
    """Hang up after the first chunk: the engine stops and the row says 499.

    A tiny model can finish its whole answer before a hang-up can be noticed; then the row
    rightly says 200, and the try proves nothing either way, so the test tries again. Any try
    in which the service went on generating after the hang-up fails the test."""
    from datetime import datetime

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(served["project"] / "models/base")
    db = served["project"] / "logs/requests.sqlite"
    for attempt in range(6):
        prompt = f"Count to a thousand, attempt {attempt}:"
        body = {"model": "tunegate:production", "prompt": prompt, "max_tokens": 480, "stream": True}
        with httpx.stream(
            "POST", f"{served['url']}/v1/completions", json=body, headers=AUTH, timeout=60
        ) as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line.startswith("data:"):
                    break  # one chunk, then hang up
            hung_up = time.time()
        row = finished_row(db, prompt)
        tokens = len(tokenizer(row["output"] or "")["input_ids"])
        if row["status"] == 499:
            assert tokens < 480, "logged as a disconnect, but the engine generated the whole answer"
            return
        ended = datetime.fromisoformat(row["time"]).timestamp() + row["latency_ms"] / 1000
        assert row["status"] == 200 and ended <= hung_up + 1.0, (
            f"the service went on after the client hung up: {dict(row)}"
        )  # the answer was complete before the hang-up: inconclusive, try again
    pytest.fail("the tiny model finished before every hang-up; the test could not observe one")


def classify_rows(served: dict, request_id: str, timeout: float = 30) -> list[dict]:
    """The request's completed rows; waits for the log writer to have written them."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(served["project"] / "logs/requests.sqlite") as conn:
            conn.row_factory = sqlite3.Row
            query = "SELECT * FROM requests WHERE request_id = ? AND status != 0"
            rows = [dict(r) for r in conn.execute(query, (request_id,))]
        if rows:
            return rows
        assert time.monotonic() < deadline, f"no completed row for request {request_id}"
        time.sleep(0.05)


def test_classify_abstains_as_each_release_was_judged(served):
    """Every release answers with the calibration its gate judged (packaged with it): the
    caller gets the calibrated confidence, and a release whose threshold the answer does
    not reach abstains: label null, abstained true (documented in the OpenAPI schema). The
    log keeps the raw confidence and the model's label (what the drift monitor compares)."""
    url, versions = served["url"], served["versions"]
    message = "What's the weather like in Manchester tomorrow? Tell me a joke."  # no intent at all
    seen: dict[str, dict] = {}
    for i in range(60):  # production is v1, the canary v2 (no calibration) for 20% of callers
        r = post(f"{url}/classify", json={"text": message, "user": f"abstain-{i}"})
        assert r.status_code == 200, r.text
        seen.setdefault(r.headers["x-tunegate-version"], r.json() | {"rid": r.headers["x-request-id"]})
        if len(seen) == 2:
            break
    v1 = seen[versions[0]]
    raw = classify_rows(served, v1["rid"])[0]["confidence"]
    assert not v1["abstained"] and v1["label"] in served["labels"]
    assert v1["confidence"] == pytest.approx(CALIBRATIONS[1].apply(raw), abs=1e-4) != pytest.approx(raw)
    if versions[1] in seen:  # packaged before calibration existed: raw confidence, never abstains
        assert seen[versions[1]]["confidence"] == pytest.approx(
            classify_rows(served, seen[versions[1]]["rid"])[0]["confidence"], abs=1e-4
        )
    body = {
        "version": versions[2],
        "stage": "canary",
        "weight": 50,
        "force": True,
        "reason": "abstention test",
    }
    assert post(f"{url}/admin/promote", headers=AUTH, json=body).status_code == 200
    try:
        for i in range(100):
            r = post(f"{url}/classify", json={"text": message, "user": f"abstain-v3-{i}"})
            if r.headers["x-tunegate-version"] == versions[2]:
                break
        assert r.headers["x-tunegate-version"] == versions[2]
        answer = r.json()
        assert answer["abstained"] is True and answer["label"] is None and 0 < answer["confidence"] < 1
        row = classify_rows(served, r.headers["x-request-id"])[0]
        assert row["abstained"] == 1 and row["label"] in served["labels"] and row["valid"] == 1
    finally:
        post(
            f"{url}/admin/rollback", headers=AUTH, json={"stage": "canary", "reason": "abstention test done"}
        )
    schema = get(f"{url}/docs.json").json()["components"]["schemas"]["ClassifyResponse"]
    assert "abstained" in schema["required"] and "abstained" in schema["properties"]


def test_a_tampered_release_degrades_its_stage_while_the_others_serve(served):
    """Section 2 of the hardening: per-stage loading, and admin actions that check first."""
    url, versions, admin = served["url"], served["versions"], {"Authorization": f"Bearer {ADMIN}"}
    v2, v3 = versions[1], versions[2]  # v3 is in staging; production is v1
    post(f"{url}/admin/rollback", headers=admin, json={"stage": "canary", "reason": "start clean"})  # if any
    with tampered(served, v3):
        r = post(f"{url}/admin/reload", headers=admin)
        assert r.status_code == 200, r.text
        staging = r.json()["stages"]["staging"]
        assert staging["state"] == "degraded" and "not the registered" in staging["reason"], staging
        assert r.json()["stages"]["production"]["state"] == "serving"
        ready = get(f"{url}/readyz", headers=admin)
        assert ready.status_code == 200 and "staging" in ready.json()["degraded"]
        assert get(f"{url}/readyz").json() == {"ready": True}  # the detail is the operator's
        pinned = {"model": "tunegate:staging", "prompt": "Hi", "max_tokens": 1}
        refused = post(f"{url}/v1/completions", json=pinned, headers=admin)
        assert refused.status_code == 503 and "degraded" in refused.json()["error"]["message"]
        ok = post(f"{url}/classify", json={"text": "my card is lost", "user": "frank"})
        assert ok.status_code == 200 and ok.headers["x-tunegate-version"] == versions[0]
        status = json.loads(
            sh([str(BIN / "tunegate"), "status", "--json"], served["project"], served["env"]).stdout
        )
        assert {r["stage"]: r["serving"] for r in status}["staging"].startswith("degraded")
        # An admin action checks its target first: the registry is not changed for a release
        # that cannot be served.
        body = {"version": v3, "stage": "canary", "force": True, "reason": "test"}
        refused = post(f"{url}/admin/promote", headers=admin, json=body)
        assert refused.status_code == 422 and "nothing changed" in refused.json()["error"]["message"]
        after = sh([str(BIN / "tunegate"), "status", "--json"], served["project"], served["env"]).stdout
        assert [(r["stage"], r["version"]) for r in json.loads(after)] == [
            (r["stage"], r["version"]) for r in status
        ]  # the registry is as it was
        body = {"version": v2, "stage": "canary", "weight": 20, "force": True, "reason": "test"}
        assert post(f"{url}/admin/promote", headers=admin, json=body).status_code == 200
        by_canary = None
        for i in range(200):  # a caller routed to the canary (20% of callers)
            r = post(f"{url}/classify", json={"text": "card not here yet", "user": f"routed-{i}"})
            if r.headers["x-tunegate-version"] == v2:
                by_canary = r.headers["x-request-id"]
                break
        assert by_canary is not None
        withdrawn = post(f"{url}/admin/rollback", headers=admin, json={"stage": "canary", "reason": "test"})
        assert withdrawn.status_code == 200 and "canary" not in withdrawn.json()["live"]
        # Feedback on an answer of a release that is no longer live is still checked against
        # that release's labels (read from the verified store).
        key = {"Authorization": f"Bearer {FEEDBACK}"}
        bad = post(f"{url}/feedback", headers=key, json={"request_id": by_canary, "label": "no_such_intent"})
        assert bad.status_code == 400 and f"{v2}'s" in bad.json()["error"]["message"]
        ok = post(
            f"{url}/feedback", headers=key, json={"request_id": by_canary, "label": served["labels"][0]}
        )
        assert ok.status_code == 200, ok.text
    restored = post(f"{url}/admin/reload", headers=admin)
    assert restored.json()["stages"]["staging"]["state"] == "serving"
