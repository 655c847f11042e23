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
    for page in (ROOT / "docs").glob("*.md"):
        (broken / "docs" / page.name).write_text(page.read_text())
    (broken / "docs/img").symlink_to(ROOT / "docs/img")
    (broken / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text())
    (broken / "docs/layout.md").write_text((ROOT / "docs/layout.md").read_text() + "\n[gone](gone.md)\n")
    refused = subprocess.run(
        [str(MKDOCS), "build", "--strict", "-d", str(tmp_path / "site2")],
        cwd=broken, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode != 0 and "gone.md" in refused.stderr


def test_docs_every_page_is_in_the_navigation():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)  # !!python/name tags
    listed = {next(iter(item.values())) for item in config["nav"]}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    assert "make run" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith("http")]
    assert local and all((ROOT / link).exists() for link in local), [
        link for link in local if not (ROOT / link).exists()
    ]
