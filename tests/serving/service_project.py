"""The tiny project the service tests serve, and the helpers that start and stop it.

Two releases of random adapters on a tiny random Llama are packaged by the package
stage into a temporary BentoML store and registered with GTO in a temporary git
repository; v1 is in production and v2 in canary at 20%, v3 in staging. The `served`
fixture (tests/serving/conftest.py) builds it once for the package and waits on /readyz.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, write_params
from tests.tiny import make_tiny_adapter
from tunegate.core import calibration
from tunegate.core.artifacts import read_json, sha256_file, write_json
from tunegate.core.calibration import Calibration

SERVE = {"max_model_len": 512, "max_tokens": 480, "kv_cache_gib": 1, "max_concurrency": 2}
SERVE["shadow"] = ["staging"]
"""The shared service's settings (the `served` fixture, tests/serving/conftest.py)."""
BIN = Path(sys.executable).parent
ADMIN = "admin-secret"
FEEDBACK = "feedback-secret"
AUTH = {"Authorization": f"Bearer {ADMIN}"}  # pinning a stage (tunegate:canary) is an operator's act


# A generous client timeout: the first request that uses an adapter or a guided-decoding
# grammar compiles it, which on a busy 2-core CI machine can take well over httpx's 5 s.
TIMEOUT = 120


# v1 (production) maps its confidence through a temperature and never abstains; v3 was
# judged with threshold 1.0, so it abstains on every answer (a calibrated confidence is < 1).
CALIBRATIONS = {
    1: Calibration("temperature", temperature=2.0, abstain_below=0.0, chosen_by="declared"),
    3: Calibration("temperature", temperature=1.0, abstain_below=1.0, chosen_by="declared"),
}


def post(*args, **kwargs) -> httpx.Response:
    """A request as a client of its own for each `user` in the body: the test project trusts
    loopback as a proxy (serve.trusted_proxies), so the address in X-Forwarded-For, derived from
    the user id, is the caller the canary judge counts. Without a user: the loopback address."""
    kwargs.setdefault("timeout", TIMEOUT)
    body = kwargs.get("json")
    if isinstance(body, dict) and isinstance(body.get("user"), str):
        headers = dict(kwargs.get("headers") or {})
        headers.setdefault("X-Forwarded-For", client_address(body["user"]))
        kwargs["headers"] = headers
    return httpx.post(*args, **kwargs)


def client_address(user: str) -> str:
    digest = hashlib.sha256(user.encode("utf-8", "surrogatepass")).digest()
    return f"198.18.{digest[0]}.{digest[1]}"


