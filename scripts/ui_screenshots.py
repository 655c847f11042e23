"""`make screenshots`: the README's pictures of the dashboard, from a real run.

Run after `make demo`, on its scratch clone (``DEMO_DIR``, default ``/tmp/tunegate-demo``),
which then holds v0.0.1 in production (promoted by the canary judge), the retrained
candidate v0.0.2 in the registry, three drift reports and a retraining trigger:

1. ``tunegate promote`` the newest approved release to staging, then a canary at 50%;
2. ``tunegate serve``; replay the demo channel's second window with feedback, so both
   releases answer callers and the canary judge has traffic to compare;
3. open each page of ``/ui`` in headless Chromium (tests/browser.py) and save it as
   ``docs/img/ui-<page>.png``; stop the service.

Each command is printed before it runs. Usage: ``python scripts/ui_screenshots.py [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from scripts.demo import BIN, say, sh, wait_ready  # noqa: E402
from tests.browser import launched  # noqa: E402

PAGES = ["releases", "release", "compare", "canary", "drift"]


def shoot(url: str, out: Path, v1: str, v2: str) -> list[Path]:
    routes = {
        "releases": "#/releases", "release": f"#/release/{v2}", "compare": f"#/compare/{v1}/{v2}",
        "canary": "#/canary", "drift": "#/drift",
    }  # fmt: skip
    ready = {"releases": "td.traffic", "release": "tr.check", "compare": "#paired-source"}
    ready |= {"canary": "#canary-state", "drift": "svg.timeline"}
    saved = []
    with launched() as browser:
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(120_000)
        for name in PAGES:
            tab.goto(f"{url}/ui/{routes[name]}")
            tab.wait_for_selector(ready[name])
            saved.append(out / f"ui-{name}.png")
            tab.screenshot(path=str(saved[-1]), full_page=True)
            print(f"saved {saved[-1].relative_to(PROJECT)}", flush=True)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("DEMO_DIR", "/tmp/tunegate-demo")))
    parser.add_argument("--port", type=int, default=3112)
    parser.add_argument("--out", type=Path, default=PROJECT / "docs/img")
    args = parser.parse_args()
    demo, url, tg = args.dir.resolve(), f"http://127.0.0.1:{args.port}", str(BIN / "tunegate")
    os.environ["BENTOML_HOME"] = str(demo / ".bentoml")  # the demo's own model store
    os.environ.setdefault("TUNEGATE_ACTOR", "demo")
    os.environ.setdefault("TUNEGATE_FEEDBACK_KEY", secrets.token_hex(16))
    status = json.loads(sh([tg, "status", "--json"], demo, quiet=True).stdout)
    production = next(s["version"] for s in status if s["stage"] == "production")
    candidate = json.loads((demo / "registry/candidate.json").read_text())
    newer = candidate.get("version") not in (None, production) and candidate.get("packaged")
    if not production or not newer:
        raise SystemExit(f"run `make demo` first: {demo} needs a production release and a newer packaged one")
    v1, v2 = production, candidate["version"]

    say(f"1. {v2} to staging, then a 50% canary beside production {v1}")
    sh([tg, "promote", v2, "--to", "staging"], demo)
    sh([tg, "promote", v2, "--to", "canary", "--weight", "50"], demo)

    say("2. Serve, and replay the new channel's second window with feedback")
    serve_log = demo / "logs/serve-screenshots.log"
    with open(serve_log, "w") as log:
        server = subprocess.Popen(
            [tg, "serve", "--port", str(args.port)], cwd=demo, stdout=log, stderr=log, start_new_session=True
        )
    try:
        print(f"ready after {wait_ready(url, server, serve_log):.0f} s")
        sh([tg, "replay", str(demo / "logs/channel-2.csv"), "--rate", "20", "--url", url, "--feedback"], demo)
        sh([tg, "rollout", "step", "--dry-run"], demo)
        say("3. The dashboard's pages, in headless Chromium")
        shoot(url, args.out, v1, v2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
