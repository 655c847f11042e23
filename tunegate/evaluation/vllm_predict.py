"""Label predictions from the serving engine, vLLM: base model + LoRA adapters per request.

Run as a subprocess by tunegate/evaluation/predictors.py (vLLM starts worker processes, which need
this ``__main__`` guard, and holds memory best released with its process). Greedy
decoding with structured outputs restricted to the label set, as the service answers
``/classify``.

Usage: ``python -m tunegate.evaluation.vllm_predict --spec spec.json --out out.json`` where the
spec names the base model, the adapters, the prompt template and the jobs (rows per model).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from tunegate.core.artifacts import read_json, refuse_pickle, write_json
from tunegate.core.inference import classify_sampling, engine_args, supported_rank
from tunegate.core.prompt import PromptTemplate, answer_confidence
from tunegate.core.stage import configure_logging

log = logging.getLogger(__name__)


def lora_rank(adapter_dirs: list[str]) -> int:
    """The engine's LoRA rank: the largest adapter's, as vLLM accepts it."""
    return supported_rank(
        max((read_json(Path(d) / "adapter_config.json")["r"] for d in adapter_dirs), default=8)
    )


def engine(base: str, adapter_dirs: list[str]):
    from vllm import LLM

    refuse_pickle(base)
    for d in adapter_dirs:
        refuse_pickle(d)
    # Messages are short; the KV cache stays small at 1024 tokens.
    args = engine_args(
        Path(base), max_model_len=1024, max_lora_rank=lora_rank(adapter_dirs), max_loras=len(adapter_dirs)
    )
    return LLM(**args)


def main(argv: list[str] | None = None) -> None:
    from vllm.lora.request import LoRARequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging()

    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    template = PromptTemplate(system=spec["system"], labels=tuple(spec["labels"]))
    names = sorted(spec["adapters"])
    started = time.perf_counter()
    llm = engine(spec["base"], [spec["adapters"][n] for n in names])
    startup = time.perf_counter() - started
    tokenizer = llm.get_tokenizer()
    sampling = classify_sampling(template.labels)  # the service asks for the same
    requests = {n: LoRARequest(n, i + 1, spec["adapters"][n]) for i, n in enumerate(names)}
    out, timings = {}, {}
    for job in spec["jobs"]:
        asked = replace(template, examples=tuple((m, lab) for m, lab in job.get("examples", ())))
        prompts = [asked.render(tokenizer, r["text"]) for r in job["rows"]]
        t = time.perf_counter()
        results = llm.generate(prompts, sampling, lora_request=requests.get(job["model"]), use_tqdm=False)
        timings[job["name"]] = time.perf_counter() - t
        preds = []
        for row, res in zip(job["rows"], results, strict=True):
            text = res.outputs[0].text.strip()
            label = text if text in template.labels else None
            confidence = answer_confidence(res.outputs[0].logprobs)
            preds.append({"id": row["id"], "label": label, "raw": text, "confidence": confidence})
        out[job["name"]] = preds
    write_json(args.out, {"predictions": out, "startup_seconds": startup, "seconds": timings})


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
