"""bench/stage_profile.py splits a timestamped `dvc repro` log into stages and their steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("stage_profile", ROOT / "bench/stage_profile.py")
stage_profile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stage_profile)


def test_stages_run_from_their_running_line_to_the_next_and_steps_split_the_long_ones():
    lines = [
        (0.0, "Running stage 'prepare':"),
        (2.0, "Running stage 'train':"),
        (12.0, "INFO __main__: training lora on 1260 rows"),
        (112.0, "INFO __main__: kept step 237: validation answers 0.857"),
        (115.0, "Running stage 'evaluate':"),
        (116.0, "INFO __main__: answering holdout (168 rows) with candidate: 1/2"),
        (136.0, "INFO __main__:   168 of 461 rows in 20 s; about 35 s to go"),
        (136.0, "INFO __main__: answering shifted (293 rows) with candidate: 2/2"),
        (170.0, "INFO __main__: forgetting probe: the candidate and the base model"),
        (180.0, "INFO __main__: parity: the served engine's answers on 64 hold-out rows"),
        (240.0, "INFO __main__: hold-out accuracy 0.899, baseline 0.077"),
        (242.0, ""),
    ]
    result = stage_profile.profile(lines)
    assert [(s["stage"], s["seconds"]) for s in result["stages"]] == [
        ("prepare", 2.0), ("train", 113.0), ("evaluate", 127.0)
    ]  # fmt: skip
    assert result["total_seconds"] == 242.0
    train, evaluate = result["stages"][1]["steps"], result["stages"][2]["steps"]
    assert [(s["step"], s["seconds"]) for s in train] == [
        ("start-up (imports, loading)", 10.0), ("training, validations included", 100.0), ("saving", 3.0)
    ]  # fmt: skip
    steps = {s["step"]: s["seconds"] for s in evaluate}
    assert steps["predictions"] == 54.0 and steps["forgetting probe"] == 10.0 and steps["writing"] == 2.0
    assert sum(steps.values()) == 127.0  # every second of the stage is in one step
    assert "| evaluate | 127 |" in stage_profile.markdown(result | {"records": {}})
