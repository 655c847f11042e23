"""docs/service-guarantees.md names the test that holds each guarantee: every name it cites
exists, so the page cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_the_guarantees_page_cites_exists():
    page = (ROOT / "docs/service-guarantees.md").read_text()
    # each cell cites `file.py::test_name` or continues with `::test_name` (same file)
    refs, current = [], None
    for cell in re.findall(r"`([^`]+)`", page):
        m = re.fullmatch(r"(?:(tests/[\w/]+\.py|\w+\.py))?::(test_\w+)", cell)
        if m:
            current = m.group(1) or current
            refs.append((current, m.group(2)))
    assert len(refs) >= 25
    for file, name in refs:
        path = ROOT / file if file.startswith("tests/") else ROOT / "tests/serving" / file
        if not path.exists():
            path = ROOT / "tests/core" / file
        assert path.exists(), file
        assert re.search(rf"^(async )?def {name}\(", path.read_text(), re.M), f"{file}::{name}"
