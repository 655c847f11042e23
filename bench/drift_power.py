"""Drift monitor: false-alarm rate on in-distribution windows, power on shifted ones.

Every window is judged by the monitor's own ``tunegate.monitoring.drift.judge_window`` (Evidently's K-S and
the registered two-sample chi-square, the embedding classifier against its null), with
two substitutions, both for speed and neither changing a verdict: sentence embeddings are
computed once per text and looked up (same all-MiniLM-L6-v2 model), and Evidently's t-SNE
picture is skipped (``render=False``; a test checks the verdicts are the same).

Datasets, in one run:

- ``sample``: the embedded sample data with the checked-out candidate (``models/candidate``,
  trained on the sample's train split). The served engine (vLLM, adapter per request)
  answers the held-out rows (val + hold-out, 252) and the shifted channel; those answers
  and confidences are what the monitor's model signals see. Each trial splits the held-out
  rows at random into a reference half (126) and a window pool, so reference and window
  are disjoint draws of unseen in-distribution text; windows of 50 and 100 (the pool
  limits the size: a larger window would repeat rows, and repeats are no new evidence).
  Shifted windows: 50, 100 and 250 distinct messages of the shifted channel.
- ``banking77`` (``../shared/data/banking77``, skipped when absent): 10 intents are held
  out; the other 67 intents' rows of ``train.csv`` are split into a "training" part (its
  vocabulary is the reference's), a reference of 1,000 rows and a window pool. Windows of
  100, 300 and 1,000: in-distribution (the pool), held-out intents, the test split
  (collected apart from train.csv, in-scope intents), and another source (the sample's
  messages, a fictional bank's customers). Text and embedding signals only, the Bonferroni
  family sized to what is tested.
- ``banking77_model``: every configured signal, the model signals included, with a
  Banking77 candidate trained here by the train stage on the training part, capped to 20
  rows per intent (bench/banking77_candidate.py), its answers served by vLLM. vLLM on this
  CPU answers about 1.3 rows a second, so the reference is 400 rows, the pool 400,
  windows 100 and 300, and 300 rows each of held-out intents and of the test split.

Banking77's in-distribution windows are judged twice: against one fixed reference (what a
release sees: its false-alarm rate is conditional on that reference) and against a
reference redrawn every trial (the rate the tests state, averaged over references).

The retraining policy's false-trigger rate: per trial, two consecutive in-distribution
windows against the same reference; the policy fires when both drift on a
``monitor.retrain_on`` signal. Intervals are Clopper-Pearson 95%.

Usage: ``python bench/drift_power.py [--trials 100] [--banking77 DIR]``. Writes
``bench/results/drift_power.json`` and ``bench/results/drift_power.md``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tunegate.monitoring.drift as drift_module
from tunegate.core.artifacts import environment, read_jsonl, write_json
from tunegate.core.monitor_reference import MonitorReference
from tunegate.core.params import load_params
from tunegate.core.pii import clean_text
from tunegate.core.words import vocabulary
from tunegate.monitoring.window import Window

CACHE = Path(__file__).resolve().parent / ".cache"
ENCODE = drift_module.embed  # the monitor's encoder; the lookup below replaces it per dataset
MODEL_REFERENCE, MODEL_POOL, MODEL_SHIFTED = 400, 400, 300
TEXT_SIGNALS = ("length_chars", "word_count", "non_alpha_share", "oov_share", "english_share", "embedding")


def distinct(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        key = " ".join(r["text"].lower().split())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def use_embedding_table(texts: list[str], tag: str) -> None:
    """Embed every text once (cached on disk) and let the monitor look them up."""
    unique = sorted(set(texts))
    path = CACHE / f"embeddings-{tag}-{len(unique)}.npy"
    vectors = ENCODE(unique, path)
    table = dict(zip(unique, vectors, strict=True))
    drift_module.embed = lambda ts, cache=None: np.array([table[t] for t in ts])


def reference_of(rows: list[dict], vocab: frozenset[str], tag: str) -> MonitorReference:
    return MonitorReference(
        texts=[r["text"] for r in rows],
        answers=[r.get("answer") for r in rows],
        confidence=[r.get("confidence", 1.0) for r in rows],
        labels=frozenset(r["label"] for r in rows) | frozenset(r["answer"] for r in rows if r.get("answer")),
        vocabulary=vocab,
        model_id=tag,
        source=tag,
        sha256=tag,
    )


def window_of(rows: list[dict]) -> Window:
    return Window(
        [r["text"] for r in rows], [r.get("answer") for r in rows], 0, None, None, [],
        [r.get("confidence") for r in rows], "bench", {},
    )  # fmt: skip


def judge(
    ref: MonitorReference, rows: list[dict], signals: tuple[str, ...], params: Any, seed: int
) -> list[str]:
    m = params.monitor
    out, _ = drift_module.judge_window(
        ref, window_of(rows), signals, m.min_window, m.sample, seed, m.alpha, render=False
    )
    # estimated_accuracy needs the release's calibration (tunegate drift judges it in the
    # report; bench/calibration.py measures it): it counts in the family, it is not judged here.
    missing = [s.name for s in out if s.drifted is None and s.name != "estimated_accuracy"]
    if missing:
        raise RuntimeError(f"not judged: {missing}: {[s.note for s in out if s.drifted is None]}")
    return [s.name for s in out if s.drifted]


def rate(hits: int, n: int) -> dict[str, Any]:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(hits, n, alpha=0.05, method="beta")
    return {"rate": round(hits / n, 4), "hits": hits, "n": n, "ci95": [round(low, 4), round(high, 4)]}


def summarise(
    results: list[list[str]], signals: tuple[str, ...], retrain_on: tuple[str, ...]
) -> dict[str, Any]:
    n = len(results)
    return {
        "report": rate(sum(1 for r in results if r), n),
        "retrain_on": rate(sum(1 for r in results if set(r) & set(retrain_on)), n),
        "per_signal": {s: rate(sum(1 for r in results if s in r), n) for s in signals},
    }


def sample_part(params: Any, trials: int) -> dict[str, Any]:
    """The sample data, with the served engine's answers from the checked-out candidate."""
    data = Path("data/prepared")
    held = distinct([r for split in ("val", "holdout") for r in read_jsonl(data / f"{split}.jsonl")])
    shifted = distinct(read_jsonl(data / "shifted.jsonl"))
    answer_with_the_served_engine(held + shifted)
    vocab = vocabulary(r["text"] for r in read_jsonl(data / "train.jsonl"))
    use_embedding_table([r["text"] for r in held + shifted], "sample")
    signals, retrain_on = params.monitor.signals, params.monitor.retrain_on
    null: dict[int, list] = {50: [], 100: []}
    shift: dict[int, list] = {50: [], 100: [], 250: []}
    policy = []
    for t in range(trials):
        rng = random.Random(t)
        order = rng.sample(held, len(held))
        ref, pool = reference_of(order[:126], vocab, f"sample-{t}"), order[126:]
        for n in null:
            null[n].append(judge(ref, rng.sample(pool, n), signals, params, t))
        first, second = pool[:50], pool[50:100]  # two consecutive disjoint windows
        both = [set(judge(ref, w, signals, params, t)) & set(retrain_on) for w in (first, second)]
        policy.append(all(both))
        for n in shift:
            shift[n].append(judge(ref, rng.sample(shifted, n), signals, params, t))
        if t % 10 == 0:
            print(f"sample trial {t}: null {null[100][-1]} shifted {shift[250][-1]}", flush=True)
    return {
        "reference_rows": 126,
        "signals": list(signals),
        "in_distribution": {str(n): summarise(r, signals, retrain_on) for n, r in null.items()},
        "shifted_channel": {str(n): summarise(r, signals, retrain_on) for n, r in shift.items()},
        "policy_false_trigger": rate(sum(policy), len(policy)) | {"windows": 50, "consecutive": 2},
    }


