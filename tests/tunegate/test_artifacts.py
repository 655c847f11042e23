import errno

import pytest

from tunegate.artifacts import atomic_dir, atomic_write_text, file_hashes, tree_hash


def test_failed_write_keeps_the_previous_output_and_no_partial_folder(tmp_path):
    target = tmp_path / "candidate"
    with atomic_dir(target) as tmp:
        (tmp / "adapter.safetensors").write_text("v1")
    with pytest.raises(OSError, match="No space left"), atomic_dir(target) as tmp:
        (tmp / "adapter.safetensors").write_text("v2, half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (target / "adapter.safetensors").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["candidate"]


def test_first_write_that_fails_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_text_and_tree_hash(tmp_path):
    atomic_write_text(tmp_path / "a" / "f.txt", "hello")
    assert (tmp_path / "a" / "f.txt").read_text() == "hello"
    h1 = tree_hash(file_hashes(tmp_path))
    atomic_write_text(tmp_path / "a" / "f.txt", "hello!")
    assert tree_hash(file_hashes(tmp_path)) != h1
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["f.txt"]
