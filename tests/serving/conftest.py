"""The real service shared by the live tests of this package: `tunegate serve` (BentoML +
vLLM on the CPU) on a tiny model with three releases (tests/serving/test_service.py's
`build_project`). Started once for the package: test_serve_browser.py runs first on it
(and puts back what it changes), then test_service.py; no other module runs between."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def served(tiny_base, prepared_sample, tmp_path_factory):
    from tests.serving.service_project import SERVE, build_project, running

    root = tmp_path_factory.mktemp("served")
    info = build_project(root, tiny_base, prepared_sample, SERVE)
    with running(info):
        yield info