def answer_with_the_served_engine(rows: list[dict], candidate: Path = Path("models/candidate")) -> None:
    """The candidate's served answers and confidences (vLLM, adapter per request), cached."""
    from tunegate.core.artifacts import read_json
    from tunegate.core.prompt import PromptTemplate
    from tunegate.evaluation.models import base_ref, candidate_ref
    from tunegate.evaluation.predictors import vllm_classify

    base = base_ref(Path("models/base"))
    cand = candidate_ref(candidate, base)
    path = CACHE / f"answers-{cand.tree_sha256[:16]}-{len(rows)}.json"
    answers = read_json(path) if path.exists() else {}
    recorded = Path("eval/results/monitor_reference.json")  # the evaluate stage's, same engine
    if recorded.exists() and read_json(recorded).get("model_id") == cand.model_id:
        answers |= {r["id"]: [r["answer"], r["confidence"]] for r in read_json(recorded)["rows"]}
    todo = [r for r in rows if r["id"] not in answers]
    if todo:
        started = time.perf_counter()
        preds = vllm_classify([(cand, "rows", todo)], PromptTemplate.load(candidate))["rows"]
        print(f"vLLM answered {len(todo)} rows in {time.perf_counter() - started:.0f} s", flush=True)
        answers |= {p.id: [p.label, p.confidence] for p in preds}
        CACHE.mkdir(parents=True, exist_ok=True)
        write_json(path, answers)
    for r in rows:
        r["answer"], r["confidence"] = answers[r["id"]]


