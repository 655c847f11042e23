from tunegate.monitoring.retrain import due

ON = ("embedding", "oov_share")


def report(status: str, drifted: list[str] = ()) -> dict:
    return {"status": status, "drifted": list(drifted)}


def test_fires_only_on_consecutive_drift_of_a_retrain_signal():
    assert due([report("drift", ["embedding"])], ON, 2)[0] is False  # one window is not a trend
    fire, why, carried = due(
        [report("drift", ["embedding"]), report("drift", ["oov_share", "length_chars"])], ON, 2
    )
    assert fire and "embedding, oov_share" in why and carried == ["embedding", "oov_share"]
    assert not due([report("drift", ["embedding"]), report("no_drift")], ON, 2)[0]
    assert not due([report("drift", ["length_chars"]), report("drift", ["length_chars"])], ON, 2)[0]


def test_windows_too_small_to_judge_neither_break_nor_extend_the_streak():
    seq = [report("drift", ["embedding"]), report("insufficient"), report("drift", ["embedding"])]
    assert due(seq, ON, 2)[0] is True
    assert due([report("insufficient")] * 3, ON, 2)[0] is False


def labelled_log(path, n, feedback_every=2):
    from tunegate.serving.requestlog import Entry, RequestLog

    log = RequestLog(path)
    for i in range(n):
        log.write(Entry(f"q{i}", "classify", 200, version="v1", input=f"message {i}", label="card_arrival"))
        if i % feedback_every == 0:
            assert log.feedback(f"q{i}", "card_declined") is not None
    log.write(Entry("shadow", "classify", 200, version="v2", input="copy", label="x", shadow=True))
    log.close()
    return path


def test_feedback_export_merges_by_request_id(tmp_path):
    from tunegate.core.artifacts import read_jsonl
    from tunegate.monitoring.retrain import export_feedback

    log = labelled_log(tmp_path / "requests.sqlite", 10)
    first = export_feedback(log, tmp_path / "feedback")
    assert first["new"] == 5 and first["total"] == 5
    rows = read_jsonl(tmp_path / "feedback" / "feedback.jsonl")
    assert [r["id"] for r in rows] == ["q0", "q2", "q4", "q6", "q8"]
    assert rows[0]["text"] == "message 0" and rows[0]["label"] == "card_declined"
    assert rows[0]["source"] | {"log": "-"} == {
        "kind": "feedback", "request_id": "q0", "version": "v1", "answered": "card_arrival",
        "feedback_time": rows[0]["source"]["feedback_time"], "log": "-",
    }  # fmt: skip
    assert rows[0]["source"]["feedback_time"] >= rows[0]["time"]
    again = export_feedback(log, tmp_path / "feedback")
    assert again["new"] == 0 and again["total"] == 5  # exporting twice adds nothing
    # "None of these" (data.oos_label) is counted, never a training row for some intent.
    counted = export_feedback(log, tmp_path / "oos", oos_label="card_declined")
    assert counted["out_of_scope"] == 5 and counted["total"] == 0


