"""The prepare stage on the embedded sample and on crafted bad inputs."""

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_params
from tunegate.core.artifacts import read_json, read_jsonl, sha256_file
from tunegate.core.errors import DataError
from tunegate.core.pii import CARD, EMAIL
from tunegate.training.prepare import main as prepare_main

SPLITS = ("train", "val", "holdout", "shifted")


def run_prepare(tmp_path: Path, feedback: Path | None = None, **sections) -> Path:
    sections.setdefault("data", {})
    for key in ("source", "shifted_source", "probe_source", "replay_source"):
        value = sections["data"].get(key, read_default(key))
        sections["data"][key] = str(ROOT / value) if value and not Path(value).is_absolute() else value
    params = write_params(tmp_path / "params.yaml", **sections)
    out = tmp_path / "prepared"
    prepare_main(
        ["--params", str(params), "--out", str(out), *(["--feedback", str(feedback)] if feedback else [])]
    )
    return out


def read_default(key):
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())["data"][key]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


WORDS = [
    "apple",
    "bridge",
    "cloud",
    "dune",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "island",
    "jungle",
    "kettle",
    "lagoon",
    "meadow",
    "nectar",
    "orchid",
    "pebble",
    "quartz",
    "river",
    "summit",
    "tundra",
    "umber",
    "valley",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "amber",
    "basil",
    "cedar",
    "delta",
    "echo",
    "falcon",
    "garnet",
    "hazel",
    "indigo",
    "jasper",
    "koala",
    "lemon",
    "maple",
    "nutmeg",
]


def synthetic(n_per_label=20, labels=("a", "b", "c")) -> list[tuple[str, str]]:
    return [
        (f"message {WORDS[i]} {WORDS[(i * 7) % len(WORDS)]} about topic {lab}", lab)
        for lab in labels
        for i in range(n_per_label)
    ]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return run_prepare(tmp_path_factory.mktemp("sample"))


def test_sample_writes_every_file_with_manifest_hashes(sample):
    names = sorted(p.name for p in sample.iterdir())
    assert names == [
        "holdout.jsonl",
        "holdout_oos.jsonl",
        "labels.json",
        "manifest.json",
        "probe.jsonl",
        "replay.jsonl",
        "shifted.jsonl",
        "train.jsonl",
        "val.jsonl",
        "val_oos.jsonl",
    ]
    manifest = read_json(sample / "manifest.json")
    for name, digest in manifest["files"].items():
        assert sha256_file(sample / name) == digest
    counts = manifest["counts"]
    assert counts["train"] + counts["val"] + counts["holdout"] >= 800
    assert counts["shifted"] >= 250 and counts["probe"] >= 50
    labels = read_json(sample / "labels.json")
    assert 10 <= len(labels) <= 14


def test_evidence_prepare_warns_when_the_hold_out_cannot_show_non_inferiority(tmp_path, caplog):
    """168 hold-out rows at the 0.03 accuracy margin need about 690 (at a 10% disagreement
    rate): the stage says so in its log, and goes quiet at a size or a margin that can show it."""
    from tunegate.core.params import load_params
    from tunegate.training.prepare import small_holdout

    with caplog.at_level("WARNING", logger="tunegate.training.prepare"):
        out = run_prepare(tmp_path)
    holdout = read_json(out / "manifest.json")["counts"]["holdout"]
    said = [r.getMessage() for r in caplog.records if "too small to tell" in r.getMessage()]
    assert len(said) == 1 and f"holdout has {holdout} items" in said[0] and "about 687 items" in said[0]
    params = load_params(ROOT / "params.yaml")
    assert small_holdout(params, 686) is not None and small_holdout(params, 687) is None
    wide = replace(params, gate=replace(params.gate, margins={"accuracy": 0.1}))
    assert small_holdout(wide, 168) is None


def test_sample_splits_are_stratified_and_disjoint(sample):
    manifest = read_json(sample / "manifest.json")
    for label, n in manifest["label_counts"]["holdout"].items():
        total = sum(manifest["label_counts"][s].get(label, 0) for s in ("train", "val", "holdout"))
        assert total >= 40
        assert abs(n / total - 0.2) < 0.03, label
    ids = [r["id"] for s in ("train", "val", "holdout") for r in read_jsonl(sample / f"{s}.jsonl")]
    assert len(ids) == len(set(ids))
    assert manifest["leakage"]["holdout_rows_also_in_train"] == 0
    assert manifest["leakage"]["val_rows_also_in_train"] == 0


