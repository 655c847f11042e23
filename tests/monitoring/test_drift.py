"""Drift on the embedded sample: held-out traffic is not drift, the shifted channel is.

Real Evidently, real sentence embeddings (all-MiniLM-L6-v2, offline package), a real
SQLite request log written by the service's own writer. The "model" behind these logs
answers the true label with a confidence drawn around a level: the monitor's statistics
are under test here, not a classifier (bench/drift_power.py uses a trained one).
"""

import json
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_params
from tunegate.core import monitor_reference
from tunegate.core.artifacts import read_jsonl
from tunegate.evaluation.hf_predict import Prediction
from tunegate.monitoring.descriptors import describe, vocabulary
from tunegate.serving.requestlog import Entry, RequestLog

BIN = Path(sys.executable).parent
SIGNALS = (
    "length_chars", "word_count", "non_alpha_share", "oov_share", "english_share", "embedding",
    "predicted_label", "confidence",
)  # fmt: skip


def confidences(n: int, level: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [min(1.0, max(0.0, rng.gauss(level, 0.05))) for _ in range(n)]


def write_reference(
    path: Path,
    rows: list[dict],
    vocab: frozenset,
    level: float = 0.9,
    seed: int = 0,
    model: str = "lora:test",
) -> Path:
    answers = [
        Prediction(r["id"], r["label"], r["label"], c)
        for r, c in zip(rows, confidences(len(rows), level, seed), strict=True)
    ]
    monitor_reference.write(path, rows, answers, vocab, model)
    return path


def log_of(path: Path, rows: list[dict], wrong_every: int = 0, confidence: float = 0.9) -> Path:
    """A request log whose answers are the rows' labels, with confidences spread around
    `confidence`; every row gets feedback, wrong (another row's label) on every
    `wrong_every`-th row. Appends when the log exists."""
    log = RequestLog(path)
    start = sum(1 for _ in log.rows())
    for j, (r, c) in enumerate(zip(rows, confidences(len(rows), confidence, len(rows)), strict=True)):
        i = start + j
        entry = Entry(
            f"r{i}", "classify", 200, stage="production", version="v1", input=r["text"], label=r["label"],
            confidence=c,
        )  # fmt: skip
        log.write(entry)
        wrong = wrong_every and j % wrong_every == 0 and rows[j - 1]["label"] != r["label"]
        assert log.feedback(f"r{i}", rows[j - 1]["label"] if wrong else r["label"]) is not None
    log.close()
    return path


def drift(project: Path, log: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "tunegate"), "drift", "--log", str(log), "--params", str(project / "params.yaml"), *args]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600)


def held_out(prepared: Path) -> list[dict]:
    return [r for split in ("val", "holdout") for r in read_jsonl(prepared / f"{split}.jsonl")]


