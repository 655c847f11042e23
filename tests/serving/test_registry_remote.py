"""The registry following a git remote (release.remote): a bare repository shared by two
clones, as two machines would. Real git, real GTO tags."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.serving.test_registry import release_info
from tunegate.core.errors import RegistryError
from tunegate.serving import registry_remote
from tunegate.serving.registry import Registry


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def machines(tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    """A bare remote and two clones of it (machines A and B), each with the project's dvc.yaml."""
    monkeypatch.setenv("TUNEGATE_ACTOR", "tester")
    monkeypatch.setenv("TUNEGATE_ACTOR_EMAIL", "tester@example.com")
    remote, a, b = tmp_path / "registry.git", tmp_path / "a", tmp_path / "b"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(tmp_path, "clone", "-q", str(remote), str(a))
    for key, value in (("user.name", "tester"), ("user.email", "tester@example.com")):
        git(a, "config", key, value)
    shutil.copy(ROOT / "dvc.yaml", a / "dvc.yaml")
    git(a, "add", "dvc.yaml")
    git(a, "commit", "-q", "-m", "project")
    git(a, "push", "-q", "origin", "HEAD")
    git(tmp_path, "clone", "-q", str(remote), str(b))
    for key, value in (("user.name", "tester"), ("user.email", "tester@example.com")):
        git(b, "config", key, value)
    return remote, a, b


def registry(repo: Path) -> Registry:
    return Registry(repo, "intent-classifier", lock_timeout_s=2, canary_weight=10, remote="origin")


def test_registry_remote_actions_reach_the_other_machine(machines):
    remote, a, b = machines
    ra, rb = registry(a), registry(b)
    v1 = ra.register(release_info(1))
    ra.promote(v1, "staging")
    assert "intent-classifier@" + v1 in git(remote, "tag")  # pushed
    assert rb.stages()["staging"] is None  # B has not fetched yet
    rb.sync()
    assert rb.stages()["staging"].version == v1
    rb.promote(v1, "canary", weight=20)  # B acts on what A did
    rb.promote(v1, "production")
    ra.sync()
    assert ra.stages()["production"].version == v1 and ra.weights() == {"production": 100}
    pointer = json.loads((a / "registry/production.json").read_text())
    assert pointer["version"] == v1  # A's evaluate stage now gates against it
    assert [e["action"] for e in rb.audit()] == ["promote", "promote"]  # each machine records its own


def test_registry_remote_two_promotions_at_once_one_wins_nothing_half_applied(machines):
    """A and B act on the same state at the same moment: B's push is held until A's is
    done. A wins; B fails naming what the remote holds, with no tag of its own left behind,
    locally or remotely, and no file written."""
    remote, a, b = machines
    ra, rb = registry(a), registry(b)
    v1 = ra.register(release_info(1))
    ra.promote(v1, "staging")
    rb.sync()
    a_done, b_ready = threading.Event(), threading.Event()
    real_push = registry_remote.push

    def held_push(repo, where, tags):
        if repo == rb.repo:
            b_ready.set()
            assert a_done.wait(60)
        return real_push(repo, where, tags)

    errors: dict[str, Exception] = {}

    def act(name: str, reg: Registry, stage: str) -> None:
        try:
            if name == "a":
                assert b_ready.wait(60)  # B has fetched and tagged: both act on the same state
            reg.promote(v1, stage, force=True, reason=f"{name} at once")
        except RegistryError as err:
            errors[name] = err
        finally:
            if name == "a":
                a_done.set()

    registry_remote.push = held_push
    try:
        threads = [
            threading.Thread(target=act, args=x) for x in (("b", rb, "production"), ("a", ra, "canary"))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        registry_remote.push = real_push
    assert set(errors) == {"b"}, errors
    assert "took another registry change first" in str(errors["b"]) and f"canary {v1}" in str(errors["b"])
    assert "nothing was applied" in str(errors["b"])
    remote_tags = set(git(remote, "tag").split())
    assert set(git(b, "tag").split()) == set(git(a, "tag").split()) == remote_tags  # converged
    assert not [t for t in remote_tags if "#production#" in t]  # B's move exists nowhere
    assert rb.stages()["production"] is None and rb.stages()["canary"].version == v1
    assert not (b / "registry/production.json").exists() and rb.audit() == []


def test_registry_remote_unreachable_fails_before_anything_changes(machines):
    _, a, _ = machines
    reg = Registry(a, "intent-classifier", lock_timeout_s=2, remote=str(a.parent / "missing.git"))
    with pytest.raises(RegistryError, match="git fetch"):
        reg.register(release_info(1))
    assert registry_remote.artifact_tags(a, "intent-classifier") == set()