def test_no_card_number_or_email_survives(sample):
    raw = (ROOT / "data/sample/messages.csv").read_text()
    assert EMAIL.search(raw) and "4539 1488 0343 6467" in raw  # the sample does contain PII
    manifest = read_json(sample / "manifest.json")
    assert manifest["redactions_total"] > 50
    for split in SPLITS:
        text = (sample / f"{split}.jsonl").read_text()
        assert not EMAIL.search(text), split
        assert "4539 1488 0343 6467" not in text and "4111 1111 1111 1111" not in text
        assert not re.search(r"\+44 7700", text)
        digits_runs = [re.sub(r"\D", "", m.group(0)) for m in CARD.finditer(text)]
        assert not [d for d in digits_runs if len(d) >= 13], split


def test_same_inputs_and_seed_give_byte_identical_outputs(tmp_path, sample):
    again = run_prepare(tmp_path)
    for p in sorted(sample.iterdir()):
        assert p.read_bytes() == (again / p.name).read_bytes(), p.name


def test_another_seed_gives_other_splits(tmp_path, sample):
    other = run_prepare(tmp_path, base={"seed": 7})
    assert (other / "holdout.jsonl").read_bytes() != (sample / "holdout.jsonl").read_bytes()


def test_malformed_rows_under_the_limit_are_dropped_and_counted(tmp_path):
    rows = synthetic(40) + [("", "a"), ("   ", "b"), ("no label here", "")]
    src = write_csv(tmp_path / "d.csv", rows)
    out = run_prepare(
        tmp_path, data={"source": str(src), "shifted_source": None}, prepare={"max_invalid_share": 0.05}
    )
    cleaning = read_json(out / "manifest.json")["cleaning"]["pool"]
    assert cleaning["dropped"] == {"empty text": 2, "missing label": 1}
    assert cleaning["dropped_examples"]["missing label"] == [f"{src.as_posix()}:123"]


def test_out_of_scope_rows_stay_out_of_the_labels_and_the_splits(tmp_path):
    """data.oos_label names rows that belong to no intent: counted, never a training target,
    not 'malformed' (they do not count against prepare.max_invalid_share), and split between
    the validation and hold-out out-of-scope suites (for calibration and abstention)."""
    rows = synthetic(40) + [(f"what is the weather in {w}", "oos") for w in WORDS[:12]]
    src = write_csv(tmp_path / "d.csv", rows)
    out = run_prepare(tmp_path, data={"source": str(src), "shifted_source": None, "oos_label": "oos"})
    assert read_json(out / "labels.json") == ["a", "b", "c"]
    assert not any(
        r["label"] == "oos"
        for split in ("train", "val", "holdout")
        for r in read_jsonl(out / f"{split}.jsonl")
    )
    cleaning = read_json(out / "manifest.json")["cleaning"]["pool"]
    assert cleaning["out_of_scope"] == 12 and cleaning["dropped"] == {}
    val_oos, holdout_oos = read_jsonl(out / "val_oos.jsonl"), read_jsonl(out / "holdout_oos.jsonl")
    assert {r["label"] for r in val_oos + holdout_oos} == {"oos"}
    assert (len(val_oos), len(holdout_oos)) == (4, 8)  # val : hold-out = 0.1 : 0.2 of 12 rows
    assert read_json(out / "manifest.json")["counts"]["holdout_oos"] == 8
    (tmp_path / "plain").mkdir()
    plain = run_prepare(
        tmp_path / "plain", data={"source": str(src), "shifted_source": None, "oos_label": None}
    )
    assert "oos" in read_json(plain / "labels.json")  # without the declaration it is just a label
    assert read_jsonl(plain / "val_oos.jsonl") == [] == read_jsonl(plain / "holdout_oos.jsonl")


