"""Schema-driven fuzzing of the real service (BentoML + vLLM on the tiny model).

A service of its own, so that fuzzed admin calls (promotions, rollbacks) cannot disturb
the other service tests, and with short answers (`serve.max_tokens` 16) so that thousands
of generated requests stay cheap.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.serving.service_project import ADMIN, BIN, build_project, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed(tiny_base, prepared_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed")
    serve = {"max_model_len": 512, "max_tokens": 16, "kv_cache_gib": 1, "max_concurrency": 4}
    info = build_project(root, tiny_base, prepared_sample, serve)
    with running(info):
        yield info


def test_schemathesis_finds_no_server_error_and_no_answer_that_contradicts_the_document(fuzzed):
    """Every public and admin operation, from the service's own /docs.json (bounded examples,
    seeded and deterministic). Fails on any 5xx and on any response the document does not
    describe (status, content type, body schema, headers), and on invalid data accepted.

    One check is left out: `positive_data_acceptance` (a schema-valid body must not get 400).
    Token budgets (a prompt that fills the context, max_tokens past the room left) depend on
    the tokenizer and cannot be written in a JSON schema; the document lists 400 for them."""
    report = fuzzed["root"] / "schemathesis.ndjson"
    cmd = [
        str(BIN / "schemathesis"), "run", f"{fuzzed['url']}/docs.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", "12", "--seed", "20261124", "--generation-deterministic",
        "--workers", "1", "--request-timeout", "120", "--header", f"Authorization: Bearer {ADMIN}",
        "--exclude-path", "/metrics", "--report", "ndjson", "--report-ndjson-path", str(report),
        "--no-color",
    ]  # fmt: skip
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=fuzzed["env"] | {"NO_COLOR": "1"}
    )
    (fuzzed["root"] / "schemathesis.out").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Test cases:" in result.stdout and " generated" in result.stdout, result.stdout[-3000:]
