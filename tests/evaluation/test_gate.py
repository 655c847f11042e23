"""The gate stage's inputs and outputs, and `tunegate gate --check`, without a model."""

import json

import pytest
from typer.testing import CliRunner

from evaluation.engines import ModelRef
from evaluation.evaluate import production_ref
from evaluation.gate import gate_record, judge, load_evidence
from evaluation.report import render_report
from tunegate.artifacts import file_hashes, sha256_file, tree_hash, write_json
from tunegate.cli import app
from tunegate.errors import ArtifactError, DataError
from tunegate.params import params_from_dict

LABELS = ["card_arrival", "card_declined", "top_up_failed"]


def write_results(folder, cand_right: float, n: int = 120):
    """A synthetic eval/results folder: hold-out + shifted predictions and evidence."""
    folder.mkdir(parents=True, exist_ok=True)
    suites = {}
    for name, kind in (("holdout", "holdout"), ("shifted", "shifted")):
        rows = []
        for i in range(n):
            gold = LABELS[i % 3]
            cand = gold if (i * 7919 % 100) < cand_right * 100 else LABELS[(i + 1) % 3]
            base = gold if i % 5 == 0 else LABELS[(i + 2) % 3]
            words = "short msg" if i % 2 else " ".join(["long"] * 30)
            rows.append(
                {"id": f"{name}-{i}", "text": words, "gold": gold, "candidate": cand, "baseline": base,
                 "slice": "words<=8" if i % 2 else "words>20"}
            )  # fmt: skip
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        suites[name] = {
            "kind": kind,
            "rows": n,
            "versus_baseline": True,
            "sha256": sha256_file(folder / f"{name}.jsonl"),
        }
    base = {"role": "base", "model_id": "base:def", "tree_sha256": "b" * 64, "path": "y"}
    evidence = {
        "candidate": {"role": "candidate", "model_id": "lora:abc", "tree_sha256": "a" * 64, "path": "x"},
        "baseline": base | {"kind": "base"},
        "base": base | {"license": "apache-2.0"},
        "data": {"holdout.jsonl": "c" * 64},
        "labels": LABELS,
        "engine": "scorer",
        "suites": suites,
        "probe": {
            "rows": 10,
            "candidate": {"accuracy": 0.6, "exact_match": 0.1, "token_f1": 0.3},
            "base": {"accuracy": 0.6, "exact_match": 0.1, "token_f1": 0.3},
            "examples": [{"question": "Q?", "candidate": "A.", "base": "A."}],
        },
        "parity": {
            "rows": 8,
            "rates": {"served_vs_reference": 1.0},
            "disagreements": {"served_vs_reference": []},
            "served_engine": "vllm",
        },
    }
    write_json(folder / "evidence.json", evidence)
    return folder


def decide_on(folder):
    params = params_from_dict({"gate": {"bootstrap_resamples": 200}})
    evidence, records = load_evidence(folder)
    verdict = judge(evidence, records, params)
    return verdict, gate_record(verdict, evidence, params, folder), evidence, records


def test_a_good_first_release_is_approved_and_reported(tmp_path):
    verdict, record, evidence, records = decide_on(write_results(tmp_path / "results", 0.95))
    assert verdict.approved, verdict.summary()
    assert record["verdict"] == "approved" and record["baseline"]["kind"] == "base"
    assert record["predictions"]["holdout"] == evidence["suites"]["holdout"]["sha256"]
    report = render_report(record, evidence, records)
    assert report.startswith("# Release report: APPROVED")
    assert "| pass | holdout.ab_vs_base |" in report


def test_a_weak_candidate_is_rejected_with_the_failed_checks_first_in_the_report(tmp_path):
    verdict, record, evidence, records = decide_on(write_results(tmp_path / "results", 0.5))
    assert not verdict.approved
    report = render_report(record, evidence, records)
    assert report.startswith("# Release report: REJECTED")
    assert "| **FAIL** | holdout.accuracy |" in report
    assert "Messages the baseline got right and the candidate got wrong" in report


def test_edited_predictions_are_refused(tmp_path):
    folder = write_results(tmp_path / "results", 0.95)
    with (folder / "holdout.jsonl").open("a") as f:
        f.write(json.dumps({"id": "x", "text": "t", "gold": "card_arrival", "candidate": "card_arrival",
                            "baseline": None, "slice": "words<=8"}) + "\n")  # fmt: skip
    with pytest.raises(DataError, match="predictions changed after evaluation"):
        load_evidence(folder)


def test_missing_evidence_names_the_stage_to_run(tmp_path):
    with pytest.raises(DataError, match="run `dvc repro evaluate` first"):
        load_evidence(tmp_path)


def test_gate_check_exit_codes(tmp_path):
    runner = CliRunner()
    for cand_right, code, word in ((0.95, 0, "approved"), (0.5, 1, "rejected")):
        _, record, _, _ = decide_on(write_results(tmp_path / f"r{cand_right}", cand_right))
        write_json(tmp_path / f"gate{cand_right}.json", record)
        result = runner.invoke(
            app, ["gate", "--check", "--gate-file", str(tmp_path / f"gate{cand_right}.json")]
        )
        assert result.exit_code == code, result.output
        assert result.output.startswith(word) and len(result.output.strip().splitlines()) == 1
    missing = runner.invoke(app, ["gate", "--check", "--gate-file", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "run `dvc repro`" in missing.output


def fake_model(folder, base_tree: str):
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    files = file_hashes(folder)
    card = {"model_id": "lora:x", "tree_sha256": tree_hash(files), "files": files,
            "base_model": {"model_id": "base:other", "tree_sha256": base_tree}}  # fmt: skip
    write_json(folder / "card.json", card)
    return folder


def test_production_pointer_resolution_and_its_errors(tmp_path):
    base = ModelRef("base", tmp_path / "base", None, "base:b", "b" * 64)
    pointer = tmp_path / "registry/production.json"
    assert production_ref(pointer, base) == (None, {})  # no registry yet
    write_json(pointer, {"version": None})
    assert production_ref(pointer, base)[0] is None  # first release
    same = fake_model(tmp_path / "v1", "b" * 64)
    write_json(pointer, {"version": "v1", "model_dir": str(same)})
    ref, _ = production_ref(pointer, base)
    assert ref.role == "production" and ref.adapter_dir == same
    other = fake_model(tmp_path / "v2", "f" * 64)
    write_json(pointer, {"version": "v2", "model_dir": str(other)})
    with pytest.raises(ArtifactError, match=r"built on base model base:other.*not comparable"):
        production_ref(pointer, base)
    (same / "adapter_model.safetensors").write_bytes(b"tampered")
    write_json(pointer, {"version": "v1", "model_dir": str(same)})
    with pytest.raises(ArtifactError, match="sha256 differs from the card"):
        production_ref(pointer, base)