def test_too_many_malformed_rows_fail_with_row_numbers(tmp_path):
    rows = synthetic(10) + [("", "a")] * 3
    src = write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(DataError) as info:
        run_prepare(tmp_path, data={"source": str(src), "shifted_source": None})
    msg = str(info.value)
    assert "3 of 33 rows (9.1%) are malformed, more than prepare.max_invalid_share=1.0%" in msg
    assert f"{src.as_posix()}:31 (empty text), {src.as_posix()}:32 (empty text)" in msg
    assert not (tmp_path / "prepared").exists()


def test_the_first_offending_rows_are_named_in_file_order_whatever_their_reason(tmp_path):
    rows = synthetic(10)
    rows[2], rows[5], rows[8] = ("hi there", ""), ("", "a"), ("x", "a")  # missing label, empty, short
    src = write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(DataError) as info:
        run_prepare(tmp_path, data={"source": str(src), "shifted_source": None})
    where = str(info.value).split("First offending rows: ")[1]
    assert [part.split(" (")[0].rsplit(":", 1)[1] for part in where.split(", ")] == ["3", "6", "9"]


def test_label_with_too_few_rows(tmp_path):
    src = write_csv(tmp_path / "d.csv", synthetic(20) + synthetic(4, labels=("rare",)))
    with pytest.raises(DataError, match=r"fewer than prepare.min_rows_per_label=10 rows .*'rare' \(4\)"):
        run_prepare(tmp_path, data={"source": str(src), "shifted_source": None})


def test_unknown_label_in_shifted_set(tmp_path):
    src = write_csv(tmp_path / "d.csv", synthetic(20))
    shifted = write_csv(tmp_path / "s.csv", [("new channel text", "a"), ("mystery message", "zzz")])
    with pytest.raises(DataError, match=r"shifted set has 1 row\(s\) with label\(s\) \['zzz'\]"):
        run_prepare(tmp_path, data={"source": str(src), "shifted_source": str(shifted)})


def test_bad_encoding_counts_as_malformed(tmp_path):
    src = tmp_path / "d.csv"
    body = "text,label\n" + "".join(f"row {w} text,a\nrow {w} other,b\n" for w in WORDS[:30])
    src.write_bytes(body.encode() + b"caf\xe9 latin-1 text,a\n")
    out = run_prepare(
        tmp_path,
        data={"source": str(src), "shifted_source": None},
        prepare={"max_invalid_share": 0.05, "dedup": "exact"},
    )
    assert read_json(out / "manifest.json")["cleaning"]["pool"]["dropped"] == {"invalid UTF-8": 1}


def test_duplicates_and_near_duplicates_are_removed(tmp_path):
    rows = synthetic(20) + [
        ("Message  DUNE, valley about topic a!!", "a"),
        ("message apple apple about topic b", "b"),
    ]
    src = write_csv(tmp_path / "d.csv", rows)
    out = run_prepare(tmp_path, data={"source": str(src), "shifted_source": None})
    cleaning = read_json(out / "manifest.json")["cleaning"]["pool"]
    assert cleaning["duplicates_near"] == 1 and cleaning["duplicates_exact"] == 1
    total = sum(len(read_jsonl(out / f"{s}.jsonl")) for s in ("train", "val", "holdout"))
    assert total == 60


