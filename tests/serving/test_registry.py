"""The registry on a real git repository with real GTO tags (no service, no models)."""

import json
import multiprocessing
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tunegate.core.errors import RegistryError
from tunegate.serving.registry import Registry


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def release_info(n: int, verdict: str = "approved") -> dict:
    return {
        "bento_tag": f"intent-classifier:r{n}",
        "tree_sha256": f"{n:064x}",
        "model_id": f"lora:{n}",
        "verdict": verdict,
    }


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TUNEGATE_ACTOR", "tester")
    monkeypatch.setenv("TUNEGATE_ACTOR_EMAIL", "tester@example.com")
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.name", "tester")
    git(tmp_path, "config", "user.email", "tester@example.com")
    commit(tmp_path, "init")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")  # the registry's folder is declared there
    return tmp_path


@pytest.fixture
def reg(repo) -> Registry:
    return Registry(repo, "intent-classifier", lock_timeout_s=0.5, canary_weight=10)


def registered(reg: Registry, repo: Path, n: int, verdict: str = "approved") -> str:
    commit(repo, f"candidate {n}")
    return reg.register(release_info(n, verdict))


def test_register_is_idempotent_per_adapter_and_one_version_per_commit(reg, repo):
    v1 = registered(reg, repo, 1)
    assert reg.register(release_info(1)) == v1  # same adapter: same version
    with pytest.raises(RegistryError, match="one version per commit"):
        reg.register(release_info(2))  # another adapter on the same commit
    assert reg.release(v1).bento_tag == "intent-classifier:r1"
    assert "intent-classifier@" + v1 in git(repo, "tag")  # a real GTO tag


def test_stages_in_order_with_weights_and_the_production_pointer(reg, repo):
    v1 = registered(reg, repo, 1)
    with pytest.raises(RegistryError, match="not in staging"):
        reg.promote(v1, "canary")  # skipping a stage is refused
    reg.promote(v1, "staging")
    reg.promote(v1, "canary", weight=20)
    assert reg.weights() == {"canary": 100}  # no production yet: the first canary answers everything
    reg.promote(v1, "production")
    stages = reg.stages()
    assert stages["production"].version == v1 and stages["canary"] is None  # it moved
    pointer = json.loads((repo / "registry/production.json").read_text())
    assert pointer["version"] == v1 and pointer["bento_tag"] == "intent-classifier:r1"

    v2 = registered(reg, repo, 2)
    reg.promote(v2, "staging")
    reg.promote(v2, "canary")  # default weight from params
    assert reg.weights() == {"production": 90, "canary": 10}
    reg.promote(v2, "canary", weight=25)  # a weight change, in the same second
    assert reg.weights() == {"production": 75, "canary": 25}
    rows = {r["stage"]: r for r in reg.status()}
    assert (
        rows["canary"]["version"] == v2
        and rows["canary"]["traffic"] == 25
        and rows["canary"]["by"] == "tester"
    )
    assert [e["action"] for e in reg.audit()] == [
        "register",
        "promote",
        "promote",
        "promote",
        "register",
        "promote",
        "promote",
        "promote",
    ]


def test_rejected_release_needs_force_with_a_reason(reg, repo):
    v = registered(reg, repo, 3, verdict="rejected")
    with pytest.raises(RegistryError, match="rejected by the gate"):
        reg.promote(v, "staging")
    with pytest.raises(RegistryError, match="needs --reason"):
        reg.promote(v, "production", force=True)
    reg.promote(v, "production", force=True, reason="hotfix approved by on-call")
    assert reg.stages()["production"].forced
    assert reg.audit()[-1] | {"time": None} == reg.audit()[-1] | {
        "time": None,
        "action": "promote",
        "forced": True,
        "reason": "hotfix approved by on-call",
        "stage": "production",
        "version": v,
    }


