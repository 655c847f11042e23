"""The evaluate stage for the generation kind: answers, per-item scores, parity, evidence.

1. The models, as for classification (tunegate/evaluation/models.py): the candidate against the
   model in production, or the base model zero-shot on a first release; beside them the
   prompting reference, the base model with ``eval.few_shot`` training records as earlier
   turns of its prompt (the question every team asks first: does fine-tuning beat prompting?).
2. Suites: hold-out, shifted, perturbations of each record's last user turn, length slices
   of the hold-out. Every model answers greedily through the configured engine:
   ``vllm`` (the served engine, base + adapter per request, constrained to the task's
   JSON Schema with structured outputs, as ``/generate`` asks), ``reference``
   (transformers + PEFT ``generate``, held to the same schema by the same grammar engine,
   xgrammar, as a logits processor) or ``scorer`` (the same on merged weights).
3. Parity: on ``eval.parity_rows`` hold-out records, the served engine's and the evaluation
   path's answers against the transformers + PEFT reference, by exact match of the answer.
4. Per-item scores (tunegate/core/text_metrics.py) into each suite's records; the gate reads
   them through ``Evidence.outcomes`` and never learns which task produced them.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.core import monitor_reference
from tunegate.core.artifacts import (
    atomic_dir,
    jsonl_text,
    read_json,
    read_jsonl,
    record_run,
    sha256_file,
    write_json,
)
from tunegate.core.errors import DataError
from tunegate.core.params import Params
from tunegate.core.task import Task, read_task
from tunegate.core.text_metrics import item_scores
from tunegate.core.words import vocabulary
from tunegate.evaluation.evidence import (
    PROMPTING,
    Evaluated,
    Evidence,
    ParityResult,
    SuiteInfo,
    write_evidence,
)
from tunegate.evaluation.models import Models, identities, resolve_models
from tunegate.evaluation.perturb import PERTURBATIONS
from tunegate.evaluation.predictors import HFEngine, ModelRef, vllm_available, vllm_generate
from tunegate.evaluation.probe import forgetting_probe
from tunegate.evaluation.suites import Suite, length_slice

log = logging.getLogger(__name__)


def prompt_turns(record: dict[str, Any]) -> list[dict[str, str]]:
    """Every turn before the answer."""
    return list(record["messages"][:-1])


def with_examples(record: dict[str, Any], examples: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The record's prompt with the examples' turns after its system turn (few-shot)."""
    turns = prompt_turns(record)
    head = turns[:1] if turns and turns[0]["role"] == "system" else []
    shots = [t for ex in examples for t in ex["messages"] if t["role"] != "system"]
    return head + shots + turns[len(head) :]


