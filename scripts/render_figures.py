"""Render the README's pictures from real records: the gate's checks and a drift report.

Writes plain SVG (no plotting library needed):

- ``docs/img/gate.svg`` from ``eval/gate.json``: one row per check with its value, its
  confidence interval where it has one, the threshold, and pass/fail;
- ``docs/img/drift.svg`` from a drift report's JSON (default: the newest under
  ``reports/drift``): one row per signal, its score against its threshold, drifted or not;
- with ``--screenshot``, ``docs/img/drift_report.png``: the Evidently HTML report beside
  that JSON as a browser draws it (headless Chromium; ``apt-get install chromium``).

Usage: ``python scripts/render_figures.py [--gate eval/gate.json] [--drift REPORT.json]
[--screenshot]``
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import tempfile
from html import escape, unescape
from pathlib import Path

GREEN, RED, GREY, INK, AMBER = "#2e7d32", "#c62828", "#9e9e9e", "#212121", "#b26a00"
ROW, LEFT, BAR, RIGHT = 26, 300, 360, 260


def svg(width: int, height: int, body: list[str], title: str) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="Helvetica, Arial, sans-serif" font-size="13">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="12" y="24" font-size="16" font-weight="bold" fill="{INK}">{escape(title)}</text>',
            *body,
            "</svg>",
        ]
    )


def text_width(body: list[str]) -> int:
    """The rightmost end of any text line, at about 7 px per character of 13 px Helvetica."""
    ends = []
    for part in body:
        for chunk in part.split("<text x=")[1:]:
            x = float(chunk.split('"')[1])
            shown = chunk.split(">", 1)[1].split("</text", 1)[0]
            ends.append(x + 7 * len(unescape(shown)))
    return int(max(ends, default=0)) + 16


def scale(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values + [0.0]), max(values + [1.0])
    return lo, hi if hi > lo else lo + 1


def level(gate: dict) -> str:
    """The intervals' level: the record's own (one-sided bounds), else 95% (older records)."""
    return f"{100 * gate.get('interval_level', 0.95):g}% interval"


def gate_figure(gate: dict) -> str:
    checks = gate["checks"] + [c | {"noted": True} for c in gate.get("noted", [])]
    body, y0 = [], 56
    body.append(
        f'<text x="12" y="44" fill="{INK}">{escape(gate["summary"])}; '
        f"baseline: {escape(gate['baseline_kind'])}; bar: value, whisker: {level(gate)}, "
        "tick: threshold</text>"
    )
    for i, c in enumerate(checks):
        y = y0 + i * ROW
        value = c["value"] if isinstance(c["value"], (int, float)) and math.isfinite(c["value"]) else None
        outcome = "noted" if c.get("noted") else c.get("outcome", "passed" if c["passed"] else "failed")
        colour = {"noted": GREY, "passed": GREEN, "failed": RED, "undecided": AMBER}[outcome]
        body.append(f'<text x="12" y="{y + 17}" fill="{INK}">{escape(c["name"])}</text>')
        numbers = [v for v in [value, *(c["ci"] or [])] if isinstance(v, (int, float))]
        threshold = _number(c["threshold"])
        lo, hi = scale(numbers + ([threshold] if threshold is not None else []))

        def x(v: float, lo: float = lo, hi: float = hi) -> float:
            return LEFT + (v - lo) / (hi - lo) * BAR

        body.append(f'<rect x="{LEFT}" y="{y + 6}" width="{BAR}" height="14" fill="#f5f5f5"/>')
        if value is not None:
            body.append(
                f'<rect x="{min(x(0), x(value)):.1f}" y="{y + 8}" width="{abs(x(value) - x(0)):.1f}" '
                f'height="10" fill="{colour}" opacity="0.8"/>'
            )
        if c["ci"]:
            a, b = x(c["ci"][0]), x(c["ci"][1])
            body.append(f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y + 13}" y2="{y + 13}" stroke="{INK}"/>')
        if threshold is not None:
            t = x(threshold)
            body.append(
                f'<line x1="{t:.1f}" x2="{t:.1f}" y1="{y + 3}" y2="{y + 23}" stroke="{INK}" '
                'stroke-width="2"/>'
            )
        shown = "-" if value is None else f"{value:.3f}"
        # noted: not judged; "open": not enough evidence either way
        verdict = {"noted": "noted", "passed": "pass", "failed": "FAIL", "undecided": "open"}[outcome]
        body.append(
            f'<text x="{LEFT + BAR + 10}" y="{y + 17}" fill="{colour}">{verdict}</text>'
            f'<text x="{LEFT + BAR + 50}" y="{y + 17}" fill="{INK}">{shown} ({escape(c["threshold"])})</text>'
        )
    height = y0 + len(checks) * ROW + 12
    width = max(LEFT + BAR + RIGHT, text_width(body))
    return svg(width, height, body, f"Release gate: {gate['verdict']}")


def _number(threshold: str) -> float | None:
    for token in threshold.replace(">", " ").replace("<", " ").replace("=", " ").split():
        try:
            return float(token)
        except ValueError:
            continue
    return None


def drift_figure(report: dict) -> str:
    signals = report["signals"]
    w = report["window"]
    body, y0 = [], 56
    body.append(
        f'<text x="12" y="44" fill="{INK}">{w["requests"]} requests of {escape(str(w.get("version")))} '
        f"vs the release reference ({report['reference']['rows']} rows); "
        "tick: threshold; p-values on a -log10 scale</text>"
    )
    for i, s in enumerate(signals):
        y = y0 + i * ROW
        colour = GREY if s["drifted"] is None else RED if s["drifted"] else GREEN
        body.append(f'<text x="12" y="{y + 17}" fill="{INK}">{escape(s["name"])}</text>')
        body.append(f'<rect x="{LEFT}" y="{y + 6}" width="{BAR}" height="14" fill="#f5f5f5"/>')
        if s["score"] is not None:
            p_value = s["method"] in ("ks", "chisquare", "two_sample_chisquare")

            # p-values on a log scale (1 .. 1e-12), the rest linearly on [0, 1]
            def x(v: float, p_value: bool = p_value) -> float:
                if p_value:
                    return LEFT + min(1.0, -math.log10(max(v, 1e-12)) / 12) * BAR
                return LEFT + max(0.0, min(1.0, v)) * BAR

            body.append(
                f'<rect x="{LEFT}" y="{y + 8}" width="{x(s["score"]) - LEFT:.1f}" height="10" '
                f'fill="{colour}" opacity="0.8"/>'
            )
            t = x(s["threshold"])
            body.append(
                f'<line x1="{t:.1f}" x2="{t:.1f}" y1="{y + 3}" y2="{y + 23}" stroke="{INK}" '
                'stroke-width="2"/>'
            )
            label = f"{s['score']:.3g} ({s['method']}, threshold {s['threshold']:.3g})"
        else:
            label = s["note"][:60] or "not judged"
        verdict = {True: "DRIFT", False: "ok", None: "n/a"}[s["drifted"]]
        if s.get("caveat"):  # a score not to be trusted for this window says so wherever it is shown
            verdict, label = f"{verdict}?", f"{label}; {s['caveat']}"
        body.append(
            f'<text x="{LEFT + BAR + 10}" y="{y + 17}" fill="{colour}">{verdict}</text>'
            f'<text x="{LEFT + BAR + 60}" y="{y + 17}" fill="{INK}">{escape(label)}</text>'
        )
    height = y0 + len(signals) * ROW + 12
    width = max(LEFT + BAR + RIGHT, text_width(body))
    return svg(width, height, body, f"Drift report {report['time']}: {report['status']}")


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 1500) -> None:
    """A PNG of an HTML page as headless Chromium draws it, its scripts given time to run.

    The flags keep Chromium off the network (the Evidently report embeds its scripts).
    """
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        raise SystemExit("--screenshot needs Chromium on PATH (apt-get install chromium)")
    if not html.is_file():
        raise SystemExit(f"no HTML report at {html}")
    png.unlink(missing_ok=True)  # an old picture must not pass for this one
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=20000",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if done.returncode != 0 or not png.is_file():
        raise SystemExit(f"Chromium did not write {png}:\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate", type=Path, default=Path("eval/gate.json"))
    parser.add_argument("--drift", type=Path, default=None, help="a drift report's .json")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument(
        "--screenshot", action="store_true", help="also a PNG of the drift report's Evidently HTML"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate.svg").write_text(gate_figure(json.loads(args.gate.read_text())), encoding="utf-8")
    print(f"wrote {args.out / 'gate.svg'}")
    drift = args.drift or max(Path("reports/drift").glob("2*.json"), default=None)
    if drift is not None:
        (args.out / "drift.svg").write_text(drift_figure(json.loads(drift.read_text())), encoding="utf-8")
        print(f"wrote {args.out / 'drift.svg'} from {drift}")
        if args.screenshot:
            html, png = drift.with_suffix(".html"), args.out / "drift_report.png"
            screenshot(html, png)
            print(f"wrote {png} from {html}")


if __name__ == "__main__":
    main()
