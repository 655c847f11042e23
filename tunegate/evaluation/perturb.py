"""Perturbation suites generated from the hold-out with a fixed seed. Pure Python.

Each perturbation keeps the label and changes the surface the way real traffic does:
keyboard typos, shouting or lower-case, no punctuation, a cut-off message, and filler
words. The suite a row lands in is reproducible from (seed, suite name, row id).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable

FILLERS = ("um", "so", "like", "basically", "honestly", "erm", "ok so", "just")
KEYBOARD_NEIGHBOURS = {
    "a": "qs",
    "b": "vn",
    "c": "xv",
    "d": "sf",
    "e": "wr",
    "f": "dg",
    "g": "fh",
    "h": "gj",
    "i": "uo",
    "j": "hk",
    "k": "jl",
    "l": "k",
    "m": "n",
    "n": "bm",
    "o": "ip",
    "p": "o",
    "q": "w",
    "r": "et",
    "s": "ad",
    "t": "ry",
    "u": "yi",
    "v": "cb",
    "w": "qe",
    "x": "zc",
    "y": "tu",
    "z": "x",
}


def typos(text: str, rng: random.Random, rate: float = 0.08) -> str:
    """Swap, drop or replace letters with a keyboard neighbour in about `rate` of words."""
    words = text.split(" ")
    for i, w in enumerate(words):
        if len(w) < 3 or rng.random() >= rate:
            continue
        j = rng.randrange(len(w) - 1)
        kind = rng.choice(("swap", "drop", "neighbour"))
        if kind == "swap":
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif kind == "drop":
            w = w[:j] + w[j + 1 :]
        elif w[j].lower() in KEYBOARD_NEIGHBOURS:
            w = w[:j] + rng.choice(KEYBOARD_NEIGHBOURS[w[j].lower()]) + w[j + 1 :]
        words[i] = w
    return " ".join(words)


def casing(text: str, rng: random.Random) -> str:
    return text.upper() if rng.random() < 0.5 else text.lower()


def no_punctuation(text: str, rng: random.Random) -> str:
    return re.sub(r"\s+", " ", text.translate(str.maketrans("", "", string.punctuation))).strip()


def truncate(text: str, rng: random.Random, keep: float = 0.6) -> str:
    """Keep the first `keep` share of words (at least three): a message sent too early.
    Not always label-preserving: the cut often removes the words naming the intent, so
    params.yaml gives this suite a looser drop limit (gate.suite_max_drops)."""
    words = text.split()
    return " ".join(words[: max(3, round(len(words) * keep))])


def filler(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(max(1, len(words) // 6)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
    return " ".join(words)


PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "typos": typos,
    "casing": casing,
    "no_punctuation": no_punctuation,
    "truncation": truncate,
    "filler": filler,
}


def perturb_suite(rows: list[dict], name: str, seed: int) -> list[dict]:
    """The hold-out rows with perturbation `name` applied; ids keep the source id."""
    if name not in PERTURBATIONS:
        raise KeyError(f"unknown perturbation {name!r}; known: {sorted(PERTURBATIONS)}")
    fn = PERTURBATIONS[name]
    out = []
    for r in rows:
        rng = random.Random(f"{seed}:{name}:{r['id']}")
        out.append({"id": r["id"], "text": fn(r["text"], rng), "label": r["label"], "source_text": r["text"]})
    return out
