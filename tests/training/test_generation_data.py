"""The embedded generative default (data/tickets/): reproducible, valid against its schema,
and as varied as the issue asks (the generation kind's stages read it in later work)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tunegate.core.pii import scrub

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data/tickets"


def records(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_generation_data_is_what_its_seeded_generator_writes(tmp_path):
    script = ROOT / "scripts/make_ticket_data.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True, timeout=120)
    for name in ("tickets.jsonl", "shifted.jsonl", "schema.json"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


@pytest.mark.parametrize(("name", "least"), [("tickets", 600), ("shifted", 200)])
def test_generation_data_tickets_satisfy_the_schema(name, least):
    schema = json.loads((DATA / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    rows = records(name)
    assert len(rows) >= least
    for r in rows:
        turns = r["messages"]
        assert turns[0]["role"] == "system" and turns[-1]["role"] == "assistant"
        assert [t["role"] for t in turns[1:]] == ["user", "assistant"] * (len(turns[1:]) // 2)
        ticket = json.loads(turns[-1]["content"])
        jsonschema.validate(ticket, schema)
        assert (ticket["amount"] is None) == (ticket["currency"] is None)
    assert len({r["messages"][1]["content"].lower() for r in rows}) == len(rows)  # no duplicates


def amount_forms(amount: float) -> set[str]:
    whole = f"{int(amount):,}"
    return {f"{amount:,.2f}", whole} if amount == int(amount) else {f"{amount:,.2f}"}


def test_generation_data_answers_are_in_the_messages_and_the_data_is_varied():
    rows = records("tickets")
    tickets = [json.loads(r["messages"][-1]["content"]) for r in rows]
    said = [" ".join(t["content"] for t in r["messages"] if t["role"] == "user") for r in rows]
    for text, ticket in zip(said, tickets, strict=True):
        if ticket["amount"] is not None:
            assert any(form in text for form in amount_forms(ticket["amount"])), (text, ticket)
        if ticket["reference"] and ticket["reference"].startswith("KST-"):
            assert ticket["reference"] in text
    multi = sum(len(r["messages"]) > 3 for r in rows)
    assert 0.05 < multi / len(rows) < 0.2  # two-turn records: the assistant asked for the amount
    assert 0.3 < sum(t["amount"] is None for t in tickets) / len(tickets) < 0.7
    assert {t["currency"] for t in tickets} >= {"GBP", "EUR", "USD", "CHF", "PLN", None}
    assert {t["urgency"] for t in tickets} == {"low", "medium", "high"}
    assert {t["intent"] for t in tickets} == set(
        json.loads((DATA / "schema.json").read_text())["properties"]["intent"]["enum"]
    )
    several = [t for t in said if len(re.findall(r"\d[\d,]*\.\d\d|\d[\d,]* (?:pounds|euros|dollars)", t)) > 1]
    assert len(several) > 0.1 * len(rows)  # other amounts beside the ticket's
    assert sum(bool(scrub(t).counts) for t in said) > 0.05 * len(rows)  # personal data for prepare to scrub
