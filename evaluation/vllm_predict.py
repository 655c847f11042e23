"""Label predictions from the serving engine, vLLM: base model + LoRA adapters per request.

Run as a subprocess by evaluation/engines.py (vLLM starts worker processes, which need
this ``__main__`` guard, and holds memory best released with its process). Greedy
decoding with structured outputs restricted to the label set, as the service answers
``/classify``.

Usage: ``python -m evaluation.vllm_predict --spec spec.json --out out.json`` where the
spec names the base model, the adapters, the prompt template and the jobs (rows per model).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from tunegate.artifacts import read_json, refuse_pickle, write_json
from tunegate.prompt import PromptTemplate, answer_confidence

log = logging.getLogger(__name__)
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # ranks vLLM's LoRA kernels accept


def lora_rank(adapter_dirs: list[str]) -> int:
    r = max((read_json(Path(d) / "adapter_config.json")["r"] for d in adapter_dirs), default=8)
    return next(x for x in LORA_RANKS if x >= r)


def engine(base: str, adapter_dirs: list[str]):
    from vllm import LLM
    from vllm.platforms import current_platform

    refuse_pickle(base)
    for d in adapter_dirs:
        refuse_pickle(d)
    cpu = current_platform.is_cpu()
    context = read_json(Path(base) / "config.json").get("max_position_embeddings") or 1024
    kwargs = {"enable_lora": True, "max_lora_rank": lora_rank(adapter_dirs), "max_loras": len(adapter_dirs)}
    return LLM(
        model=base,
        dtype="float32" if cpu else "bfloat16",
        max_model_len=min(1024, int(context)),  # messages are short; the KV cache stays small
        enforce_eager=cpu,
        enable_prefix_caching=True,
        trust_remote_code=False,
        seed=0,
        **(kwargs if adapter_dirs else {}),
    )


def main(argv: list[str] | None = None) -> None:
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import StructuredOutputsParams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    template = PromptTemplate(system=spec["system"], labels=tuple(spec["labels"]))
    names = sorted(spec["adapters"])
    started = time.perf_counter()
    llm = engine(spec["base"], [spec["adapters"][n] for n in names])
    startup = time.perf_counter() - started
    tokenizer = llm.get_tokenizer()
    sampling = SamplingParams(
        temperature=0.0,
        max_tokens=max(len(label) for label in template.labels) + 1,  # any tokenization, then the end
        logprobs=0,  # the served confidence (the service asks for the same)
        structured_outputs=StructuredOutputsParams(choice=list(template.labels)),
    )
    requests = {n: LoRARequest(n, i + 1, spec["adapters"][n]) for i, n in enumerate(names)}
    out, timings = {}, {}
    for job in spec["jobs"]:
        prompts = [template.render(tokenizer, r["text"]) for r in job["rows"]]
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
    from tunegate.cli import run_stage

    run_stage(main)