def test_explicit_holdout_removes_leaking_rows_from_train(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    rows = synthetic(20)
    write_csv(folder / "train.csv", rows)
    write_csv(folder / "test.csv", rows[:5] + [("a completely fresh test message", "a")])
    out = run_prepare(tmp_path, data={"source": str(folder), "shifted_source": None})
    manifest = read_json(out / "manifest.json")
    assert manifest["leakage"]["pool_rows_removed_as_holdout_duplicates"] == 5
    assert manifest["counts"]["holdout"] == 6
    train_texts = {r["text"] for r in read_jsonl(out / "train.jsonl")}
    assert not train_texts & {t for t, _ in rows[:5]}


def test_feedback_rows_join_train_only_and_never_leak_evaluation_rows(tmp_path, sample):
    """Rows from `tunegate drift --retrain`: new ones go to train, copies of evaluation rows do not."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no feedback yet")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    unchanged = run_prepare(tmp_path / "a", feedback=empty)
    assert read_json(unchanged / "manifest.json") == read_json(sample / "manifest.json")  # nothing to add

    holdout, train = read_jsonl(sample / "holdout.jsonl"), read_jsonl(sample / "train.jsonl")
    label = train[0]["label"]
    fresh = [{"id": f"f{i}", "text": f"yo my {w} thing broke again pls", "label": label}
             for i, w in enumerate(("zorblax", "quintic", "flumph"))]  # fmt: skip
    rows = fresh + [
        {"id": "h", "text": holdout[0]["text"].upper(), "label": holdout[0]["label"]},  # a hold-out copy
        {"id": "t", "text": train[1]["text"], "label": train[1]["label"]},
        {"id": "u", "text": "please play some jazz music", "label": "play_music"},
    ]
    folder = tmp_path / "feedback"
    folder.mkdir()
    (folder / "feedback.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_prepare(tmp_path / "b", feedback=folder)
    manifest = read_json(out / "manifest.json")
    assert manifest["feedback"] == {
        "usable": 6, "added_to_train": 3, "unknown_label": 1,
        "evaluation_duplicates": 1, "train_duplicates": 1,
    }  # fmt: skip
    assert manifest["counts"]["train"] == read_json(sample / "manifest.json")["counts"]["train"] + 3
    assert str(folder / "feedback.jsonl") in " ".join(manifest["inputs"])
    for split in ("holdout", "val", "shifted"):
        assert read_jsonl(out / f"{split}.jsonl") == read_jsonl(sample / f"{split}.jsonl")
    assert {r["text"] for r in fresh} <= {r["text"] for r in read_jsonl(out / "train.jsonl")}


def test_row_cap_is_stratified(tmp_path):
    out = run_prepare(tmp_path, prepare={"max_rows": 240})
    manifest = read_json(out / "manifest.json")
    pool = sum(manifest["counts"][s] for s in ("train", "val", "holdout"))
    assert 230 <= pool <= 250
    per_label = [
        sum(manifest["label_counts"][s][lab] for s in ("train", "val", "holdout"))
        for lab in manifest["label_counts"]["train"]
    ]
    assert max(per_label) - min(per_label) <= 2


def test_probe_validation(tmp_path):
    bad = tmp_path / "probe.jsonl"
    bad.write_text(json.dumps({"question": "2+2?", "answers": []}) + "\n")
    with pytest.raises(DataError, match="'answers' must be a non-empty list"):
        run_prepare(tmp_path, data={"probe_source": str(bad)})


def test_replay_validation_and_probe_leakage(tmp_path):
    bad = tmp_path / "replay.jsonl"
    bad.write_text(json.dumps({"prompt": "  "}) + "\n")
    with pytest.raises(DataError, match=r"replay\.jsonl:1: 'prompt' must be a non-empty string"):
        run_prepare(tmp_path, data={"replay_source": str(bad)})
    leaky = tmp_path / "leaky.jsonl"
    prompts = ["What is the capital of France?", "Tell me about clouds."]
    leaky.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    (tmp_path / "ok").mkdir()
    out = run_prepare(tmp_path / "ok", data={"replay_source": str(leaky)})
    kept = [r["prompt"] for r in read_jsonl(out / "replay.jsonl")]
    assert kept == ["Tell me about clouds."]  # a probe question is never trained on
    assert read_json(out / "manifest.json")["leakage"]["replay_prompts_removed_as_probe_duplicates"] == 1


def test_sample_replay_prompts_are_disjoint_from_probe(sample):
    manifest = read_json(sample / "manifest.json")
    assert manifest["counts"]["replay"] == 96
    assert manifest["leakage"]["replay_prompts_removed_as_probe_duplicates"] == 0


@pytest.mark.banking77
def test_prepare_runs_unchanged_on_banking77(tmp_path, banking77):
    out = run_prepare(
        tmp_path, data={"source": str(banking77), "label_column": "category", "shifted_source": None}
    )
    manifest = read_json(out / "manifest.json")
    labels = read_json(out / "labels.json")
    assert len(labels) == 77
    assert manifest["counts"]["holdout"] > 3000  # the dataset's own test split
    assert manifest["counts"]["train"] > 8000
    assert manifest["counts"]["shifted"] == 0
    assert set(manifest["inputs"]) == {
        f"{banking77.as_posix()}/test.csv",
        f"{banking77.as_posix()}/train.csv",
        (ROOT / "data/sample/probe.jsonl").as_posix(),
        (ROOT / "data/sample/replay.jsonl").as_posix(),
    }
