"""The intent classifier: built from a model folder by one loader, it maps messages to calibrated
intent probabilities.

Loading a folder (:func:`load_classifier`) is one path, in this order:

1. the **base** with a fresh head (:func:`chatbot.model.load_base`);
2. the tuned **source** adapter merged in, when the folder was built by compressing a tuned classifier;
3. the **compression** recipe applied (factors from the cache, or recomputed from its calibration data);
4. the **vocabulary** trimmed to the tokens our languages can produce (same logits for their text);
5. the folder's own **adapter** loaded with key checks (:func:`chatbot.lora.load`), then merged;
6. moved to the inference device and dtype (bfloat16 on CUDA and on CPUs with native bfloat16).

Steps 1–4 are :func:`build_model`, which training uses too, so a model trains on exactly what it
will be loaded on. ``--base`` may also name a compressed base folder written by ``python -m chatbot
compress --out``: its factorised layers are loaded from that folder.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from chatbot import lora
from chatbot.folder import ModelFolder
from chatbot.machine import inference_dtype, pick_device
from chatbot.model import ModelLoadError, load_base
from chatbot.settings import ROOT, compressed_cache
from compression.compress import apply_recipe, load_compressed_weights, read_recipe
from compression.vocab import apply_corpus_trim


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    top: list[tuple[str, float]]

    def as_dict(self) -> dict:
        return {"intent": self.intent, "confidence": round(self.confidence, 4),
                "top": [{"intent": i, "confidence": round(p, 4)} for i, p in self.top]}


def describe_base(base: str) -> tuple[str, dict | None]:
    """(base name, compression recipe) of what ``--base`` names; a compressed base folder records both."""
    info = read_recipe(base) if Path(base).is_dir() else None
    return (info["base"], info["recipe"]) if info else (base, None)


def build_model(base: str, num_labels: int, source_adapter: str | Path | None = None,
                compression: dict | None = None, trim: tuple[dict, list[int]] | None = None,
                dtype: torch.dtype = torch.float32):
    """Base → merged source adapter → compression recipe → vocabulary trim: the model an adapter
    trains or loads on.

    Returns ``(model, tokenizer)``; the model is plain (no adapter) and trainable; with a ``trim``
    (recipe, kept ids) the tokenizer is the pruned one that only produces kept ids."""
    info = read_recipe(base) if Path(base).is_dir() else None
    if info:  # a compressed base folder: its own factorised weights
        if source_adapter or compression or trim:
            raise ModelLoadError(f"{base} is already compressed: give its base instead to add a source or a recipe")
        model, tokenizer = load_base(info["base"], num_labels, dtype)
        load_compressed_weights(model, base, info["recipe"])
        return model, tokenizer
    model, tokenizer = load_base(base, num_labels, dtype)
    if source_adapter:
        model = lora.merge(lora.load(model, source_adapter))
    if compression:
        try:
            apply_recipe(model, tokenizer, base, compression, compressed_cache(), calib_root=ROOT)
        except ValueError as err:
            raise ModelLoadError(str(err)) from None
    if trim:
        try:
            tokenizer, _ = apply_corpus_trim(model, tokenizer, *trim)
        except ValueError as err:
            raise ModelLoadError(f"vocabulary trim: {err}") from None
    return model, tokenizer


def load_classifier(folder: str | Path, device: str | None = None, dtype: torch.dtype | None = None,
                    merge: bool = True) -> "IntentClassifier":
    """The classifier a model folder describes, in PyTorch, ready for inference (see the module
    docstring). The exported fast path for serving is :func:`chatbot.runtime.load_serving`."""
    folder = Path(folder)
    spec = ModelFolder.read(folder)
    model, tokenizer = build_model(spec.base, len(spec.labels), spec.source_adapter_dir(folder), spec.compression,
                                   spec.read_trim(folder))
    model = lora.load(model, ModelFolder.adapter_dir(folder))
    if merge:
        model = lora.merge(model)
    target = pick_device(device)
    model = model.to(device=target, dtype=dtype or inference_dtype(target)).eval().requires_grad_(False)
    return IntentClassifier(TorchForward(model), tokenizer, spec.labels, spec.temperature, spec.max_length)


class TorchForward:
    """Logits from the PyTorch model: the reference path, and the one used on GPUs."""

    def __init__(self, model):
        self.model = model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids.to(self.device),
                          attention_mask=attention_mask.to(self.device)).logits.float().cpu()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def embedding_parameters(self) -> int:
        """Rows of the input embedding actually stored (a trimmed vocabulary keeps fewer)."""
        return self.model.get_input_embeddings().weight.numel()


class IntentClassifier:
    """A loaded classifier; :meth:`predict` maps messages to calibrated intent probabilities.

    ``forward`` maps padded ``input_ids`` and ``attention_mask`` to float32 logits on the CPU:
    :class:`TorchForward`, or the exported runtime of :mod:`chatbot.runtime`.

    One batch runs at a time (a lock): an OpenVINO infer request and a fast tokenizer refuse to be
    used by two threads at once ("Infer Request is busy", "Already borrowed"), and the app's request
    threads share one classifier. Concurrency comes from batching (``respond_batch``, Ray Serve), not
    from overlapping forward passes on the same cores."""

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

    def logits(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """Raw logits (float32, on CPU) in the order of ``texts``; batches are formed by length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), len(self.labels))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            with self._one_at_a_time:
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                out[idx] = self.forward(enc["input_ids"], enc["attention_mask"])
        return out

    def probabilities(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        return torch.softmax(self.logits(texts, batch_size) / self.temperature, dim=-1)

    def predict(self, texts: list[str], k: int = 3, batch_size: int = 32) -> list[Prediction]:
        if not texts:
            return []
        probs = self.probabilities(texts, batch_size)
        top_p, top_i = probs.topk(min(k, len(self.labels)), dim=-1)
        return [
            Prediction(self.labels[int(i[0])], float(p[0]), [(self.labels[int(j)], float(q)) for j, q in zip(i, p)])
            for p, i in zip(top_p, top_i)
        ]

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
