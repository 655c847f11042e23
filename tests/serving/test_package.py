"""The package stage with the real BentoML model store and real GTO tags.

The candidate is a small folder with a card, as the train stage writes it; packaging
never loads weights, so its bytes need not be a real adapter.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunegate.artifacts import file_hashes, tree_hash, write_json

ROOT = Path(__file__).resolve().parents[2]


def make_candidate(folder: Path, payload: bytes = b"weights") -> dict:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(payload)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    files = file_hashes(folder)
    card = {
        "model_id": f"lora:{tree_hash(files)[:12]}",
        "files": files,
        "tree_sha256": tree_hash(files),
        "base_model": {"model_id": "base:abc", "tree_sha256": "0" * 64},
    }
    write_json(folder / "card.json", card)
    return card


def gate_record(card: dict, verdict: str) -> dict:
    checks = [
        {"name": "holdout.accuracy", "passed": verdict == "approved"},
        {"name": "license", "passed": True},
    ]
    return {
        "verdict": verdict,
        "candidate": {"tree_sha256": card["tree_sha256"]},
        "baseline": {"kind": "base"},
        "checks": checks,
    }


@pytest.fixture
def project(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *cmd], cwd=repo, check=True)
    (repo / "params.yaml").write_text("release:\n  name: intent-classifier\n")
    return repo


def run_package(project: Path, home: Path, candidate: Path, gate: Path):
    env = os.environ | {"BENTOML_HOME": str(home), "TUNEGATE_ACTOR": "ci", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "serving.package", "--params", "params.yaml", "--candidate", str(candidate)]
    cmd += ["--gate", str(gate), "--out", "registry/candidate.json"]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=120)


def store_models(home: Path) -> list[str]:
    code = "import bentoml; print(json.dumps([str(m.tag) for m in bentoml.models.list()]))"
    env = os.environ | {"BENTOML_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-c", "import json;" + code], env=env, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def test_an_approved_candidate_is_stored_and_registered_once(project, tmp_path):
    card = make_candidate(tmp_path / "cand")
    write_json(tmp_path / "gate.json", gate_record(card, "approved"))
    home = tmp_path / "bentoml"
    first = run_package(project, home, tmp_path / "cand", tmp_path / "gate.json")
    assert first.returncode == 0, first.stderr
    record = json.loads((project / "registry/candidate.json").read_text())
    assert record["packaged"] and record["version"] == "v0.0.1"
    assert store_models(home) == [record["bento_tag"]]
    stored = home / "models" / "intent-classifier" / record["bento_tag"].split(":")[1]
    assert (stored / "adapter_model.safetensors").read_bytes() == b"weights" and (
        stored / "gate.json"
    ).exists()
    tags = subprocess.run(["git", "tag", "-n1"], cwd=project, capture_output=True, text=True).stdout
    assert "intent-classifier@v0.0.1" in tags and card["tree_sha256"] in tags
    again = run_package(project, home, tmp_path / "cand", tmp_path / "gate.json")  # e.g. dvc repro -f
    assert again.returncode == 0, again.stderr
    assert json.loads((project / "registry/candidate.json").read_text())["version"] == "v0.0.1"
    assert store_models(home) == [record["bento_tag"]]

    from serving.package import resolve  # in this process: the same store, verified
    from tunegate.errors import ArtifactError

    os.environ["BENTOML_HOME"] = str(home)
    try:
        assert resolve(record["bento_tag"], card["tree_sha256"]) == stored
        (stored / "adapter_model.safetensors").write_bytes(b"tampered")
        with pytest.raises(ArtifactError, match="sha256 differs from the card"):
            resolve(record["bento_tag"], card["tree_sha256"])
    finally:
        del os.environ["BENTOML_HOME"]


def test_a_rejected_candidate_is_not_packaged_and_the_stage_succeeds(project, tmp_path):
    card = make_candidate(tmp_path / "cand")
    write_json(tmp_path / "gate.json", gate_record(card, "rejected"))
    result = run_package(project, tmp_path / "bentoml", tmp_path / "cand", tmp_path / "gate.json")
    assert result.returncode == 0, result.stderr
    record = json.loads((project / "registry/candidate.json").read_text())
    assert record["packaged"] is False and "holdout.accuracy" in record["reason"]
    assert "not packaged" in result.stderr
    assert store_models(tmp_path / "bentoml") == []
    assert subprocess.run(["git", "tag"], cwd=project, capture_output=True, text=True).stdout == ""


def test_a_tampered_candidate_or_a_stale_gate_record_is_refused(project, tmp_path):
    card = make_candidate(tmp_path / "cand")
    write_json(tmp_path / "gate.json", gate_record(card, "approved"))
    (tmp_path / "cand/adapter_model.safetensors").write_bytes(b"changed after training")
    result = run_package(project, tmp_path / "bentoml", tmp_path / "cand", tmp_path / "gate.json")
    assert (
        result.returncode == 2 and "adapter_model.safetensors: sha256 differs from the card" in result.stderr
    )
    other = make_candidate(tmp_path / "other", b"other weights")
    write_json(tmp_path / "gate.json", gate_record(card, "approved"))
    result = run_package(project, tmp_path / "bentoml", tmp_path / "other", tmp_path / "gate.json")
    assert result.returncode == 2 and "judged another candidate" in result.stderr
    assert other["tree_sha256"] != card["tree_sha256"]
    assert not (project / "registry/candidate.json").exists()