def test_rollback_restores_the_previous_production_release_exactly(reg, repo):
    versions = [registered(reg, repo, n) for n in (1, 2, 3)]
    with pytest.raises(RegistryError, match="no production release"):
        reg.rollback()
    for v in versions:  # three releases through every stage, all within a second or two
        for stage in ("staging", "canary", "production"):
            reg.promote(v, stage)
    with pytest.raises(RegistryError, match="already in production"):
        reg.promote(versions[2], "production", force=False)
    assert reg.rollback().version == versions[1]
    assert json.loads((repo / "registry/production.json").read_text())["tree_sha256"] == f"{2:064x}"
    assert reg.rollback().version == versions[2]  # the one before is v3 again: rollback of a rollback
    assert reg.rollback(to=versions[0]).version == versions[0]
    with pytest.raises(RegistryError, match="never in production"):
        reg.rollback(to="v9.9.9")


def test_canary_rollback_withdraws_it(reg, repo):
    v1, v2 = registered(reg, repo, 1), registered(reg, repo, 2)
    reg.promote(v1, "production", force=True, reason="first release")
    reg.promote(v2, "staging")
    reg.promote(v2, "canary", weight=30)
    assert reg.rollback(stage="canary") is None
    assert reg.stages()["canary"] is None and reg.weights() == {"production": 100}
    with pytest.raises(RegistryError, match="no canary"):
        reg.rollback(stage="canary")


def _hold_lock(repo: str, ready, release) -> None:
    reg = Registry(repo, "intent-classifier")
    with reg.lock():
        ready.set()
        release.wait(10)


def test_a_second_action_waits_then_fails_clearly_while_one_holds_the_lock(reg, repo):
    v = registered(reg, repo, 1)
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(repo), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RegistryError, match="registry is busy: pid"):
            reg.promote(v, "staging")
        assert reg.stages()["staging"] is None  # nothing half-done
    finally:
        release.set()
        holder.join(30)
    reg.promote(v, "staging")  # once released, it goes through
    assert reg.stages()["staging"].version == v


def test_not_a_git_repository(tmp_path):
    with pytest.raises(RegistryError, match="not a git repository"):
        Registry(tmp_path, "x")


def test_the_actor_is_the_acting_user_not_the_machines_git_identity(tmp_path, monkeypatch):
    import getpass

    from tunegate.serving.releases import actor

    monkeypatch.delenv("TUNEGATE_ACTOR", raising=False)
    monkeypatch.delenv("TUNEGATE_ACTOR_EMAIL", raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    (tmp_path / "gitconfig").write_text("[user]\n\tname = Whoever Set Up Git\n\temail = git@example.com\n")
    name, email = actor()
    assert name == getpass.getuser() and "Whoever" not in name and email != "git@example.com"
    monkeypatch.setenv("TUNEGATE_ACTOR", "release-bot")
    assert actor()[0] == "release-bot"


def test_evidence_not_enough_evidence_reaches_canary_but_never_production_on_offline_evidence(repo):
    """A release the gate could not decide: refused everywhere unless release.admit_undecided;
    with it, staging and canary (audited with the verdict), and production only on the canary
    judge's online evidence: neither `promote` nor --force gets it there."""
    closed = Registry(repo, "intent-classifier", lock_timeout_s=0.5)
    v = registered(closed, repo, 7, verdict="not_enough_evidence")
    with pytest.raises(RegistryError, match="admit_undecided is false"):
        closed.promote(v, "staging")
    reg = Registry(repo, "intent-classifier", lock_timeout_s=0.5, admit_undecided=True)
    reg.promote(v, "staging")
    reg.promote(v, "canary", weight=10)
    assert reg.stages()["canary"].version == v
    entry = reg.audit()[-1]
    assert entry["verdict"] == "not_enough_evidence" and entry["evidence"] == "offline (release gate)"
    for force in (False, True):
        with pytest.raises(RegistryError, match="only on the canary judge's online evidence"):
            reg.promote(v, "production", force=force, reason="on-call says it is fine")
    assert reg.stages()["production"] is None
    reg.promote(v, "production", reason="rollout judge: ...", online=True)
    assert reg.stages()["production"].version == v and reg.audit()[-1]["evidence"] == "online (canary judge)"
