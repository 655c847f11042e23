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


def test_evidence_plan_prints_what_the_hold_out_can_show(tmp_path, monkeypatch):
    """`tunegate plan`: items needed for power 0.8 at the margin, (z_0.95 + z_0.8)^2 r / m^2."""
    import shutil

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    params = str(ROOT / "params.yaml")
    result = runner.invoke(app, ["plan", "--params", params, "--items", "168"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("holdout"))
    items, margin, detects, needed = row.split()[1:5]
    assert (items, margin, needed) == ("168", "0.030", "687")  # 6.18 * 0.1 / 0.03^2
    assert abs(float(detects) - 2.486 * (0.1 / 168) ** 0.5) < 1e-3
    assert "not enough evidence is likely" in row
    wide = runner.invoke(app, ["plan", "--params", params, "--items", "1000", "--disagreement", "0.05"])
    assert wide.exit_code == 0 and "yes" in wide.output
    for bad, why in (
        (["--items", "10", "--disagreement", "3"], "outside (0, 1]"),
        ([], "no gate record yet"),
    ):
        out = runner.invoke(app, ["plan", "--params", params, *bad])
        assert out.exit_code == 2 and why in out.output, out.output