def banking77_rows(folder: Path, name: str) -> list[dict]:
    with open(folder / name, newline="", encoding="utf-8") as f:
        rows = [{"text": clean_text(r["text"]), "label": r["category"]} for r in csv.DictReader(f)]
    rows = distinct([r for r in rows if r["text"]])
    for r in rows:
        r["id"] = hashlib.sha256(r["text"].encode()).hexdigest()[:16]
    return rows


def banking77_split(folder: Path) -> dict[str, Any]:
    """10 intents held out; the rest of train.csv split into training part, reference, pool."""
    train, test = banking77_rows(folder, "train.csv"), banking77_rows(folder, "test.csv")
    rng = random.Random(0)
    intents = sorted({r["label"] for r in train})
    unseen = set(rng.sample(intents, 10))
    known = [r for r in train if r["label"] not in unseen]
    rng.shuffle(known)
    half = len(known) // 2
    other = distinct(
        [{"text": clean_text(r["text"]), "label": r["label"]} for r in csv_rows("data/sample/messages.csv")]
    )
    return {
        "training": known[:half],
        "reference": known[half : half + 1000],
        "pool": known[half + 1000 :],
        "held_out_intents": [r for r in train if r["label"] in unseen],
        "test_split": [r for r in test if r["label"] not in unseen],
        "other_source": other,
        "unseen": sorted(unseen),
    }


def banking77_part(split: dict[str, Any], params: Any, trials: int) -> dict[str, Any]:
    """Text and embedding signals, reference of 1,000, windows up to 1,000."""
    reference, pool = split["reference"], split["pool"]
    vocab = vocabulary(r["text"] for r in split["training"])
    kinds = {k: split[k] for k in ("held_out_intents", "test_split", "other_source")}
    kinds = {"in_distribution": pool, **kinds}
    use_embedding_table([r["text"] for rows in [reference, *kinds.values()] for r in rows], "banking77")
    plain = [{k: r[k] for k in ("text", "label")} for r in reference]
    kinds = {k: [{"text": r["text"], "label": r["label"]} for r in rows] for k, rows in kinds.items()}
    signals, retrain_on = TEXT_SIGNALS, tuple(s for s in params.monitor.retrain_on if s in TEXT_SIGNALS)
    ref = reference_of(plain, vocab, "banking77")
    sizes = (100, 300, 1000)
    found: dict[str, dict[int, list]] = {
        k: {n: [] for n in sizes} for k in [*kinds, "in_distribution_redrawn"]
    }
    policy = []
    for t in range(trials):
        rng = random.Random(1000 + t)
        for kind, rows in kinds.items():
            for n in sizes:
                found[kind][n].append(judge(ref, rng.sample(rows, min(n, len(rows))), signals, params, t))
        # The stated rate is over references too: a fresh reference of 1,000 each trial.
        everything = plain + kinds["in_distribution"]
        order = rng.sample(everything, len(everything))
        fresh = reference_of(order[:1000], vocab, f"banking77-{t}")
        for n in sizes:
            found["in_distribution_redrawn"][n].append(
                judge(fresh, order[1000 : 1000 + n], signals, params, t)
            )
        pair = rng.sample(kinds["in_distribution"], 600)
        both = [set(judge(ref, w, signals, params, t)) & set(retrain_on) for w in (pair[:300], pair[300:])]
        policy.append(all(both))
        if t % 10 == 0:
            print(f"banking77 trial {t}: null {found['in_distribution'][1000][-1]}", flush=True)
    return {
        "split": {
            "vocabulary_rows": len(split["training"]),
            "reference_rows": len(reference),
            "pool_rows": len(pool),
            "held_out_intents": split["unseen"],
            **{f"{k}_rows": len(split[k]) for k in ("held_out_intents", "test_split", "other_source")},
        },
        "signals": list(signals),
        "model_signals": "see banking77_model: a capped candidate, smaller reference and windows",
        **{
            kind: {str(n): summarise(r, signals, retrain_on) for n, r in by_n.items()}
            for kind, by_n in found.items()
        },
        "policy_false_trigger": rate(sum(policy), len(policy)) | {"windows": 300, "consecutive": 2},
    }


