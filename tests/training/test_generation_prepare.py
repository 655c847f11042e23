"""prepare and the training mask for the generation kind: chat records (and tables with
input/output columns) validated with reasons and row numbers, scrubbed in every turn,
split without leakage; the loss on exactly the assistant turns of a multi-turn record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny import GGUF, smollm2_folder
from tunegate.core.errors import DataError
from tunegate.core.params import load_params
from tunegate.core.task import Task, read_task
from tunegate.training.objective import IGNORE, tokenize_chat
from tunegate.training.prepare import main as prepare_main
from tunegate.training.records import clean_records, prepare_generation, problem

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "data/tickets/schema.json").read_text())
TICKET = {
    "intent": "card_arrival", "product": "debit_card", "amount": None, "currency": None,
    "urgency": "low", "reference": None, "summary": "Customer is waiting for a new card.",
}  # fmt: skip
WORDS = [
    a + b
    for a in ("alpha", "bravo", "delta", "echo", "golf", "hotel", "kilo")
    for b in ("", "x", "yy", "zzz", "w", "v", "u")
]


def chat(user: str, answer: str, system: str | None = "File a ticket.") -> dict:
    turns = [{"role": "system", "content": system}] if system else []
    return {"messages": turns + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def gen_params(tmp_path: Path, **data) -> object:
    raw = {
        "base": {"task": "generation"},
        "data": {"source": str(tmp_path / "train.jsonl"), "shifted_source": None, "probe_source": None,
                 "replay_source": None, "oos_label": None} | data,
        "task": {"output_schema": str(ROOT / "data/tickets/schema.json")},
        "prepare": {"min_rows_per_label": 3, "max_invalid_share": 0.2},
    }  # fmt: skip
    path = tmp_path / "params.yaml"
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return load_params(path)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"messages": []}, "no messages list"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                ]
            },
            "the last turn is not the assistant's",
        ),
        (chat("my card?", "   "), "empty answer"),
        (chat("my card?", "not json"), "answer not JSON"),
        (chat("my card?", json.dumps(TICKET | {"urgency": "urgent"})), "answer breaks the schema at urgency"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "a turn is not"),
    ],
)
def test_generation_records_that_cannot_train_are_refused_with_their_reason(raw, reason):
    task = Task("generation", SCHEMA, json_answers=True)
    assert problem(raw, task, 2000).startswith(reason)


def test_generation_valid_ticket_passes_and_free_text_needs_no_json():
    assert problem(chat("my card?", json.dumps(TICKET)), Task("generation", SCHEMA, True), 2000) == ""
    assert problem(chat("my card?", "It is on its way."), Task("generation"), 2000) == ""


def test_generation_prepare_scrubs_every_turn_and_splits_without_leakage(tmp_path):
    rows = [
        chat(f"card {WORDS[i]} not here, mail me at jo{i}@example.com", json.dumps(TICKET)) for i in range(40)
    ]
    rows.append(
        chat("CARD alpha not here, mail me at jo0@example.com!", json.dumps(TICKET))
    )  # duplicate input
    rows.append(chat("broken", "{"))  # invalid answer
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = gen_params(tmp_path)
    prepared, task = prepare_generation(params, None, None)
    assert task.output_schema == SCHEMA
    cleaning = prepared.manifest["cleaning"]["pool"]
    assert cleaning["dropped"]["duplicate input"] == 1
    assert [k for k in cleaning["dropped"] if k.startswith("answer not JSON")] and cleaning["rows_in"] == 42
    assert cleaning["redactions"]["email"] == 41  # the duplicate is scrubbed before it is found
    splits = prepared.splits
    assert sum(len(splits[n]) for n in ("train", "val", "holdout")) == 40
    assert all("@" not in t["content"] for r in splits["train"] for t in r["messages"])
    train_inputs = {r["input"] for r in splits["train"]}
    assert not train_inputs & {r["input"] for r in splits["holdout"]}
    assert prepared.manifest["leakage"]["holdout_rows_also_in_train"] == 0
    assert all(r["answer"] == r["messages"][-1]["content"] for r in splits["holdout"])


def test_generation_prepare_fails_past_the_invalid_share_naming_rows(tmp_path):
    rows = [chat(f"message {WORDS[i]}", json.dumps(TICKET)) for i in range(20)] + [chat("x", "nope")] * 6
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"6 of 26 records .*train.jsonl:21 \(answer not JSON"):
        prepare_generation(gen_params(tmp_path), None, None)


def test_generation_prepare_reads_a_table_with_input_and_output_columns(tmp_path):
    import csv

    with open(tmp_path / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "reply"])
        for i in range(30):
            w.writerow([f"where is card {WORDS[i]}", json.dumps(TICKET)])
    params = gen_params(
        tmp_path, source=str(tmp_path / "table.csv"), input_column="question", output_column="reply"
    )
    out = tmp_path / "prepared"
    (tmp_path / "p.yaml").write_text(
        (tmp_path / "params.yaml").read_text().replace("train.jsonl", "table.csv")
    )
    import yaml

    raw = yaml.safe_load((tmp_path / "p.yaml").read_text())
    raw["data"] |= {"input_column": "question", "output_column": "reply"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    prepare_main(["--params", str(tmp_path / "p.yaml"), "--out", str(out)])
    assert read_task(out).kind == "generation" and read_task(out).output_schema == SCHEMA
    rec = json.loads((out / "holdout.jsonl").read_text().splitlines()[0])
    assert [t["role"] for t in rec["messages"]] == ["user", "assistant"]
    assert rec["input"].startswith("where is card") and json.loads(rec["answer"]) == TICKET
    assert params.data.input_column == "question"


def test_generation_mask_puts_loss_on_every_assistant_turn_and_its_end_token():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_folder(), gguf_file=GGUF)
    turns = [
        {"role": "system", "content": "File a ticket."},
        {"role": "user", "content": "My card was charged twice."},
        {"role": "assistant", "content": "How much was it?"},
        {"role": "user", "content": "12 pounds"},
        {"role": "assistant", "content": '{"amount": 12.0}'},
    ]
    ex = tokenize_chat(tok, turns, 512)
    learned = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE]
    # exactly the two assistant contents, each followed by the end-of-turn token
    first = tok("How much was it?", add_special_tokens=False)["input_ids"]
    second = tok('{"amount": 12.0}', add_special_tokens=False)["input_ids"]
    assert learned == first + [tok.eos_token_id] + second + [tok.eos_token_id]
    text = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab == IGNORE])
    assert "My card was charged twice." in text and "12 pounds" in text and "How much" not in text
    assert tokenize_chat(tok, turns, 20) is None  # too long: left out, never cut


def test_generation_clean_records_keeps_answers_valid_after_scrubbing(tmp_path):
    task = Task("generation", SCHEMA, json_answers=True)
    params = gen_params(tmp_path)
    from tunegate.training.clean import CleanReport

    report = CleanReport()
    rec = chat("charged twice", json.dumps(TICKET | {"summary": "Call me on +44 7700 900123 please now."}))
    out = clean_records("pool", [("f:1", rec)], task, params, report)
    assert "[PHONE]" in json.loads(out[0].messages[-1]["content"])["summary"]


def test_generation_schema_keeps_its_field_order_through_task_and_prompt_files(tmp_path):
    """Structured outputs make the model write the fields in the schema's order: the files
    that carry the schema must not sort it (artifact JSON is written with sorted keys)."""
    from tunegate.core.prompt import PromptTemplate
    from tunegate.core.task import write_task

    order = list(SCHEMA["properties"])
    assert order[:2] == ["intent", "product"] and order != sorted(order)
    write_task(tmp_path, Task("generation", SCHEMA, json_answers=True))
    PromptTemplate(system="s", task="generation", output_schema=SCHEMA).save(tmp_path)
    assert list(read_task(tmp_path).output_schema["properties"]) == order
    assert list(PromptTemplate.load(tmp_path).output_schema["properties"]) == order


def test_generation_feedback_from_the_log_joins_the_training_split_only(tmp_path):
    """Reference answers callers sent (`POST /feedback`) -> `tunegate drift --retrain`'s export
    -> chat records that prepare gives the release's system turn and adds to train, never
    one that repeats a hold-out or validation input."""
    from tunegate.monitoring.retrain import export_references
    from tunegate.serving.requestlog import Entry, RequestLog
    from tunegate.training.records import load_generation_feedback

    rows = [chat(f"card {WORDS[i]} not here", json.dumps(TICKET)) for i in range(40)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = gen_params(tmp_path)
    first, _ = prepare_generation(params, None, None)
    held = first.splits["holdout"][0]["input"]
    log = RequestLog(tmp_path / "requests.sqlite")
    lost = TICKET | {"intent": "lost_or_stolen_card", "summary": "Card lost, call 07700 900123."}
    for i, text in enumerate(["lost my card on the bus", "card gone, stolen I think", held, "no reference"]):
        log.write(Entry(f"g{i}", "generate", 200, version="v1", input=text, output=json.dumps(TICKET)))
        if text != "no reference":
            assert log.feedback(f"g{i}", json.dumps(lost)) is not None
    log.close()
    folder = tmp_path / "feedback"
    counts = export_references(tmp_path / "requests.sqlite", folder)
    assert counts["new"] == 3 and counts["total"] == 3
    assert export_references(tmp_path / "requests.sqlite", folder)["new"] == 0  # keyed by request id
    exported = [json.loads(x) for x in (folder / "feedback.jsonl").read_text().splitlines()]
    assert [t["role"] for t in exported[0]["messages"]] == ["user", "assistant"]
    assert "07700" not in exported[0]["messages"][1]["content"]  # scrubbed
    feedback, inputs = load_generation_feedback(folder)
    assert len(feedback) == 3 and str(folder / "feedback.jsonl") in inputs
    prepared, _ = prepare_generation(params, None, None, feedback)
    assert prepared.manifest["feedback"] == {
        "usable": 3, "added_to_train": 2, "evaluation_duplicates": 1, "train_duplicates": 0,
    }  # fmt: skip
    added = [
        r for r in prepared.splits["train"] if json.loads(r["answer"])["intent"] == "lost_or_stolen_card"
    ]
    assert len(added) == 2 and all(
        r["messages"][0] == {"role": "system", "content": "File a ticket."} for r in added
    )
    assert prepared.splits["holdout"] == first.splits["holdout"]  # the hold-out is untouched
