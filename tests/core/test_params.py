import pytest

from tests.conftest import ROOT, write_params
from tunegate.core.errors import ConfigError
from tunegate.core.params import load_params, params_from_dict


def test_shipped_params_load():
    p = load_params(ROOT / "params.yaml")
    assert p.base.seed == 42
    assert p.data.source == "data/sample/messages.csv"
    assert p.prepare.dedup == "near"
    assert p.base_model.source.startswith("package:")


def test_every_problem_is_reported_at_once():
    raw = {
        "base": {"seed": -1},
        "prepare": {"val_fraction": 1.5, "dedup": "fuzzy", "min_rows_per_label": "ten", "typo_key": 1},
        "bogus_section": {},
    }
    with pytest.raises(ConfigError) as info:
        params_from_dict(raw)
    problems = info.value.problems
    text = "\n".join(problems)
    # type problems first (range checks run once types are right)
    assert "prepare.dedup: 'fuzzy' is not one of 'none', 'exact', 'near'" in text
    assert "prepare.min_rows_per_label: 'ten' is not an integer" in text
    assert "prepare.typo_key: unknown key" in text
    assert "bogus_section: unknown key" in text
    assert len(problems) == 4


def test_range_problems_name_key_value_and_fix():
    with pytest.raises(ConfigError) as info:
        params_from_dict(
            {"base": {"seed": -3}, "prepare": {"val_fraction": 1.5, "min_chars": 10, "max_chars": 5}}
        )
    text = str(info.value)
    assert "base.seed: -3 is negative" in text
    assert "prepare.val_fraction: 1.5 is outside [0, 1)" in text
    assert "prepare.min_chars/max_chars: 10/5" in text


def test_nullable_and_literal_fields(tmp_path):
    path = write_params(tmp_path / "params.yaml", data={"shifted_source": None, "format": "jsonl"})
    p = load_params(path)
    assert p.data.shifted_source is None
    assert p.data.format == "jsonl"


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_monitor_signals_and_the_retraining_trigger_are_checked():
    with pytest.raises(ConfigError) as info:
        params_from_dict(
            {
                "monitor": {"signals": ["embedding", "sentiment", "embedding"], "retrain_on": ["oov_share"]},
                "eval": {"reference_rows": 20},
            }
        )
    text = str(info.value)
    assert "monitor.signals: unknown signal 'sentiment'; known: [" in text and "'predicted_label'" in text
    assert "monitor.signals: ['embedding', 'sentiment', 'embedding'] names a signal twice" in text
    assert (
        "monitor.retrain_on: 'oov_share' is not in monitor.signals (or live_accuracy / live_quality)" in text
    )
    assert "not a signal of the" not in text  # an unknown name is said once
    assert "eval.reference_rows: 20 must be 0 (no reference) or >= 50" in text
    ok = params_from_dict(
        {"monitor": {"signals": ["embedding"], "retrain_on": ["embedding", "live_accuracy"]}}
    )
    assert ok.monitor.retrain_on == ("embedding", "live_accuracy") and ok.monitor.reference == "release"


def test_calibration_and_abstain_settings_are_checked():
    with pytest.raises(ConfigError) as info:
        params_from_dict(
            {
                "serve": {"abstain_below": 1.5, "expected_oos_share": 1.0},
                "eval": {"calibration_min_rows": 3},
                "gate": {"max_ece": -0.1, "target_in_scope_precision": 2, "threshold_confidence": 1.0},
                "release": {"judge_max_abstention_change": 1.2},
            }
        )
    text = str(info.value)
    assert "serve.abstain_below: 1.5 is outside [0, 1] (or use auto, or null)" in text
    with pytest.raises(
        ConfigError, match=r"eval\.calibration: 'platt' is not one of 'temperature', 'isotonic'"
    ):
        params_from_dict({"eval": {"calibration": "platt"}})
    assert "eval.calibration_min_rows: 3 is too few to fit on" in text
    assert "gate.max_ece: -0.1 is outside [0, 1]" in text and "gate.target_in_scope_precision: 2.0" in text
    assert "release.judge_max_abstention_change: 1.2" in text
    assert "serve.expected_oos_share: 1.0 is outside (0, 1) (or use null)" in text
    assert "gate.threshold_confidence: 1.0 is outside [0.5, 1)" in text
    assert params_from_dict({"serve": {"expected_oos_share": 0.2}}).serve.expected_oos_share == 0.2
    assert params_from_dict({}).serve.expected_oos_share is None


def test_a_task_kind_no_stage_implements_is_refused():
    """base.task once accepted `chat`, which no code read: a user got classification silently."""
    with pytest.raises(ConfigError, match=r"base\.task: 'chat' is not one of 'classification', 'generation'"):
        params_from_dict({"base": {"task": "chat"}})


def test_generation_keys_read_by_one_kind_only_are_refused_for_the_other():
    with pytest.raises(ConfigError, match=r"gate\.metric_floors: set, but only base\.task: generation"):
        params_from_dict({"gate": {"metric_floors": {"token_f1": 0.5}}})
    raw = {
        "base": {"task": "generation"},
        "data": {"oos_label": "oos"},
        "gate": {"primary_metric": "field_f1"},
        "train": {"augment_truncation": 0.3},
    }
    with pytest.raises(ConfigError) as err:
        params_from_dict(raw)
    text = str(err.value)
    assert "needs task.output_schema" in text and "data.oos_label" in text
    assert "train.augment_truncation: only base.task: classification reads it" in text
    ok = params_from_dict(
        raw | {"data": {"oos_label": None}, "gate": {"primary_metric": "token_f1"}, "train": {}}
    )
    assert ok.base.task == "generation"
    assert (
        "null_rate" in ok.monitor.signals and "live_quality" in ok.monitor.retrain_on
    )  # the kind's defaults
    assert "predicted_label" in params_from_dict({}).monitor.signals
    wrong = raw | {"data": {"oos_label": None}, "gate": {"primary_metric": "token_f1"}, "train": {},
                   "monitor": {"signals": ["embedding", "predicted_label"]}}  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"monitor\.signals: 'predicted_label' is not a signal of the generation"
    ):
        params_from_dict(wrong)
    assert params_from_dict({"serve": {"abstain_below": None}}).serve.abstain_below is None
    assert params_from_dict({"serve": {"abstain_below": "auto"}}).serve.abstain_below == "auto"
    assert params_from_dict({"serve": {"abstain_below": 0.4}}).serve.abstain_below == 0.4
