import itertools

import numpy as np
import pytest

from chatbot.predictor import IntentClassifier, length_groups, softmax


class WordCount:
    """Tokenizer stand-in: one id per word, right padding with 0."""

    def __call__(self, texts, padding=True, truncation=True, max_length=None, return_tensors="np"):
        ids = [[len(w) for w in t.split()][:max_length] or [1] for t in texts]
        width = max(map(len, ids))
        return {"input_ids": np.array([i + [0] * (width - len(i)) for i in ids]),
                "attention_mask": np.array([[1] * len(i) + [0] * (width - len(i)) for i in ids])}


def forward(input_ids, attention_mask):
    """Logits that depend on each message alone: [words, letters, 0]."""
    assert input_ids.dtype == np.int64 and input_ids.shape == attention_mask.shape
    return np.stack([attention_mask.sum(1), input_ids.sum(1), np.zeros(len(input_ids))], 1).astype(np.float32)


def test_logits_keep_the_order_of_the_messages_whatever_the_batches():
    rows = []

    def recording(input_ids, attention_mask):
        rows.append(len(input_ids))
        return forward(input_ids, attention_mask)

    clf = IntentClassifier(recording, WordCount(), ["a", "b", "c"], temperature=2.0, max_length=8)
    texts = ["one two three", "x", "four five", "a b c d e f g h i j"]
    expected = np.array([[3, 11, 0], [1, 1, 0], [2, 8, 0], [8, 8, 0]], dtype=np.float32)  # truncated to 8 words
    for batch_size in (1, 2, 8):
        rows.clear()
        assert np.array_equal(clf.logits(texts * 3, batch_size=batch_size), np.tile(expected, (3, 1)))
        assert max(rows) <= batch_size and sum(rows) == 12


def test_probabilities_are_the_softmax_at_the_temperature_and_predictions_rank_them():
    clf = IntentClassifier(forward, WordCount(), ["a", "b", "c"], temperature=2.0, max_length=8)
    probs = clf.probabilities(["one two three", "x"])
    z = np.array([[3, 11, 0], [1, 1, 0]]) / 2.0
    assert np.allclose(probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-6)
    first, second = clf.predict(["one two three", "x"], k=2)
    assert first.intent == "b" and first.confidence == float(probs[0, 1]) and [i for i, _ in first.top] == ["b", "a"]
    assert [i for i, _ in second.top] == ["a", "b"]  # a tie keeps the labels' order
    assert clf.predict([]) == [] and np.allclose(softmax(np.array([[1000.0, 0.0]])), [[1, 0]])


def _cost(lengths, groups, call_cost):
    return sum(call_cost + len(g) * max(lengths[i] for i in g) for g in groups)


def test_length_groups_cover_every_message_once_and_cost_least():
    rng = np.random.default_rng(0)
    for _ in range(40):
        lengths = rng.integers(1, 60, size=rng.integers(1, 8)).tolist()
        most = int(rng.integers(1, 5))
        groups = length_groups(lengths, most, call_cost=20)
        assert sorted(int(i) for g in groups for i in g) == list(range(len(lengths)))
        assert all(1 <= len(g) <= most for g in groups)
        ordered = sorted(lengths)  # brute force: every split of the sorted lengths into runs of ≤ most
        best = min(_cost(ordered, [range(a, b) for a, b in zip((0, *cuts), (*cuts, len(ordered)))], 20)
                   for k in range(len(ordered))
                   for cuts in itertools.combinations(range(1, len(ordered)), k)
                   if all(b - a <= most for a, b in zip((0, *cuts), (*cuts, len(ordered)))))
        assert _cost(lengths, groups, 20) == best


def test_a_long_message_runs_apart_when_padding_the_short_ones_costs_more_than_a_call():
    lengths = [5, 6, 90, 5, 7, 6, 5, 6]
    groups = length_groups(lengths, 32, call_cost=60)
    assert [sorted(g.tolist()) for g in groups] == [[0, 1, 3, 4, 5, 6, 7], [2]]
    assert len(length_groups([5, 6, 9, 5], 32, call_cost=60)) == 1  # padding 4 tokens: one call
    with pytest.raises(ValueError):
        length_groups([3], 0)


def test_each_forward_call_is_cut_to_its_longest_message():
    calls = []

    def recording(input_ids, attention_mask):
        calls.append(input_ids.shape)
        return forward(input_ids, attention_mask)

    clf = IntentClassifier(recording, WordCount(), ["a", "b", "c"], temperature=1.0, max_length=200)
    texts = ["a b"] * 6 + [" ".join(["w"] * 150)] + ["c d e"] * 5
    assert np.array_equal(clf.logits(texts), np.stack([forward(*_one(clf, t))[0] for t in texts]))
    assert sorted(calls) == [(1, 150), (11, 3)]
    assert clf.logits([]).shape == (0, 3)


def _one(clf, text):
    enc = clf.tokenizer([text], max_length=clf.max_length)
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


class LeftPadding(WordCount):
    def __call__(self, texts, **kwargs):
        enc = super().__call__(texts, **kwargs)
        return {k: v[:, ::-1].copy() for k, v in enc.items()}


def test_a_forward_says_what_its_calls_cost_and_left_padding_is_refused():
    calls = []

    def one_call_is_dear(input_ids, attention_mask):
        calls.append(input_ids.shape)
        return forward(input_ids, attention_mask)

    one_call_is_dear.call_cost_tokens = 1e9  # as PyTorch on a GPU says
    texts = ["a b"] * 6 + [" ".join(["w"] * 150)]
    IntentClassifier(one_call_is_dear, WordCount(), ["a", "b", "c"], 1.0, max_length=200).logits(texts)
    assert calls == [(7, 150)]
    with pytest.raises(ValueError, match="right"):
        IntentClassifier(forward, LeftPadding(), ["a", "b", "c"], 1.0, max_length=8).logits(["a b", "c"])


def test_a_forward_that_runs_several_calls_at_once_gets_them_all_in_one_go():
    handed = []

    class Streams:
        def __call__(self, input_ids, attention_mask):
            raise AssertionError("a forward with many() is not called one call at a time")

        def many(self, calls):
            handed.append([ids.shape for ids, _ in calls])
            return [forward(*call) for call in calls]

    clf = IntentClassifier(Streams(), WordCount(), ["a", "b", "c"], 1.0, max_length=200)
    texts = ["a b"] * 6 + [" ".join(["w"] * 150)] + ["c d e"] * 5
    assert np.array_equal(clf.logits(texts), np.stack([forward(*_one(clf, t))[0] for t in texts]))
    assert len(handed) == 1 and sorted(handed[0]) == [(1, 150), (11, 3)]
