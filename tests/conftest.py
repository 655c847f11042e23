"""Shared fixtures: the repository root, the external Banking77 folder, params helpers, and
the project after one real `dvc repro` (a session fixture defined here, once: a fixture
imported into a second test module would run the whole pipeline a second time)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.postgres import postgres_server, private_postgres  # noqa: F401 - real PostgreSQL (tests/postgres.py)

ROOT = Path(__file__).resolve().parents[1]
BANKING77 = Path(os.environ.get("TUNEGATE_BANKING77", ROOT.parent / "shared" / "data" / "banking77"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One of several xdist workers (`make test`): every torch process it starts takes one thread
# (tunegate/core/threads.py reads OMP_NUM_THREADS) and every vLLM engine runs on a core of its own,
# as the other worker's do on theirs: two processes that each take every core slow each other
# many times over (the pipeline fixture took 14 minutes beside a vLLM engine, 3.5 alone).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if WORKER.startswith("gw") and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", str(int(WORKER[2:]) % (os.cpu_count() or 1)))


def write_params(path: Path, **sections: dict[str, Any]) -> Path:
    """Write a params.yaml: the shipped one with the given sections' keys replaced."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def banking77() -> Path:
    if not (BANKING77 / "train.csv").exists():
        pytest.skip(f"Banking77 not found at {BANKING77} (external data, optional)")
    return BANKING77


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    from tests.tiny import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory) -> Path:
    """data/prepared built from the embedded sample, once per session."""
    from tunegate.training.prepare import main as prepare_main

    folder = tmp_path_factory.mktemp("prepared")
    params = write_params(
        folder / "params.yaml",
        data={
            "source": str(ROOT / "data/sample/messages.csv"),
            "shifted_source": str(ROOT / "data/sample/shifted.csv"),
            "probe_source": str(ROOT / "data/sample/probe.jsonl"),
            "replay_source": str(ROOT / "data/sample/replay.jsonl"),
        },
    )
    prepare_main(["--params", str(params), "--out", str(folder / "out")])
    return folder / "out"


# The real stages, with a training profile small enough for a test (the default takes minutes).
QUICK_TRAIN = {
    "max_steps": 4,
    "eval_every": 2,
    "batch_size": 8,
    "max_train_rows": 48,
    "max_val_rows": 12,
    "replay_rows": 8,
    "max_forgetting": None,  # a random tiny model forgets everything at once: budgets are tested on their own
    "forgetting_rows": 4,  # measured at every validation all the same, on 4 general prompts (CI time)
}
# A hold-out of 96 and a shifted suite of 100: the fewest on which an identical model shows
# non-inferiority at the 0.03 margin (no discordant pair bounds the difference at about
# 2.7 / (n + 2.7), under 0.03 from 88 items on), so every rule still decides something.
QUICK_PREPARE = {"max_rows": 480}
QUICK_SUITES = {"data/sample/shifted.csv": 100, "data/sample/probe.jsonl": 20}
"""The pipeline fixture's shifted and probe files: their first rows (the suites' time)."""
QUICK_EVAL = {
    "perturbations": ["typos", "truncation"],
    "perturbation_rows": 24,
    "parity_rows": 8,
    "reference_rows": 50,
    "few_shot": 2,  # the prompting reference's prompts are the longest the scorer reads
}

COPY = [
    ".gitignore",  # the run records (run.json) stay untracked, as in a clone
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "tunegate",
    "data/sample",
    "data/general",  # the train stage measures forgetting on its general prompts
    "data/feedback",
    "registry",
    "tune/intent-classifier-tune",  # the gate stage reads its spread.json
    ".dvc/config",
    ".dvcignore",
]


def sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(cwd),
        "DVC_NO_ANALYTICS": "1",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A git repository holding a copy of the project, after one `dvc repro`."""
    dest = tmp_path_factory.mktemp("project")
    for rel in COPY:
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    write_params(dest / "params.yaml", prepare=QUICK_PREPARE, train=QUICK_TRAIN, eval=QUICK_EVAL)
    for rel, rows in QUICK_SUITES.items():
        lines = (dest / rel).read_text().splitlines()
        (dest / rel).write_text("\n".join(lines[: rows + rel.endswith(".csv")]) + "\n")  # + the header
    dvc = str(Path(sys.executable).parent / "dvc")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        assert sh(cmd, dest).returncode == 0
    result = sh([dvc, "repro"], dest)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dest


# Two workers (pytest-xdist, `make test` runs `-n 2 --dist loadscope --no-loadscope-reorder`):
# the unit of work is a module, so its module-scoped fixtures (a service of its own) start
# once; modules sharing a costly session or package fixture are one unit, run in file order
# on one worker: the pipeline fixture (`project`, about 4 minutes) and the package's live
# service (`served`, tests/serving/conftest.py). The longest units are handed out first, so
# neither worker idles at the end while the other still runs one. (xdist's own
# `--dist loadgroup` renames node ids through an attribute pytest 9 no longer reads, so the
# units are given to its scheduler here instead.)
SHARED = {
    "tests/test_pipeline.py": "pipeline",
    "tests/training/test_base.py": "pipeline",
    "tests/serving/test_serve_browser.py": "served",
    "tests/serving/test_service.py": "served",
    "tests/serving/test_service_release_states.py": "served",
    "tests/serving/test_service_restart.py": "served",
}
FIRST = ("pipeline", "served", "tests/test_generation_pipeline.py", "tests/serving/test_replicas.py")
"""The longest units (bench/results/test_durations.txt), in the order they start."""


def unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return SHARED.get(module, module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` with the units above instead of one module or class each."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

    return Units(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist's workers (which collect for the scheduler): the longest units first; stable,
    so file order holds within each unit and among the rest. A run in one process keeps the
    plain file order."""
    if not hasattr(config, "workerinput"):
        return
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(unit(item.nodeid), len(FIRST)))
