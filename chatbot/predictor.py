"""Messages in, calibrated intent predictions out, whatever computes the logits.

:class:`IntentClassifier` tokenizes a batch (right padding, truncated to the model's ``max_length``),
asks its ``forward`` for the logits and turns them into probabilities with the model's temperature:
``p = softmax(z / T)``. ``forward`` maps ``input_ids`` and ``attention_mask`` (int64 arrays) to float32
logits: the PyTorch model (:class:`chatbot.classifier.TorchForward`) or the exported one
(:class:`chatbot.runtime.OpenVinoForward`), which also has ``many`` (a list of such pairs → their
logits) to run several calls at once. This module needs NumPy only, so a process that serves an
exported model never imports PyTorch (about 250 MB of memory with transformers).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    top: list[tuple[str, float]]

    def as_dict(self) -> dict:
        return {"intent": self.intent, "confidence": round(self.confidence, 4),
                "top": [{"intent": i, "confidence": round(p, 4)} for i, p in self.top]}


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float32."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


CALL_COST_TOKENS = 60
"""What one forward call costs besides its tokens, in padded tokens: how much padding a batch may
carry before splitting it into two calls pays. Measured on the served path (OpenVINO's dynamic
model, the served default, 2-core development CPU): ``[2, 16]`` 18.7 ms and ``[16, 16]`` 64 ms, so
about 0.2 ms a token and 12 ms a call (docs/benchmarks.md). A forward whose calls cost otherwise
says so in its ``call_cost_tokens`` (PyTorch on a GPU: a batch stays one call). The model is an
approximation: the exported model pads batches to a multiple of a few tokens and single messages to
its static lengths, runs two calls at once, and plans again for each new shape, which the cost does
not count. With two streams, 60 stayed the best of 20, 60, 200 and 600 for random batches of 2–32,
on the default and on the 40 % build (docs/benchmarks.md)."""


def length_groups(lengths, most: int, call_cost: float = CALL_COST_TOKENS) -> list[np.ndarray]:
    """Split messages of token ``lengths`` into forward calls of at most ``most`` messages that cost
    least, a call costing ``call_cost + rows × its longest length`` (every row is padded to it).

    Sorted by length, the best split of the first ``j`` messages ends with some group ``i..j-1``:
    ``best[j] = min_i best[i] + call_cost + (j - i) · lengths[j-1]`` for ``j - most ≤ i < j``
    (dynamic programming, ``O(n · most)``). A random batch of short and long messages becomes a few
    calls instead of one padded to its longest message."""
    lengths = np.asarray(lengths)
    if most < 1:
        raise ValueError("a forward call holds at least one message")
    order = np.argsort(lengths, kind="stable")
    ordered = lengths[order].tolist()
    best, cut = [0.0] + [float("inf")] * len(ordered), [0] * (len(ordered) + 1)
    for j in range(1, len(ordered) + 1):
        for i in range(max(0, j - most), j):
            cost = best[i] + call_cost + (j - i) * ordered[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(ordered)
    while j:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


class IntentClassifier:
    """A loaded classifier; :meth:`predict` maps messages to calibrated intent probabilities.

    ``tokenizer`` is called like a transformers tokenizer (``padding``, ``truncation``, ``max_length``,
    ``return_tensors="np"``) and must pad on the right. One tokenizer call, forward call or
    ``forward.many`` (all of a batch's calls) runs at a time (a lock; concurrent batches interleave
    between them, so on the exported model a single message may wait for another request's whole
    batch): an OpenVINO infer request and a fast tokenizer refuse to be used by two threads at once
    ("Infer Request is busy", "Already borrowed"), and the app's request threads share one
    classifier. Concurrency comes from batching (``respond_batch``, Ray Serve) and from a forward's
    ``many`` (the exported model's streams), not from threads sharing the cores."""

    def __init__(self, forward, tokenizer, labels: list[str], temperature: float, max_length: int):
        self.forward = forward
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.temperature = float(temperature)
        self.max_length = int(max_length)
        self._one_at_a_time = threading.Lock()

    @property
    def model(self):
        """The PyTorch model (only on the PyTorch path)."""
        return self.forward.model

    def parameter_count(self) -> int:
        return self.forward.parameter_count()

    def embedding_parameters(self) -> int:
        return self.forward.embedding_parameters()

    def threads(self) -> int:
        """CPU threads a forward call may use."""
        return self.forward.threads()

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Raw logits (float32) in the order of ``texts``; forward calls of at most ``batch_size``
        messages of similar token lengths (:func:`length_groups`), each cut to its longest message."""
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        if not len(texts):
            return out
        with self._one_at_a_time:
            enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="np")
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        mask = np.asarray(enc["attention_mask"], dtype=np.int64)
        lengths = mask.sum(1)
        if not np.array_equal(mask, np.arange(mask.shape[1]) < lengths[:, None]):
            raise ValueError("the tokenizer must pad on the right: each call is cut to its longest message")
        groups = length_groups(lengths, batch_size, getattr(self.forward, "call_cost_tokens", CALL_COST_TOKENS))
        calls = []
        for idx in groups:
            width = int(lengths[idx].max())
            calls.append((ids[idx, :width], mask[idx, :width]))
        if hasattr(self.forward, "many"):
            with self._one_at_a_time:
                results = self.forward.many(calls)
        else:
            results = []
            for call in calls:
                with self._one_at_a_time:
                    results.append(self.forward(*call))
        for idx, logits in zip(groups, results, strict=True):
            out[idx] = logits
        return out

    def probabilities(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return softmax(self.logits(texts, batch_size) / self.temperature)

    def predict(self, texts: list[str], k: int = 3, batch_size: int = 32) -> list[Prediction]:
        if not texts:
            return []
        probs = self.probabilities(texts, batch_size)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :min(k, len(self.labels))]
        return [Prediction(self.labels[int(i[0])], float(p[i[0]]), [(self.labels[int(j)], float(p[j])) for j in i])
                for p, i in zip(probs, top)]

    def latency_ms(self, texts: list[str], warmup: int = 3) -> list[float]:
        """Wall time of classifying each text on its own (batch of one), in milliseconds."""
        for text in texts[:warmup]:
            self.logits([text])
        times = []
        for text in texts:
            start = time.perf_counter()
            self.logits([text])
            times.append((time.perf_counter() - start) * 1000)
        return times
