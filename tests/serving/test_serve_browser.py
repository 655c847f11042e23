"""The dashboard in a real browser (headless Chromium, Playwright) against the real service.

The `served` service (tests/serving/conftest.py: BentoML + vLLM on a tiny model; v1 in
production, v2 in canary at 20%, v3 in staging) is shared with test_service.py, which runs
after this module: what a test here changes in the registry it puts back. Each page is
checked for what a person would see, and photographed (the PNGs are in the test's
temporary folder).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.browser import launched
from tests.monitoring.test_drift import held_out, log_of, write_reference
from tests.serving.service_project import ADMIN, BIN, get, post
from tunegate.core.artifacts import read_jsonl
from tunegate.core.params import load_params
from tunegate.monitoring.descriptors import vocabulary
from tunegate.monitoring.drift_report import main_report

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {ADMIN}"}
WAIT_MS = 60_000  # the first view of a release verifies its files in the store


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def page(served):
    with launched() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        yield tab
        context.close()


def shoot(tab, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, name  # a rendered page, not a blank one


def test_browser_releases_page_shows_each_stage_its_share_and_the_audit_trail(served, page, shots):
    v1, v2, v3 = served["versions"]
    page.goto(f"{served['url']}/ui/#/releases")
    page.wait_for_selector("td.traffic")
    assert page.inner_text('td.traffic[data-stage="production"]') == "80%"
    assert page.inner_text('td.traffic[data-stage="canary"]') == "20%"
    rows = [r.split("\t") for r in page.inner_text("table").splitlines()[1:]]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("staging", v3, "approved"), ("canary", v2, "approved"), ("production", v1, "approved"),
    ]  # fmt: skip
    assert rows[1][5] == "test"  # by whom (TUNEGATE_ACTOR)
    audit = page.locator("table").nth(2).inner_text().splitlines()[1:]
    assert len(audit) == len(get(f"{served['url']}/ui/api/releases.json").json()["audit"]) >= 6
    assert not any("FORCED" in line for line in audit)
    assert page.inner_text("#mode") == "live service"
    assert page.inner_text("footer").startswith("Source: registry")
    shoot(page, shots, "releases")


def test_browser_release_page_draws_each_check_against_its_threshold(served, page, shots):
    v1, v2, _ = served["versions"]
    page.goto(f"{served['url']}/ui/#/release/{v2}")
    page.wait_for_selector("tr.check")
    assert page.inner_text("h1") == f"Release {v2} approved"
    assert page.inner_text("#summary") == "approved: 3 of 3 checks passed"
    row = page.locator('tr.check[data-check="holdout.accuracy"]')
    assert "[0.810, 0.900]" in row.inner_text()  # 0.86 - 0.05, 0.86 + 0.04
    chart = row.locator("svg.interval")
    ci, dot, line = chart.locator("line.ci"), chart.locator("circle.value"), chart.locator("line.threshold")
    low, high = float(ci.get_attribute("x1")), float(ci.get_attribute("x2"))
    assert low < float(dot.get_attribute("cx")) < high  # the value inside its interval
    assert float(line.get_attribute("x1")) < low  # threshold 0.8 left of the interval's 0.81
    assert "Judged against the production model" in page.inner_text("main") and v1 in page.inner_text("main")
    assert "my new card has still not arrived" in page.inner_text("main")  # the packaged regressions
    shoot(page, shots, "release")
    page.click(f'a[href="#/compare/{v1}/{v2}"]')
    page.wait_for_selector("#paired-source")
    assert f"when {v2} was judged against {v1}" in page.inner_text("#paired-source")
    paired = page.locator('tr.check[data-check="holdout.ab_vs_production"]')
    assert "[-0.010, 0.070]" in paired.inner_text() and paired.locator("svg.interval circle").count() == 1
    shoot(page, shots, "compare")


def test_browser_promotion_needs_the_token_and_moves_the_canary_share(served, page, shots):
    url, (_, v2, _) = served["url"], served["versions"]
    page.goto(f"{url}/ui/#/releases")
    page.wait_for_selector("#promote")

    def promote_v2_to(weight: int) -> None:
        page.select_option("#promote-version", v2)
        page.select_option("#promote-stage", "canary")
        page.fill("#promote-weight", str(weight))
        page.fill("#promote-reason", "browser test")
        page.click("#promote")

    try:
        promote_v2_to(50)  # no token entered yet
        refused = page.wait_for_selector("#admin-result .message.error").inner_text()
        assert "refused (401)" in refused and "admin token" in refused
        assert get(f"{url}/ui/api/releases.json").json()["stages"][1]["traffic"] == 20  # nothing changed
        page.fill("#token-input", ADMIN)
        page.click("#token-form button")
        assert page.inner_text("#token-state") == "admin token held in this tab"
        page.wait_for_selector("text=(token held in this tab)")  # the panel re-rendered with the token
        promote_v2_to(50)
        assert page.wait_for_selector("#admin-result .message.ok").inner_text() == f"{v2} is in canary"
        assert page.inner_text('td.traffic[data-stage="canary"]') == "50%"
        assert page.inner_text('td.traffic[data-stage="production"]') == "50%"
        shoot(page, shots, "promoted")
        # The token is nowhere but in the tab's memory: not in the page, its storage or cookies.
        assert ADMIN not in page.content() and page.input_value("#token-input") == ""
        kept = page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]")
        assert kept == [0, 0, ""] and page.context.cookies() == []
        logs = list(served["project"].glob("logs/*.sqlite*"))
        assert logs and not any(ADMIN.encode() in p.read_bytes() for p in logs)
    finally:  # test_service.py expects v2 at 20%
        r = post(f"{url}/admin/promote", headers=AUTH, json={"version": v2, "stage": "canary", "weight": 20})
        assert r.status_code == 200, r.text


def wait_logged(url: str, requests: int, within: float = 60) -> None:
    """Until the judged window holds `requests` routed requests: the service answers before its
    log writer has written the rows (tunegate/serving/logwriter.py), so the page could be read too early."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        metrics = (get(f"{url}/ui/api/canary.json").json().get("decision") or {}).get("metrics", {})
        seen = sum((metrics.get(side) or {}).get("requests", 0) for side in ("canary", "production"))
        if seen >= requests:
            return
        time.sleep(0.2)  # polling the log's state, not waiting blindly
    pytest.fail(f"the log did not hold {requests} routed requests within {within:.0f} s")


