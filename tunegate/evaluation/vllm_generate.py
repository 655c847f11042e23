"""Generation answers from the serving engine, vLLM: base model + LoRA adapters per request.

Run as a subprocess by tunegate/evaluation/predictors.py (as tunegate/evaluation/vllm_predict.py is for
labels). Greedy decoding, constrained to the task's JSON Schema with structured outputs
when it has one, exactly as the service answers ``/generate``.

Usage: ``python -m tunegate.evaluation.vllm_generate --spec spec.json --out out.json`` where the spec
names the base model, the adapters, the answer constraint and the jobs (chat prompts per model).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from tunegate.core.artifacts import refuse_pickle, write_json
from tunegate.core.inference import engine_args, generate_sampling
from tunegate.core.stage import configure_logging
from tunegate.evaluation.vllm_predict import lora_rank

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging()

    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    names = sorted(spec["adapters"])
    for d in [spec["base"], *spec["adapters"].values()]:
        refuse_pickle(d)
    started = time.perf_counter()
    dirs = [spec["adapters"][n] for n in names]
    args_ = engine_args(
        Path(spec["base"]),
        max_model_len=spec["max_model_len"],
        max_lora_rank=lora_rank(dirs),
        max_loras=len(dirs),
    )
    llm = LLM(**args_)
    startup = time.perf_counter() - started
    tokenizer = llm.get_tokenizer()
    sampling = generate_sampling(spec["max_tokens"], spec.get("schema"), spec.get("json_answers", False))
    requests = {n: LoRARequest(n, i + 1, spec["adapters"][n]) for i, n in enumerate(names)}
    out, timings = {}, {}
    for job in spec["jobs"]:
        prompts = [
            tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
            for turns in job["prompts"]
        ]
        t = time.perf_counter()
        results = llm.generate(prompts, sampling, lora_request=requests.get(job["model"]), use_tqdm=False)
        timings[job["name"]] = time.perf_counter() - t
        out[job["name"]] = [r.outputs[0].text for r in results]
    write_json(args.out, {"answers": out, "startup_seconds": startup, "seconds": timings})


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
