"""The CI example in docs/ runs what this project has: the make target, the dvc command and
the tunegate options it names exist, and the comment it posts is the one
`tunegate gate --format markdown` writes."""

from __future__ import annotations

import re

import yaml
from typer.testing import CliRunner

from tests.conftest import ROOT
from tunegate.cli import app


def test_docs_gate_comment_workflow_runs_real_commands():
    workflow = yaml.safe_load((ROOT / "docs/examples/gate-comment.yml").read_text())
    steps = workflow["jobs"]["gate"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert "make setup" in runs and ".venv/bin/dvc repro" in runs
    assert re.search(r"^setup:", (ROOT / "Makefile").read_text(), re.M)
    comment = next(r for r in runs if "--format markdown" in r)
    assert comment.startswith(".venv/bin/tunegate gate --format markdown > ")
    posted = next(r for r in runs if r.startswith("gh pr comment"))
    assert comment.split("> ")[1] in posted  # the file the comment was written to is posted
    assert runs[-1] == ".venv/bin/tunegate gate --check"  # the verdict fails the job last
    help_text = CliRunner().invoke(app, ["gate", "--help"]).output
    assert "--format" in help_text and "--check" in help_text
    assert workflow["permissions"]["pull-requests"] == "write"
