"""Inference with a trained model folder: calibrated intent probabilities for customer messages.

A model folder (written by :mod:`chatbot.train`) holds ``model.json`` (base, labels, temperature,
compression recipe) and ``adapter/`` (LoRA weights and the score head). Loading rebuilds the base,
re-applies the compression recipe if any, loads the adapter (checking missing and unexpected keys),
merges it into the weights and moves the model to the inference device and dtype.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from chatbot.model import ModelLoadError, inference_dtype, load_base, pick_device

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "model"
"""The shipped default model, trained on the assets data (see README for how it is rebuilt)."""


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    top: list[tuple[str, float]]

    def as_dict(self) -> dict:
        return {"intent": self.intent, "confidence": round(self.confidence, 4),
                "top": [{"intent": i, "confidence": round(p, 4)} for i, p in self.top]}


def read_settings(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "model.json"
    if not path.exists():
        raise ModelLoadError(f"{folder} is not a model folder (no model.json); train one with: python -m chatbot train")
    try:
        settings = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path} is damaged: {err}") from None
    for key in ("base", "labels", "temperature"):
        if key not in settings:
            raise ModelLoadError(f"{path} lacks {key!r}")
    return settings


def load_adapter_checked(model, adapter_dir: Path):
    """Load a LoRA adapter onto ``model``; every adapter key must land (torchtune-style check)."""
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.exists():
        raise ModelLoadError(f"{adapter_dir} has no adapter_model.safetensors")
    config = PeftConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = True
    peft_model = get_peft_model(model, config)
    try:
        result = set_peft_model_state_dict(peft_model, load_file(str(weights)))
    except RuntimeError as err:  # shape mismatch: an adapter trained on another base
        raise ModelLoadError(f"adapter does not fit the base: {str(err).splitlines()[0]}") from None
    if result.unexpected_keys:
        raise ModelLoadError(f"adapter does not fit the base: unexpected keys {result.unexpected_keys[:3]}")
    missing = [k for k in result.missing_keys if "lora_" in k or "modules_to_save" in k]
    if missing:
        raise ModelLoadError(f"adapter is incomplete: missing keys {missing[:3]}")
    return peft_model


class IntentClassifier:
    """A loaded model folder; :meth:`predict` maps messages to calibrated intent probabilities."""

    def __init__(self, model, tokenizer, settings: dict, folder: Path | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.folder = folder
        self.labels: list[str] = list(settings["labels"])
        self.temperature = float(settings["temperature"])
        self.max_length = int(settings.get("max_length", 96))

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None, dtype: torch.dtype | None = None,
             merge: bool = True) -> "IntentClassifier":
        folder = Path(folder)
        settings = read_settings(folder)
        source = settings.get("source")
        model, tokenizer = load_base(settings["base"], len(settings["labels"]), compression=settings.get("compression"),
                                     source=folder / source["adapter"] if source else None)
        model = load_adapter_checked(model, folder / "adapter")
        if merge:
            model = model.merge_and_unload()
        target = pick_device(device)
        model = model.to(device=target, dtype=dtype or inference_dtype(target)).eval()
        return cls(model, tokenizer, settings, folder)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.no_grad()
    def logits(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """Raw logits (float32, on CPU) in the order of ``texts``; batches are formed by length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), len(self.labels))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            out[idx] = self.model(**enc).logits.float().cpu()
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
