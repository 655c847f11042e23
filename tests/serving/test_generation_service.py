"""The real service serving a generation release: `tunegate serve` (BentoML + vLLM on the
CPU) with a random adapter on the tiny model, packaged and promoted to production.
/generate answers within the release's JSON Schema (vLLM structured outputs), OpenAI chat
completions work as for classification, bad requests get a 400 and /classify refuses."""

from __future__ import annotations

import json
import shutil
import sys

import jsonschema
import pytest

from tests.conftest import ROOT, write_params
from tests.serving.service_project import ADMIN, BIN, FEEDBACK, free_port, post, running, sh
from tests.tiny import make_tiny_generation_adapter
from tunegate.core.artifacts import read_json, write_json
from tunegate.core.release_params import GENERATION_MONITOR

pytestmark = pytest.mark.slow
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["intent", "amount"],
    "properties": {
        "intent": {"enum": ["card_arrival", "card_declined"]},
        "amount": {"type": ["number", "null"]},
    },
}


@pytest.fixture(scope="module")
def generation_served(tiny_base, tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("generation-served")
    project = root / "project"
    shutil.copytree(tiny_base, project / "models/base")
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    port = free_port()
    serve = {"port": port, "max_model_len": 512, "max_tokens": 64, "kv_cache_gib": 1, "max_concurrency": 2}
    release = {"name": "ticket-extractor", "lock_timeout_s": 5}
    monitor = {k: list(v) if isinstance(v, tuple) else v for k, v in GENERATION_MONITOR.items()}
    write_params(project / "params.yaml", base={"task": "generation"}, serve=serve, eval={"engine": "vllm"},
                 data={"oos_label": None}, release=release, monitor=monitor,
                 train={"augment_truncation": 0.0})  # fmt: skip
    env = os.environ | {
        "BENTOML_HOME": str(root / "bentoml"), "TUNEGATE_ACTOR": "test",
        "TUNEGATE_ACTOR_EMAIL": "t@example.com", "TUNEGATE_ADMIN_TOKEN": ADMIN, "VLLM_CPU_KVCACHE_SPACE": "1",
        "TUNEGATE_FEEDBACK_KEY": FEEDBACK,
    }  # fmt: skip
    assert sh(["git", "init", "-q"], project, env).returncode == 0
    adapter = make_tiny_generation_adapter(project / "models/base", root / "adapter", SCHEMA, seed=1)
    card = read_json(adapter / "card.json")
    write_json(root / "gate.json", {"verdict": "approved", "task": "generation", "candidate": card,
                                    "baseline": {"kind": "base"}, "checks": []})  # fmt: skip
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    assert sh([*git, "commit", "-q", "--allow-empty", "-m", "release"], project, env).returncode == 0
    cmd = [sys.executable, "-m", "tunegate.serving.package", "--params", "params.yaml",
           "--candidate", str(adapter),
           "--gate", str(root / "gate.json"), "--out", "registry/candidate.json"]  # fmt: skip
    result = sh(cmd, project, env)
    assert result.returncode == 0, result.stderr
    version = read_json(project / "registry/candidate.json")["version"]
    for stage in ("staging", "canary", "production"):
        result = sh([str(BIN / "tunegate"), "promote", version, "--to", stage], project, env)
        assert result.returncode == 0, result.stderr
    info = {
        "url": f"http://127.0.0.1:{port}",
        "project": project,
        "env": env,
        "root": root,
        "version": version,
    }
    with running(info):
        yield info


def test_generation_endpoint_answers_within_the_schema(generation_served):
    url = generation_served["url"]
    r = post(
        f"{url}/generate", json={"text": "My new card has not arrived, I paid 12 pounds.", "user": "ann"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"output", "valid", "problem", "text", "version", "stage"}
    assert body["version"] == generation_served["version"] and body["stage"] == "production"
    if body["valid"]:  # a random model constrained to the schema: a valid ticket, parsed
        jsonschema.validate(body["output"], SCHEMA)
        assert body["output"] == json.loads(body["text"]) and body["problem"] is None
    else:  # only possible when the token cap cut the object off: said, never passed off as valid
        assert body["problem"] and "cut off" in body["problem"]
    turns = [{"role": "user", "content": "card declined"}, {"role": "assistant", "content": "Which card?"},
             {"role": "user", "content": "the debit one"}]  # fmt: skip
    r2 = post(f"{url}/generate", json={"messages": turns})
    assert r2.status_code == 200, r2.text
    assert r2.headers["x-tunegate-version"] == generation_served["version"] and "x-request-id" in r2.headers


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "exactly one of text and messages"),
        ({"text": "a", "messages": [{"role": "user", "content": "b"}]}, "exactly one"),
        ({"text": "   "}, "blank"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "the last message must be the user's"),
        ({"text": "hi", "temperature": 1.0}, "temperature"),
    ],
)
def test_generation_endpoint_refuses_bad_bodies_with_a_400(generation_served, body, says):
    r = post(f"{generation_served['url']}/generate", json=body)
    assert r.status_code == 400 and says in r.text, r.text