def test_browser_canary_page_compares_live_traffic_with_production(served, page, shots):
    url, (v1, v2, _) = served["url"], served["versions"]
    answered = {v1: 0, v2: 0}
    for n in range(24):  # one request per caller: no caller cap applies
        r = post(f"{url}/classify", json={"text": f"where is my card, order {n}", "user": f"canary-{n}"})
        assert r.status_code == 200, r.text
        answered[r.headers["x-tunegate-version"]] += 1
    wait_logged(url, sum(answered.values()))
    page.goto(f"{url}/ui/#/canary")
    page.wait_for_selector("#canary-state")
    assert page.inner_text("#canary-state").startswith(f"{v2} at 20% since")
    assert f"against production {v1}" in page.inner_text("#canary-state")
    table = page.locator("main table").first.inner_text().splitlines()
    counts = {line.split("\t")[0]: int(line.split("\t")[1]) for line in table[1:]}
    assert counts == {"canary": answered[v2], "production": answered[v1]}
    action = page.inner_text("main h2 .badge")
    assert action in ("wait", "advance", "rollback", "promote")
    if answered[v2] < 10:  # release.judge_min_requests in this project
        assert action == "wait" and "requests" in page.inner_text("#reasons")
    assert "shadow pairs" in page.inner_text("#agreement")
    shoot(page, shots, "canary")


def test_browser_drift_page_draws_a_time_line_per_signal_after_two_reports(
    served, page, shots, prepared_sample
):
    root = served["root"]
    vocab = vocabulary(r["text"] for r in read_jsonl(prepared_sample / "train.jsonl"))
    reference = write_reference(root / "reference.json", held_out(prepared_sample), vocab)
    holdout = log_of(root / "holdout.sqlite", read_jsonl(prepared_sample / "holdout.jsonl"))
    shifted = log_of(root / "shifted.sqlite", read_jsonl(prepared_sample / "shifted.jsonl"), 2, 0.7)
    params = load_params(served["project"] / "params.yaml")
    reports = served["project"] / params.monitor.reports_dir
    for log, status in ((holdout, "no_drift"), (shifted, "drift")):  # what `tunegate drift` writes
        record, _ = main_report(log, str(reference), reports, params, project=served["project"])
        assert record.status == status, record.to_dict()
        record.write(reports)
    page.goto(f"{served['url']}/ui/#/drift")
    page.wait_for_selector("svg.timeline")
    assert page.inner_text("h1") == "Drift (2 reports)"
    statuses = [r.get_attribute("data-status") for r in page.locator("tr.report").all()]
    assert statuses == ["no_drift", "drift"]
    embedding = page.locator('svg.timeline[data-signal="embedding"]')
    assert embedding.locator("circle").count() == 2 and embedding.locator("circle.drifted").count() == 1
    first, second = (float(c.get_attribute("cx")) for c in embedding.locator("circle").all())
    assert first < second  # in time order, one report after the other
    assert page.locator("svg.timeline").count() >= 8  # one per signal
    href = page.locator("tr.report a").first.get_attribute("href")
    evidently = get(f"{served['url']}/ui/{href}")  # the report's Evidently page, as written
    written = served["project"] / "reports/drift" / Path(href).name
    assert evidently.status_code == 200 and evidently.content == written.read_bytes()
    shoot(page, shots, "drift")


def test_browser_static_site_shows_the_same_pages_read_only(served, page, shots, tmp_path):
    _, v2, _ = served["versions"]
    site = tmp_path / "site"
    cmd = [str(BIN / "tunegate"), "ui", "build", "--out", str(site)]
    built = subprocess.run(cmd, cwd=served["project"], env=served["env"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    page.goto(f"{site.as_uri()}/index.html#/release/{v2}")  # from file://, no server
    page.wait_for_selector("tr.check")
    assert page.inner_text("#mode") == "static snapshot"
    assert page.inner_text("#summary") == "approved: 3 of 3 checks passed"
    assert page.locator('tr.check[data-check="holdout.accuracy"] svg.interval circle.value').count() == 1
    page.goto(f"{site.as_uri()}/index.html#/releases")
    page.wait_for_selector("td.traffic")
    assert page.locator("#promote").count() == 0 and "A snapshot" in page.inner_text("main")
    page.goto(f"{site.as_uri()}/index.html#/drift")
    page.wait_for_selector("svg.timeline")
    assert page.inner_text("h1") == "Drift (2 reports)"
    links = [Path(a.get_attribute("href")).name for a in page.locator("tr.report a").all()]
    assert len(links) == 2 and all((site / "reports" / name).exists() for name in links)
    shoot(page, shots, "static-drift")
