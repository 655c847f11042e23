"""The canary judge on synthetic request-log rows (pure logic, real statsmodels tests)."""

import itertools
import json
import shutil

import pytest

from tests.conftest import ROOT
from tunegate.core.params import ReleaseParams
from tunegate.serving.rollout import agreement, judge, judge_alone, p95

RELEASE = ReleaseParams(judge_min_requests=50, canary_steps=(10, 25, 50))
ids = itertools.count()


def rows(
    version, n, errors=0, latency=20.0, invalid=0, shadow=False, endpoint="classify", label="card_arrival",
    caller=None, pinned=False, abstained=0,
):  # fmt: skip
    """n requests; by default each from a caller (client address or API key) of its own, as many
    callers send traffic; `caller` makes them one. Each asserts a user id of its own."""
    out = []
    for i in range(n):
        status = 500 if i < errors else 200
        valid = 0 if errors <= i < errors + invalid else 1
        rid = f"r{next(ids)}"
        out.append(
            {
                "request_id": rid, "version": version, "shadow": int(shadow), "pinned": int(pinned),
                "endpoint": endpoint, "status": status, "latency_ms": latency, "valid": valid,
                "label": label if valid else None, "output": label,
                "caller": f"asserted-{rid}", "client": caller if caller is not None else f"client-{rid}",
                "abstained": int(i >= n - abstained),
            }
        )  # fmt: skip
    return out