def test_trigger_exports_feedback_runs_dvc_repro_and_records_why(tmp_path):
    """Real git + DVC in a scratch project whose one stage counts the feedback rows."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from tunegate.monitoring.retrain import trigger

    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(dvc), "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "data" / "feedback").mkdir(parents=True)
    (tmp_path / "data" / "feedback" / "README.md").write_text("feedback lands here")
    (tmp_path / "count.py").write_text(
        "import json, pathlib\n"
        "n = len(open('data/feedback/feedback.jsonl').readlines())\n"
        "pathlib.Path('eval').mkdir(exist_ok=True)\n"
        "json.dump({'verdict': 'approved', 'rows': n}, open('eval/gate.json', 'w'))\n"
    )
    stage = {
        "cmd": f"{sys.executable} count.py --out eval/gate.json",
        "deps": ["data/feedback"],
        "outs": [{"eval/gate.json": {"cache": False}}],
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"gate": stage}}))
    reports = tmp_path / "reports"
    reports.mkdir()
    log = labelled_log(tmp_path / "requests.sqlite", 6)
    entry = trigger(
        tmp_path, reports, "2 reports in a row drifted on embedding", ["a.json"], log, Path("data/feedback")
    )
    assert entry["exit_code"] == 0, entry["output_tail"]
    assert entry["verdict"] == "approved" and entry["feedback"]["new"] == 3
    assert json.loads((tmp_path / "eval/gate.json").read_text())["rows"] == 3  # the stage saw the feedback
    assert "data/feedback" in (tmp_path / "dvc.lock").read_text()  # DVC pinned what it trained on
    head = subprocess.run(
        ["git", "log", "-1", "--format=%H %s"], cwd=tmp_path, capture_output=True, text=True
    )
    assert head.stdout.startswith(entry["feedback"]["commit"]) and "retraining" in head.stdout
    recorded = [json.loads(line) for line in (reports / "triggers.jsonl").read_text().splitlines()]
    assert recorded[-1]["reports"] == ["a.json"] and recorded[-1]["why"].startswith("2 reports")


def test_generation_trigger_exports_reference_answers_and_runs_the_release_pipeline(tmp_path):
    """The generation kind: reference answers become chat records in its own feedback folder,
    and the trigger runs the release's pipeline file (generation/dvc.yaml), whose gate
    record is the verdict. Real git + DVC; the one stage counts the exported records."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from tunegate.monitoring.retrain import trigger
    from tunegate.serving.requestlog import Entry, RequestLog

    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(dvc), "init", "-q"], cwd=tmp_path, check=True)
    folder = tmp_path / "data" / "feedback-generation"
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("reference answers land here")
    (tmp_path / "count.py").write_text(
        "import json, pathlib\n"
        "rows = [json.loads(x) for x in open('data/feedback-generation/feedback.jsonl')]\n"
        "pathlib.Path('eval/generation').mkdir(parents=True, exist_ok=True)\n"
        "ok = all(r['messages'][-1]['role'] == 'assistant' for r in rows)\n"
        "json.dump({'verdict': 'approved' if ok else 'rejected', 'rows': len(rows)},"
        " open('eval/generation/gate.json', 'w'))\n"
    )
    stage = {
        "wdir": "..",
        "cmd": f"{sys.executable} count.py --out eval/generation/gate.json",
        "deps": ["data/feedback-generation"],
        "outs": [{"eval/generation/gate.json": {"cache": False}}],
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {}}))
    (tmp_path / "generation").mkdir()
    (tmp_path / "generation/dvc.yaml").write_text(yaml.safe_dump({"stages": {"gate": stage}}))
    log = RequestLog(tmp_path / "requests.sqlite")
    for i in range(4):
        log.write(Entry(f"g{i}", "generate", 200, version="v1", input=f"card {i} lost", output='{"a": 1}'))
        if i % 2 == 0:
            log.feedback(f"g{i}", f'{{"a": {i}}}')
    log.write(Entry("c0", "classify", 200, version="v1", input="where is my card", label="card_arrival"))
    log.feedback("c0", "card_arrival")  # a /classify label is not a generation record
    log.close()
    reports = tmp_path / "reports"
    reports.mkdir()
    entry = trigger(
        tmp_path, reports, "2 reports in a row drifted on invalid_json", ["b.json"],
        tmp_path / "requests.sqlite", Path("data/feedback-generation"), None, "generation",
        "generation/dvc.yaml",
    )  # fmt: skip
    assert entry["exit_code"] == 0, entry["output_tail"]
    assert entry["command"] == "dvc repro generation/dvc.yaml" and entry["feedback"]["new"] == 2
    assert entry["verdict"] == "approved"
    assert json.loads((tmp_path / "eval/generation/gate.json").read_text())["rows"] == 2
    assert "data/feedback-generation" in (tmp_path / "generation/dvc.lock").read_text()