def banking77_model_part(
    split: dict[str, Any], params: Any, trials: int, params_path: Path
) -> dict[str, Any]:
    """Every signal, model signals included, with a capped Banking77 candidate's served answers.

    vLLM on this CPU answers about one row a second, so this part is smaller than the text
    part: a reference of MODEL_REFERENCE rows, a pool of MODEL_POOL, windows of 100 and 300,
    and MODEL_SHIFTED rows each of held-out intents and of the test split.
    """
    from banking77_candidate import describe, train_candidate  # bench/ is on sys.path

    candidate = train_candidate(split["training"], CACHE, params_path)
    rng = random.Random(7)
    reference, pool = split["reference"][:MODEL_REFERENCE], split["pool"][:MODEL_POOL]
    kinds = {
        "in_distribution": pool,
        "held_out_intents": rng.sample(split["held_out_intents"], MODEL_SHIFTED),
        "test_split": rng.sample(split["test_split"], MODEL_SHIFTED),
    }
    everything = reference + [r for rows in kinds.values() for r in rows]
    answer_with_the_served_engine(everything, candidate)
    vocab = vocabulary(r["text"] for r in split["training"])
    use_embedding_table([r["text"] for r in everything], "banking77-model")
    signals = params.monitor.signals
    retrain_on = tuple(s for s in params.monitor.retrain_on if s in signals)
    ref = reference_of(reference, vocab, "banking77-model")
    sizes = (100, 300)
    found: dict[str, dict[int, list]] = {
        k: {n: [] for n in sizes} for k in [*kinds, "in_distribution_redrawn"]
    }
    policy = []
    for t in range(trials):
        rng = random.Random(2000 + t)
        for kind, rows in kinds.items():
            for n in sizes:
                found[kind][n].append(judge(ref, rng.sample(rows, n), signals, params, t))
        order = rng.sample(reference + pool, len(reference) + len(pool))
        fresh = reference_of(order[:MODEL_REFERENCE], vocab, f"banking77-model-{t}")
        for n in sizes:
            found["in_distribution_redrawn"][n].append(
                judge(fresh, order[MODEL_REFERENCE : MODEL_REFERENCE + n], signals, params, t)
            )
        pair = rng.sample(pool, 400)
        both = [set(judge(ref, w, signals, params, t)) & set(retrain_on) for w in (pair[:200], pair[200:])]
        policy.append(all(both))
        if t % 10 == 0:
            print(
                f"banking77 model trial {t}: held-out intents {found['held_out_intents'][300][-1]}",
                flush=True,
            )
    accuracy = {
        kind: round(sum(r["answer"] == r["label"] for r in rows) / len(rows), 4)
        for kind, rows in [("reference", reference), *kinds.items()]
    }
    return {
        "candidate": describe(candidate) | {"served_accuracy": accuracy},
        "split": {"reference_rows": len(reference), "pool_rows": len(pool), "shifted_rows": MODEL_SHIFTED},
        "signals": list(signals),
        **{
            kind: {str(n): summarise(r, signals, retrain_on) for n, r in by_n.items()}
            for kind, by_n in found.items()
        },
        "policy_false_trigger": rate(sum(policy), len(policy)) | {"windows": 200, "consecutive": 2},
    }


def csv_rows(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def table(results: dict[str, Any]) -> str:
    head = (
        "| dataset | windows | size | drifted reports (95% CI) | on retrain_on signals | signals that fired |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for dataset, part in results["datasets"].items():
        for kind, by_size in part.items():
            first = next(iter(by_size.values()), None) if isinstance(by_size, dict) else None
            if not isinstance(first, dict) or "report" not in first:
                continue
            for size, s in by_size.items():
                fired = (
                    ", ".join(f"{k} {v['rate']:.2f}" for k, v in s["per_signal"].items() if v["hits"]) or "-"
                )
                r, (low, high) = s["report"], s["report"]["ci95"]
                lines.append(
                    f"| {dataset} | {kind} | {size} | {r['rate']:.2f} [{low:.2f}, {high:.2f}] "
                    f"| {s['retrain_on']['rate']:.2f} | {fired} |"
                )
        p = part["policy_false_trigger"]
        lines.append(
            f"| {dataset} | policy: 2 consecutive in-distribution windows of {p['windows']} | - | "
            f"{p['rate']:.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] | - | - |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--banking77", type=Path, default=Path("../shared/data/banking77"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    started = time.perf_counter()
    datasets = {"sample": sample_part(params, args.trials)}
    if (args.banking77 / "train.csv").exists():
        split = banking77_split(args.banking77)
        datasets["banking77"] = banking77_part(split, params, args.trials)
        datasets["banking77_model"] = banking77_model_part(split, params, args.trials, args.params)
    else:
        print(f"Banking77 not found at {args.banking77}: skipped", flush=True)
    results = {
        "benchmark": "drift_power",
        "trials": args.trials,
        "alpha": params.monitor.alpha,
        "datasets": datasets,
        "seconds": round(time.perf_counter() - started, 1),
        "environment": environment(),
    }
    out = Path("bench/results")
    write_json(out / "drift_power.json", results)
    (out / "drift_power.md").write_text(table(results), encoding="utf-8")
    print(table(results))


if __name__ == "__main__":
    main()
