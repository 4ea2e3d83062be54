import numpy as np
import pytest

from chatbot.policy import PolicyConfig, decide, tune_answer_threshold

CONFIG = PolicyConfig(answer=0.5, fallback=0.3, gap=0.1, max_failures=3)


@pytest.mark.parametrize("top, failures, action", [
    ([("track_order", 0.9), ("delivery_period", 0.05)], 0, "answer"),
    ([("track_order", 0.55), ("delivery_period", 0.5)], 0, "clarify"),  # too close to the second
    ([("track_order", 0.4), ("delivery_period", 0.3)], 0, "clarify"),
    ([("track_order", 0.2), ("delivery_period", 0.1)], 0, "fallback"),
    ([("track_order", 0.2), ("delivery_period", 0.1)], 2, "handoff"),  # third failure in a row
    ([("contact_human_agent", 0.33), ("get_refund", 0.3)], 0, "clarify"),  # "money": asked, not handed off
    ([("contact_human_agent", 0.55), ("complaint", 0.4)], 0, "handoff"),
    ([("complaint", 0.95), ("review", 0.01)], 0, "handoff"),
    ([("out_of_scope", 0.7), ("track_order", 0.2)], 0, "out_of_scope"),
    ([("out_of_scope", 0.4), ("complaint", 0.35)], 2, "out_of_scope"),  # never a hand-off on its own
])
def test_decisions(top, failures, action):
    assert decide(CONFIG, top, failures) == action


def test_invalid_thresholds():
    with pytest.raises(ValueError):
        PolicyConfig(answer=0.2, fallback=0.3)


def test_tuned_threshold_meets_target_precision():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 2000)
    correct = rng.uniform(0, 1, 2000) < conf  # well calibrated
    result = tune_answer_threshold(conf, correct, target=0.9)
    answered = conf >= result["threshold"]
    assert correct[answered].mean() >= 0.9
    assert 0.6 < result["threshold"] < 0.95 and result["coverage"] == pytest.approx(answered.mean())


def test_a_threshold_on_the_best_intent_also_says_out_of_scope():
    config = PolicyConfig(out_of_scope=0.25)
    assert decide(config, [("track_order", 0.2), ("out_of_scope", 0.15)], 0) == "out_of_scope"
    assert decide(config, [("track_order", 0.26), ("delivery_period", 0.1)], 0) == "fallback"
    assert decide(PolicyConfig(), [("track_order", 0.2), ("delivery_period", 0.1)], 0) == "fallback"
