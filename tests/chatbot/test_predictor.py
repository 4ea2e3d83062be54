import numpy as np

from chatbot.predictor import IntentClassifier, softmax


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
    clf = IntentClassifier(forward, WordCount(), ["a", "b", "c"], temperature=2.0, max_length=8)
    texts = ["one two three", "x", "four five", "a b c d e f g h i j"]
    expected = np.array([[3, 11, 0], [1, 1, 0], [2, 8, 0], [8, 8, 0]], dtype=np.float32)  # truncated to 8 words
    for batch_size in (1, 2, 8):
        assert np.array_equal(clf.logits(texts, batch_size=batch_size), expected)


def test_probabilities_are_the_softmax_at_the_temperature_and_predictions_rank_them():
    clf = IntentClassifier(forward, WordCount(), ["a", "b", "c"], temperature=2.0, max_length=8)
    probs = clf.probabilities(["one two three", "x"])
    z = np.array([[3, 11, 0], [1, 1, 0]]) / 2.0
    assert np.allclose(probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-6)
    first, second = clf.predict(["one two three", "x"], k=2)
    assert first.intent == "b" and first.confidence == float(probs[0, 1]) and [i for i, _ in first.top] == ["b", "a"]
    assert [i for i, _ in second.top] == ["a", "b"]  # a tie keeps the labels' order
    assert clf.predict([]) == [] and np.allclose(softmax(np.array([[1000.0, 0.0]])), [[1, 0]])