@pytest.fixture(scope="module")
def project(prepared_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor")
    vocab = vocabulary(r["text"] for r in read_jsonl(prepared_sample / "train.jsonl"))
    write_reference(root / "reference.json", held_out(prepared_sample), vocab)
    write_params(
        root / "params.yaml", monitor={"reference": str(root / "reference.json"), "reports_dir": "reports"}
    )
    return root


def test_descriptors():
    vocab = vocabulary(["my card is lost"])
    d = describe("Mi tarjeta 4 lost!", vocab)
    assert d["word_count"] == 3 and d["oov_share"] == pytest.approx(2 / 3) and d["english_share"] == 0
    assert d["non_alpha_share"] == pytest.approx(2 / 18)


@pytest.mark.slow
def test_drift_is_quiet_on_held_out_halves_and_the_vocabulary_comes_from_training(prepared_sample, tmp_path):
    """Random halves of the sample's held-out rows, one the reference, one the window: the
    null. With alpha 0.05 per report, 8 such reports drift at most twice (a healthy monitor
    exceeds that with probability 0.006). A vocabulary taken from the reference rows
    themselves (the old design) makes every unseen window 'drift' on oov_share."""
    from tunegate.monitoring.drift import judge_window
    from tunegate.monitoring.window import Window

    rows = held_out(prepared_sample)
    train_vocab = vocabulary(r["text"] for r in read_jsonl(prepared_sample / "train.jsonl"))
    drifted, own_vocab_oov = [], []
    for trial in range(8):
        order = random.Random(trial).sample(range(len(rows)), len(rows))
        ref_rows, win_rows = [rows[i] for i in order[:126]], [rows[i] for i in order[126:]]
        window = Window(
            [r["text"] for r in win_rows], [r["label"] for r in win_rows], 0, None, None, [],
            confidences(len(win_rows), 0.9, 100 + trial), "v1",
        )  # fmt: skip
        for vocab, sink in ((train_vocab, drifted), (vocabulary(r["text"] for r in ref_rows), own_vocab_oov)):
            ref = monitor_reference.read(write_reference(tmp_path / "r.json", ref_rows, vocab, seed=trial))
            signals = SIGNALS if sink is drifted else ("oov_share",)
            out, _ = judge_window(ref, window, signals, 50, 1000, 0, 0.05, render=False)  # no t-SNE picture
            assert all(s.drifted is not None for s in out), [s.note for s in out]  # every signal judged
            sink.append([s.name for s in out if s.drifted])
            if trial == 0 and sink is drifted:  # the full Evidently report gives the same verdicts
                full, _ = judge_window(ref, window, signals, 50, 1000, 0, 0.05)
                assert [(s.name, s.score, s.drifted) for s in full] == [
                    (s.name, s.score, s.drifted) for s in out
                ]
    assert sum(1 for d in drifted if d) <= 2, drifted
    assert all(d == ["oov_share"] for d in own_vocab_oov), own_vocab_oov


@pytest.mark.slow
def test_drift_report_judges_a_first_window_and_catches_the_shifted_channel(project, prepared_sample):
    hold = read_jsonl(prepared_sample / "holdout.jsonl")
    same = drift(project, log_of(project / "holdout.sqlite", hold))
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads(sorted((project / "reports").glob("2*.json"))[-1].read_text())
    assert report["status"] == "no_drift" and report["window"]["requests"] == 168
    assert report["correction"] == {"method": "Bonferroni", "alpha": 0.05, "family": 11, "each": 0.05 / 11}
    assert report["retraining"]["fires"] is False
    by_name = {s["name"]: s for s in report["signals"]}
    assert by_name["live_accuracy"]["score"] == 1.0 and by_name["live_accuracy"]["drifted"] is False
    # A first window is judged on every signal: the reference carries the release's confidences.
    # The label-free estimate needs the release's calibration, and this log names no release.
    for name in ("estimated_accuracy", "abstention_rate"):
        signal = by_name.pop(name)
        assert signal["drifted"] is None and "no calibration for the window's release" in signal["note"]
    assert all(s["drifted"] is False for s in by_name.values()), report["signals"]
    emb = by_name["embedding"]
    assert 0.5 < emb["threshold"] < 0.75 and emb["p_value"] > report["correction"]["each"]
    assert (project / "reports" / f"{report['time']}.html").stat().st_size > 10_000  # Evidently's HTML
    assert "family-wise: Bonferroni over 11 signals" in same.stdout
    # The long steps say what they do on stderr, in order, and only there.
    steps = [
        "reading the /classify window",
        "judging 168 requests",
        "messages with all-MiniLM",
        "Evidently:",
        "writing",
    ]
    at = [same.stderr.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), same.stderr[-2000:]
    assert "judging" not in same.stdout

    shifted_rows = read_jsonl(prepared_sample / "shifted.jsonl")
    shifted = drift(project, log_of(project / "shifted.sqlite", shifted_rows, wrong_every=2, confidence=0.7))
    assert shifted.returncode == 3, shifted.stdout + shifted.stderr
    report = json.loads(sorted((project / "reports").glob("2*.json"))[-1].read_text())
    assert report["status"] == "drift" and report["window"]["requests"] == 293
    assert {"embedding", "english_share", "confidence"} <= set(report["drifted"])  # terse, Spanish, German
    assert "live_accuracy" in report["drifted"]  # callers said about half the answers were wrong
    signal = next(s for s in report["signals"] if s["name"] == "embedding")
    assert signal["score"] > signal["threshold"] and signal["p_value"] < report["correction"]["each"]


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
    # the report holds production messages: this user's only
    assert (
        (project / html).stat().st_mode & 0o777
        == 0o600
        == (project / html).with_suffix(".json").stat().st_mode & 0o777
    )
    assert (project / html).parent.stat().st_mode & 0o777 == 0o700
    empty = project / "empty.sqlite"
    RequestLog(empty).close()
    nothing = drift(project, empty)
    assert nothing.returncode == 2 and "no answered /classify requests" in nothing.stderr
    corrupt(log_of(project / "broken.sqlite", rows[:4]), [1, 2, 3, 4])
    broken = drift(project, project / "broken.sqlite")
    assert broken.returncode == 2 and "(4 rows skipped as corrupt or empty)" in broken.stderr
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


def test_drift_refuses_a_reference_it_cannot_trust(project, prepared_sample):
    """A missing, tiny, foreign-schema or empty reference is an error naming what is wrong;
    the default (the release's packaged reference) needs the window's version registered."""
    log = project / "small.sqlite"
    if not log.exists():
        log_of(log, read_jsonl(prepared_sample / "holdout.jsonl")[:23])
    vocab = frozenset({"card"})
    tiny = write_reference(project / "tiny.json", held_out(prepared_sample)[:49], vocab)
    out = drift(project, log, "--reference", str(tiny))
    assert out.returncode == 2 and "has 49 rows; at least 50 are needed" in out.stderr
    (project / "old.json").write_text(json.dumps({"schema": 0, "rows": []}))
    out = drift(project, log, "--reference", str(project / "old.json"))
    assert out.returncode == 2 and "schema 0; this tunegate reads 1" in out.stderr
    monitor_reference.write_missing(project / "none.json", "eval.reference_rows is 0", "lora:x")
    out = drift(project, log, "--reference", str(project / "none.json"))
    assert out.returncode == 2 and "holds no monitoring reference: eval.reference_rows is 0" in out.stderr
    out = drift(project, log, "--reference", str(project / "absent.json"))
    assert out.returncode == 2 and "absent.json does not exist" in out.stderr
    out = drift(project, log, "--reference", "release")  # no registry here
    assert out.returncode == 2 and "GTO keeps the registry in git tags" in out.stderr, out.stderr


@pytest.mark.slow
def packaged_release(prepared_sample: Path, tmp_path: Path, cal=None) -> tuple[Path, dict, str, list[dict]]:
    """A git repo with one approved release packaged by the package stage (real BentoML store,
    real GTO tag) with a monitoring reference of the held-out rows and, given one, a
    calibration the gate record names. Returns (repo, env, version, reference rows)."""
    import os

    from tests.serving.test_package import gate_record, make_candidate
    from tunegate.core import calibration
    from tunegate.core.artifacts import sha256_file, write_json

    repo = tmp_path / "repo"
    repo.mkdir()
    for cmd in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *cmd], cwd=repo, check=True)
    write_params(repo / "params.yaml", monitor={"reports_dir": "reports"})
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    card = make_candidate(tmp_path / "cand")
    gate = gate_record(card, "approved")
    cmd = [sys.executable, "-m", "tunegate.serving.package", "--params", "params.yaml"]
    cmd += ["--candidate", str(tmp_path / "cand"), "--gate", str(tmp_path / "gate.json")]
    if cal is not None:
        calibration.write(tmp_path / "calibration.json", cal)
        gate["calibration_sha256"] = sha256_file(tmp_path / "calibration.json")
        cmd += ["--calibration", str(tmp_path / "calibration.json")]
    write_json(tmp_path / "gate.json", gate)
    rows = held_out(prepared_sample)
    write_reference(tmp_path / "ref.json", rows, frozenset({"card"}), model=card["model_id"])
    cmd += ["--reference", str(tmp_path / "ref.json"), "--out", "registry/candidate.json"]
    env = os.environ | {"BENTOML_HOME": str(tmp_path / "bentoml"), "TUNEGATE_ACTOR": "ci"}
    packaged = subprocess.run(
        cmd, cwd=repo, env=env | {"PYTHONPATH": str(Path.cwd())}, capture_output=True, text=True
    )
    assert packaged.returncode == 0, packaged.stderr
    return repo, env, json.loads((repo / "registry/candidate.json").read_text())["version"], rows


