"""Prediction engines for evaluation: one interface, three implementations.

- ``scorer``: transformers with the adapter merged, tunegate/evaluation/scorer.py (fastest on a CPU);
- ``reference``: transformers + PEFT ``generate`` restricted to the labels (the parity
  reference, and the plain loop the evaluation benchmark compares against);
- ``vllm``: the serving engine, base model + adapters per request, in a subprocess
  (tunegate/evaluation/vllm_predict.py) so its workers and memory stay out of this process.

A model is a ``ModelRef``: the base model, optionally with an adapter. Every engine
returns ``Prediction``s (label or None for invalid output) in the order of the rows.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunegate.core.artifacts import read_json
from tunegate.core.errors import ArtifactError
from tunegate.core.greedy import generate_text
from tunegate.core.prompt import PromptTemplate, general_prompt
from tunegate.core.threads import torch_threads
from tunegate.evaluation.hf_predict import Prediction, load_model, predict
from tunegate.evaluation.scorer import score

log = logging.getLogger(__name__)
EngineKind = Literal["scorer", "vllm", "reference"]


@dataclass(frozen=True)
class ModelRef:
    role: str
    """candidate, production, or base"""
    base_dir: Path
    adapter_dir: Path | None
    """None: the base model itself (zero-shot)"""
    model_id: str
    tree_sha256: str

    @property
    def key(self) -> str:
        return f"{self.role}:{self.model_id}"

    def identity(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "model_id": self.model_id,
            "tree_sha256": self.tree_sha256,
            "path": str(self.adapter_dir or self.base_dir),
        }


class HFEngine:
    """scorer or reference, keeping one model in memory at a time."""

    def __init__(self, kind: Literal["scorer", "reference"], batch_size: int = 32):
        self.kind, self.batch_size = kind, batch_size
        self._loaded: tuple[str, Any, Any] | None = None
        self._grammars: dict[tuple[str, int, str], Any] = {}

    def _model(self, ref: ModelRef) -> tuple[Any, Any]:
        import torch

        if self._loaded is None or self._loaded[0] != ref.key:
            self._loaded = None  # free the previous model before loading the next
            torch.set_num_threads(torch_threads())
            model, tok = load_model(ref.base_dir, ref.adapter_dir, merge=self.kind == "scorer")
            self._loaded = (ref.key, model, tok)
        return self._loaded[1], self._loaded[2]

    def classify(
        self,
        ref: ModelRef,
        template: PromptTemplate,
        rows: list[dict[str, Any]],
        with_confidence: bool = True,
    ) -> list[Prediction]:
        model, tok = self._model(ref)
        if self.kind == "scorer":
            return score(model, tok, template, rows, self.batch_size, with_confidence)
        return predict(model, tok, template, rows, min(self.batch_size, 16))

    def answer(self, ref: ModelRef, questions: list[str], max_new_tokens: int) -> list[str]:
        """Free-form greedy answers under the default chat prompt (the forgetting probe)."""
        model, tok = self._model(ref)
        return generate_text(model, tok, [general_prompt(tok, q) for q in questions], max_new_tokens)

    def chat(
        self,
        ref: ModelRef,
        prompts: list[list[dict[str, str]]],
        max_new_tokens: int,
        schema: dict[str, Any] | None = None,
        json_answers: bool = False,
    ) -> list[str]:
        """Greedy answers to chat prompts (every turn before the answer), held to `schema` (or
        to a JSON object, with `json_answers`) as the served engine holds them. The reference
        (PEFT, transformers ``generate``) is what the served engine's answers are compared with;
        the scorer decodes merged weights with ``tunegate.evaluation.chat_decode`` (the same picks,
        faster)."""
        from tunegate.evaluation.chat_decode import greedy_chat
        from tunegate.evaluation.hf_predict import grammar_processors

        model, tok = self._model(ref)
        rendered = [tok.apply_chat_template(t, add_generation_prompt=True, tokenize=False) for t in prompts]
        constrained = schema is not None or json_answers
        grammar = self._grammar(tok, model.config.vocab_size, schema) if constrained else None
        if self.kind == "scorer":
            return greedy_chat(model, tok, rendered, max_new_tokens, self.batch_size, grammar)
        processors = grammar_processors(grammar) if grammar is not None else None
        return generate_text(model, tok, rendered, max_new_tokens, self.batch_size, processors)

    def _grammar(self, tok: Any, vocab_size: int, schema: dict[str, Any] | None) -> Any:
        """The schema's compiled grammar, once per tokenizer and schema (about a second of
        compiling; evaluate asks once per model and prompt shape, parity once more)."""
        import json

        from tunegate.evaluation.hf_predict import json_grammar

        key = (tok.name_or_path, vocab_size, json.dumps(schema, sort_keys=True))
        if key not in self._grammars:
            self._grammars[key] = json_grammar(tok, vocab_size, schema)
        return self._grammars[key]


def vllm_classify(
    jobs: Sequence[tuple[ModelRef, str, list[dict[str, Any]]]],
    template: PromptTemplate,
    kv_cache_gib: int = 2,
    timings: dict[str, Any] | None = None,
    examples: dict[str, tuple[tuple[str, str], ...]] | None = None,
) -> dict[str, list[Prediction]]:
    """Predict every (model, job name, rows) in one vLLM engine: the base model, with each
    adapter attached per request; `examples` (by job name) puts few-shot turns in that job's
    prompts. Returns predictions per job name; fills `timings` (engine start-up and seconds
    per job) when given."""
    base_dirs = {str(ref.base_dir) for ref, _, _ in jobs}
    if len(base_dirs) != 1:
        raise ArtifactError(f"one vLLM engine serves one base model; got {sorted(base_dirs)}")
    adapters = {ref.key: str(ref.adapter_dir) for ref, _, _ in jobs if ref.adapter_dir is not None}
    spec = {
        "base": base_dirs.pop(),
        "adapters": adapters,
        "system": template.system,
        "labels": list(template.labels),
        "jobs": [
            {
                "name": name,
                "model": ref.key if ref.adapter_dir else None,
                "rows": rows,
                "examples": [list(x) for x in (examples or {}).get(name, ())],
            }
            for ref, name, rows in jobs
        ],
    }
    raw = run_vllm("tunegate.evaluation.vllm_predict", spec, kv_cache_gib)
    if timings is not None:
        timings.update(startup_seconds=raw["startup_seconds"], seconds=raw["seconds"])
    return {
        name: [Prediction(p["id"], p["label"], p["raw"], p.get("confidence")) for p in preds]
        for name, preds in raw["predictions"].items()
    }


def run_vllm(module: str, spec: dict[str, Any], kv_cache_gib: int) -> dict[str, Any]:
    """Run a vLLM job module (``python -m <module> --spec --out``) in a subprocess; its output.

    Offline answering is decode-bound: vLLM's CPU backend keeps a core for its scheduler by
    default, which on 2 cores halves the model's (bench/eval_throughput.py; on the make run
    model, 58 classify rows took 90 s with the core kept and 71 s without, the same answers)."""
    with tempfile.TemporaryDirectory(prefix="tunegate-vllm-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = os.environ | {
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"),
        }
        cmd = [sys.executable, "-m", module, "--spec", str(spec_path), "--out", str(out_path)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise ArtifactError(f"the vLLM engine failed (exit {proc.returncode}):\n{tail}")
        return read_json(out_path)


def vllm_generate(
    jobs: Sequence[tuple[ModelRef, str, list[list[dict[str, str]]]]],
    *,
    max_tokens: int,
    schema: dict[str, Any] | None,
    json_answers: bool,
    kv_cache_gib: int = 2,
    max_model_len: int = 2048,
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Greedy answers to chat prompts for every (model, job name, prompts) in one vLLM engine
    (tunegate/evaluation/vllm_generate.py), constrained as the service constrains them. Returns the
    answers per job name and the timings (engine start-up, seconds per job)."""
    base_dirs = {str(ref.base_dir) for ref, _, _ in jobs}
    if len(base_dirs) != 1:
        raise ArtifactError(f"one vLLM engine serves one base model; got {sorted(base_dirs)}")
    spec = {
        "base": base_dirs.pop(),
        "adapters": {ref.key: str(ref.adapter_dir) for ref, _, _ in jobs if ref.adapter_dir is not None},
        "max_tokens": max_tokens,
        "schema": schema,
        "json_answers": json_answers,
        "max_model_len": max_model_len,
        "jobs": [
            {"name": n, "model": ref.key if ref.adapter_dir else None, "prompts": p} for ref, n, p in jobs
        ],
    }
    raw = run_vllm("tunegate.evaluation.vllm_generate", spec, kv_cache_gib)
    return raw["answers"], {"startup_seconds": raw["startup_seconds"], "seconds": raw["seconds"]}


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None
