"""Where `make run`'s time goes: every stage of the pipeline, and the steps inside the long ones.

Runs ``dvc repro --force`` (every stage, whatever is cached) and timestamps each line the
stages print as it arrives; a stage's time runs from its ``Running stage`` line to the next
one (or the end). Inside a stage, each log line that starts a step (``STEPS``) splits it
further, and the stages' own run records (``metrics/train/run.json``, ``eval/run.json``:
train and replay seconds, prediction, classical and served seconds) are copied beside.
Writes ``bench/results/stage_profile.json`` and ``.md``.

Setup (``make setup``, about 3 minutes with a warm pip cache) is not in it: run
``time make run`` on a fresh clone for the whole.

Usage: ``python bench/stage_profile.py [--target dvc.yaml]`` (about 20 minutes here);
``--target evaluate --single`` times one stage (``dvc repro --force --single-item``);
``--log FILE --out F`` profiles a run already made, from its output with each line
prefixed by its ``HH:MM:SS`` time (``dvc repro 2>&1 | while IFS= read -r l; do echo
"$(date +%T) $l"; done``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import environment, read_json, write_json

STAGE = re.compile(r"^Running stage '([^']+)'")
STEPS = {
    "train": {"training lora on": "training, validations included", "kept step": "saving"},
    "evaluate": {
        "answering ": "predictions",
        "forgetting probe": "forgetting probe",
        "parity": "parity (vLLM start and its rows, the PEFT reference)",
        "hold-out accuracy": "writing",
    },
}
"""Log lines (their start, after the logger's prefix) that open a step of a stage, and the
step's name; the evaluate stage's ``answering`` lines add up to one step. What a stage does
before its first step (imports, loading; the train stage's replay answers) is its start-up."""
RECORDS = {"train": "metrics/train/run.json", "evaluate": "eval/run.json"}


def run(target: str, single: bool = False) -> tuple[list[tuple[float, str]], int]:
    """``dvc repro --force`` on `target`: (seconds since start, line) for each output line."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(Path(sys.executable).parent / "dvc"), "repro", "--force", target]
    cmd += ["--single-item"] if single else []
    started, lines = time.perf_counter(), []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            for part in line.rstrip("\n").split("\r"):  # progress bars redraw with \r
                lines.append((time.perf_counter() - started, part))
            print(line, end="", flush=True)
    lines.append((time.perf_counter() - started, ""))
    return lines, proc.returncode


def read_log(path: Path) -> list[tuple[float, str]]:
    """(seconds since the first line, line) from a log whose lines start with ``HH:MM:SS``."""
    out: list[tuple[float, str]] = []
    day = 0
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^(\d\d):(\d\d):(\d\d) ?(.*)$", raw)
        if not m:
            continue
        at = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) + day
        if out and at < out[-1][0] - 43200:  # past midnight
            day += 86400
            at += 86400
        out += [(float(at), part) for part in m[4].split("\r")]
    if not out:
        raise SystemExit(f"{path}: no line starts with HH:MM:SS")
    first = out[0][0]
    return [(at - first, line) for at, line in out]


def _message(line: str) -> str:
    """A log line without its ``LEVEL logger:`` prefix."""
    return re.sub(r"^(INFO|WARNING) [\w.]+: ", "", line).strip()


def profile(lines: list[tuple[float, str]]) -> dict[str, Any]:
    """Stages with their seconds, and each long stage's steps (seconds from their first line
    to the next step's, or the stage's end)."""
    marks = [(t, m.group(1)) for t, line in lines if (m := STAGE.match(line.strip()))]
    end = lines[-1][0]
    stages = []
    for i, (t, name) in enumerate(marks):
        until = marks[i + 1][0] if i + 1 < len(marks) else end
        inside = [(at, _message(line)) for at, line in lines if t <= at < until]
        stages.append({"stage": name, "seconds": round(until - t, 1), "steps": steps(name, inside, t, until)})
    return {"stages": stages, "total_seconds": round(end, 1)}


def steps(stage: str, inside: list[tuple[float, str]], start: float, until: float) -> list[dict[str, Any]]:
    starts = [(at, key) for at, msg in inside for key in STEPS.get(stage, ()) if msg.startswith(key)]
    out: dict[str, float] = {"start-up (imports, loading)": starts[0][0] - start} if starts else {}
    for i, (at, key) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else until
        name = STEPS[stage][key]
        out[name] = out.get(name, 0.0) + (nxt - at)
    return [{"step": k, "seconds": round(v, 1)} for k, v in out.items()]


def markdown(result: dict[str, Any]) -> str:
    rows = ["| stage | seconds | inside it |", "| --- | --- | --- |"]
    for s in result["stages"]:
        inside = "; ".join(f"{x['step']} {x['seconds']:.0f} s" for x in s["steps"])
        record = result["records"].get(s["stage"])
        if record:
            inside += " (run record: " + ", ".join(f"{k} {v}" for k, v in record.items()) + ")"
        rows.append(f"| {s['stage']} | {s['seconds']:.0f} | {inside} |")
    how = f"the run in `{result['log']}`" if result.get("log") else "`dvc repro --force`"
    if result.get("single"):
        how = f"`dvc repro --force --single-item {result['target']}`"
    rows.append(f"| all stages | {result['total_seconds']:.0f} | {how}, setup not included |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="dvc.yaml")
    parser.add_argument("--single", action="store_true", help="this stage only (--single-item)")
    parser.add_argument("--log", type=Path, help="profile this timestamped log instead of running")
    parser.add_argument("--out", type=Path, default=Path("bench/results/stage_profile.json"))
    args = parser.parse_args(argv)
    if args.log is not None:
        lines = read_log(args.log)
    else:
        lines, code = run(args.target, args.single)
        if code != 0:
            raise SystemExit(f"dvc repro exited {code}; no profile written")
    result = profile(lines)
    result["records"] = {}
    for stage, path in RECORDS.items():
        if Path(path).exists():
            record = read_json(Path(path))
            result["records"][stage] = {k: v for k, v in record.items() if k.endswith("seconds")}
    source = {"log": str(args.log)} if args.log else {"target": args.target, "single": args.single}
    result |= {"benchmark": "stage_profile", **source, "environment": environment(stamped=True)}
    write_json(args.out, result)
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
