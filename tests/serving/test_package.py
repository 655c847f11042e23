"""The package stage with the real BentoML model store and real GTO tags.

The candidate is a small folder with a card, as the train stage writes it; packaging
never loads weights, so its bytes need not be a real adapter.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunegate.core.artifacts import file_hashes, sha256_file, tree_hash, write_json

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
        {
            "name": "holdout.accuracy",
            "metric": "accuracy",
            "value": 0.9,
            "ci": [0.85, 0.94],
            "threshold": ">= 0.8",
            "passed": verdict == "approved",
        },
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
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")  # the registry's folder is declared there
    return repo


def run_package(project: Path, home: Path, candidate: Path, gate: Path, *extra: str):
    env = os.environ | {"BENTOML_HOME": str(home), "TUNEGATE_ACTOR": "ci", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "tunegate.serving.package",
        "--params",
        "params.yaml",
        "--candidate",
        str(candidate),
    ]
    cmd += ["--gate", str(gate), "--out", "registry/candidate.json", *extra]
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
    from huggingface_hub import ModelCard

    hf = ModelCard.load(stored / "README.md").data  # the Hub card, now with the gate's results
    assert hf.model_name == card["model_id"] and "gate-approved" in hf.tags
    (result,) = hf.eval_results  # holdout.accuracy; the license check is not a result
    assert (result.dataset_type, result.metric_type) == ("tunegate/holdout", "accuracy")
    assert result.metric_value == 0.9
    assert (result.metric_args["ci_low"], result.metric_args["ci_high"]) == (0.85, 0.94)
    tags = subprocess.run(["git", "tag", "-n1"], cwd=project, capture_output=True, text=True).stdout
    assert "intent-classifier@v0.0.1" in tags and card["tree_sha256"] in tags
    again = run_package(project, home, tmp_path / "cand", tmp_path / "gate.json")  # e.g. dvc repro -f
    assert again.returncode == 0, again.stderr
    assert json.loads((project / "registry/candidate.json").read_text())["version"] == "v0.0.1"
    assert store_models(home) == [record["bento_tag"]]

    from tunegate.core.errors import ArtifactError
    from tunegate.serving.package import resolve  # in this process: the same store, verified

    os.environ["BENTOML_HOME"] = str(home)
    try:
        assert resolve(record["bento_tag"], card["tree_sha256"]) == stored
        (stored / "adapter_model.safetensors").write_bytes(b"tampered")
        with pytest.raises(ArtifactError, match="sha256 differs from the card"):
            resolve(record["bento_tag"], card["tree_sha256"])
    finally:
        del os.environ["BENTOML_HOME"]


def test_the_calibration_the_gate_judged_is_packaged_and_served_as_judged(project, tmp_path):
    """The abstention threshold decides what callers get: the package stage ships only the
    calibration the gate judged, the service reads it back against the hash recorded at
    packaging, and a second packaging of the same adapter with another one is refused."""
    from tunegate.core import calibration
    from tunegate.core.calibration import Calibration

    card = make_candidate(tmp_path / "cand")
    judged = Calibration("temperature", temperature=1.7, abstain_below=0.6, chosen_by="declared")
    calibration.write(tmp_path / "calibration.json", judged)
    gate = gate_record(card, "approved") | {"calibration_sha256": sha256_file(tmp_path / "calibration.json")}
    write_json(tmp_path / "gate.json", gate)
    home = tmp_path / "bentoml"
    other = Calibration("temperature", temperature=1.7, abstain_below=0.1, chosen_by="declared")
    calibration.write(tmp_path / "other.json", other)
    refused = run_package(
        project,
        home,
        tmp_path / "cand",
        tmp_path / "gate.json",
        "--calibration",
        str(tmp_path / "other.json"),
    )
    assert refused.returncode != 0 and "is not the calibration" in refused.stderr and store_models(home) == []
    ok = run_package(
        project,
        home,
        tmp_path / "cand",
        tmp_path / "gate.json",
        "--calibration",
        str(tmp_path / "calibration.json"),
    )
    assert ok.returncode == 0, ok.stderr
    record = json.loads((project / "registry/candidate.json").read_text())

    write_json(
        tmp_path / "gate2.json",
        gate_record(card, "approved") | {"calibration_sha256": sha256_file(tmp_path / "other.json")},
    )
    again = run_package(
        project,
        home,
        tmp_path / "cand",
        tmp_path / "gate2.json",
        "--calibration",
        str(tmp_path / "other.json"),
    )
    assert again.returncode != 0 and "with another calibration_sha256" in again.stderr

    env = os.environ | {"BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT)}  # BentoML reads its home once
    code = "import sys; from tests.serving.test_package import served_calibration as f; f(*sys.argv[1:])"
    args = [record["bento_tag"], card["tree_sha256"], str(tmp_path / "other.json")]
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.6", "refused-edited"]


def served_calibration(tag: str, tree: str, other: str) -> None:
    """In a process whose BENTOML_HOME is the test's store: the threshold the service would
    use, then the same after a lower threshold is written into the store."""
    import shutil

    from tunegate.core import calibration
    from tunegate.core.errors import ArtifactError
    from tunegate.serving.package import release_calibration, resolve

    print(release_calibration(tag, tree).abstain_below)
    shutil.copyfile(other, resolve(tag, tree) / calibration.FILE)
    try:
        release_calibration(tag, tree)
    except ArtifactError as err:
        assert "changed after it was packaged" in str(err), err
        print("refused-edited")


def rewrite_card(folder: Path) -> None:
    """What an attacker with write access does: make the card agree with edited files."""
    card = json.loads((folder / "card.json").read_text())
    card["files"] = {rel: sha256_file(folder / rel) for rel in card["files"]}
    card["tree_sha256"] = tree_hash(card["files"])
    write_json(folder / "card.json", card)


def test_serving_verifies_against_the_registry_not_the_card(project, tmp_path):
    """An adapter edited in the store, with its card rewritten to match, is refused: the files
    are hashed now and compared with the hash the registry (the GTO tag) recorded. The copy
    serving loads from is verified too, and a stale copy is replaced."""
    card = make_candidate(tmp_path / "cand")
    write_json(tmp_path / "gate.json", gate_record(card, "approved"))
    home = tmp_path / "bentoml"
    assert run_package(project, home, tmp_path / "cand", tmp_path / "gate.json").returncode == 0
    record = json.loads((project / "registry/candidate.json").read_text())
    env = os.environ | {"BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT)}  # BentoML reads its home once
    code = "import sys; from tests.serving.test_package import tamper_store; tamper_store(*sys.argv[1:])"
    args = [record["bento_tag"], card["tree_sha256"], str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["copy-replaced", "refused-edited", "refused-copy", "refused-claimed"]


def tamper_store(tag: str, registered: str, scratch: str) -> None:
    from tunegate.core.errors import ArtifactError
    from tunegate.serving.package import resolve, verified_copy

    tmp = Path(scratch)
    copy = verified_copy(tag, registered, tmp / "serve" / registered)
    assert (copy / "adapter_model.safetensors").read_bytes() == b"weights"
    (copy / "adapter_model.safetensors").write_bytes(b"swapped after verification")
    if (verified_copy(tag, registered, copy) / "adapter_model.safetensors").read_bytes() == b"weights":
        print("copy-replaced")
    stored = resolve(tag, registered)
    (stored / "adapter_model.safetensors").write_bytes(b"edited weights")
    rewrite_card(stored)
    for name, call in [
        ("refused-edited", lambda: resolve(tag, registered)),
        ("refused-copy", lambda: verified_copy(tag, registered, tmp / "serve2")),
    ]:
        try:
            call()
        except ArtifactError as err:
            print(name if "not the registered" in str(err) else err)
    card_now = json.loads((stored / "card.json").read_text())
    card_now["tree_sha256"] = registered  # the card claims the registered hash; the files do not make it
    write_json(stored / "card.json", card_now)
    try:
        resolve(tag, registered)
    except ArtifactError as err:
        print("refused-claimed" if "changed after it was recorded" in str(err) else err)


def test_register_takes_nothing_on_the_records_word(project, tmp_path):
    """`tunegate register` with a hand-written record: a model that is not in the store, or a
    verdict the stored gate record does not hold, is refused; a genuine one registers."""
    card = make_candidate(tmp_path / "cand")
    write_json(tmp_path / "gate.json", gate_record(card, "approved"))
    home = tmp_path / "bentoml"
    env = os.environ | {"BENTOML_HOME": str(home), "TUNEGATE_ACTOR": "ci", "PYTHONPATH": str(ROOT)}
    register = [sys.executable, "-m", "tunegate.cli", "register", "--record", "forged.json"]

    def forged(**record) -> subprocess.CompletedProcess:
        write_json(project / "forged.json", {"packaged": True} | record)
        return subprocess.run(register, cwd=project, env=env, capture_output=True, text=True, timeout=120)

    fake = {"bento_tag": "intent-classifier:doesnotexist", "tree_sha256": card["tree_sha256"]}
    out = forged(**fake, verdict="approved", model_id="lora:x")
    assert out.returncode == 2 and "not in this machine's model store" in out.stderr
    rejected = make_candidate(tmp_path / "rejected", b"bad weights")
    write_json(tmp_path / "gate-r.json", gate_record(rejected, "approved"))
    assert run_package(project, home, tmp_path / "rejected", tmp_path / "gate-r.json").returncode == 0
    stored = home / "models/intent-classifier" / rejected["tree_sha256"][:20]
    write_json(stored / "gate.json", gate_record(rejected, "rejected"))  # what the gate really said
    subprocess.run(
        ["git", "tag", "-d", "intent-classifier@v0.0.1"], cwd=project, check=True, capture_output=True
    )
    tag = f"intent-classifier:{rejected['tree_sha256'][:20]}"
    out = forged(bento_tag=tag, tree_sha256=rejected["tree_sha256"], verdict="approved", model_id="x")
    assert out.returncode == 2 and "did not approve it" in out.stderr
    write_json(stored / "gate.json", gate_record(rejected, "approved"))
    out = forged(bento_tag=tag, tree_sha256=rejected["tree_sha256"], verdict="whatever", model_id="forged")
    assert out.returncode == 0, out.stderr
    tags = subprocess.run(["git", "tag", "-n1"], cwd=project, capture_output=True, text=True).stdout
    assert rejected["model_id"] in tags and "forged" not in tags and "whatever" not in tags
    pointer = json.loads((project / "forged.json").read_text())  # says the release it now is
    assert pointer["version"] == out.stdout.split(" is release ")[1].strip() and "registration" not in pointer


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
