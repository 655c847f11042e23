import errno

import pytest
import yaml

from tunegate.core.artifacts import atomic_dir, atomic_write_text, file_hashes, tree_hash


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


def test_git_revision_ignores_what_the_pipeline_writes_and_shows_a_real_change(tmp_path):
    """After a clean `dvc repro` (dvc.lock and declared outputs rewritten) the revision reads
    clean; an edited source file still marks it -dirty."""
    import subprocess

    from tunegate.core.artifacts import git_revision

    stages = {"gate": {"cmd": "x", "outs": [{"eval/gate.json": {"cache": False}}], "metrics": ["m.json"]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "eval").mkdir()
    for name in ("dvc.lock", "eval/gate.json", "m.json", "code.py"):
        (tmp_path / name).write_text("1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "c"]):
        subprocess.run([*git, *cmd], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout
    for name in ("dvc.lock", "eval/gate.json", "m.json"):
        (tmp_path / name).write_text("2\n")
    assert git_revision(tmp_path) == head.strip()
    (tmp_path / "code.py").write_text("2\n")
    assert git_revision(tmp_path) == head.strip() + "-dirty"