def test_drift_reads_the_reference_packaged_with_the_release_and_checks_it(prepared_sample, tmp_path):
    """The package stage stores the reference with the release (real BentoML store, real GTO
    tags); `tunegate drift` finds it from the window's version and refuses it once edited."""
    repo, env, version, rows = packaged_release(prepared_sample, tmp_path)
    log = RequestLog(repo / "requests.sqlite")
    for i, r in enumerate(read_jsonl(prepared_sample / "holdout.jsonl")[:60]):
        log.write(
            Entry(
                f"q{i}", "classify", 200, version=version, input=r["text"], label=r["label"], confidence=0.9
            )
        )
    log.close()
    run = [str(BIN / "tunegate"), "drift", "--log", "requests.sqlite"]
    judged = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert judged.returncode in (0, 3), judged.stderr  # judged against the packaged reference
    report = json.loads(sorted((repo / "reports").glob("2*.json"))[-1].read_text())
    stored = Path(report["reference"]["path"])
    assert report["reference"]["rows"] == len(rows) and stored.name == "monitor_reference.json"
    assert str(tmp_path / "bentoml") in str(stored)
    stored.write_text(stored.read_text().replace('"confidence": 0.', '"confidence": 0.1', 1))
    refused = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "was changed after it was packaged" in refused.stderr


