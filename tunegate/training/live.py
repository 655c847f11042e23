"""A small Trainer callback that sends losses, validation answers and forgetting to DVCLive
(so `dvc plots show` draws the curves the checkpoint was chosen on)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

LOGGED = (
    ("loss", "train/loss"),
    ("eval_loss", "eval/loss"),
    ("eval_answer_match", "eval/answer_match"),
    ("eval_forgetting", "eval/forgetting"),
    ("learning_rate", "train/lr"),
)


class LiveCallback(TrainerCallback):
    def __init__(self, live: Any):
        self.live = live

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        found = [(name, float(logs[key])) for key, name in LOGGED if key in logs]
        if not found:
            return
        self.live.step = state.global_step
        for name, value in found:
            self.live.log_metric(name, value)
        self.live.make_summary()