def test_generation_release_refuses_classify_and_serves_chat_completions(generation_served):
    from openai import OpenAI

    url = generation_served["url"]
    r = post(f"{url}/classify", json={"text": "where is my card"})
    assert r.status_code == 400 and "/generate" in r.json()["error"]["message"]
    client = OpenAI(base_url=f"{url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="tunegate", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert reply.system_fingerprint == generation_served["version"]
    logged = sh([str(BIN / "tunegate"), "status"], generation_served["project"], generation_served["env"])
    assert logged.returncode == 0 and generation_served["version"] in logged.stdout


def test_generation_feedback_takes_a_reference_answer_or_a_rating_once(generation_served):
    """/feedback on a /generate answer: a reference answer within the release's schema (kept,
    scrubbed, in the request log for live quality) or a rating in [0, 1]; a label, a
    reference that breaks the schema, two kinds at once or a changed value are refused."""
    import sqlite3

    url, key = generation_served["url"], {"Authorization": f"Bearer {FEEDBACK}"}
    r = post(f"{url}/generate", json={"text": "my card was declined at a shop, call me on 07700 900123"})
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]

    def send(**body):
        return post(f"{url}/feedback", json={"request_id": rid, **body}, headers=key)

    good = json.dumps({"intent": "card_declined", "amount": None})
    assert send(label="card_declined").status_code == 400  # a /generate answer takes no label
    broken = send(reference=json.dumps({"intent": "lost_card", "amount": None}))
    assert broken.status_code == 400 and "breaks the schema at intent" in broken.text, broken.text
    assert send(reference="not json").status_code == 400
    assert send(reference=good, rating=1.0).status_code == 400  # one kind per call
    assert send(rating=1.5).status_code == 400
    ok = send(reference=good)
    assert ok.status_code == 200 and ok.json()["reference"] == good, ok.text
    assert send(reference=good).status_code == 200  # the same again: a no-op
    changed = send(reference=json.dumps({"intent": "card_arrival", "amount": None}))
    assert changed.status_code == 409 and "already has feedback" in changed.text
    assert send(rating=0.25).status_code == 200 and send(rating=0.5).status_code == 409
    log = generation_served["project"] / "logs/requests.sqlite"
    with sqlite3.connect(log) as db:
        row = db.execute(
            "SELECT feedback, rating, input FROM requests WHERE request_id = ? AND shadow = 0", (rid,)
        ).fetchone()
    assert row[0] == good and row[1] == 0.25 and "07700 900123" not in row[2]  # the phone number scrubbed


def test_generation_replay_sends_messages_and_their_reference_answers(generation_served, tmp_path):
    """`tunegate replay --endpoint generate --feedback`: each record's input to /generate, its
    reference answer to /feedback, as a generation release's prepared records hold them."""
    answer = json.dumps({"intent": "card_arrival", "amount": None})
    rows = [{"input": f"my card number {i} has not come", "answer": answer} for i in range(3)]
    file = tmp_path / "records.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [str(BIN / "tunegate"), "replay", str(file), "--url", generation_served["url"], "--rate", "20",
           "--endpoint", "generate", "--feedback", "--text-column", "input",
           "--label-column", "answer"]  # fmt: skip
    done = sh(cmd, generation_served["project"], generation_served["env"])
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["sent"] == 3 and summary["status"] == {"200": 3} and "invalid" in summary
    assert summary["feedback"]["status"] == {"200": 3} and "accuracy" not in summary


def test_generation_judge_asks_a_real_endpoint_in_both_orders(generation_served, tmp_path):
    """The optional judge (`eval.judge`) against a real OpenAI-compatible endpoint: the
    project's own service (its tiny random release is the judge here; the plumbing is under
    test, not its taste): every item asked twice, the replies read, the verdicts summed."""
    import sqlite3

    results = tmp_path / "results"
    results.mkdir()
    ticket = json.dumps({"intent": "card_arrival", "amount": None})
    recs = [{"id": f"r{i}", "input": f"my card {i} has not come", "reference": ticket, "candidate": ticket,
             "baseline": "{}"} for i in range(3)]  # fmt: skip
    (results / "holdout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    monitor = {k: list(v) if isinstance(v, tuple) else v for k, v in GENERATION_MONITOR.items()}
    judge = {"url": f"{generation_served['url']}/v1", "model": "tunegate", "max_items": 2}
    params = write_params(tmp_path / "params.yaml", base={"task": "generation"}, data={"oos_label": None},
                          monitor=monitor, eval={"judge": judge},
                          train={"augment_truncation": 0.0})  # fmt: skip
    log = generation_served["project"] / "logs/requests.sqlite"

    def chats() -> int:
        with sqlite3.connect(log) as db:
            return db.execute(
                "SELECT COUNT(*) FROM requests WHERE endpoint = 'chat' AND shadow = 0"
            ).fetchone()[0]

    before = chats()
    cmd = [sys.executable, "-m", "tunegate.evaluation.judge", "--params", str(params),
           "--results", str(results),
           "--out", str(tmp_path / "judge.json")]  # fmt: skip
    done = sh(cmd, generation_served["project"], generation_served["env"])
    assert done.returncode == 0, done.stderr
    out = read_json(tmp_path / "judge.json")
    assert out["enabled"] and out["model"] == "tunegate" and out["items"] == 2
    assert out["candidate_wins"] + out["baseline_wins"] + out["ties"] == 2
    assert 0 <= out["position_consistency"] <= 1 and len(out["per_item"]) == 2
    assert chats() - before == 4  # both orders, for each of the two items
