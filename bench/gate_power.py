"""Does the gate catch regressions? A simulation, then real injected regressions.

1. Simulation of the three outcomes (bench/outcome_sim.py): the hold-out A/B against
   production through the gate's own code, for suite sizes 134, 168, 450 and 1,000,
   disagreement rates 5%, 10% and 20%, and a candidate 2x the margin worse, exactly at the
   margin, or equivalent: the shares approved, not enough evidence and rejected, and the
   items that would show non-inferiority at power 0.8. ``--part sim``: 0/1 scores
   (classification) and scores that mostly tie (generation); ``--part continuous``: the latter.
   The approval rate of a candidate worse than the margin must be at most alpha everywhere.
2. Injected regressions (bench/injected.py), through the real train, evaluate and gate
   stages with the pipeline's recipe (or ``--steps N``): a reference candidate becomes
   production; then a sibling (same recipe, another seed) must be approved against it, and
   candidates trained on damaged data must each be rejected, by the check one would expect.
   ``--part inject``: classification on the sample data (30% of labels shuffled, three
   intents left out, only long messages); ``--part inject-generation``: the ticket data with
   30% of the answers swapped between records, and two reseeded siblings (seeds 7 and 13).

Writes ``bench/results/gate_power.json`` and a Markdown table ``bench/results/gate_power.md``.

Usage: ``python bench/gate_power.py [--part sim|continuous|inject|inject-generation|all] [--steps N]
[--replicates 1000] [--margin 0.03] [--reuse-reference models/candidate] [--cases ...] [--keep DIR]``
(inject trains
five candidates with the default recipe: about an hour on 2 CPU cores; inject-generation three or
four, about 22 minutes each at the two-epoch recipe)
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import outcome_sim
from injected import CASES, KINDS, injected

from tunegate.core.artifacts import environment, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results"


def markdown(
    sim: list[dict],
    inj: list[dict],
    continuous: list[dict] | None = None,
    inj_generation: list[dict] | None = None,
) -> str:
    out = ["# Gate power", ""]
    if sim:
        out += outcome_sim.markdown(
            sim, "Three outcomes, 0/1 scores (classification): the hold-out A/B vs production"
        )
    if continuous:
        out += outcome_sim.markdown(continuous, "Three outcomes, scores that mostly tie (field F1)")
    for title, rows in (("classification", inj), ("generation", inj_generation or [])):
        if not rows:
            continue
        out += ["", f"## Injected regressions, {title}", ""]
        out += [
            "Kept from their runs (the candidates take about an hour to train): those before 2026-12-07 "
            "were judged by the rule before the three outcomes (margin 0, failing only when significantly "
            "worse); `--part inject` / `inject-generation` re-judges them by today's.",
            "",
        ]
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
    parser.add_argument("--margin", type=float, default=0.03, help="the non-inferiority margin simulated")
    parser.add_argument("--replicates", type=int, default=1000)
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
    sim = continuous = None
    if args.part in ("sim", "all"):
        sim = outcome_sim.simulate("binary", args.replicates, args.alpha, args.margin, seed=0)
    if args.part in ("sim", "continuous", "all"):
        continuous = outcome_sim.simulate("tied", args.replicates, args.alpha, args.margin, seed=1)
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