def test_drift_estimates_accuracy_from_the_calibration_packaged_with_the_release(prepared_sample, tmp_path):
    """Accuracy without labels: a release packaged with its calibration answers held-out
    traffic; callers' feedback gives the true accuracy. The report's estimated_accuracy
    (mean calibrated confidence of answered requests) is within 0.075 (three standard
    errors at 252 requests) of the live accuracy, and abstentions are left out of it.

    The "model" is synthetic, as in the tests above: each answer is right with the
    probability its calibrated confidence states (temperature 2 maps raw to calibrated),
    so the estimator and its plumbing are under test; bench/calibration.py measures the
    estimate's error with trained models."""
    import math

    from tunegate.core.calibration import Calibration

    cal = Calibration("temperature", temperature=2.0, abstain_below=0.65, chosen_by="declared")
    repo, env, version, rows = packaged_release(prepared_sample, tmp_path, cal)
    rng = random.Random(7)
    labels = sorted({r["label"] for r in rows})
    log, answered = RequestLog(repo / "requests.sqlite"), []
    for i, r in enumerate(rows):
        p = rng.uniform(0.6, 0.99)  # the calibrated confidence; the raw one is more extreme
        raw = 1 / (1 + math.exp(-2.0 * math.log(p / (1 - p))))
        right = rng.random() < p
        label = r["label"] if right else next(x for x in labels if x != r["label"])
        log.write(
            Entry(
                f"e{i}", "classify", 200, version=version, input=r["text"], label=label, confidence=raw,
                abstained=p < 0.65,  # as the service logs it: the model's label kept, the caller got none
            )
        )  # fmt: skip
        assert log.feedback(f"e{i}", r["label"]) is not None
        if p >= 0.65:  # the release abstained on the others
            answered.append(right)
    log.close()
    run = [str(BIN / "tunegate"), "drift", "--log", "requests.sqlite"]
    judged = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert judged.returncode in (0, 3), judged.stderr
    report = json.loads(sorted((repo / "reports").glob("2*.json"))[-1].read_text())
    signals = {s["name"]: s for s in report["signals"]}
    estimate = signals["estimated_accuracy"]
    truth = sum(answered) / len(answered)  # accuracy of the answered requests, from feedback
    assert estimate["score"] is not None, estimate["note"]
    assert abs(estimate["score"] - truth) < 0.075, (estimate, truth)
    live = signals["live_accuracy"]  # feedback on the answers callers got: the same requests
    assert live["score"] == pytest.approx(truth) and f"/{len(answered)} answered right;" in live["note"]
    # with abstentions counted: every abstained-on request had an intent, so none of them is right
    held = len(rows) - len(answered)
    assert (
        f"{sum(answered)}/{len(rows)} " in live["note"] and f"{held} abstained on, 0 of them" in live["note"]
    )
    assert f"on {len(answered)} answered requests" in estimate["note"]
    assert estimate["drifted"] is False  # about 0.82: not below gate.min_accuracy (0.8)
    assert report["estimated_accuracy_unreliable"] is None  # the window's text is the reference's own
    # The window abstained far more than the release does on its reference (raw confidences
    # about 0.9: calibrated 0.75, answered): the abstention_rate signal sees it.
    rate = signals["abstention_rate"]
    assert rate["drifted"] is True and rate["score"] == pytest.approx(1 - len(answered) / len(rows), abs=0.01)

    # Another channel: the estimate is computed, and every place that shows it says it is unreliable.
    log = RequestLog(repo / "shifted.sqlite")
    for i, r in enumerate(read_jsonl(prepared_sample / "shifted.jsonl")):
        log.write(
            Entry(
                f"s{i}", "classify", 200, version=version, input=r["text"], label=r["label"], confidence=0.97
            )
        )
    log.close()
    moved = subprocess.run(
        [*run[:-1], "shifted.sqlite"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert moved.returncode == 3, moved.stderr
    line = next(x for x in moved.stdout.splitlines() if x.startswith("estimated_accuracy"))
    assert "?" in line.split()[1] and "unreliable: the window is unlike the data" in line, line
    report = json.loads(sorted((repo / "reports").glob("2*.json"))[-1].read_text())
    estimate = next(s for s in report["signals"] if s["name"] == "estimated_accuracy")
    assert estimate["caveat"] == report["estimated_accuracy_unreliable"] and estimate["caveat"].startswith(
        "unreliable"
    )
