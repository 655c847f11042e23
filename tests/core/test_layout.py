"""Project paths come from dvc.yaml, the one place they are declared."""

import pytest
import yaml

from tests.conftest import ROOT
from tunegate.core.errors import ConfigError
from tunegate.core.layout import layout


def test_the_projects_paths_are_read_from_its_stage_commands(tmp_path):
    here = layout(ROOT)
    assert here.base_model == ROOT / "models/base"
    assert here.gate_record == ROOT / "eval/gate.json"
    assert here.candidate_record == ROOT / "registry/candidate.json"
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stages["base"]["cmd"] = stages["base"]["cmd"].replace("--out models/base", "--out weights/base")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    assert layout(tmp_path).base_model == tmp_path / "weights/base"  # moved in dvc.yaml: moved everywhere


def test_a_missing_dvc_yaml_or_flag_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"dvc\.yaml is missing"):
        layout(tmp_path)
    stages = {"base": {"cmd": "python -m tunegate.training.base"}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    with pytest.raises(ConfigError, match="stage 'base' has no `--out PATH` in its command"):
        _ = layout(tmp_path).base_model


def test_generation_pipeline_paths_are_its_own_and_the_base_is_shared():
    """release.pipeline names generation/dvc.yaml: its stages' paths (relative to their wdir,
    the project root) give the generation release its own registry folder and records."""
    gen = layout(ROOT, "generation/dvc.yaml")
    assert gen.production_pointer == ROOT / "registry/generation/production.json"
    assert gen.gate_record == ROOT / "eval/generation/gate.json"
    assert gen.candidate_record == ROOT / "registry/generation/candidate.json"
    assert gen.base_model == ROOT / "models/base"  # from dvc.yaml: generation/dvc.yaml has no base stage
    assert layout(ROOT).production_pointer == ROOT / "registry/production.json"
