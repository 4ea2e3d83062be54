"""The intent classifier: built from a model folder by one loader, it maps messages to calibrated
intent probabilities (:class:`chatbot.predictor.IntentClassifier`) computed by PyTorch.

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

from pathlib import Path

import numpy as np
import torch

from chatbot import lora
from chatbot.folder import ModelFolder
from chatbot.machine import inference_dtype, pick_device
from chatbot.model import ModelLoadError, load_base
from chatbot.predictor import CALL_COST_TOKENS, IntentClassifier
from chatbot.settings import ROOT, compressed_cache
from compression.compress import apply_recipe, load_compressed_weights, read_recipe
from compression.vocab import apply_corpus_trim


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

    @property
    def call_cost_tokens(self) -> float:
        """On a GPU a forward call costs more than padding: a batch stays one call
        (:func:`chatbot.predictor.length_groups`); on a CPU, as measured for the served path."""
        return 1e9 if self.device.type == "cuda" else CALL_COST_TOKENS

    @torch.no_grad()
    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.model(input_ids=torch.from_numpy(input_ids).to(self.device),
                          attention_mask=torch.from_numpy(attention_mask).to(self.device)).logits.float().cpu().numpy()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def threads(self) -> int:
        return torch.get_num_threads()

    def embedding_parameters(self) -> int:
        """Rows of the input embedding actually stored (a trimmed vocabulary keeps fewer)."""
        return self.model.get_input_embeddings().weight.numel()
