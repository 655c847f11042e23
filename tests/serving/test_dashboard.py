"""The dashboard's views (tunegate/serving/dashboard.py) over a real GTO registry and real files,
including what a hostile or unlucky world leaves there. The pages themselves are tested in
a real browser (test_serve_browser.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.serving.test_registry import reg, registered, repo  # noqa: F401 (fixtures)
from tunegate.core.markdown import REGRESSIONS, blocks, section
from tunegate.serving import dashboard


def test_releases_view_lists_stages_and_the_audit_trail_with_forced_and_judge_moves(reg, repo):  # noqa: F811
    v1, v2 = registered(reg, repo, 1), registered(reg, repo, 2, verdict="rejected")
    for stage in ("staging", "canary", "production"):
        reg.promote(v1, stage)
    reg.promote(v2, "canary", weight=30, force=True, reason="hotfix approved by on-call")
    reg.rollback(stage="canary", reason="rollout judge: error rate 9/20 vs production 0/80")
    view = dashboard.releases_view(reg)
    assert [r["version"] for r in view["releases"]] == [v2, v1]  # newest first
    stages = {s["stage"]: s for s in view["stages"]}
    assert stages["production"]["version"] == v1 and stages["production"]["traffic"] == 100
    assert stages["canary"]["version"] is None
    newest = view["audit"][0]
    assert newest["action"] == "unassign" and newest["judge"] and newest["version"] == v2
    forced = [e for e in view["audit"] if e["forced"]]
    assert [(e["version"], e["stage"], e["weight"]) for e in forced] == [(v2, "canary", 30)]
    assert forced[0]["reason"] == "hotfix approved by on-call" and forced[0]["by"] == "tester"
    assert not any(e["judge"] for e in view["audit"][1:])


def test_a_release_missing_from_the_store_is_a_note_not_a_broken_page(reg, repo, tmp_path):  # noqa: F811
    """In a child process: BentoML reads BENTOML_HOME once per process, and later tests in this
    one use their own store."""
    v1 = registered(reg, repo, 1)
    code = (
        "import json, sys; from tunegate.serving import dashboard; "
        "from tunegate.serving.registry import Registry; "
        "print(json.dumps(dashboard.release_view(Registry(sys.argv[1], 'intent-classifier'), sys.argv[2])))"
    )
    env = os.environ | {"BENTOML_HOME": str(tmp_path / "empty-store"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(repo), v1], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["gate"] is None and view["regressions"] == []
    assert "is not in this machine's model store" in view["notes"][0]


def test_drift_view_skips_what_is_not_a_report_and_keeps_only_bare_page_names(tmp_path):
    good = {
        "time": "20261206T100000000000Z", "status": "drift", "drifted": ["embedding"],
        "signals": [
            {"name": "embedding", "method": "AUC", "score": 0.81, "threshold": 0.6, "drifted": True},
            {"name": "confidence", "method": "KS", "score": None, "threshold": 0.05, "drifted": None,
             "note": "no confidences"},
        ],
        "window": {"requests": 200, "version": "v0.0.1"},
        "html": ["/elsewhere/reports/2026-12-06T10:00:00.html", "../x y.html", "<script>.html"],
        "retraining": {"fires": False},
    }  # fmt: skip
    (tmp_path / "2026-12-06T10:00:00.json").write_text(json.dumps(good))
    (tmp_path / "2026-12-06T11:00:00.json").write_text("{not json")
    (tmp_path / "2026-12-06T12:00:00.json").write_text(json.dumps({"time": "x"}))  # no signals
    (tmp_path / "triggers.jsonl").write_text('{"time": "2026-12-06T10:05:00", "why": "2 in a row"}\nbroken\n')
    view = dashboard.drift_view(tmp_path)
    assert [r["file"] for r in view["reports"]] == ["2026-12-06T10:00:00.json"]
    assert view["reports"][0]["html"] == ["2026-12-06T10:00:00.html"]
    (point,) = view["signals"]["embedding"]  # the report's file-name time, as a browser reads it
    assert (point["time"], point["score"]) == ("2026-12-06T10:00:00+00:00", 0.81)
    assert view["signals"]["confidence"][0]["drifted"] is None
    (trigger,) = view["triggers"]
    assert trigger["time"] == "2026-12-06T10:05:00+00:00" and trigger["why"] == "2 in a row"
    skipped = " ".join(view["notes"])
    assert "11:00:00.json skipped" in skipped and "12:00:00.json skipped" in skipped and "line 2" in skipped
    assert dashboard.drift_view(tmp_path / "absent")["reports"] == []


def test_the_reports_regressions_section_reads_as_caption_and_table():
    report = "\n".join(
        [
            "# Release report", "", f"## {REGRESSIONS}", "",
            "- holdout, smallest recall gains: a -0.20 (n=5)", "",
            "Messages the baseline got right and the candidate got wrong:", "",
            "| suite | message | gold | candidate |", "|---|---|---|---|",
            "| holdout | a \\| b | card_arrival | lost_card |", "", "## Provenance", "", "- git abc",
        ]
    )  # fmt: skip
    found = blocks(section(report, REGRESSIONS))
    assert [b.text for b in found] == [
        "- holdout, smallest recall gains: a -0.20 (n=5)",
        "Messages the baseline got right and the candidate got wrong:",
    ]
    assert found[1].header == ["suite", "message", "gold", "candidate"]
    assert found[1].rows == [["holdout", "a | b", "card_arrival", "lost_card"]]
    assert section(report, "Nowhere") == []
