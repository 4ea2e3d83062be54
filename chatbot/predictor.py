"""Messages in, calibrated intent predictions out, whatever computes the logits.

:class:`IntentClassifier` tokenizes a batch (right padding, truncated to the model's ``max_length``),
asks its ``forward`` for the logits and turns them into probabilities with the model's temperature:
``p = softmax(z / T)``. ``forward`` maps ``input_ids`` and ``attention_mask`` (int64 arrays) to float32
logits: the PyTorch model (:class:`chatbot.classifier.TorchForward`) or the exported one
(:class:`chatbot.runtime.OpenVinoForward`). This module needs NumPy only, so a process that serves an
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


class IntentClassifier:
    """A loaded classifier; :meth:`predict` maps messages to calibrated intent probabilities.

    ``tokenizer`` is called like a transformers tokenizer (``padding``, ``truncation``, ``max_length``,
    ``return_tensors="np"``). One batch runs at a time (a lock): an OpenVINO infer request and a fast
    tokenizer refuse to be used by two threads at once ("Infer Request is busy", "Already borrowed"),
    and the app's request threads share one classifier. Concurrency comes from batching
    (``respond_batch``, Ray Serve), not from overlapping forward passes on the same cores."""

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

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Raw logits (float32) in the order of ``texts``; batches are formed by length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            with self._one_at_a_time:
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="np")
                out[idx] = self.forward(np.asarray(enc["input_ids"], dtype=np.int64),
                                        np.asarray(enc["attention_mask"], dtype=np.int64))
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
