from typer.testing import CliRunner

from tests.conftest import ROOT
from tunegate.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "params" in result.output


def test_params_command_prints_resolved_config():
    result = runner.invoke(app, ["params", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert '"seed": 42' in result.output


def test_bad_params_give_one_clear_error_and_exit_2(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare:\n  val_fraction: -1\n")
    result = runner.invoke(app, ["params", "--params", str(bad)])
    assert result.exit_code == 2
    assert "prepare.val_fraction: -1.0 is outside [0, 1)" in result.output