def get(*args, **kwargs) -> httpx.Response:
    kwargs.setdefault("timeout", TIMEOUT)
    return httpx.get(*args, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def launch(info: dict) -> subprocess.Popen:
    """`tunegate serve` on a built project, in its own process group, logging to
    ``<root>/service.log``; not yet ready (see `wait_ready`)."""
    with open(info["root"] / "service.log", "w") as log:
        return subprocess.Popen(
            [str(BIN / "tunegate"), "serve"], cwd=info["project"], env=info["env"], stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@contextlib.contextmanager
def running(info: dict):
    """`tunegate serve` on a built project, ready (/readyz) on entry, stopped on exit."""
    proc = launch(info)
    try:
        wait_ready(proc, info["url"], info["root"] / "service.log")
        yield proc
    finally:
        stop(proc)


def build_project(root: Path, tiny_base: Path, prepared_sample: Path, serve: dict) -> dict:
    """A project with a tiny base, three approved releases (random adapters), packaged into a
    temporary BentoML store and registered with GTO; v1 in production, v2 in canary at 20%,
    v3 in staging."""
    project = root / "project"
    shutil.copytree(tiny_base, project / "models/base")
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")  # where the project keeps its paths
    port = free_port()
    # The judge: few requests needed (small test traffic), at most 2 per caller, and a p95 limit
    # (3x) that noise between two equally fast releases never reaches.
    release = {
        "lock_timeout_s": 5,
        "judge_min_requests": 10,
        "judge_max_per_caller": 2,
        "judge_max_p95_ratio": 3.0,
    }
    serve = {"port": port, "trusted_proxies": ["127.0.0.1"], **serve}  # post(): one address per user
    write_params(project / "params.yaml", serve=serve, release=release)
    env = os.environ | {
        "BENTOML_HOME": str(root / "bentoml"),
        "TUNEGATE_ACTOR": "test",
        "TUNEGATE_ACTOR_EMAIL": "test@example.com",
        "TUNEGATE_ADMIN_TOKEN": ADMIN,
        "TUNEGATE_FEEDBACK_KEY": FEEDBACK,
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    assert sh(["git", "init", "-q"], project, env).returncode == 0
    labels = tuple(read_json(prepared_sample / "labels.json"))
    versions, trees, first = [], {}, None
    for n in (1, 2, 3):  # three approved releases, one commit each
        adapter = make_tiny_adapter(project / "models/base", root / f"adapter{n}", labels, seed=n)
        card = read_json(adapter / "card.json")
        gate = gate_record(n, card, first)
        first = first or card
        cmd = [
            sys.executable,
            "-m",
            "tunegate.serving.package",
            "--params",
            "params.yaml",
            "--candidate",
            str(adapter),
        ]
        cmd += ["--gate", str(root / f"gate{n}.json"), "--out", "registry/candidate.json"]
        (root / f"report{n}.md").write_text(REPORT)
        cmd += ["--report", str(root / f"report{n}.md")]
        if n in CALIBRATIONS:  # v2 is packaged without one, as releases before calibration were
            calibration.write(root / f"calibration{n}.json", CALIBRATIONS[n])
            gate["calibration_sha256"] = sha256_file(root / f"calibration{n}.json")
            cmd += ["--calibration", str(root / f"calibration{n}.json")]
        write_json(root / f"gate{n}.json", gate)
        assert sh([*git, "commit", "-q", "--allow-empty", "-m", f"release {n}"], project, env).returncode == 0
        result = sh(cmd, project, env)
        assert result.returncode == 0, result.stderr
        versions.append(read_json(project / "registry/candidate.json")["version"])
        trees[versions[-1]] = card["tree_sha256"]
    for version, stage, extra in [
        (versions[0], "staging", []),
        (versions[0], "canary", []),
        (versions[0], "production", []),
        (versions[1], "staging", []),
        (versions[1], "canary", ["--weight", "20"]),
        (versions[2], "staging", []),
    ]:
        result = sh([str(BIN / "tunegate"), "promote", version, "--to", stage, *extra], project, env)
        assert result.returncode == 0, result.stderr
    return {
        "url": f"http://127.0.0.1:{port}", "project": project, "env": env, "versions": versions,
        "labels": labels, "root": root, "trees": trees, "port": port,
    }  # fmt: skip


REPORT = """# Release report

## Largest regressions

Messages the baseline got right and the candidate got wrong:

| suite | message | gold | candidate |
|---|---|---|---|
| holdout | my new card has still not arrived | card_arrival | lost_or_stolen_card |

## Provenance
"""
"""What the packaged release report says under its regressions (the dashboard shows it)."""


def gate_record(n: int, card: dict, first: dict | None) -> dict:
    """A gate record for release `n` as the gate stage writes one (the adapters are random, so
    the figures are made up): v1 judged against the base model, later ones against v1 with a
    paired A/B check."""
    acc = 0.80 + 0.03 * n
    checks = [
        {"name": "holdout.accuracy", "metric": "accuracy", "value": acc, "ci": [acc - 0.05, acc + 0.04],
         "threshold": ">= 0.8", "passed": True},
        {"name": "shifted.drop", "metric": "accuracy drop", "value": 0.02, "ci": [-0.01, 0.05],
         "threshold": "<= 0.1", "passed": True},
    ]  # fmt: skip
    baseline = {"kind": "base", "model_id": card["base_model"]["model_id"]}
    if first is not None:
        baseline = {"kind": "production", "model_id": first["model_id"], "tree_sha256": first["tree_sha256"]}
        checks.append(
            {"name": "holdout.ab_vs_production", "metric": "accuracy delta", "value": 0.03,
             "ci": [-0.01, 0.07], "threshold": ">= -0.02", "passed": True, "test": "McNemar"}
        )  # fmt: skip
    passed = len(checks)
    return {
        "verdict": "approved", "candidate": card, "baseline": baseline, "checks": checks,
        "summary": f"approved: {passed} of {passed} checks passed",
    }  # fmt: skip


def wait_ready(proc: subprocess.Popen, url: str, logfile: Path) -> None:
    """Poll /readyz until it answers 200 (readiness, not a fixed time); fail with the log."""
    deadline = time.monotonic() + 400
    while True:
        if proc.poll() is not None:
            pytest.fail("the service exited:\n" + logfile.read_text()[-4000:])
        try:
            if get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("the service never became ready:\n" + logfile.read_text()[-4000:])
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def finished_row(db: Path, prompt: str, timeout: float = 30) -> sqlite3.Row:
    """The completed log row of the (non-shadow) request with this input; waits for it."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT * FROM requests WHERE input = ? AND shadow = 0 AND status != 0", (prompt,)
            ).fetchone()
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no completed row for {prompt!r}"
        time.sleep(0.1)


def open_row(db: Path, prompt: str, timeout: float = 30) -> None:
    """Wait until the request with this input is being answered (its row is open)."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT 1 FROM requests WHERE input = ? AND status = 0", (prompt,)).fetchone():
                return
        assert time.monotonic() < deadline, f"no open row for {prompt!r}"
        time.sleep(0.05)


@contextlib.contextmanager
def tampered(served, version: str):
    """Edit a release's weights in the BentoML store and rewrite its card to match, as an
    attacker with write access to the store would; restore them on exit."""
    from tests.serving.test_package import rewrite_card

    store = Path(served["env"]["BENTOML_HOME"]) / "models/intent-classifier"
    folders = [f for f in store.iterdir() if f.is_dir() and (f / "card.json").exists()]
    registered = {read_json(f / "card.json")["tree_sha256"]: f for f in folders}
    folder = registered[served["trees"][version]]
    backup = folder.with_name(folder.name + ".bak")
    shutil.copytree(folder, backup)
    weights = folder / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # still a valid safetensors file, with other weights
    weights.write_bytes(bytes(data))
    rewrite_card(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)
        backup.rename(folder)
