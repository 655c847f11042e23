"""Which checkpoint the train stage keeps: the gate's own criteria, read on validation.

At every validation the Trainer records three figures (tunegate/training/objective.py): the
validation loss, ``answer_match`` (the share of validation answers the model decodes
exactly: greedy, read from the same teacher-forced pass as the loss, so a label for
classification and the whole answer for generation) and ``forgetting`` (tunegate/training/forgetting.py).
``select`` folds them into the one number the Trainer's best-checkpoint tracking and early
stopping read: within the forgetting budget, the answer match (a hair of loss breaks ties);
over it, below every checkpoint within it, less forgetting first. So the checkpoint kept is
the best one within the budget, training stops when the budget is crossed and the answers
no longer improve (``train.early_stopping_patience`` validations), and a run with no
checkpoint within the budget is told apart at the end of the stage (`choice`). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunegate.core.errors import DataError

SELECT = "eval_select"
"""The metric the Trainer tracks for the best checkpoint (greater is better)."""


def select(answer_match: float, loss: float, forgetting: float | None, budget: float | None) -> float:
    """One number per validation: higher is the better checkpoint by the rule above."""
    if budget is not None and forgetting is not None and forgetting > budget:
        return -1.0 - forgetting
    return answer_match - 1e-6 * min(loss, 1e3)


@dataclass(frozen=True)
class Point:
    """One validation during training (a point on the curves)."""

    step: int
    loss: float
    answer_match: float
    forgetting: float | None


@dataclass(frozen=True)
class Choice:
    """The checkpoint kept and why (for card.json and the stage's log)."""

    step: int
    answer_match: float
    forgetting: float | None
    budget: float | None
    within_budget: bool
    reason: str
    curve: tuple[Point, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "answer_match": self.answer_match, "forgetting": self.forgetting,
            "budget": self.budget, "within_budget": self.within_budget, "reason": self.reason,
            "curve": [vars(p) for p in self.curve],
        }  # fmt: skip


def curve(log_history: list[dict[str, Any]]) -> tuple[Point, ...]:
    """The validations in a Trainer's log history, in step order."""
    return tuple(
        Point(int(h["step"]), float(h["eval_loss"]), float(h["eval_answer_match"]), h.get("eval_forgetting"))
        for h in log_history
        if "eval_answer_match" in h
    )


def choice(points: tuple[Point, ...], kept_step: int | None, budget: float | None) -> Choice:
    """The checkpoint the Trainer kept (its best `select`), with the reason in words."""
    trained = [p for p in points if p.step > 0]
    if not trained:
        raise DataError("training ran no validation: lower train.eval_every or raise the steps")
    kept = next((p for p in trained if p.step == kept_step), trained[-1])
    within = budget is None or kept.forgetting is None or kept.forgetting <= budget
    over = [p for p in trained if budget is not None and p.forgetting is not None and p.forgetting > budget]
    best = max(trained, key=lambda p: p.answer_match)
    if not within:
        reason = (
            f"every one of {len(trained)} checkpoints forgot more than train.max_forgetting {budget} "
            f"(least: {kept.forgetting:.3f} at step {kept.step})"
        )
    else:
        budget_words = "" if budget is None else f" within the forgetting budget {budget}"
        reason = (
            f"step {kept.step}: validation answers {kept.answer_match:.3f}, the best of "
            f"{len(trained) - len(over)} checkpoints{budget_words}"
            + (f" ({len(over)} over it, the best of them {best.answer_match:.3f} at step {best.step})"
               if over and best.step != kept.step else "")
        )  # fmt: skip
    return Choice(kept.step, kept.answer_match, kept.forgetting, budget, within, reason, points)


def over_budget_message(found: Choice, lr: float, replay_rows: int | None) -> str:
    """What to change when no checkpoint stayed within the budget, from the curve."""
    first = next((p for p in found.curve if p.step > 0), None)
    early = (
        first is not None
        and first.forgetting is not None
        and found.budget is not None
        and (first.forgetting > found.budget)
    )
    hints = [f"lower train.lr (now {lr:g}; try {lr / 2:g})"]
    hints.append("validate earlier (a smaller train.eval_every)" if early else "train fewer steps")
    hints.append(
        "turn replay on (train.replay_rows: null)" if replay_rows == 0
        else "more replay prompts (data.replay_source)" if replay_rows is None
        else "more replay (train.replay_rows: null uses every prepared prompt)"
    )  # fmt: skip
    return f"{found.reason}. Nothing is written; try: " + "; ".join(hints) + "."
