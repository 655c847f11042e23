import json

import pytest

from tunegate.core.errors import DataError
from tunegate.training.sources import load_source


def test_csv_rows_keep_their_row_numbers(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('text,label\nhello there,a\n"quoted, comma",b\n')
    loaded = load_source(str(f), "text", "label")
    assert [(r.where.split(":")[-1], r.text, r.label) for r in loaded.pool] == [
        ("1", "hello there", "a"),
        ("2", "quoted, comma", "b"),
    ]
    assert loaded.holdout is None
    assert list(loaded.inputs) == [f.as_posix()]


def test_an_unterminated_quote_does_not_merge_rows_silently(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('text,label\n"my card never came,card_arrival\nlost my card,lost\n"ok",b\nfine,c\n')
    rows = load_source(str(f), "text", "label").pool
    assert rows[0].problem == "a quote opened on line 2 is not closed until line 4: rows merged"
    assert [(r.text, r.label) for r in rows[1:]] == [("fine", "c")]
    f.write_text('text,label\n"a message\nover two lines",a\n')  # a real multi-line field is kept
    assert [r.problem for r in load_source(str(f), "text", "label").pool] == [None]


def test_missing_column_names_what_was_found(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("message,intent\nhi,a\n")
    with pytest.raises(
        DataError, match=r"missing column\(s\) \['text', 'label'\]; found \['message', 'intent'\]"
    ):
        load_source(str(f), "text", "label")


def test_malformed_rows_are_marked_not_fatal(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(
        b'{"text": "ok row", "label": "a"}\n'
        b"{not json}\n"
        b'["a list"]\n'
        b'{"text": "bad \xff\xfe bytes", "label": "a"}\n'
    )
    rows = load_source(str(f), "text", "label").pool
    assert [r.problem for r in rows] == [
        None,
        "invalid JSON (Expecting property name enclosed in double quotes)",
        "JSON line is not an object",
        "invalid UTF-8",
    ]


def test_csv_wrong_field_count(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("text,label\none,a,extra\ntwo,b\n")
    rows = load_source(str(f), "text", "label").pool
    assert rows[0].problem == "expected 2 fields, got 3"
    assert rows[1].problem is None


def test_parquet_and_folder_with_test_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ds"
    folder.mkdir()
    pq.write_table(pa.table({"q": ["a1", "a2"], "y": ["x", "y"]}), folder / "train.parquet")
    (folder / "test.jsonl").write_text(json.dumps({"q": "t1", "y": "x"}) + "\n")
    loaded = load_source(str(folder), "q", "y")
    assert [r.text for r in loaded.pool] == ["a1", "a2"]
    assert [r.text for r in loaded.holdout] == ["t1"]
    assert len(loaded.inputs) == 2


def test_saved_dataset_and_hub_code_path(tmp_path):
    """save_to_disk folders load directly; the hub path (load_dataset) runs on a local dataset folder."""
    from datasets import Dataset, DatasetDict

    dsd = DatasetDict(
        {
            "train": Dataset.from_dict({"text": ["a", "b", "c"], "label": ["x", "y", "x"]}),
            "test": Dataset.from_dict({"text": ["d"], "label": ["y"]}),
        }
    )
    saved = tmp_path / "saved"
    dsd.save_to_disk(saved)
    loaded = load_source(str(saved), "text", "label")
    assert len(loaded.pool) == 3 and len(loaded.holdout) == 1

    hub_like = tmp_path / "hub_like"
    hub_like.mkdir()
    dsd["train"].to_json(hub_like / "train.jsonl")
    dsd["test"].to_json(hub_like / "test.jsonl")
    via_hub = load_source(str(hub_like), "text", "label", fmt="hub")
    assert sorted(r.text for r in via_hub.pool) == ["a", "b", "c"]
    assert [r.text for r in via_hub.holdout] == ["d"]
    assert next(iter(via_hub.inputs)).startswith("hub:")


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_source(str(tmp_path / "missing.csv"), "text", "label")
    with pytest.raises(DataError, match="could not be loaded"):
        load_source("no-such-org/no-such-dataset", "text", "label")
