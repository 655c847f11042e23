"""Does the gate catch regressions? A simulation, then real injected regressions.

1. Simulation (``--part sim``): paired correct/incorrect outcomes on n items with a known
   accuracy delta between candidate and production (baseline accuracy 0.90, 8% of items
   discordant when the delta is 0). For each margin, the hold-out A/B check's rejection
   rate over many replicates: for an equivalent candidate (delta 0, target <= alpha), at
   the margin's boundary, and for a 3-point drop (target power >= 0.8 on 1,000 items),
   alone at alpha and inside the gate's Holm family of three A/B checks.
   The continuous case (``--part sim``, generation's per-item scores such as token F1): item
   difficulties q ~ Beta(4, 2), each model's score clip(q + N(0, 0.15)) drawn apart (an
   equivalent candidate: the pair is exchangeable), at the embedded ticket data's hold-out
   size (134); the A/B check's Wilcoxon signed-rank p-value (evaluation/stats.py
   ``paired_scores``), its rejection rate for an equivalent candidate (target <= alpha) and
   its power against a declared drop of 0.05 in mean score (the candidate's scores scaled
   down by the share that removes 0.05 on average), alone and in the Holm family of two
   (hold-out and shifted) the generation gate adjusts. Then differences that mostly tie, as
   two generation models' field F1 does (80% of items delta 0, the rest N(delta / 0.2, 0.3)):
   an equivalent candidate at margin 0, a candidate exactly at a 0.02 margin (the t-test a
   margin gets; target <= alpha) and a 0.07 drop, with and without the margin.
2. Injected regressions (bench/injected.py), through the real train, evaluate and gate
   stages with the pipeline's recipe (or ``--steps N``): a reference candidate becomes
   production; then a sibling (same recipe, another seed) must be approved against it, and
   candidates trained on damaged data must each be rejected, by the check one would expect.
   ``--part inject``: classification on the sample data (30% of labels shuffled, three
   intents left out, only long messages); ``--part inject-generation``: the ticket data with
   30% of the answers swapped between records, and two reseeded siblings (seeds 7 and 13).

Writes ``bench/results/gate_power.json`` and a Markdown table ``bench/results/gate_power.md``.

Usage: ``python bench/gate_power.py [--part sim|continuous|inject|inject-generation|all] [--steps N]
[--replicates 4000] [--reuse-reference models/candidate] [--cases ...] [--keep DIR]`` (inject trains
five candidates with the default recipe: about an hour on 2 CPU cores; inject-generation three or
four, about 22 minutes each at the two-epoch recipe)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from injected import CASES, KINDS, injected

from evaluation.stats import adjust, paired_accuracy, paired_scores
from tunegate.artifacts import environment, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results"


def paired_draw(rng: np.random.Generator, n: int, base_acc: float, delta: float, discordant: float):
    """Per-item (candidate correct, baseline correct) with the given accuracy delta."""
    only_cand, only_base = (discordant + delta) / 2, (discordant - delta) / 2
    both = base_acc - only_base
    probs = [both, only_cand, only_base, 1 - both - only_cand - only_base]
    kinds = rng.choice(4, size=n, p=probs)
    return np.isin(kinds, (0, 1)), np.isin(kinds, (0, 2))


def holm_first(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-value of column 0 for each row of a (replicates, m) p-value array
    (vectorised; checked against statsmodels below, which takes one family per call)."""
    m = p.shape[1]
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1) * (m - np.arange(m))
    adjusted_sorted = np.minimum(np.maximum.accumulate(ranked, axis=1), 1.0)
    adjusted = np.empty_like(adjusted_sorted)
    np.put_along_axis(adjusted, order, adjusted_sorted, axis=1)
    return adjusted[:, 0]


