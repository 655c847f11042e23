from monitoring.retrain import due

ON = ("embedding", "oov_share")


def report(status: str, drifted: list[str] = ()) -> dict:
    return {"status": status, "drifted": list(drifted)}


def test_fires_only_on_consecutive_drift_of_a_retrain_signal():
    assert due([report("drift", ["embedding"])], ON, 2)[0] is False  # one window is not a trend
    fire, why = due([report("drift", ["embedding"]), report("drift", ["oov_share", "length_chars"])], ON, 2)
    assert fire and "embedding, oov_share" in why
    assert not due([report("drift", ["embedding"]), report("no_drift")], ON, 2)[0]
    assert not due([report("drift", ["length_chars"]), report("drift", ["length_chars"])], ON, 2)[0]


def test_windows_too_small_to_judge_neither_break_nor_extend_the_streak():
    seq = [report("drift", ["embedding"]), report("insufficient"), report("drift", ["embedding"])]
    assert due(seq, ON, 2)[0] is True
    assert due([report("insufficient")] * 3, ON, 2)[0] is False
