"""The gate stage's inputs and outputs, and `tunegate gate --check`, without a model."""

import json

import pytest
from typer.testing import CliRunner

from tunegate.cli import app
from tunegate.core.artifacts import file_hashes, sha256_file, tree_hash, write_json
from tunegate.core.errors import ArtifactError, DataError
from tunegate.core.params import params_from_dict
from tunegate.evaluation.evidence import SCHEMA, load_evidence, load_out_of_scope
from tunegate.evaluation.gate import advice_for, gate_record, judge
from tunegate.evaluation.models import production_ref
from tunegate.evaluation.predictors import ModelRef
from tunegate.evaluation.report import render_report

LABELS = ["card_arrival", "card_declined", "top_up_failed"]


CALIBRATION = {
    "method": "temperature", "temperature": 1.5, "points": [], "abstain_below": 0.5, "schema": 1,
    "chosen_by": "declared: serve.abstain_below", "fitted": {"rows": 80}, "val_rows": 80, "val_oos_rows": 0,
}  # fmt: skip


def write_results(
    folder,
    cand_right: float,
    n: int = 200,
    conf: tuple[float, float] = (0.96, 0.3),
    oos_abstained: float | None = None,
    classical_right: float = 0.9,
):
    """A synthetic eval/results folder: hold-out + shifted predictions and evidence. Right
    answers get calibrated confidence conf[0], wrong ones conf[1]; the threshold is 0.5.
    With `oos_abstained`, an out-of-scope hold-out of n rows, that share abstained on."""
    folder.mkdir(parents=True, exist_ok=True)
    suites = {}
    for name, kind in (("holdout", "holdout"), ("shifted", "shifted")):
        rows = []
        for i in range(n):
            gold = LABELS[i % 3]
            cand = gold if (i * 7919 % 100) < cand_right * 100 else LABELS[(i + 1) % 3]
            base = gold if i % 5 == 0 else LABELS[(i + 2) % 3]
            words = "short msg" if i % 2 else " ".join(["long"] * 30)
            c = conf[0] if cand == gold else conf[1]
            tfidf = gold if (i * 31 % 100) < classical_right * 100 else LABELS[(i + 2) % 3]
            rows.append(
                {"id": f"{name}-{i}", "text": words, "gold": gold, "candidate": cand, "baseline": base,
                 "slice": "words<=8" if i % 2 else "words>20", "raw_confidence": c, "confidence": c,
                 "abstained": c < 0.5, "classical": tfidf}
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
        "calibration": CALIBRATION,
        "out_of_scope": {"missing": "data.oos_label is not declared"},
        "schema": SCHEMA,
    }
    if oos_abstained is not None:
        oos = [
            {"id": f"oos-{i}", "text": "weather?", "gold": "oos", "candidate": LABELS[0], "confidence": c,
             "raw_confidence": c, "abstained": c < 0.5}
            for i in range(n)
            for c in [0.2 if i < oos_abstained * n else 0.9]
        ]  # fmt: skip
        (folder / "holdout_oos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in oos))
        evidence["out_of_scope"] = {"rows": n, "sha256": sha256_file(folder / "holdout_oos.jsonl")}
    write_json(folder / "evidence.json", evidence)
    return folder


def decide_on(folder, serve=None, **gate):
    params = params_from_dict({"gate": {"bootstrap_resamples": 200, **gate}, "serve": serve or {}})
    evidence, records = load_evidence(folder)
    verdict = judge(evidence, records, params, load_out_of_scope(folder, evidence))
    return verdict, gate_record(verdict, evidence, params, folder), evidence, records


def test_a_good_first_release_is_approved_and_reported(tmp_path):
    verdict, record, evidence, records = decide_on(write_results(tmp_path / "results", 0.95))
    assert verdict.approved, verdict.summary()
    assert record["verdict"] == "approved" and record["baseline"]["kind"] == "base"
    assert record["predictions"]["holdout"] == evidence.suites["holdout"].sha256
    report = render_report(record, evidence, records)
    assert report.startswith("# Release report: APPROVED")
    assert "| pass | holdout.ab_vs_base |" in report


def test_a_weak_candidate_is_rejected_with_the_failed_checks_first_in_the_report(tmp_path):
    verdict, record, evidence, records = decide_on(write_results(tmp_path / "results", 0.5))
    assert not verdict.approved
    report = render_report(record, evidence, records)
    assert report.startswith("# Release report: REJECTED")
    assert "| **FAIL** | holdout.accuracy |" in report
    record["advice"] = advice_for(record["checks"], None)
    assert any(line.startswith("holdout.accuracy 0.500 under its floor >= 0.8") for line in record["advice"])
    assert "## What to change" in render_report(record, evidence, records)
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


def test_evidence_of_another_schema_is_refused_and_the_same_schema_is_re_judged(tmp_path):
    """The gate re-runs on old evidence of its schema (same verdict), and names the stage to
    re-run for evidence written by another version (no schema field: schema 1)."""
    folder = write_results(tmp_path / "results", 0.95)
    first, again = decide_on(folder)[1], decide_on(folder)[1]
    assert first["checks"] == again["checks"]
    evidence = json.loads((folder / "evidence.json").read_text())
    del evidence["schema"]
    write_json(folder / "evidence.json", evidence)
    with pytest.raises(
        DataError,
        match=rf"evidence schema 1 is not the schema this gate reads \({SCHEMA}\).*dvc repro evaluate",
    ):
        load_evidence(folder)
    evidence |= {"schema": SCHEMA, "probe": {"rows": 3, "surprise": True}}
    write_json(folder / "evidence.json", evidence)
    with pytest.raises(DataError, match=f"does not have the schema {SCHEMA} layout"):
        load_evidence(folder)


def test_gate_check_exit_codes(tmp_path):
    runner = CliRunner()
    cases = ((0.95, 200, 0, "approved"), (0.5, 200, 1, "rejected"), (0.95, 60, 3, "not enough evidence"))
    for cand_right, n, code, word in cases:
        _, record, evidence, records = decide_on(write_results(tmp_path / f"r{code}", cand_right, n=n))
        report = render_report(record, evidence, records)
        cand_right = code
        write_json(tmp_path / f"gate{cand_right}.json", record)
        result = runner.invoke(
            app, ["gate", "--check", "--gate-file", str(tmp_path / f"gate{cand_right}.json")]
        )
        assert result.exit_code == code, result.output
        assert result.output.startswith(word) and len(result.output.strip().splitlines()) == 1
        assert report.startswith(f"# Release report: {word.upper()}\n")
        # with the gate stage's advice, each line follows the verdict
        write_json(tmp_path / "advised.json", record | {"advice": advice_for(record["checks"], None)})
        advised = runner.invoke(app, ["gate", "--check", "--gate-file", str(tmp_path / "advised.json")])
        lines = advised.output.strip().splitlines()
        assert advised.exit_code == code and len(lines) == 1 + len(advice_for(record["checks"], None))
        assert (len(lines) > 1) == (code != 0) and all(line.startswith("- ") for line in lines[1:])
    missing = runner.invoke(app, ["gate", "--check", "--gate-file", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "run `dvc repro`" in missing.output


def test_gate_markdown_comment_keeps_the_check_exit_codes(tmp_path):
    """`tunegate gate --format markdown`: one pull-request comment (verdict, failed checks
    first, every check, the report's regressions); --check still exits 1 on a rejection."""
    runner = CliRunner()
    _, record, _, _ = decide_on(write_results(tmp_path / "r", 0.5))
    write_json(tmp_path / "gate.json", record)
    (tmp_path / "report.md").write_text(
        "# Release report\n\n## Largest regressions\n\n- holdout: card_arrival -0.40 (n=10)\n"
        "\n## Parity\n\nx\n"
    )
    result = runner.invoke(
        app, ["gate", "--check", "--format", "markdown", "--gate-file", str(tmp_path / "gate.json")]
    )
    assert result.exit_code == 1, result.output
    text = result.output
    assert text.startswith("## tunegate release gate: REJECTED")
    failed = [c for c in record["checks"] if not c["passed"]]
    assert failed and text.index("### Failed checks") < text.index(f"| **FAIL** | {failed[0]['name']} |")
    assert f"All {len(record['checks'])} checks" in text
    assert "### Largest regressions" in text and "card_arrival -0.40 (n=10)" in text
    assert "## Parity" not in text  # only the regressions section of the report
    missing = runner.invoke(
        app, ["gate", "--check", "--format", "markdown", "--gate-file", str(tmp_path / "nope.json")]
    )
    assert missing.exit_code == 2 and "run `dvc repro`" in missing.output
    bad = runner.invoke(app, ["gate", "--format", "html", "--gate-file", str(tmp_path / "gate.json")])
    assert bad.exit_code == 2 and "use text or markdown" in bad.output


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


def checks_of(verdict) -> dict:
    return {c.name: c for c in verdict.checks}


def test_gate_judges_calibration_and_abstention_at_the_served_threshold(tmp_path):
    verdict, _, _, _ = decide_on(write_results(tmp_path / "good", 0.95, oos_abstained=0.8))
    checks = checks_of(verdict)
    assert verdict.approved, verdict.summary()
    assert checks["calibration.fitted"].passed
    assert checks["holdout.coverage"].value == pytest.approx(0.95, abs=0.02)  # the wrong answers abstained
    assert checks["holdout.selective_accuracy"].value == 1.0
    assert checks["holdout_oos.recall"].value == pytest.approx(0.8)
    lo, hi = checks["holdout_oos.recall"].ci
    assert lo < 0.8 < hi
    assert any(n.startswith("shifted ECE") for n in verdict.notes)

    # Sure of everything, right 80% of the time: miscalibrated, and nothing abstained on.
    verdict, record, evidence, records = decide_on(
        write_results(tmp_path / "sure", 0.8, conf=(0.99, 0.99), oos_abstained=0.1)
    )
    checks = checks_of(verdict)
    assert not verdict.approved
    assert not checks["holdout.ece"].passed and checks["holdout.ece"].value == pytest.approx(0.19, abs=0.02)
    assert checks["holdout.ece"].reason.startswith("confidence is miscalibrated: shown beyond the limit")
    assert not checks["holdout.selective_accuracy"].passed
    assert not checks["holdout_oos.recall"].passed
    report = render_report(record, evidence, records, load_out_of_scope(tmp_path / "sure", evidence))
    assert "| **FAIL** | holdout_oos.recall |" in report
    assert (
        "## Calibration and abstention" in report and "Abstains below calibrated confidence 0.500" in report
    )
    assert "Out-of-scope hold-out: 20 of 200 abstained on." in report  # and the answered ones listed
    assert "- weather? -> `card_arrival` (0.9" in report


def test_gate_without_out_of_scope_rows_reports_coverage_only_and_says_so(tmp_path):
    verdict, record, evidence, records = decide_on(write_results(tmp_path / "r", 0.95))
    assert "holdout_oos.recall" not in checks_of(verdict)  # not a pass: a noted check
    assert [c.name for c in verdict.noted] == ["holdout_oos.recall"]
    assert "not measured" in verdict.noted[0].reason and not verdict.noted[0].passed
    assert verdict.approved and "(1 noted, not judged: holdout_oos.recall)" in verdict.summary()
    assert any("out-of-scope recall could not be measured" in n for n in verdict.notes)
    assert "| noted | holdout_oos.recall |" in render_report(record, evidence, records)


def with_threshold_search(folder, search, val_oos_rows: int):
    """Rewrite the evidence's calibration block as an auto threshold with this search."""
    evidence = json.loads((folder / "evidence.json").read_text())
    evidence["calibration"] = CALIBRATION | {
        "chosen_by": "auto", "threshold_search": search.to_dict(), "val_oos_rows": val_oos_rows,
    }  # fmt: skip
    write_json(folder / "evidence.json", evidence)
    return folder


def test_an_auto_threshold_that_meets_no_set_of_floors_is_judged_and_rejected_naming_the_floor(tmp_path):
    from tunegate.evaluation.threshold import Floors, choose_threshold

    # Validation: the out-of-scope messages are as sure as the in-scope ones, so recall 0.5
    # costs most of the coverage. The gate judges that best trade-off and says why it fails.
    conf = [0.6 + 0.004 * i for i in range(100)]
    search = choose_threshold(conf, [True] * 100, conf[::2], Floors(0.95, 0.9, 0.8, 0.5, 0.9))
    assert not search.met
    folder = with_threshold_search(write_results(tmp_path / "r", 0.95, oos_abstained=0.8), search, 50)
    verdict, record, evidence, records = decide_on(folder)
    check = checks_of(verdict)["validation.threshold"]
    assert not verdict.approved and not check.passed
    assert "no threshold meets every floor" in check.reason and "coverage" in check.reason
    assert "holdout_oos.recall" in checks_of(verdict)  # judged: validation had out-of-scope rows
    report = render_report(record, evidence, records, load_out_of_scope(folder, evidence))
    assert "| **FAIL** | validation.threshold |" in report
    assert "| coverage | `gate.min_coverage` | 0.8 |" in report and "| **no** |" in report

    met = choose_threshold(conf, [True] * 100, [0.1] * 50, Floors(0.95, 0.9, 0.8, 0.5, 0.9))
    assert met.met and met.value == 0.6  # the lowest in-scope confidence: every answer, no out-of-scope one
    verdict, record, evidence, records = decide_on(with_threshold_search(folder, met, 50))
    assert checks_of(verdict)["validation.threshold"].passed
    assert "bound by oos_recall (lower bound 0.0000" in render_report(record, evidence, records)


def test_without_out_of_scope_validation_rows_out_of_scope_recall_is_noted_not_passed(tmp_path):
    from tunegate.evaluation.threshold import Floors, choose_threshold

    search = choose_threshold(
        [0.9] * 60 + [0.4] * 10, [True] * 60 + [False] * 10, [], Floors(0.95, 0.9, 0.5, 0.5)
    )
    folder = with_threshold_search(write_results(tmp_path / "r", 0.95, oos_abstained=0.8), search, 0)
    verdict, record, evidence, records = decide_on(folder)
    assert "holdout_oos.recall" not in checks_of(verdict)
    noted = verdict.noted[0]
    assert noted.name == "holdout_oos.recall" and noted.value == pytest.approx(0.8)  # measured, not judged
    assert "chosen on the in-scope floors alone" in noted.reason
    report = render_report(record, evidence, records)
    assert "Out-of-scope recall could not be measured on validation." in report


def test_a_declared_out_of_scope_share_reports_precision_at_that_mix(tmp_path):
    folder = write_results(tmp_path / "r", 0.95, oos_abstained=0.8)
    verdict, _, _, _ = decide_on(folder, serve={"expected_oos_share": 0.2})
    note = next(n for n in verdict.notes if "out-of-scope traffic (serve.expected_oos_share)" in n)
    # in scope: the wrong answers abstained, every answer right; out of scope: 20% answered (wrong)
    value, lo, hi = (float(x) for x in note.replace("[", "").replace("]", "").replace(",", "").split()[-3:])
    coverage = checks_of(verdict)["holdout.coverage"].value
    expected = 0.8 * coverage / (0.8 * coverage + 0.2 * 0.2)
    assert value == pytest.approx(expected, abs=1e-4) and lo < value < hi
    apart, _, _, _ = decide_on(folder)
    assert not any("serve.expected_oos_share" in n for n in apart.notes)


def test_gate_fails_a_calibration_that_could_not_be_fitted_or_is_missing(tmp_path):
    folder = write_results(tmp_path / "r", 0.95)
    evidence = json.loads((folder / "evidence.json").read_text())
    evidence["calibration"] = CALIBRATION | {"failed": "12 validation answers; calibrating needs at least 30"}
    write_json(folder / "evidence.json", evidence)
    verdict, _, _, _ = decide_on(folder)
    fitted = checks_of(verdict)["calibration.fitted"]
    assert not verdict.approved and not fitted.passed and "needs at least 30" in fitted.reason
    del evidence["calibration"]
    write_json(folder / "evidence.json", evidence)
    verdict, _, _, _ = decide_on(folder)
    assert "evaluated by an older tunegate" in checks_of(verdict)["calibration.fitted"].reason


def test_gate_refuses_edited_out_of_scope_records(tmp_path):
    folder = write_results(tmp_path / "r", 0.95, oos_abstained=0.5)
    with (folder / "holdout_oos.jsonl").open("a") as f:
        f.write("{}\n")
    with pytest.raises(DataError, match="changed after evaluation"):
        decide_on(folder)


def test_gate_reports_the_classical_reference_and_blocks_on_it_when_declared(tmp_path):
    """The paired A/B against TF-IDF + logistic regression: reported by default, a check per
    suite with gate.vs_classical: non_inferior."""
    folder = write_results(tmp_path / "r", 0.8, classical_right=1.0, oos_abstained=0.8)
    verdict, _, _, _ = decide_on(folder)
    assert not any(c.name.endswith("ab_vs_classical") for c in verdict.checks)
    notes = [n for n in verdict.notes if n.startswith("vs classical reference, holdout")]
    assert (
        len(notes) == 1
        and "delta -0.200" in notes[0]
        and "worse by more than the margin, shown; reported, not judged" in notes[0]
    )
    verdict, _, _, _ = decide_on(folder, vs_classical="non_inferior")
    check = checks_of(verdict)["holdout.ab_vs_classical"]
    assert check.outcome == "failed" and "shown worse than the classical reference" in check.reason
    assert check.ci[0] < check.value < check.ci[1] < 0
    tie = write_results(tmp_path / "tie", 0.95, n=1000, classical_right=0.95, oos_abstained=0.8)
    verdict, _, _, _ = decide_on(tie, vs_classical="non_inferior")
    assert checks_of(verdict)["shifted.ab_vs_classical"].passed


def test_gate_compares_abstention_with_production_on_the_same_items(tmp_path):
    """Against a production release with its own calibration, answered-and-right (in scope)
    and abstained (out of scope) are compared item by item, each release at its threshold."""

    def with_production(folder, production_right: float, production_abstains_oos: bool):
        evidence = json.loads((folder / "evidence.json").read_text())
        evidence["baseline"]["kind"] = "production"
        evidence["calibration"] = CALIBRATION | {"baseline": CALIBRATION}
        for name in ("holdout", "shifted"):
            rows = [json.loads(x) for x in (folder / f"{name}.jsonl").read_text().splitlines()]
            for i, r in enumerate(rows):
                r["baseline"] = r["gold"] if i % 100 < production_right * 100 else None
                r["baseline_abstained"] = False
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            evidence["suites"][name]["sha256"] = sha256_file(folder / f"{name}.jsonl")
        oos = [json.loads(x) for x in (folder / "holdout_oos.jsonl").read_text().splitlines()]
        for r in oos:
            r["baseline_abstained"] = production_abstains_oos
        (folder / "holdout_oos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in oos))
        evidence["out_of_scope"]["sha256"] = sha256_file(folder / "holdout_oos.jsonl")
        write_json(folder / "evidence.json", evidence)
        return folder

    worse = with_production(write_results(tmp_path / "w", 0.8, oos_abstained=0.3), 0.97, True)
    verdict, _, _, _ = decide_on(worse)
    checks = checks_of(verdict)
    assert checks["holdout.answered_accuracy_ab_vs_production"].outcome == "failed"
    assert checks["holdout_oos.recall_ab_vs_production"].outcome == "failed"
    assert "own threshold" in checks["holdout_oos.recall_ab_vs_production"].reason
    # the same answers on most items, on enough of them to show it (10% disagreement: 200 do not)
    same = with_production(write_results(tmp_path / "s", 0.95, n=1000, oos_abstained=0.9), 0.95, False)
    checks = checks_of(decide_on(same)[0])
    assert checks["holdout.answered_accuracy_ab_vs_production"].passed
    assert checks["holdout_oos.recall_ab_vs_production"].passed  # abstains more than production did
    first, _, _, _ = decide_on(write_results(tmp_path / "f", 0.95, oos_abstained=0.9))
    assert any("abstention is not compared with the baseline" in n for n in first.notes)


def test_a_floor_reads_beside_the_reference_models_values(tmp_path):
    """The base model answers every fifth item right (0.2 on 200): reported beside the
    accuracy floor with the classical reference's, not judged."""
    _, record, evidence, records = decide_on(write_results(tmp_path / "results", 0.5))
    acc = next(c for c in record["checks"] if c["name"] == "holdout.accuracy")
    classical = sum(r["classical"] == r["gold"] for r in records["holdout"]) / 200
    assert acc["context"] == {"base": pytest.approx(0.2), "classical": pytest.approx(classical)}
    assert next(c for c in record["checks"] if c["name"] == "holdout.macro_f1")["context"]["base"] < 0.3
    assert all(c["context"] is None for c in record["checks"] if c["name"] == "holdout.ab_vs_base")
    report = render_report(record, evidence, records)
    assert "| holdout.accuracy | >= 0.8 | 0.500 | 0.200 |" in report
