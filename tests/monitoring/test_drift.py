"""Drift on the embedded sample: hold-out traffic is not drift, the shifted channel is.

Real Evidently, real sentence embeddings (all-MiniLM-L6-v2, offline package), a real
SQLite request log written by the service's own writer.
"""

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from monitoring.descriptors import describe, vocabulary
from serving.requestlog import Entry, RequestLog
from tests.conftest import write_params
from tunegate.artifacts import read_jsonl

BIN = Path(sys.executable).parent


def log_of(path: Path, rows: list[dict], wrong_every: int = 0, confidence: float = 0.9) -> Path:
    """A request log whose answers are the rows' labels, with confidences spread around
    `confidence`; every row gets feedback, wrong (another row's label) on every
    `wrong_every`-th row. Appends when the log exists."""
    log = RequestLog(path)
    rng = random.Random(len(rows))
    start = sum(1 for _ in log.rows())
    for j, r in enumerate(rows):
        i = start + j
        entry = Entry(
            f"r{i}", "classify", 200, stage="production", version="v1", input=r["text"], label=r["label"],
            confidence=min(1.0, max(0.0, rng.gauss(confidence, 0.05))),
        )  # fmt: skip
        log.write(entry)
        wrong = wrong_every and j % wrong_every == 0 and rows[j - 1]["label"] != r["label"]
        assert log.feedback(f"r{i}", rows[j - 1]["label"] if wrong else r["label"]) is not None
    log.close()
    return path


def drift(project: Path, log: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "tunegate"), "drift", "--log", str(log), "--params", str(project / "params.yaml"), *args]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(prepared_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor")
    write_params(
        root / "params.yaml",
        monitor={"reference": str(prepared_sample / "train.jsonl"), "reports_dir": "reports"},
    )
    return root


def test_descriptors():
    vocab = vocabulary(["my card is lost"])
    d = describe("Mi tarjeta 4 lost!", vocab)
    assert d["word_count"] == 3 and d["oov_share"] == pytest.approx(2 / 3) and d["english_share"] == 0
    assert d["non_alpha_share"] == pytest.approx(2 / 18)


@pytest.mark.slow
def test_holdout_traffic_is_not_drift_and_the_shifted_channel_is(project, prepared_sample):
    same = drift(project, log_of(project / "holdout.sqlite", read_jsonl(prepared_sample / "holdout.jsonl")))
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads(sorted((project / "reports").glob("*.json"))[-1].read_text())
    assert report["status"] == "no_drift" and report["window"]["requests"] == 168
    accuracy = next(s for s in report["signals"] if s["name"] == "live_accuracy")
    assert accuracy["score"] == 1.0 and accuracy["drifted"] is False
    confidence = next(s for s in report["signals"] if s["name"] == "confidence")
    assert confidence["drifted"] is None and "0 earlier answers of v1" in confidence["note"]
    assert (project / "reports" / f"{report['time']}.html").stat().st_size > 10_000  # Evidently's HTML report

    shifted_rows = read_jsonl(prepared_sample / "shifted.jsonl")
    # The shifted traffic follows hold-out traffic in the same log: the version's earlier
    # answers are the confidence reference, and they were surer.
    both = log_of(project / "both.sqlite", read_jsonl(prepared_sample / "holdout.jsonl"), confidence=0.9)
    shifted = drift(project, log_of(both, shifted_rows, wrong_every=2, confidence=0.7), "--last", "293")
    assert shifted.returncode == 3, shifted.stdout + shifted.stderr
    report = json.loads(sorted((project / "reports").glob("*.json"))[-1].read_text())
    assert report["status"] == "drift"
    assert {"embedding", "english_share"} <= set(report["drifted"])  # terse, partly Spanish and German
    assert "live_accuracy" in report["drifted"]  # callers said about half the answers were wrong
    assert "confidence" in report["drifted"] and report["window"]["requests"] == 293
    assert (project / "reports" / f"{report['time']}-confidence.html").exists()
    signal = next(s for s in report["signals"] if s["name"] == "embedding")
    assert signal["method"] == "model (ROC AUC)" and signal["score"] > signal["threshold"]


def corrupt(log: Path, ids: list[int]) -> None:
    """Damage logged rows the way a crashed writer or a hand edit might: no text, empty text, bytes."""
    with sqlite3.connect(log) as db:
        for n, row_id in enumerate(ids):
            value = [None, "   ", b"\x00\xff"][n % 3]
            db.execute("UPDATE requests SET input = ? WHERE id = ?", (value, row_id))


def test_a_small_window_is_not_judged_and_bad_logs_are_clear_errors(project, prepared_sample):
    rows = read_jsonl(prepared_sample / "holdout.jsonl")[:23]
    corrupt(log_of(project / "small.sqlite", rows), [2, 5, 9])
    small = drift(project, project / "small.sqlite")
    assert small.returncode == 4 and "insufficient: 20 requests (3 rows skipped)" in small.stdout
    html = small.stdout.split("; report ")[1].split()[0]
    record = json.loads((project / html).with_suffix(".json").read_text())
    assert record["window"]["requests"] == 20 and record["window"]["skipped_rows"] == 3
    empty = project / "empty.sqlite"
    RequestLog(empty).close()
    nothing = drift(project, empty)
    assert nothing.returncode == 2 and "no answered /classify requests" in nothing.stderr
    corrupt(log_of(project / "broken.sqlite", rows[:4]), [1, 2, 3, 4])
    broken = drift(project, project / "broken.sqlite")
    assert broken.returncode == 2 and "(4 rows skipped as corrupt or empty)" in broken.stderr
    no_reference = project / "no-reference.yaml"
    write_params(no_reference, monitor={"reference": str(project / "missing/train.jsonl")})
    cmd = [str(BIN / "tunegate"), "drift", "--log", str(empty), "--params", str(no_reference)]
    missing_ref = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600)
    assert missing_ref.returncode == 2 and "missing/train.jsonl does not exist" in missing_ref.stderr
    missing = drift(project, project / "nope.sqlite")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (project / "garbage.sqlite").write_bytes(b"not a database at all" * 100)
    garbage = drift(project, project / "garbage.sqlite")
    assert garbage.returncode == 2 and "not a tunegate request log" in garbage.stderr
    foreign = [{"text": r["text"], "label": "play_music"} for r in rows]
    other = drift(project, log_of(project / "other.sqlite", foreign))
    assert other.returncode == 2 and "another model family" in other.stderr
    bad_window = drift(project, project / "small.sqlite", "--window", "soon")
    assert bad_window.returncode == 2 and "24h" in bad_window.stderr
