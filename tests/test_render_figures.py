"""The README's pictures are drawn from real records: every check and signal appears, with its verdict."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("render_figures", ROOT / "scripts/render_figures.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_gate_figure_has_one_row_per_check_and_marks_the_failure():
    gate = {
        "verdict": "rejected",
        "summary": "rejected: 1 of 2 checks failed",
        "baseline_kind": "production",
        "checks": [
            {
                "name": "holdout.accuracy",
                "value": 0.9,
                "ci": [0.85, 0.94],
                "threshold": ">= 0.8",
                "passed": True,
            },
            {
                "name": "license",
                "value": None,
                "ci": None,
                "threshold": "in ['mit', 'apache-2.0']",
                "passed": False,
            },
        ],
    }
    shown = texts(render.gate_figure(gate))
    assert "holdout.accuracy" in shown and "license" in shown
    assert shown.count("pass") == 1 and shown.count("FAIL") == 1
    assert "0.900 (>= 0.8)" in shown
    width = int(ET.fromstring(render.gate_figure(gate)).get("width"))
    assert width >= render.text_width([render.gate_figure(gate)]) - 16
    noted = {
        "name": "holdout_oos.recall",
        "value": float("nan"),
        "ci": None,
        "threshold": ">= 0.5",
        "passed": False,
    }
    shown = texts(render.gate_figure(gate | {"noted": [noted]}))
    assert "holdout_oos.recall" in shown and shown.count("noted") == 1 and shown.count("FAIL") == 1
    assert "- (>= 0.5)" in shown  # not measured: no value drawn


def test_drift_figure_shows_each_signal_and_not_judged_ones():
    report = {
        "time": "20260101T000000Z",
        "status": "drift",
        "window": {"requests": 120, "version": "v0.0.1"},
        "reference": {"rows": 600},
        "signals": [
            {
                "name": "embedding",
                "score": 0.99,
                "method": "model",
                "threshold": 0.55,
                "drifted": True,
                "note": "",
            },
            {
                "name": "length_chars",
                "score": 0.4,
                "method": "ks",
                "threshold": 0.007,
                "drifted": False,
                "note": "",
            },
            {
                "name": "confidence",
                "score": None,
                "method": "ks",
                "threshold": 0.007,
                "drifted": None,
                "note": "3 earlier answers",
            },
        ],
    }
    shown = texts(render.drift_figure(report))
    assert [s for s in shown if s in ("DRIFT", "ok", "n/a")] == ["DRIFT", "ok", "n/a"]
    assert "3 earlier answers" in shown
    assert any("120 requests of v0.0.1" in s for s in shown)
