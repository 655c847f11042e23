"""The optional judge (``eval.judge``): a pairwise comparison of the candidate's and the
baseline's answers by any OpenAI-compatible chat endpoint, the generation kind's ``judge``
stage (between evaluate and gate).

It reads the hold-out suite's records the evaluate stage wrote (input, reference answer,
the candidate's and the baseline's answers) and asks the endpoint, for at most
``eval.judge.max_items`` of them, which answer is better, **in both orders** (candidate as
A then as B): a model that prefers whatever comes first is common, and it is measured. An
item's verdict is the candidate's (or the baseline's) when both orders agree, a tie when
they disagree or both say tie; the **position consistency** (the share of items whose two
orders agree) is reported beside the verdicts, with a two-sided sign test (scipy) of
candidate wins against baseline wins. The gate reports it as a note; it never decides a
release (a judge model is another model, with its own errors).

``eval/generation/judge.json`` is written either way: ``{"enabled": false}`` when
``eval.judge.url`` is null (the default), so the stage is cheap and the pipeline's graph
the same with or without a judge. The API key is read from the environment variable named
by ``eval.judge.key_env``, never from params.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tunegate.core.artifacts import read_jsonl, write_json
from tunegate.core.errors import ConfigError, DataError, TunegateError
from tunegate.core.params import JudgeParams, load_params
from tunegate.core.stage import configure_logging

log = logging.getLogger(__name__)

SYSTEM = (
    "You compare two answers to the same request. Reply with one letter only: A if answer A "
    "is better, B if answer B is better, T if they are equally good."
)
VERDICTS = {"A", "B", "T"}


def question(item: dict[str, Any], first: str, second: str) -> list[dict[str, str]]:
    """The chat turns asking which of two answers to `item`'s request is better."""
    user = (
        f"Request:\n{item['input']}\n\nReference answer (what a good answer contains):\n{item['reference']}"
        f"\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\nWhich answer is better? Reply A, B or T."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse(text: str | None) -> str | None:
    """A, B or T from the judge's reply: its first word must be one of them ("a.", "B)", "tie"),
    else None (an unreadable reply; "Both ..." is not B)."""
    found = re.findall(r"[A-Za-z]+", text or "")
    first = found[0].upper() if found else ""
    first = "T" if first == "TIE" else first
    return first if first in VERDICTS else None


def combine(one: str | None, two: str | None) -> tuple[str, bool]:
    """(the item's verdict, whether the two orders agree). `one` asked with the candidate as
    A, `two` with it as B; a disagreement (or an unreadable reply) is a tie."""
    as_candidate = {"A": "candidate", "B": "baseline", "T": "tie"}
    swapped = {"A": "baseline", "B": "candidate", "T": "tie"}
    a = as_candidate.get(one) if one else None
    b = swapped.get(two) if two else None
    agree = a is not None and a == b
    return (a if agree else "tie"), agree


def summarize(per_item: list[dict[str, Any]]) -> dict[str, Any]:
    from scipy.stats import binomtest

    wins = sum(1 for r in per_item if r["verdict"] == "candidate")
    losses = sum(1 for r in per_item if r["verdict"] == "baseline")
    n = len(per_item)
    return {
        "items": n,
        "candidate_wins": wins,
        "baseline_wins": losses,
        "ties": n - wins - losses,
        "position_consistency": round(sum(r["consistent"] for r in per_item) / n, 4) if n else None,
        "unreadable_replies": sum((r["first"] is None) + (r["second"] is None) for r in per_item),
        "sign_test_p": float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else None,
    }


def judge_items(items: list[dict[str, Any]], settings: JudgeParams) -> dict[str, Any]:
    """Ask the endpoint about every item in both orders; the summary and each item's replies."""
    from openai import OpenAI, OpenAIError

    key = os.environ.get(settings.key_env) or "unused"
    client = OpenAI(base_url=settings.url, api_key=key, timeout=settings.timeout_s, max_retries=1)

    def ask(turns: list[dict[str, str]]) -> str | None:
        try:
            reply = client.chat.completions.create(
                model=settings.model, messages=turns, max_tokens=2, temperature=0
            )
        except OpenAIError as err:
            raise TunegateError(f"the judge at {settings.url} failed: {err}") from err
        return parse(reply.choices[0].message.content)

    per_item = []
    for item in items:
        one = ask(question(item, item["candidate"], item["baseline"]))
        two = ask(question(item, item["baseline"], item["candidate"]))
        verdict, agree = combine(one, two)
        per_item.append(
            {"id": item["id"], "first": one, "second": two, "verdict": verdict, "consistent": agree}
        )
    host = urlsplit(settings.url).netloc
    return {
        "enabled": True,
        "model": settings.model,
        "endpoint": host,
        **summarize(per_item),
        "per_item": per_item,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="judge stage: pairwise comparison by a judge model")
    parser.add_argument("--params", required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging()
    settings = load_params(args.params).eval.judge
    if settings.url is None:
        write_json(args.out, {"enabled": False})
        log.info("no judge (eval.judge.url is null)")
        return
    if load_params(args.params).base.task != "generation":
        raise ConfigError("eval.judge: the judge compares generated answers (base.task: generation)")
    path = args.results / "holdout.jsonl"
    if not path.exists():
        raise DataError(f"{path} is missing; run `dvc repro` to evaluate the candidate first")
    items = [r for r in read_jsonl(path) if "baseline" in r][: settings.max_items]
    if not items:
        raise DataError(f"{path} has no records answered by both the candidate and the baseline")
    result = judge_items(items, settings)
    write_json(args.out, result)
    log.info(
        "judge %s: candidate %d, baseline %d, ties %d of %d; position consistency %s",
        settings.model, result["candidate_wins"], result["baseline_wins"], result["ties"], result["items"],
        result["position_consistency"],
    )  # fmt: skip


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
