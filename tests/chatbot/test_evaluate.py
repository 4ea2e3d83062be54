import pytest

from chatbot.predictor import Prediction
from chatbot.data import Example
from chatbot.evaluate import evaluate, format_report, known_rows, score


def test_score_counts_per_language_and_intent():
    gold = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "b"]
    report = score(gold, pred, ["en", "en", "fr", "fr"])
    assert report["accuracy"] == 0.75 and report["n"] == 4
    # per language, macro-F1 averages over the intents that language has (en: only a)
    assert report["per_language"] == {"en": {"accuracy": 0.5, "macro_f1": pytest.approx(2 / 3), "n": 2},
                                      "fr": {"accuracy": 1.0, "macro_f1": 1.0, "n": 2}}
    assert report["per_intent"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["confusion"] == {"labels": ["a", "b"], "matrix": [[1, 1], [0, 2]]}


class Fixed:
    """A classifier that says ``a`` for texts starting with a, ``b`` otherwise."""

    labels = ["a", "b"]

    def predict(self, texts, k=3, batch_size=32):
        return [Prediction("a", 0.9, [("a", 0.9), ("b", 0.1)]) if t.startswith("a")
                else Prediction("b", 0.6, [("b", 0.6), ("a", 0.4)]) for t in texts]

    def latency_ms(self, texts):
        return [1.0] * len(texts)

    def parameter_count(self):
        return 42


def test_evaluate_reports_unknown_intents_without_scoring_them():
    rows = [Example("a1", "a", "en"), Example("b1", "b", "en"), Example("a2", "b", "fr"), Example("z", "zzz", "en")]
    assert known_rows(rows, {"a", "b"}) == (rows[:3], {"zzz": 1})
    report = evaluate(Fixed(), rows, latency_sample=2)
    assert report["n"] == 3 and report["accuracy"] == pytest.approx(2 / 3)
    assert report["unknown_intents"] == {"zzz": 1} and report["parameters"] == 42
    assert report["mean_confidence"] == pytest.approx((0.9 + 0.6 + 0.9) / 3)
    assert "zzz (1)" in format_report(report)
    with pytest.raises(ValueError, match="none of the rows"):
        evaluate(Fixed(), [Example("z", "zzz", "en")])


def test_scope_scores_follow_clinc150():
    from chatbot.evaluate import scope_scores

    gold = ["a", "a", "b", "out_of_scope", "out_of_scope", "out_of_scope"]
    said = ["a", "out_of_scope", "b", "out_of_scope", "b", "out_of_scope"]
    langs = ["en", "en", "fr", "en", "fr", "fr"]
    result = scope_scores(gold, said, langs)
    # in scope: an out-of-scope verdict on an in-scope message is wrong (2 of 3 right)
    assert result["in_scope"]["accuracy"] == pytest.approx(2 / 3) and result["in_scope"]["n"] == 3
    # out of scope: 2 of 3 caught; 3 verdicts said out of scope, 2 of them right
    assert result["out_of_scope"]["recall"] == pytest.approx(2 / 3)
    assert result["out_of_scope"]["precision"] == pytest.approx(2 / 3)
    assert result["out_of_scope"]["per_language"]["en"] == {"recall": 1.0, "precision": 0.5, "n": 1}
    assert result["in_scope"]["per_language"]["fr"] == {"accuracy": 1.0, "n": 1}


class WithOutOfScope(Fixed):
    labels = ["a", "b", "out_of_scope"]

    def predict(self, texts, k=3, batch_size=32):
        return [Prediction("out_of_scope", 0.7, [("out_of_scope", 0.7), ("a", 0.2), ("b", 0.1)]) if t.startswith("?")
                else Prediction("b", 0.35, [("b", 0.35), ("a", 0.33), ("out_of_scope", 0.32)]) if t.startswith("m")
                else Fixed.predict(self, [t])[0] for t in texts]


def test_evaluate_reports_scope_and_what_the_policy_would_do():
    from chatbot.policy import PolicyConfig

    rows = [Example("a1", "a", "en"), Example("b1", "b", "en"), Example("?x", "out_of_scope", "en"),
            Example("maybe", "out_of_scope", "en")]
    report = evaluate(WithOutOfScope(), rows, latency_sample=2)
    assert report["out_of_scope"]["recall"] == 0.5 and report["in_scope"]["accuracy"] == 1.0
    assert report["policy"] == {"answer": 0.5, "clarify": 0.25, "out_of_scope": 0.25}
    # a threshold on the best intent catches the unsure one too
    strict = evaluate(WithOutOfScope(), rows, latency_sample=2, policy=PolicyConfig(out_of_scope=0.4))
    assert strict["out_of_scope"]["recall"] == 1.0 and strict["policy"]["out_of_scope"] == 0.5
    assert "out-of-scope recall 1.0000" in format_report(strict)
    assert "out_of_scope" not in evaluate(Fixed(), rows[:2], latency_sample=2)


def test_out_of_scope_threshold_from_a_budget_of_turned_away_requests():
    from chatbot.evaluate import tune_out_of_scope

    def said(intent, best):  # the top labels of a prediction whose best intent has confidence `best`
        return Prediction(intent, best, [(intent, best), ("out_of_scope", 1 - best)])

    gold = ["a"] * 10 + ["out_of_scope"] * 4
    predictions = [said("a", c) for c in (0.95, 0.9, 0.9, 0.85, 0.8, 0.8, 0.75, 0.7, 0.4, 0.3)]
    predictions += [said("a", c) for c in (0.72, 0.5, 0.35, 0.2)]
    # 1 in 10 in-scope requests may be turned away: the threshold sits at the second lowest (0.4),
    # which turns away the 0.3 one and catches the out-of-scope messages below 0.4
    tuned = tune_out_of_scope(predictions, gold, max_reject=0.1)
    assert tuned["threshold"] == 0.4 and tuned["max_reject"] == 0.1
    assert tuned["in_scope_accuracy"] == pytest.approx(0.9) and tuned["out_of_scope_recall"] == pytest.approx(0.5)
    # a budget of 2 in 10 moves it to 0.7: 0.72 still passes, 0.5 is caught
    wider = tune_out_of_scope(predictions, gold, max_reject=0.25)
    assert wider["threshold"] == 0.7 and wider["out_of_scope_recall"] == pytest.approx(0.75)
    assert tune_out_of_scope(predictions, gold, max_reject=0.0)["in_scope_accuracy"] == 1.0
    # the default objective (in-scope accuracy + recall) picks its own point on the same data
    assert tune_out_of_scope(predictions, gold)["objective"] >= wider["objective"]
    with pytest.raises(ValueError, match="max reject"):
        tune_out_of_scope(predictions, gold, max_reject=1.0)
    # an in-scope message the label already calls out of scope is not counted against the budget again:
    # with one such message among 10, the threshold still turns away only the 0.3 one by confidence
    labelled = [Prediction("out_of_scope", 0.8, [("out_of_scope", 0.8), ("a", 0.2)]), *predictions[1:]]
    again = tune_out_of_scope(labelled, gold, max_reject=0.1)
    assert again["threshold"] == 0.4 and again["in_scope_accuracy"] == pytest.approx(0.8)


def test_out_of_scope_threshold_from_a_budget_of_lost_accuracy():
    """Only turning away a request the label gets right costs accuracy: the wrong ones may go free."""
    from chatbot.evaluate import tune_out_of_scope

    def said(intent, best):
        return Prediction(intent, best, [(intent, best), ("out_of_scope", 1 - best)])

    gold = ["a"] * 10 + ["out_of_scope"] * 4
    # three in-scope requests are wrong ("b") at low confidence, seven right
    predictions = [said("b", c) for c in (0.3, 0.35, 0.45)] + [said("a", c) for c in (0.4, 0.5, 0.8, 0.85, 0.9, 0.9, 0.95)]
    predictions += [said("a", c) for c in (0.72, 0.48, 0.33, 0.2)]
    # no loss allowed: the threshold rises to the lowest right one (0.4), turning away the wrong 0.3
    # and 0.35 and catching 0.33 and 0.2, and accuracy stays where the label alone has it
    none = tune_out_of_scope(predictions, gold, max_in_scope_loss=0.0)
    assert none["threshold"] == 0.4 and none["max_in_scope_loss"] == 0.0
    assert none["in_scope_accuracy"] == none["in_scope_accuracy_label_only"] == pytest.approx(0.7)
    assert none["out_of_scope_recall"] == pytest.approx(0.5)
    # one point in ten: the 0.4 one may go, the threshold moves to 0.5 and also catches 0.48
    one = tune_out_of_scope(predictions, gold, max_in_scope_loss=0.1)
    assert one["threshold"] == 0.5 and one["in_scope_accuracy"] == pytest.approx(0.6)
    assert one["out_of_scope_recall"] == pytest.approx(0.75)
    # the reject budget counts the wrong ones too: 1 in 10 stops at 0.35
    assert tune_out_of_scope(predictions, gold, max_reject=0.1)["threshold"] == 0.35
    with pytest.raises(ValueError, match="not both"):
        tune_out_of_scope(predictions, gold, max_reject=0.1, max_in_scope_loss=0.1)
    with pytest.raises(ValueError, match="max in-scope loss"):
        tune_out_of_scope(predictions, gold, max_in_scope_loss=1.0)
