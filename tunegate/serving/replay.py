"""`tunegate replay`: traffic from a file, sent to a running service at a steady rate.

Each message goes to ``/classify`` (or ``/generate``) under one of ``callers`` caller ids;
with labels, each answer's true label (for ``/generate``: the reference answer) goes to
``/feedback`` (one the service refuses is counted and the replay goes on; a refused key
stops it). The summary counts statuses, the releases that answered, abstentions (invalid
answers for ``/generate``) and, with labels, the accuracy of the /classify answers callers got.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.errors import TunegateError


@dataclass(frozen=True)
class ReplayKeys:
    api: str | None
    """TUNEGATE_API_KEY: the public endpoints' key, when the service has one."""
    feedback: str | None
    """TUNEGATE_FEEDBACK_KEY, else TUNEGATE_ADMIN_TOKEN: who may send labels."""

    @classmethod
    def from_env(cls) -> ReplayKeys:
        env = os.environ.get
        return cls(env("TUNEGATE_API_KEY"), env("TUNEGATE_FEEDBACK_KEY") or env("TUNEGATE_ADMIN_TOKEN"))


def read_rows(file: Path, text_column: str, limit: int | None) -> list[dict[str, Any]]:
    """The file's rows (CSV or JSONL) that have text, at most ``limit``."""
    if not file.exists():
        raise TunegateError(f"{file} does not exist")
    if file.suffix == ".csv":
        with open(file, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if isinstance(r.get(text_column), str) and r[text_column].strip()][:limit]


def simulated_address(caller: int) -> str:
    """The address replay gives simulated caller `caller` (198.18.0.0/15, the benchmarking range):
    sent as X-Forwarded-For, which a service believes only from a proxy it trusts
    (serve.trusted_proxies), so replayed traffic counts as many callers only where declared."""
    return f"198.18.{caller // 256 % 256}.{caller % 256}"


def send(
    url: str,
    texts: list[str],
    labels: list[str | None] | None,
    rate: float,
    callers: int,
    keys: ReplayKeys,
    endpoint: str = "classify",
) -> dict[str, Any]:
    """Replay ``texts`` to ``/<endpoint>`` (and ``labels`` as feedback, when given); returns the summary."""
    if endpoint not in ("classify", "generate"):
        raise TunegateError(f"--endpoint {endpoint!r}: replay sends to classify or generate")
    generating = endpoint == "generate"
    import httpx

    if labels is not None and not keys.feedback:
        raise TunegateError(
            "--feedback needs TUNEGATE_FEEDBACK_KEY (the service's feedback key) in the environment"
        )
    served, statuses, labelled = Counter(), Counter(), Counter()
    correct, abstained, invalid, first_refusal = 0, 0, 0, ""
    public = {"Authorization": f"Bearer {keys.api}"} if keys.api else {}
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=120, headers=public) as client:
        for i, text in enumerate(texts):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            try:
                caller = i % callers
                r = client.post(
                    f"/{endpoint}",
                    json={"text": text, "user": f"replay-{caller}"},
                    headers={"X-Forwarded-For": simulated_address(caller)},
                )
            except httpx.HTTPError as err:
                raise TunegateError(f"cannot reach {url}: {err}") from err
            statuses[r.status_code] += 1
            served[r.headers.get("x-tunegate-version", "-")] += 1
            if r.status_code != 200:
                continue
            abstained += bool(r.json().get("abstained"))
            invalid += generating and not r.json().get("valid")
            if labels is None:
                continue
            correct += not generating and r.json()["label"] == labels[i]
            sent = client.post(
                "/feedback",
                json={
                    "request_id": r.headers["x-request-id"],
                    ("reference" if generating else "label"): labels[i],
                },
                headers={"Authorization": f"Bearer {keys.feedback}"},
            )
            if sent.status_code in (401, 403):  # every label would be refused: stop now
                raise TunegateError(f"/feedback answered {sent.status_code}: {sent.text}")
            labelled[sent.status_code] += 1
            if sent.status_code != 200 and not first_refusal:
                first_refusal = f"{labels[i]!r}: {sent.status_code} {sent.text[:200]}"
    summary: dict[str, Any] = {"sent": len(texts), "status": dict(statuses), "served_by": dict(served)}
    summary |= {"invalid": invalid} if generating else {"abstained": abstained}
    if labels is not None and not generating:
        summary["accuracy"] = round(correct / max(statuses[200], 1), 4)  # an abstention is not right
    if labels is not None:
        summary["feedback"] = {"status": dict(labelled)} | (
            {"first_refused": first_refusal} if first_refusal else {}
        )
    return summary
