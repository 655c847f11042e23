"""What the tunegate service costs over a plain vLLM OpenAI server, and adapter vs merged.

The same load, one server at a time, in one run:

- ``plain_vllm_lora``: the baseline, vLLM's own OpenAI server
  (``python -m vllm.entrypoints.openai.api_server``) with the base model and the
  candidate adapter (``--lora-modules``), the same engine settings as the service;
- ``tunegate``: ``tunegate serve`` (BentoML + vLLM, routing, request log, version
  headers) with the candidate packaged, registered and promoted to production in a
  scratch project;
- ``plain_vllm_merged``: vLLM's server on the adapter merged into the base weights
  (what an adapter costs on this CPU).

Each request is a chat completion of the candidate's own prompt for a hold-out message,
greedy, ``--max-tokens`` long, sent by ``--concurrency`` clients. Reports requests/s,
p50/p95 latency, and the ratios. Writes ``bench/results/serving_overhead.json``.

Usage: ``python bench/serving_overhead.py [--requests 96] [--concurrency 4] [--max-tokens 8]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tunegate.core.artifacts import environment, read_json, read_jsonl, write_json  # noqa: E402
from tunegate.core.prompt import PromptTemplate  # noqa: E402
from tunegate.evaluation.vllm_predict import lora_rank  # noqa: E402

BIN = Path(sys.executable).parent
WARM_UP = 4
"""Requests sent before the timed load (logged by the service like any other)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], cwd: Path, env: dict, log: Path, url: str, ready_path: str) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - the server's log, closed with the process
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                proc.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > 600:
            raise RuntimeError(f"not ready after 600 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


async def load(url: str, model: str, bodies: list[list[dict]], concurrency: int, max_tokens: int) -> dict:
    latencies: list[float] = []
    queue = list(enumerate(bodies))
    errors = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue:
            i, messages = queue.pop(0)
            body = {
                "model": model,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": 0,
                "user": f"u{i}",
            }
            t = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=body)
            if r.status_code != 200:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t)

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for messages in bodies[:WARM_UP]:  # warm-up, not timed
            await client.post(
                "/v1/chat/completions", json={"model": model, "messages": messages, "max_tokens": max_tokens}
            )
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[max(0, int(0.95 * len(latencies)) - 1)] * 1000,
    }


def vllm_server(model: str, port: int, lora: Path | None, max_model_len: int) -> list[str]:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--port", str(port)]
    cmd += [
        "--dtype",
        "float32",
        "--max-model-len",
        str(max_model_len),
        "--enforce-eager",
        "--enable-prefix-caching",
    ]
    cmd += ["--served-model-name", "merged" if lora is None else "base"]
    if lora is not None:
        cmd += [
            "--enable-lora",
            "--max-lora-rank",
            str(lora_rank([str(lora)])),
            "--lora-modules",
            f"candidate={lora}",
        ]
    return cmd


