"""Which training-time forgetting measure ranks candidates as the gate's probe does?

For each candidate the recipes bench (bench/recipes.py) and the pipeline left, beside the
gate's own ``probe.forgetting`` drop (contains-an-answer accuracy on the probe's questions,
candidate vs base, free greedy answers), two measures on the general prompts the train
stage reads (``train.forgetting_source``, disjoint from the probe):

- ``teacher_forced``: the train stage's measure (tunegate/training/forgetting.py): the share of the
  base model's greedy answer tokens the candidate no longer predicts first, one
  teacher-forced pass;
- ``decoded``: 1 - mean token F1 between the candidate's and the base model's own greedy
  answers (as many new tokens as the probe allows), decoded freely as the probe decodes.

Writes ``bench/results/forgetting_measures.json`` and ``.md``. About a minute per candidate
on 2 CPU cores. Usage: ``python bench/forgetting_measures.py [--cells DIR ...]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tunegate.core.artifacts import atomic_write_text, environment, read_json, write_json
from tunegate.core.greedy import generate_text
from tunegate.core.params import load_params
from tunegate.core.prompt import general_prompt
from tunegate.core.text_metrics import token_f1
from tunegate.training.forgetting import base_references, forgetting, general_prompts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results/forgetting_measures.json"


def load(base: Path, adapter: Path | None):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.eval()


def candidates(cells: list[Path]) -> dict[str, tuple[Path, Path]]:
    """name -> (adapter folder, its gate record)."""
    out = {"sample (pipeline)": (ROOT / "models/candidate", ROOT / "eval/gate.json")}
    for cell in cells:
        if (cell / "eval/gate.json").exists():
            out[cell.name] = (cell / "models/candidate", cell / "eval/gate.json")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="*", type=Path,
                        default=sorted((ROOT / "bench/.cache/recipes").glob("*--*")))  # fmt: skip
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    params = load_params(ROOT / "params.yaml")
    base_dir = ROOT / "models/base"
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    prompts = general_prompts(ROOT / params.train.forgetting_source)
    n_tokens = params.eval.probe_max_tokens
    base = load(base_dir, None)
    rendered = [general_prompt(tokenizer, p) for p in prompts]
    base_answers = generate_text(base, tokenizer, rendered, n_tokens, batch_size=8)
    references = base_references(base, tokenizer, prompts, params.train.replay_max_tokens)
    rows = []
    for name, (adapter, gate_file) in candidates(args.cells).items():
        model = load(base_dir, adapter)
        answers = generate_text(model, tokenizer, rendered, n_tokens, batch_size=8)
        decoded = 1 - sum(token_f1(a, b) for a, b in zip(answers, base_answers, strict=True)) / len(prompts)
        probe = {c["name"]: c for c in read_json(gate_file)["checks"]}.get("probe.forgetting", {})
        rows.append({
            "candidate": name, "probe_drop": probe.get("value"), "decoded": round(decoded, 4),
            "teacher_forced": round(forgetting(model, references), 4),
        })  # fmt: skip
        print(rows[-1], flush=True)
    write_json(RESULTS, {"general_prompts": len(prompts), "rows": rows, "environment": environment()})
    head = "| candidate | gate's probe drop | teacher-forced (train stage) | decoded (1 - token F1 vs base) |"
    lines = [head, "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["probe_drop"] if r["probe_drop"] is not None else -1):
        drop = "-" if r["probe_drop"] is None else f"{r['probe_drop']:.3f}"
        lines.append(f"| {r['candidate']} | {drop} | {r['teacher_forced']:.3f} | {r['decoded']:.3f} |")
    atomic_write_text(RESULTS.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