def simulate(n: int, replicates: int, alpha: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    check = rng.uniform(size=(20, 3))
    assert np.allclose(holm_first(check), [adjust(list(r), "holm")[0] for r in check])
    rows = []
    for margin in (0.0, 0.01, 0.02):
        cases = (("equivalent (delta 0)", 0.0), ("at the margin", -margin), ("3-point drop", -0.03))
        for label, delta in cases:
            if label == "at the margin" and margin == 0.0:
                continue
            ps = np.empty(replicates)
            for i in range(replicates):
                c, b = paired_draw(rng, n, 0.90, delta, 0.08)
                ps[i] = paired_accuracy(c, b, question="no_regression", margin=margin, alpha=alpha).p_value
            alone = int(np.sum(ps < alpha))
            # The gate adjusts the hold-out check with two others (shifted accuracy, hold-out
            # macro-F1); take those as null draws (uniform p-values), the least helpful case.
            family = np.column_stack([ps, rng.uniform(size=(replicates, 2))])
            in_family = int(np.sum(holm_first(family) < alpha))
            rows.append(
                {
                    "margin": margin,
                    "case": label,
                    "true_delta": delta,
                    "n": n,
                    "rejection_rate": round(alone / replicates, 4),
                    "rejection_rate_holm3": round(in_family / replicates, 4),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def simulate_continuous(n: int, replicates: int, alpha: float, seed: int, drop: float = 0.05) -> list[dict]:
    """The A/B check on continuous per-item scores (see the module docstring): scores with
    noise on every item (no ties, margin 0), then differences that mostly tie, as two
    generation models' field F1 does (80% of items delta 0), at margin 0 and at 0.02."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, target in (("equivalent (delta 0)", 0.0), (f"{drop:.2f} drop in mean score", drop)):
        ps, realised = np.empty(replicates), np.empty(replicates)
        for i in range(replicates):
            q = rng.beta(4, 2, n)
            cand = np.clip(q + rng.normal(0, 0.15, n), 0, 1)
            base = np.clip(q + rng.normal(0, 0.15, n), 0, 1)
            if target:
                cand = cand * (1 - target / cand.mean())
            realised[i] = cand.mean() - base.mean()
            ps[i] = paired_scores(cand, base, question="no_regression", resamples=100, seed=i).p_value
        rows.append(sim_row(label, "continuous, no ties", n, 0.0, -target, realised, ps, alpha, rng))
    tied = (
        ("equivalent (delta 0), 80% ties", 0.0, 0.0),
        ("at the margin, 80% ties", 0.02, -0.02),
        ("0.07 drop, 80% ties", 0.02, -0.07),
        ("0.07 drop, 80% ties", 0.0, -0.07),
    )
    for label, margin, delta in tied:
        ps, realised = np.empty(replicates), np.empty(replicates)
        for i in range(replicates):
            differs = rng.random(n) < 0.2
            d = np.where(differs, rng.normal(delta / 0.2, 0.3, n), 0.0)
            base = rng.uniform(0.3, 0.7, n)
            realised[i] = d.mean()
            r = paired_scores(base + d, base, question="no_regression", margin=margin, resamples=100, seed=i)
            ps[i] = r.p_value
        rows.append(sim_row(label, "field F1-like, 80% ties", n, margin, delta, realised, ps, alpha, rng))
    return rows


def sim_row(
    label: str, scores: str, n: int, margin: float, delta: float,
    realised: np.ndarray, ps: np.ndarray, alpha: float, rng: np.random.Generator,
) -> dict:  # fmt: skip
    family = np.column_stack([ps, rng.uniform(size=(len(ps), 1))])
    row = {
        "case": label, "scores": scores, "n": n, "margin": margin, "declared_delta": delta,
        "mean_realised_delta": round(float(realised.mean()), 4),
        "test": "wilcoxon signed-rank" if margin == 0 else "one-sample t-test against the margin",
        "rejection_rate": round(float(np.mean(ps < alpha)), 4),
        "rejection_rate_holm2": round(float(np.mean(holm_first(family) < alpha)), 4),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def markdown(
    sim: list[dict],
    inj: list[dict],
    continuous: list[dict] | None = None,
    inj_generation: list[dict] | None = None,
) -> str:
    out = ["# Gate power", ""]
    if sim:
        out += [
            "## Simulation (hold-out A/B check, paired McNemar / Wald with margin)",
            "",
            "| margin | case | true delta | n | rejected (alone, alpha) | rejected (in Holm family of 3) |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| {r['margin']} | {r['case']} | {r['true_delta']:+.2f} | {r['n']} | "
            f"{r['rejection_rate']:.3f} | {r['rejection_rate_holm3']:.3f} |"
            for r in sim
        ]
    if continuous:
        out += [
            "", "## Simulation, continuous per-item scores (generation)", "",
            "| case | margin | test | n | declared delta | realised delta | rejected (alone, alpha) "
            "| rejected (Holm, 2) |",
            "|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        out += [
            f"| {r['case']} | {r.get('margin', 0.0)} | {r['test']} | {r['n']} | {r['declared_delta']:+.2f} | "
            f"{r['mean_realised_delta']:+.3f} | {r['rejection_rate']:.3f} | {r['rejection_rate_holm2']:.3f} |"
            for r in continuous
        ]
    for title, rows in (("classification", inj), ("generation", inj_generation or [])):
        if not rows:
            continue
        out += ["", f"## Injected regressions, {title}", ""]
        out += ["| candidate | train rows | baseline | verdict | hold-out primary | failed checks |"]
        out += ["|---|---|---|---|---|---|"]
        for r in rows:
            primary = r.get("primary_check", "holdout.accuracy")
            value = r.get("primary_value", r.get("holdout_accuracy"))
            out.append(
                f"| {r['candidate']} | {r['train_rows']} | {r['baseline']} | {r['verdict']} | "
                f"{primary} {value:.3f} | {', '.join(r['failed_checks']) or '-'} |"
            )
    return "\n".join(out) + "\n"


def merged(previous: list[dict], new: list[dict] | None) -> list[dict]:
    """The injected rows of this run, and the previous run's rows of the candidates not run
    again (``--cases``) that were judged against this run's reference (the same model as
    production), in the kind's case order. Rows against another reference (another recipe,
    or not recorded) are dropped, not mixed into the table."""
    if new is None:
        return previous
    ran = {r["candidate"] for r in new}
    reference = next((r.get("model_id") for r in new if r["candidate"] == "reference"), None)
    kept = [
        r for r in previous
        if r["candidate"] not in ran and reference is not None and r.get("baseline_model_id") == reference
    ]  # fmt: skip
    for r in previous:
        if r["candidate"] not in ran and r not in kept and r["candidate"] != "reference":
            print(f"dropped the previous {r['candidate']} row: judged against another reference", flush=True)
    order = {c[0]: i for kind in KINDS.values() for i, c in enumerate(kind.cases)}
    return sorted(kept + new, key=lambda r: order.get(r["candidate"], len(order)))


KEEP_MARK = ".tunegate-gate-power"


@contextlib.contextmanager
def workdir(keep: Path | None, kind: str) -> Iterator[Path]:
    """`keep`/<kind>, emptied first when an earlier --keep made it (its mark), refused when it
    holds anything else; or a temporary folder removed afterwards."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=f"tunegate-gate-power-{kind}-") as tmp:
            yield Path(tmp)
        return
    folder = keep.resolve() / kind
    if folder.exists() and any(folder.iterdir()):
        if not (folder / KEEP_MARK).exists():
            raise SystemExit(f"--keep: {folder} exists and was not made by --keep; choose an empty folder")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / KEEP_MARK).touch()
    yield folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["sim", "continuous", "inject", "inject-generation", "all"]
    parser.add_argument("--part", choices=parts, default="all")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-continuous", type=int, default=134, help="items (the ticket data's hold-out)")
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per candidate (default: the params file's recipe)",
    )
    parser.add_argument(
        "--cases", nargs="+", choices=CASES, default=list(CASES), help="injected candidates to run"
    )
    parser.add_argument(
        "--reuse-reference",
        type=Path,
        default=None,
        help="use this candidate (models/candidate, or models/candidate-generation for inject-generation) "
        "with its pipeline's gate record as the reference",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the injected candidates' models and evaluation records in this folder "
        "(default: a temporary folder, removed)",
    )
    args = parser.parse_args()

    previous = read_json(RESULTS / "gate_power.json") if (RESULTS / "gate_power.json").exists() else {}
    sim = simulate(args.n, args.replicates, args.alpha, seed=0) if args.part in ("sim", "all") else None
    continuous = None
    if args.part in ("sim", "continuous", "all"):
        continuous = simulate_continuous(args.n_continuous, args.replicates // 2, args.alpha, seed=1)
    reuse = args.reuse_reference.resolve() if args.reuse_reference else None
    inj = inj_generation = None
    if args.part in ("inject", "all"):
        with workdir(args.keep, "classification") as tmp:
            overrides = {"perturbation_rows": 60, "parity_rows": 16}
            inj = injected(KINDS["classification"], tmp, tuple(args.cases), steps=args.steps,
                           reuse=reuse, eval_overrides=overrides)  # fmt: skip
    if args.part in ("inject-generation", "all"):
        with workdir(args.keep, "generation") as tmp:
            # parity on 16 records (the pipeline checks 32): each costs two reference generations;
            # no few-shot prompting reference (at gate.vs_prompting: report it decides nothing)
            reuse_gen = reuse if args.part == "inject-generation" else None
            overrides = {"parity_rows": 16, "few_shot": 0}
            inj_generation = injected(KINDS["generation"], tmp, tuple(args.cases), steps=args.steps,
                                      reuse=reuse_gen, eval_overrides=overrides)  # fmt: skip
    result = {
        "benchmark": "gate_power",
        "alpha": args.alpha,
        "simulation": sim if sim is not None else previous.get("simulation", []),
        "simulation_continuous": continuous
        if continuous is not None
        else previous.get("simulation_continuous", []),
        "injected": merged(previous.get("injected", []), inj),
        "train_steps": args.steps if inj is not None else previous.get("train_steps"),
        "injected_generation": merged(previous.get("injected_generation", []), inj_generation),
        "environment": environment(),
    }
    write_json(RESULTS / "gate_power.json", result)
    table = markdown(
        result["simulation"],
        result["injected"],
        result["simulation_continuous"],
        result["injected_generation"],
    )
    (RESULTS / "gate_power.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