def test_waits_for_enough_canary_traffic():
    d = judge(rows("v2", 10) + rows("v1", 200), "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "wait" and "need 50" in d.reasons[0]


# Enough traffic for the confidence sequences to show a healthy canary within every limit.
CANARY, PRODUCTION = 1200, 4000


def healthy(**kw):
    return rows("v2", CANARY, **kw) + rows("v1", PRODUCTION)


def test_sequential_a_healthy_canary_advances_through_the_steps_then_is_promoted():
    assert judge(healthy(), "v2", "v1", 10, RELEASE, 0.05).action == "advance"
    assert judge(healthy(), "v2", "v1", 10, RELEASE, 0.05).weight == 25
    assert judge(healthy(), "v2", "v1", 25, RELEASE, 0.05).weight == 50
    d = judge(healthy(), "v2", "v1", 50, RELEASE, 0.05)
    assert d.action == "promote" and d.metrics["figures"] == {
        "errors": "shown", "latency.classify": "shown", "invalid": "shown", "abstention": "shown"
    }  # fmt: skip


def test_sequential_a_healthy_canary_on_little_traffic_waits_for_evidence():
    """100 healthy requests clear the minimum but cannot show a 2-point error limit at every
    look: the judge waits and says which figures are not decided, instead of promoting."""
    d = judge(rows("v2", 100) + rows("v1", 400), "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "wait" and any(r.startswith("not enough evidence yet: error rate") for r in d.reasons)


def test_sequential_an_erroring_canary_is_rolled_back_by_evidence_not_by_one_error():
    one_error = rows("v2", CANARY, errors=1) + rows("v1", PRODUCTION)
    assert judge(one_error, "v2", "v1", 10, RELEASE, 0.05).action == "advance"  # 0.1%: within the limit
    bad = rows("v2", 200, errors=30) + rows("v1", 800, errors=2)  # 15% vs 0.25%, shown at 200 requests
    d = judge(bad, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and d.reasons[0].startswith("error rate 15.00% vs production 0.25%")
    assert d.metrics["figures"]["errors"] == "harm"


def test_one_caller_cannot_decide_the_verdict():
    """55 slow, failing requests from one client weigh as judge_max_per_caller requests; pinned
    requests are an operator's, not traffic."""
    assert judge(healthy(), "v2", "v1", 10, RELEASE, 0.05).action == "advance"
    flood = rows("v2", 55, latency=400.0, endpoint="completions", caller="attacker-address", errors=20)
    d = judge(healthy() + flood, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "advance", d.reasons
    assert d.metrics["canary"]["callers"] == CANARY + 1
    assert d.metrics["canary"]["weight"] == pytest.approx(CANARY + 5)
    uncapped = ReleaseParams(judge_min_requests=50, judge_max_per_caller=1000)
    flood = rows("v2", 400, latency=400.0, endpoint="completions", caller="attacker-address", errors=200)
    assert (
        judge(healthy() + flood, "v2", "v1", 10, uncapped, 0.05).action == "rollback"
    )  # what one caller could do
    pinned = rows("v2", 200, latency=400.0, errors=50, pinned=True)
    assert judge(healthy() + pinned, "v2", "v1", 10, RELEASE, 0.05).action == "advance"
    too_few = rows("v2", 100, caller="one-caller") + rows("v1", 400)  # 100 requests, one caller
    d = judge(too_few, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "wait" and "1 caller(s)" in d.reasons[0]


def test_latency_is_compared_per_endpoint():
    """A canary serving more chat than production is not slower for it; a slow /classify is."""
    mixed = rows("v2", 800) + rows("v2", 400, latency=900.0, endpoint="chat")
    mixed += rows("v1", 3800) + rows("v1", 200, latency=900.0, endpoint="chat")
    d = judge(mixed, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "advance" and {"latency.classify", "latency.chat"} <= set(d.metrics["figures"])
    slow = rows("v2", 300, latency=80.0) + rows("v1", 3800) + rows("v1", 200, latency=900.0, endpoint="chat")
    d = judge(slow, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and any(r.startswith("classify: 100.0%") for r in d.reasons)


def test_slow_or_invalid_canaries_are_rolled_back():
    slow = rows("v2", 300, latency=80.0) + rows("v1", 1000, latency=20.0)
    d = judge(slow, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and any("slower than 1.5x production's p95 (20 ms" in r for r in d.reasons)
    invalid = rows("v2", 300, invalid=60) + rows("v1", 1000)
    d = judge(invalid, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and any(r.startswith("invalid outputs 20.0%") for r in d.reasons)


def test_a_canary_that_abstains_far_more_or_far_less_than_production_is_rolled_back():
    """Abstention rate: a finding either way against judge_max_abstention_change (10 points),
    shown by the sequences, not by the raw difference."""
    similar = rows("v2", CANARY, abstained=144) + rows("v1", PRODUCTION, abstained=400)  # 12% vs 10%
    d = judge(similar, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "advance" and any(
        r.startswith("abstentions 12.0% vs production 10.0%") for r in d.reasons
    )
    more = rows("v2", 400, abstained=240) + rows("v1", 1600, abstained=160)  # 60% vs 10%
    d = judge(more, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and d.metrics["figures"]["abstention"] == "harm"
    less = rows("v2", 400, abstained=0) + rows("v1", 1600, abstained=960)  # 0% vs 60%
    d = judge(less, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and d.metrics["figures"]["abstention"] == "harm"


def test_a_first_release_canary_is_judged_on_its_own_health():
    assert judge_alone(rows("v1", 10), "v1", RELEASE, 0.05).action == "wait"
    d = judge_alone(rows("v1", CANARY, errors=1), "v1", RELEASE, 0.05)
    assert d.action == "promote" and "no production yet" in d.reasons[0]
    d = judge_alone(rows("v1", 200, errors=24), "v1", RELEASE, 0.05)  # 12% vs a 2% ceiling
    assert d.action == "rollback" and d.metrics["figures"]["errors"] == "harm"
    d = judge_alone(rows("v1", 300, invalid=45), "v1", RELEASE, 0.05)
    assert d.action == "rollback" and d.reasons[-1].startswith("invalid outputs 15.0%")


def test_agreement_on_shadowed_requests():
    live = rows("v1", PRODUCTION)
    copies = [dict(r, version="v2", shadow=1, label="lost_or_stolen_card") for r in live[:300]]  # disagree
    copies += [dict(r, version="v2", shadow=1) for r in live[300:600]]  # agree
    scores = agreement(live + copies, "v2", "v1")
    assert sum(scores) == 300 and len(scores) == 600
    d = judge(rows("v2", CANARY) + live + copies, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and any(r.startswith("agreement with production 50.0%") for r in d.reasons)


def with_feedback(rs, right: float):
    """Feedback on every answer: the true label, which the answer matches on a share `right`."""
    for i, r in enumerate(rs):
        r["feedback"] = r["label"] if (i * 7919) % 1000 < right * 1000 else "another_intent"
    return rs


def test_sequential_live_accuracy_from_feedback_is_judged():
    """Live accuracy from the labels callers send back: 5 points worse than production is not
    promoted on 3,000 answers (not yet shown either way), 15 points worse is rolled back, and
    equal accuracy advances once 5,000 answers show it within 3 points."""
    worse = with_feedback(rows("v2", 3000), 0.85) + with_feedback(rows("v1", 8000), 0.90)
    d = judge(worse, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "wait" and d.metrics["figures"]["quality"] == "open"
    much = with_feedback(rows("v2", 3000), 0.75) + with_feedback(rows("v1", 8000), 0.90)
    d = judge(much, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "rollback" and d.metrics["figures"]["quality"] == "harm"
    same = with_feedback(rows("v2", 5000), 0.90) + with_feedback(rows("v1", 15000), 0.90)
    d = judge(same, "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "advance" and d.metrics["figures"]["quality"] == "shown"


def test_sequential_no_decision_within_judge_max_minutes_rolls_back():
    little = rows("v2", 100) + rows("v1", 400)
    assert judge(little, "v2", "v1", 10, RELEASE, 0.05, elapsed_minutes=60).action == "wait"
    d = judge(little, "v2", "v1", 10, RELEASE, 0.05, elapsed_minutes=RELEASE.judge_max_minutes + 1)
    assert d.action == "rollback" and d.reasons[0].startswith("no decision after")


def test_evidence_an_undecided_release_needs_quality_shown_online():
    """A release the gate had not enough evidence for: healthy traffic alone does not promote
    it; shown live quality does."""
    d = judge(healthy(), "v2", "v1", 50, RELEASE, 0.05, undecided_offline=True)
    assert d.action == "wait" and "needs live quality" in d.reasons[-1]
    same = with_feedback(rows("v2", 5000), 0.90) + with_feedback(rows("v1", 15000), 0.90)
    assert judge(same, "v2", "v1", 50, RELEASE, 0.05, undecided_offline=True).action == "promote"


def test_p95():
    assert p95([]) is None
    assert p95([float(i) for i in range(1, 101)]) == 95.0


def two_releases(root, monkeypatch):
    """A real GTO registry with two approved releases, and a real SQLite request log."""
    import subprocess

    from tunegate.serving.registry import Registry
    from tunegate.serving.requestlog import RequestLog

    monkeypatch.setenv("TUNEGATE_ACTOR", "judge-test")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "a"]):
        subprocess.run([*git, *cmd], cwd=root, check=True)
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    reg = Registry(root, "intent-classifier")
    info = {"bento_tag": "x:1", "tree_sha256": "1" * 64, "model_id": "lora:1", "verdict": "approved"}
    v1 = reg.register(info)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "b"], cwd=root, check=True)
    v2 = reg.register(info | {"bento_tag": "x:2", "tree_sha256": "2" * 64})
    return reg, RequestLog(root / "requests.sqlite"), v1, v2


def test_step_promotes_a_healthy_first_release(tmp_path, monkeypatch):
    from tunegate.serving.requestlog import Entry
    from tunegate.serving.rollout import step

    reg, log, v1, _ = two_releases(tmp_path, monkeypatch)
    reg.promote(v1, "staging")
    reg.promote(v1, "canary", weight=10)
    for r in rows(v1, CANARY):
        log.write(Entry(r["request_id"], "classify", 200, version=v1, label=r["label"], valid=True,
                        latency_ms=20.0, caller=r["caller"], client=r["client"]))  # fmt: skip
    decision = step(reg, log, RELEASE, 0.05)
    assert decision.action == "promote" and reg.stages()["production"].version == v1
    assert reg.stages()["canary"] is None and "no production yet" in reg.audit()[-1]["reason"]


def test_step_acts_on_the_registry_from_the_request_log(tmp_path, monkeypatch):
    """The judge end to end: real GTO registry, real SQLite request log."""
    from tunegate.serving.requestlog import Entry
    from tunegate.serving.rollout import step

    reg, log, v1, v2 = two_releases(tmp_path, monkeypatch)
    reg.promote(v1, "production", force=True, reason="first")
    reg.promote(v2, "staging")
    reg.promote(v2, "canary", weight=10)
    assert step(reg, log, RELEASE, 0.05).action == "wait"

    def serve(canary_rows, production_rows):
        for r in canary_rows + production_rows:
            version = v2 if r["version"] == "v2" else v1
            entry = Entry(r["request_id"], "classify", r["status"], stage="x", version=version,
                          label=r["label"], valid=bool(r["valid"]), latency_ms=r["latency_ms"],
                          caller=r["caller"], client=r["client"])  # fmt: skip
            log.write(entry)

    serve(rows("v2", CANARY, latency=21.0), rows("v1", PRODUCTION))
    decision = step(reg, log, RELEASE, 0.05, apply=False)
    assert decision.action == "advance" and reg.stages()["canary"].weight == 10  # dry run: nothing changed
    assert step(reg, log, RELEASE, 0.05).weight == 25
    assert reg.stages()["canary"].weight == 25 and "rollout judge" in reg.stages()["canary"].reason
    # The judge's window starts at the weight change (GTO records it to the second), so
    # both releases get fresh traffic; the verdict is the same whether or not the rows
    # above fall in the window.
    serve(rows("v2", 200, errors=60), rows("v1", 800))
    assert step(reg, log, RELEASE, 0.05).action == "rollback"
    assert reg.stages()["canary"] is None and reg.stages()["production"].version == v1
    assert reg.audit()[-1]["action"] == "rollback" and "error rate" in reg.audit()[-1]["reason"]
    advanced = [e for e in reg.audit() if e["action"] == "promote" and e.get("weight") == 25]
    assert advanced[-1]["evidence"] == "online (canary judge)"  # the judge's move, recorded as such


def test_generation_shadow_agreement_is_graded_by_field_and_token_f1():
    """Two tickets that differ only in the summary's wording mostly agree; a wrong intent or
    amount costs its field; the judge's sequence is over the graded scores."""
    from tunegate.core.text_metrics import agreement as answer_agreement
    from tunegate.serving.sequential import sequence

    ticket = {"intent": "card_declined", "amount": 12.5, "summary": "Card declined at a shop."}
    reworded = ticket | {"summary": "The card was declined in a shop."}
    assert answer_agreement(json.dumps(ticket), json.dumps(ticket)) == 1.0
    partly = answer_agreement(json.dumps(ticket), json.dumps(reworded))
    assert 2 / 3 < partly < 1.0  # intent and amount agree; the summary by token F1
    assert answer_agreement(json.dumps(ticket), json.dumps(ticket | {"amount": None})) == pytest.approx(2 / 3)
    assert answer_agreement(json.dumps(ticket), "{cut off") == 0.0  # not JSON: token F1 of the texts
    assert answer_agreement("the card is on its way", "your card is on its way") == pytest.approx(
        10 / 11
    )  # "the" is dropped

    live = rows("v1", 300, endpoint="generate", label=json.dumps(ticket))
    copies = [dict(r, version="v2", shadow=1, output=json.dumps(reworded)) for r in live[:40]]
    scores = agreement(live + copies, "v2", "v1")
    assert len(scores) == 40 and scores == [pytest.approx(partly)] * 40
    s = sequence(scores + [0.0], None, 0.05, 200)
    assert s.lo < sum(scores) / 41 < s.hi <= 1.0


def test_evidence_24_user_ids_from_one_address_count_as_one_caller():
    """One client address asserting 24 distinct `user` ids: the judge counts one caller, whose
    requests weigh at most judge_max_per_caller, not 24 callers and 24 requests."""
    one = rows("v2", 24, caller="one-address")
    for i, r in enumerate(one):
        r["caller"] = f"asserted-user-{i}"  # what the client claims: 24 people
    d = judge(one + rows("v1", 200), "v2", "v1", 10, RELEASE, 0.05)
    canary = d.metrics["canary"]
    assert d.action == "wait" and canary["callers"] == 1 and canary["answered"] == pytest.approx(5)


def test_evidence_requests_without_an_answer_add_nothing_to_the_minimum():
    """Dropped streams (499), refusals (429) and 5xx carry no answer: 60 of them plus 40 answers
    are 40 toward the 50 the judge waits for. A canary failing shown harm rolls back early."""
    hung_up = rows("v2", 30)
    for r in hung_up:
        r["status"] = 499
    refused = rows("v2", 30)
    for r in refused:
        r["status"] = 429
    d = judge(hung_up + refused + rows("v2", 40) + rows("v1", 300), "v2", "v1", 10, RELEASE, 0.05)
    assert d.action == "wait" and "40 weighted answered canary requests" in d.reasons[0]
    broken = judge(rows("v2", 30, errors=30) + rows("v1", 300), "v2", "v1", 10, RELEASE, 0.05)
    assert broken.action == "rollback"
    assert broken.reasons[0].startswith("error rate 100.00% vs production 0.00%")


def test_evidence_the_client_is_read_through_trusted_proxies_only():
    from tunegate.serving.clients import forwarded_client

    assert forwarded_client("203.0.113.9", "1.2.3.4", ()) == "203.0.113.9"  # no proxy trusted: the peer
    assert forwarded_client("203.0.113.9", "1.2.3.4", ("10.0.0.0/8",)) == "203.0.113.9"  # not a proxy
    # the proxy appended the address it saw; what the client wrote to the left is not believed
    assert forwarded_client("10.0.0.2", "6.6.6.6, 198.51.100.7", ("10.0.0.0/8",)) == "198.51.100.7"
    assert forwarded_client("10.0.0.2", "198.51.100.7, 10.0.0.3", ("10.0.0.0/8",)) == "198.51.100.7"


def test_evidence_a_first_release_with_not_enough_offline_evidence_is_promoted_on_live_quality():
    """No production yet and the gate could not tell: a healthy canary waits until feedback
    shows its live accuracy over release.judge_min_live_quality (0.8); then it is promoted."""
    d = judge_alone(rows("v1", CANARY), "v1", RELEASE, 0.05, undecided_offline=True)
    assert d.action == "wait" and "needs live quality" in d.reasons[-1]
    d = judge_alone(with_feedback(rows("v1", 3000), 0.90), "v1", RELEASE, 0.05, undecided_offline=True)
    assert d.action == "promote" and d.metrics["figures"]["quality"] == "shown"
    d = judge_alone(with_feedback(rows("v1", 3000), 0.60), "v1", RELEASE, 0.05, undecided_offline=True)
    assert d.action == "rollback" and d.metrics["figures"]["quality"] == "harm"


def test_sequential_the_shadow_agreement_the_dashboard_reads_has_its_bounds():
    """The canary page draws agreement with its sequence's bounds: present only when judged."""
    live = rows("v1", PRODUCTION)
    copies = [dict(r, version="v2", shadow=1) for r in live[:300]]
    d = judge(rows("v2", CANARY) + live + copies, "v2", "v1", 10, RELEASE, 0.05)
    lo, hi = d.metrics["agreement"]["ci"]
    assert d.metrics["agreement"]["pairs"] == 300 and lo < 1.0 == hi
    assert "agreement" not in judge(healthy(), "v2", "v1", 10, RELEASE, 0.05).metrics  # no shadows


def test_sequential_live_quality_is_judged_on_answered_requests():
    """An abstention is not a wrong label (the abstention figure judges how often it happens):
    live quality reads the answered requests only, as the drift monitor's live accuracy does."""
    from tunegate.serving.canary_evidence import live_score

    assert live_score({"endpoint": "classify", "label": None, "abstained": 1, "feedback": "a"}) is None
    assert live_score({"endpoint": "classify", "label": "a", "abstained": 0, "feedback": "a"}) == 1.0
    assert live_score({"endpoint": "classify", "label": "b", "abstained": 0, "feedback": "a"}) == 0.0
