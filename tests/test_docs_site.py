"""The documentation site builds with `mkdocs build --strict` (a broken link or anchor fails
it), every page is in its navigation, and the README stays short with links that resolve."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

MKDOCS = Path(sys.executable).parent / "mkdocs"


def test_docs_site_builds_strict_and_a_broken_link_fails_it(tmp_path):
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site/gate/index.html").exists() and (tmp_path / "site/index.html").exists()
    # The same build on a copy with one broken link: strict mode must refuse it.
    broken = tmp_path / "broken"
    (broken / "docs").mkdir(parents=True)
    for page in (ROOT / "docs").rglob("*.md"):
        target = broken / "docs" / page.relative_to(ROOT / "docs")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page.read_text())
    (broken / "docs/img").symlink_to(ROOT / "docs/img")
    (broken / "bench").symlink_to(ROOT / "bench")  # the pages quote bench/results/
    (broken / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text())
    (broken / "docs/layout.md").write_text((ROOT / "docs/layout.md").read_text() + "\n[gone](gone.md)\n")
    refused = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-d", str(tmp_path / "site2")],
        cwd=broken, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0 and "gone.md" in refused.stderr


def _pages(nav: list) -> set[str]:
    found = set()
    for item in nav:
        value = next(iter(item.values()))
        found |= _pages(value) if isinstance(value, list) else {value}
    return found


def test_docs_every_page_is_in_the_navigation():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)  # !!python/name tags
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert _pages(config["nav"]) == {p for p in pages if not p.startswith(("examples/", "snippets/"))}


def test_docs_reference_pages_are_what_the_code_writes_now(tmp_path):
    """The params, CLI and API references are generated (scripts/reference_docs.py); a field,
    option or endpoint changed without rerunning it fails here, naming the page."""
    from scripts.reference_docs import PAGES, main

    main(["--out", str(tmp_path), "--readme", str(tmp_path / "README.md")])
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text(), (
        "README.md's generated blocks are stale: run .venv/bin/python scripts/reference_docs.py"
    )
    for page in PAGES:
        assert (tmp_path / page).read_text() == (ROOT / "docs" / page).read_text(), (
            f"docs/{page} is stale: run .venv/bin/python scripts/reference_docs.py"
        )
    params = (ROOT / "docs/reference/params.md").read_text()
    assert "`gate.margins`" in params and "`train.lora.r`" in params
    assert "## `tunegate promote`" in (ROOT / "docs/reference/cli.md").read_text()
    assert "`/classify`" in (ROOT / "docs/reference/api.md").read_text()


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    assert "make run" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith("http")]
    assert local and all((ROOT / link).exists() for link in local), [
        link for link in local if not (ROOT / link).exists()
    ]