def few_shot_examples(train: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """`k` seeded single-turn training records (the shortest prompts cost the least context)."""
    single = [r for r in train if sum(t["role"] == "assistant" for t in r["messages"]) == 1] or train
    return random.Random(seed).sample(single, min(k, len(single)))


def perturbed(rows: list[dict[str, Any]], name: str, seed: int) -> list[dict[str, Any]]:
    """The records with perturbation `name` applied to their last user turn (the reference
    answer unchanged: the same request, asked worse)."""
    fn, out = PERTURBATIONS[name], []
    for r in rows:
        turns = list(r["messages"])
        last = max(i for i, t in enumerate(turns) if t["role"] == "user")
        text = fn(turns[last]["content"], random.Random(f"{seed}:{name}:{r['id']}"))
        turns[last] = {"role": "user", "content": text}
        out.append(r | {"messages": turns, "input": text, "source_input": r["input"]})
    return out


def generation_suites(data: Path, params: Params) -> list[Suite]:
    holdout = read_jsonl(data / "holdout.jsonl")
    if not holdout:
        raise DataError(f"{data / 'holdout.jsonl'}: the hold-out is empty; run `dvc repro prepare`")
    suites = [Suite("holdout", "holdout", holdout)]
    if params.data.shifted_source:
        suites.append(Suite("shifted", "shifted", read_jsonl(data / "shifted.jsonl")))
    source, ev = holdout, params.eval
    if ev.perturbation_rows and ev.perturbation_rows < len(holdout):
        source = random.Random(params.base.seed).sample(holdout, ev.perturbation_rows)
    suites += [
        Suite(f"perturb_{n}", "perturbation", perturbed(source, n, params.base.seed))
        for n in ev.perturbations
    ]
    return suites


def answer_all(
    engine: str, jobs: list[tuple[ModelRef, str, list[list[dict[str, str]]]]], task: Task, params: Params
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Every job's answers from one engine: vllm (constrained, as served) or reference (HF + PEFT)."""
    ev = params.eval
    t0 = time.perf_counter()
    if engine == "vllm":
        answers, timings = vllm_generate(
            jobs, max_tokens=ev.max_new_tokens, schema=task.output_schema, json_answers=task.json_answers,
            kv_cache_gib=ev.vllm_kv_cache_gib,
        )  # fmt: skip
    else:
        hf = HFEngine(engine, ev.batch_size)  # scorer: merged weights; reference: PEFT
        answers = {}
        merged, total, done = merged_jobs(jobs), sum(len(p) for _, _, p in jobs), 0
        for i, (ref, parts, prompts) in enumerate(merged, 1):
            log.info("answering %d prompts with %s: %d/%d", len(prompts), ref.key, i, len(merged))
            texts = hf.chat(ref, prompts, ev.max_new_tokens, task.output_schema, task.json_answers)
            done += len(prompts)
            spent = time.perf_counter() - t0
            log.info(
                "  %d of %d answers in %.0f s; about %.0f s to go",
                done,
                total,
                spent,
                spent / done * (total - done),
            )
            start = 0
            for name, n in parts:
                answers[name], start = texts[start : start + n], start + n
        timings = {}
    timings["total_seconds"] = round(time.perf_counter() - t0, 2)
    timings["answers"] = sum(len(p) for _, _, p in jobs)
    return answers, timings


def merged_jobs(
    jobs: list[tuple[ModelRef, str, list[list[dict[str, str]]]]],
) -> list[tuple[ModelRef, list[tuple[str, int]], list[list[dict[str, str]]]]]:
    """The jobs merged per model and prompt shape (a job name's part before ``|``: candidate,
    baseline, prompting), a model's groups adjacent: one engine call per group, so each model
    loads once and the decoder's batch stays full, while few-shot prompts keep their long
    shared prefix apart from zero-shot ones. Each group: (model, [(job name, prompts)], prompts)."""
    groups: dict[tuple[str, str], tuple[ModelRef, list[tuple[str, int]], list[list[dict[str, str]]]]] = {}
    for ref, name, prompts in jobs:
        group = groups.setdefault((ref.key, name.split("|", 1)[0]), (ref, [], []))
        group[1].append((name, len(prompts)))
        group[2].extend(prompts)
    return sorted(groups.values(), key=lambda g: g[0].key)  # stable: first-seen order within a model


def exact_agreement(a: list[str], b: list[str], ids: list[str]) -> tuple[float, list[dict[str, Any]]]:
    diff = [
        {"id": i, "one": x, "reference": y}
        for i, x, y in zip(ids, a, b, strict=True)
        if x.strip() != y.strip()
    ]
    return 1 - len(diff) / max(len(a), 1), diff[:20]


def parity(
    m: Models, rows: list[dict[str, Any]], ours: list[str], engine: str, params: Params, task: Task
) -> ParityResult:
    """The served engine's (vLLM, adapter per request, structured outputs) and the evaluation
    path's answers on `rows`, against the transformers + PEFT reference, by exact match."""
    if not rows:
        return ParityResult(missing="parity was not measured (eval.parity_rows is 0)")
    if not vllm_available():
        return ParityResult(missing="parity was not measured: vllm is not installed")
    prompts = [prompt_turns(r) for r in rows]
    reference = HFEngine("reference", params.eval.batch_size).chat(
        m.candidate, prompts, params.eval.max_new_tokens, task.output_schema, task.json_answers
    )
    if engine == "vllm":
        served = ours  # the evaluation path is the served engine
    else:
        served = answer_all("vllm", [(m.candidate, "parity", prompts)], task, params)[0]["parity"]
    ids = [r["id"] for r in rows]
    served_rate, served_diff = exact_agreement(served, reference, ids)
    eval_rate, eval_diff = exact_agreement(ours, reference, ids)
    return ParityResult(
        rows=len(rows),
        rates={"served_vs_reference": served_rate, "evaluation_vs_reference": eval_rate},
        disagreements={"served_vs_reference": served_diff, "evaluation_vs_reference": eval_diff},
        served_engine="vllm, base model + LoRA adapter per request, structured outputs (json schema)",
    )


def suite_records(
    suite: Suite, answers: dict[str, list[str]], task: Task, edges: tuple[int, ...]
) -> list[dict[str, Any]]:
    """One record per item: input, reference, each model's answer and its scores, the slice."""
    out = []
    for i, r in enumerate(suite.rows):
        rec = {
            "id": r["id"],
            "input": r["input"],
            "reference": r["answer"],
            "slice": length_slice(r["input"], edges),
        }
        rec["scores"] = {}
        for who in ("candidate", "baseline", PROMPTING):
            if who in answers:
                rec[who] = answers[who][i]
                rec["scores"][who] = item_scores(answers[who][i], r["answer"], task)
        out.append(rec)
    return out


def suite_metrics(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of every score per model (eval/metrics.json)."""
    out: dict[str, dict[str, float]] = {}
    for who in records[0]["scores"] if records else ():
        names = records[0]["scores"][who]
        out[who] = {
            k: round(float(np.mean([r["scores"][who].get(k, 0.0) for r in records])), 4) for k in names
        }
    return out


def evaluate(args: argparse.Namespace, params: Params) -> Evaluated:
    """The stage for the generation kind (see the module docstring)."""
    ev, seed = params.eval, params.base.seed
    task = read_task(args.candidate)
    if task != read_task(args.data):
        raise DataError(
            f"{args.candidate} was trained for another task than {args.data} holds; run `dvc repro`"
        )
    engine = ev.engine
    m = resolve_models(args, params)
    suites = generation_suites(args.data, params)
    shots = few_shot_examples(read_jsonl(args.data / "train.jsonl"), ev.few_shot, seed) if ev.few_shot else []
    jobs = [(m.candidate, f"candidate|{s.name}", [prompt_turns(r) for r in s.rows]) for s in suites]
    for s in (s for s in suites if s.versus_baseline):
        jobs.append((m.baseline, f"baseline|{s.name}", [prompt_turns(r) for r in s.rows]))
        if shots:
            jobs.append((m.base, f"{PROMPTING}|{s.name}", [with_examples(r, shots) for r in s.rows]))
    answers, timings = answer_all(engine, jobs, task, params)
    log.info("%d answers with %s in %.1fs", timings["answers"], engine, timings["total_seconds"])
    by_suite: dict[str, dict[str, list[str]]] = {}
    for key, texts in answers.items():
        who, name = key.split("|", 1)
        by_suite.setdefault(name, {})[who] = texts
    records = {s.name: suite_records(s, by_suite[s.name], task, ev.length_buckets) for s in suites}
    hold = suites[0].rows[: ev.parity_rows]
    par = parity(m, hold, by_suite["holdout"]["candidate"][: len(hold)], engine, params, task)
    probe = forgetting_probe(args.data, params, m)
    evidence = Evidence(
        *identities(m, args.base), labels=(), engine=engine, task="generation",
        suites={s.name: SuiteInfo(s.kind, len(s.rows), s.versus_baseline) for s in suites},
        probe=probe, parity=par, data=read_json(args.data / "manifest.json")["files"],
        production_pointer=m.pointer, predict={"answers": timings["answers"]},
        prompting={"few_shot": len(shots), "examples": [r["id"] for r in shots]} if shots else {},
        monitor_reference=reference_block(len(records["holdout"])),
    )  # fmt: skip
    # eval/generation/run.json: the timings change on every run, so they stay out of the evidence
    seconds = {k: v for k, v in timings.items() if k != "answers"}
    record_run(args.out / "run.json", {"stage": "evaluate"} | seconds)
    metrics = {name: suite_metrics(recs) for name, recs in records.items()}
    if probe.candidate is not None and probe.base is not None:
        metrics["probe"] = {"candidate": probe.candidate, "base": probe.base}
    if par.rates:
        metrics["parity"] = {k: round(v, 4) for k, v in par.rates.items()}
    primary = params.gate.primary_metric
    vocab = vocabulary(r["input"] for r in read_jsonl(args.data / "train.jsonl"))
    write_results(args.out / "results", evidence, records, (primary, task, vocab))
    write_json(args.out / "metrics.json", metrics)
    hold_metrics = metrics["holdout"]
    return Evaluated(
        metrics,
        hold_metrics["candidate"].get(primary, float("nan")),
        hold_metrics["baseline"].get(primary, float("nan")),
        float("nan"),
        primary,
    )


def reference_block(rows: int) -> dict[str, Any]:
    """The evidence's note of the monitoring reference: the hold-out's records, when enough."""
    if rows < monitor_reference.MIN_ROWS:
        return {
            "missing": f"no monitoring reference: the hold-out has {rows} records and the drift tests "
            f"need at least {monitor_reference.MIN_ROWS} (raise prepare.holdout_fraction or add records)"
        }
    return {"rows": rows, "file": monitor_reference.FILE}


def write_results(
    folder: Path,
    evidence: Evidence,
    records: dict[str, list[dict[str, Any]]],
    reference: tuple[str, Task, Any],
) -> None:
    """``eval/.../results/``, whole or not at all: suite records, their hashes in evidence.json,
    and the monitoring reference (the hold-out's inputs, answers and primary scores; `reference`
    is the metric, the task and the training inputs' vocabulary)."""
    with atomic_dir(folder) as tmp:
        for name, recs in records.items():
            (tmp / f"{name}.jsonl").write_text(jsonl_text(recs), encoding="utf-8")
        suites = {n: replace(i, sha256=sha256_file(tmp / f"{n}.jsonl")) for n, i in evidence.suites.items()}
        metric, task, vocab = reference
        path, model_id = tmp / monitor_reference.FILE, evidence.candidate.model_id
        if "missing" in evidence.monitor_reference:
            monitor_reference.write_missing(path, evidence.monitor_reference["missing"], model_id)
        else:
            monitor_reference.write_generation(path, records["holdout"], metric, task, vocab, model_id)
        write_evidence(tmp / "evidence.json", replace(evidence, suites=suites))
