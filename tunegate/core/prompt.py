"""The one prompt template, shared by training, evaluation and serving.

Classification is constrained generation: the model reads the message in a chat
prompt and writes the label. The label set is *not* listed in the prompt (that would
triple the sequence length on a 77-intent task); training teaches the labels, and at
inference vLLM's structured outputs restrict the answer to the label set.

The template is saved beside every candidate as ``prompt.json`` and read back from
there, so a model is always queried the way it was trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json, sha256_bytes, write_json
from tunegate.core.task import schema_text, schema_value

DEFAULT_SYSTEM = "Reply with the intent label of the customer message."


@dataclass(frozen=True)
class PromptTemplate:
    system: str = DEFAULT_SYSTEM
    labels: tuple[str, ...] = ()
    """The label set the answer is restricted to (structured outputs at inference)."""
    task: str = "classification"
    """The task kind (tunegate/core/task.py); generation prompts are the record's own turns."""
    output_schema: dict[str, Any] | None = None
    """generation: the JSON Schema the answer is constrained to (structured outputs)."""
    examples: tuple[tuple[str, str], ...] = ()
    """classification, evaluation only: (message, label) pairs shown as earlier turns (the
    prompting reference, ``eval.few_shot``); never saved with a release."""

    def messages(self, text: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        shots = [
            {"role": role, "content": content}
            for message, label in self.examples
            for role, content in (("user", message), ("assistant", label))
        ]
        return system + shots + [{"role": "user", "content": text}]

    def render_turns(self, tokenizer: Any, turns: list[dict[str, str]]) -> str:
        """A chat prompt (every turn before the answer) up to the assistant turn's opening."""
        return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)

    def render(self, tokenizer: Any, text: str) -> str:
        """The prompt string up to (and including) the assistant turn's opening."""
        return tokenizer.apply_chat_template(self.messages(text), add_generation_prompt=True, tokenize=False)

    def completion(self, label: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": label}]

    @property
    def template_id(self) -> str:
        if self.task == "classification":
            return sha256_bytes(self.system.encode())[:12]
        return sha256_bytes(
            json.dumps([self.task, self.system, self.output_schema], sort_keys=True).encode()
        )[:12]

    def save(self, folder: str | Path) -> None:
        if self.examples:
            raise ValueError(
                "a prompt with few-shot examples is an evaluation reference, not a release's prompt"
            )
        raw = {k: v for k, v in asdict(self).items() if k != "examples"} | {
            "template_id": self.template_id,
            "output_schema": schema_text(self.output_schema),
        }
        if self.task == "classification":  # the file classification releases have always had
            raw = {k: raw[k] for k in ("system", "labels", "template_id")}
        write_json(Path(folder) / "prompt.json", raw)

    @classmethod
    def load(cls, folder: str | Path) -> PromptTemplate:
        raw = read_json(Path(folder) / "prompt.json")
        return cls(
            system=raw["system"],
            labels=tuple(raw["labels"]),
            task=raw.get("task", "classification"),
            output_schema=schema_value(raw.get("output_schema")),
        )


def general_prompt(tokenizer: Any, text: str) -> str:
    """A plain chat turn under the model's default system prompt: how the forgetting probe
    asks, and how replay examples are trained (anything outside the task's prompt)."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )


def answer_confidence(logprobs: Any) -> float:
    """The raw confidence of a constrained answer: the probability of the generated token
    path (each step's sampled-token logprob from vLLM, ``logprobs=0``), multiplied out.
    vLLM reports each step's probability after the structured-output mask, i.e.
    renormalised over the tokens the label set allows there (the scorer computes the same
    and agrees to 1e-5). The service, the evaluate stage's monitoring reference and the
    calibration (tunegate/core/calibration.py) all start from this."""
    import math

    return math.exp(sum(next(iter(step.values())).logprob for step in logprobs or [] if step))
