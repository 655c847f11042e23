"""Drift for the generation kind on the embedded tickets: held-out traffic answered as the
reference was is not drift; answers that lose a field, break the JSON or score worse
against callers' reference answers are; the terse mobile channel moves the inputs.

Real Evidently, real sentence embeddings, a real SQLite request log written by the
service's own writer, `tunegate drift` as users run it. The "model" behind these logs
answers the record's reference ticket, with a declared share of its amounts dropped: the
monitor's statistics are under test here, not a model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tunegate.core import monitor_reference
from tunegate.core.artifacts import read_jsonl
from tunegate.core.errors import DataError
from tunegate.core.task import Task, read_schema
from tunegate.core.text_metrics import item_scores
from tunegate.core.words import vocabulary
from tunegate.monitoring.generation_drift import (
    correction,
    fields,
    flags,
    live_quality,
    planned_tests,
    reference_task,
)
from tunegate.monitoring.window import GenerationWindow, read_generation_window
from tunegate.serving.requestlog import Entry, RequestLog

BIN = Path(sys.executable).parent
SCHEMA = read_schema(ROOT / "data/tickets/schema.json")
TASK = Task("generation", SCHEMA, json_answers=True)


def records(name: str) -> list[dict]:
    out = []
    for i, r in enumerate(read_jsonl(ROOT / f"data/tickets/{name}.jsonl")):
        user = [t["content"] for t in r["messages"] if t["role"] == "user"][-1]
        out.append({"id": f"{name}-{i}", "input": user, "reference": r["messages"][-1]["content"]})
    return out


def answer(ticket: str, drop_amount: bool) -> str:
    parsed = json.loads(ticket)
    if drop_amount and parsed.get("amount") is not None:
        parsed["amount"] = None
    return json.dumps(parsed)


def answered(rows: list[dict], drop_every: int) -> list[str]:
    """The 'model': each record's reference ticket, every `drop_every`-th amount lost."""
    return [answer(r["reference"], drop_every > 0 and i % drop_every == 0) for i, r in enumerate(rows)]


def write_reference(path: Path, rows: list[dict], drop_every: int = 4) -> Path:
    recs = []
    for r, a in zip(rows, answered(rows, drop_every), strict=True):
        recs.append(r | {"candidate": a, "scores": {"candidate": item_scores(a, r["reference"], TASK)}})
    vocab = vocabulary(r["input"] for r in records("tickets")[300:])
    monitor_reference.write_generation(path, recs, "field_f1", TASK, vocab, "lora:test")
    return path


def write_log(path: Path, rows: list[dict], outputs: list[str], references: bool = True) -> Path:
    log = RequestLog(path)
    for i, (r, out) in enumerate(zip(rows, outputs, strict=True)):
        rid = f"{path.stem}-{i}"
        log.write(Entry(rid, "generate", 200, stage="production", version="v1", input=r["input"], output=out))
        if references:
            assert log.feedback(rid, r["reference"]) is not None
    log.write(Entry("c1", "classify", 200, version="v1", input="where is my card", label="card_arrival"))
    log.close()
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("generation-monitor")
    write_reference(root / "reference.json", records("tickets")[:150])
    raw = yaml.safe_load((ROOT / "params-generation.yaml").read_text())
    raw["monitor"] |= {"reference": str(root / "reference.json"), "reports_dir": "reports"}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def drift(project: Path, log: Path) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [str(BIN / "tunegate"), "drift", "--log", str(log), "--params", str(project / "params.yaml")]
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600)
    found = sorted((project / "reports").glob("2*.json"))
    return done, (json.loads(found[-1].read_text()) if found else {})


def test_generation_answer_flags_and_tests_per_field():
    names = list(SCHEMA["properties"])
    assert planned_tests(("oov_share", "null_rate", "invalid_json"), names) == [
        "oov_share",
        *[f"null_rate.{n}" for n in names],
        "invalid_json",
    ]
    assert correction(("null_rate", "embedding"), names, 0.05).family == len(names) + 2
    out = flags(['{"intent": "lost_card", "amount": null}', "{not json", "{}", "  "], TASK, ["amount"])
    assert out["invalid_json"] == [True, True, True, True]  # the first breaks the schema (fields missing)
    assert out["empty_answer"] == [False, False, True, True]
    assert out["null_rate.amount"] == [True, True]  # over the two answers that are JSON objects
    assert flags(["free text", ""], Task("generation"), [])["empty_answer"] == [False, True]


def test_generation_reference_is_checked_and_read_back(tmp_path):
    path = write_reference(tmp_path / "r.json", records("tickets")[:60])
    ref = monitor_reference.read(path)
    assert isinstance(ref, monitor_reference.GenerationReference) and len(ref) == 60
    assert ref.metric == "field_f1" and list(ref.output_schema["properties"]) == list(SCHEMA["properties"])
    assert fields(ref) == list(SCHEMA["properties"]) and reference_task(ref) == TASK
    assert min(ref.scores) < 1.0 == max(ref.scores)  # the dropped amounts score below 1
    raw = json.loads(path.read_text())
    raw["rows"][3]["score"] = 1.5
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="a score in \\[0, 1\\]"):
        monitor_reference.read(path)
    short = write_reference(tmp_path / "short.json", records("tickets")[:20])
    with pytest.raises(DataError, match="20 rows; at least 50"):
        monitor_reference.read(short)