def scratch_project(tmp: Path, base: Path, candidate: Path, gate: Path, env: dict) -> Path:
    """A git repo with the base model and the candidate released to production."""
    project = tmp / "project"
    (project / "models").mkdir(parents=True)
    os.symlink(base.resolve(), project / "models/base")
    shutil.copy2(ROOT / "params.yaml", project / "params.yaml")
    shutil.copy2(ROOT / "dvc.yaml", project / "dvc.yaml")  # the project's paths (tunegate/core/layout.py)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "bench"], cwd=project, check=True)
    cmd = [sys.executable, "-m", "tunegate.serving.package", "--params", "params.yaml", "--candidate",
           str(candidate.resolve()), "--gate", str(gate.resolve())]  # fmt: skip
    results = gate.resolve().parent / "results"  # what the package stage packages beside the adapter
    for flag, name in (("--reference", "monitor_reference.json"), ("--calibration", "calibration.json")):
        if (results / name).exists():
            cmd += [flag, str(results / name)]
    subprocess.run([*cmd, "--out", "registry/candidate.json"], cwd=project, env=env, check=True)
    version = read_json(project / "registry/candidate.json")["version"]
    for stage in ("staging", "canary", "production"):
        subprocess.run(
            [str(BIN / "tunegate"), "promote", version, "--to", stage], cwd=project, env=env, check=True
        )
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=ROOT / "models/base")
    parser.add_argument("--candidate", type=Path, default=ROOT / "models/candidate")
    parser.add_argument("--gate", type=Path, default=ROOT / "eval/gate.json")
    parser.add_argument("--data", type=Path, default=ROOT / "data/prepared/holdout.jsonl")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/serving_overhead.json")
    args = parser.parse_args()

    template = PromptTemplate.load(args.candidate)
    rows = read_jsonl(args.data)
    bodies = [template.messages(rows[i % len(rows)]["text"]) for i in range(args.requests)]
    context = read_json(args.base / "config.json").get("max_position_embeddings", args.max_model_len)
    max_model_len = min(args.max_model_len, context)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tunegate-serving-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = os.environ | {
            "BENTOML_HOME": str(tmp / "bentoml"),
            "VLLM_CPU_KVCACHE_SPACE": "2",
            "TUNEGATE_ACTOR": "bench",
        }
        merged = tmp / "merged"
        from tunegate.evaluation.hf_predict import load_model

        model, tokenizer = load_model(args.base, args.candidate, merge=True)
        model.save_pretrained(merged, safe_serialization=True)
        tokenizer.save_pretrained(merged)
        del model
        project = scratch_project(tmp, args.base, args.candidate, args.gate, env)
        (project / "params.yaml").write_text(
            (project / "params.yaml")
            .read_text()
            .replace("max_model_len: 1024", f"max_model_len: {max_model_len}")
        )
        lora_cmd = vllm_server(str(args.base), 0, args.candidate.resolve(), max_model_len)
        merged_cmd = vllm_server(str(merged), 0, None, max_model_len)
        contenders = [
            ("plain_vllm_lora", lora_cmd, "candidate", ROOT, "/health", env),
            (
                "tunegate",
                [str(BIN / "tunegate"), "serve", "--port", "0"],
                "tunegate",
                project,
                "/readyz",
                env,
            ),
            ("plain_vllm_merged", merged_cmd, "merged", ROOT, "/health", env),
        ]
        for name, cmd, model_name, cwd, ready, cenv in contenders:
            port = free_port()
            cmd = [str(port) if c == "0" and cmd[i - 1] == "--port" else c for i, c in enumerate(cmd)]
            url = f"http://127.0.0.1:{port}"
            print(f"starting {name} ...", flush=True)
            proc = start(cmd, cwd, cenv, tmp / f"{name}.log", url, ready)
            try:
                figures = asyncio.run(load(url, model_name, bodies, args.concurrency, args.max_tokens))
            finally:
                stop(proc)
            figures["startup_seconds"] = proc.startup_seconds  # type: ignore[attr-defined]
            results[name] = figures
            print(name, figures, flush=True)
    base, ours, merged_r = results["plain_vllm_lora"], results["tunegate"], results["plain_vllm_merged"]
    summary = {
        "tunegate_throughput_ratio": ours["requests_per_s"] / base["requests_per_s"],
        "tunegate_added_p50_ms": ours["p50_ms"] - base["p50_ms"],
        "adapter_vs_merged_throughput_ratio": base["requests_per_s"] / merged_r["requests_per_s"],
        "targets": {"throughput_ratio": ">= 0.9", "added_p50_ms": "<= 10"},
    }
    write_json(
        args.out,
        {
            "benchmark": "serving_overhead",
            "base": str(args.base),
            "candidate": read_json(args.candidate / "card.json")["model_id"],
            "requests": args.requests,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
            "results": results,
            "summary": summary,
            "environment": environment(),
        },
    )
    print(summary)


if __name__ == "__main__":
    main()