def test_generation_live_quality_against_independent_mann_whitney(tmp_path):
    from scipy.stats import mannwhitneyu

    ref = monitor_reference.read(write_reference(tmp_path / "r.json", records("tickets")[:100]))
    rows = records("tickets")[200:240]
    worse = answered(rows, drop_every=1)  # every amount lost
    pairs = [(a, r["reference"]) for a, r in zip(worse, rows, strict=True)]
    window = GenerationWindow([r["input"] for r in rows], worse, 0, None, None, references=pairs)
    sig = live_quality(window, ref, 20, 0.01)
    live = [item_scores(a, r["reference"], TASK)["field_f1"] for a, r in zip(worse, rows, strict=True)]
    p = mannwhitneyu(live, ref.scores, alternative="less").pvalue
    assert sig.p_value == pytest.approx(p) and sig.drifted is bool(p < 0.01) is True
    assert live_quality(window, ref, 41, 0.01).drifted is None  # 40 references; 41 needed


@pytest.mark.slow
def test_generation_drift_quiet_on_held_out_traffic_and_catches_broken_answers(project, tmp_path):
    rows = records("tickets")[150:300]
    same, report = drift(project, write_log(tmp_path / "same.sqlite", rows, answered(rows, 4)))
    assert same.returncode == 0, same.stdout + same.stderr
    assert report["status"] == "no_drift" and report["window"]["requests"] == 150  # /classify rows left out
    by_name = {s["name"]: s for s in report["signals"]}
    assert {f"null_rate.{n}" for n in SCHEMA["properties"]} <= set(by_name)
    assert by_name["live_quality"]["drifted"] is False and by_name["live_quality"]["score"] > 0.9
    assert by_name["live_rating"]["drifted"] is None and "not judged" in by_name["live_rating"]["note"]
    family = (
        5 + 1 + 1 + 1 + 1 + len(SCHEMA["properties"]) + 1
    )  # descriptors, emb, length, 2 rates, fields, live
    assert report["correction"]["family"] == family

    broken = answered(rows, 1)  # every amount lost, and a tenth of the answers cut short
    broken = [a[: len(a) // 2] if i % 10 == 0 else a for i, a in enumerate(broken)]
    bad, report = drift(project, write_log(tmp_path / "broken.sqlite", rows, broken))
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert {"null_rate.amount", "invalid_json", "live_quality"} <= set(report["drifted"])
    assert "embedding" not in report["drifted"] and "null_rate.intent" not in report["drifted"]  # same inputs

    mobile = records("shifted")[:150]
    moved, report = drift(project, write_log(tmp_path / "mobile.sqlite", mobile, answered(mobile, 4), False))
    assert moved.returncode == 3, moved.stdout + moved.stderr
    assert {"embedding", "length_chars"} <= set(report["drifted"])
    assert next(s for s in report["signals"] if s["name"] == "live_quality")["drifted"] is None  # no feedback


def test_generation_window_reads_generate_rows_only_and_kinds_must_match(project, tmp_path):
    rows = records("tickets")[150:160]
    log = write_log(tmp_path / "w.sqlite", rows, answered(rows, 0))
    window = read_generation_window(log)
    assert len(window.texts) == 10 and len(window.references) == 10 and window.version == "v1"
    classify_params = tmp_path / "classify.yaml"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["monitor"] |= {"reference": str(project / "reference.json"), "reports_dir": str(tmp_path / "r")}
    classify_params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cmd = [str(BIN / "tunegate"), "drift", "--log", str(log), "--params", str(classify_params)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "is a generation release's reference" in done.stderr, done.stderr


@pytest.mark.slow
def test_generation_drift_without_the_picture_gives_the_same_verdicts(tmp_path):
    """`render=False` (the benchmark's many windows) skips Evidently's embedding picture only."""
    from tunegate.monitoring.generation_drift import judge_generation

    ref = monitor_reference.read(write_reference(tmp_path / "r.json", records("tickets")[:150]))
    rows = records("shifted")[:80]
    outs = answered(rows, 3)
    window = GenerationWindow([r["input"] for r in rows], outs, 0, None, None)
    signals = ("length_chars", "oov_share", "embedding", "answer_length", "invalid_json", "null_rate")
    full, snapshot = judge_generation(ref, window, signals, 50, 1000, 0, 0.05)
    fast, _ = judge_generation(ref, window, signals, 50, 1000, 0, 0.05, render=False)
    assert snapshot is not None and [(s.name, s.score, s.drifted) for s in full] == [
        (s.name, s.score, s.drifted) for s in fast
    ]
    assert next(s for s in fast if s.name == "embedding").drifted  # the mobile channel
