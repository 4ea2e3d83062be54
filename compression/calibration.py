"""Calibration statistics: the Gram matrix XᵀX of the inputs of chosen linear layers.

Forward hooks accumulate, for every listed layer, the sum over non-padding tokens of x xᵀ in
float64 while calibration messages run through the model. Layers that read the same input (q/k/v,
gate/up) still get their own matrix: simple, and cheap at these sizes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch import nn


@torch.no_grad()
def collect_grams(model: nn.Module, tokenizer, texts: list[str], layers: list[tuple[str, nn.Linear]],
                  batch_size: int = 16, max_length: int = 96, progress=None) -> dict[str, torch.Tensor]:
    """``{layer name: XᵀX}`` over the tokens of ``texts`` (padding excluded)."""
    if not texts:
        raise ValueError("no calibration messages")
    grams = {name: torch.zeros(lin.in_features, lin.in_features, dtype=torch.float64) for name, lin in layers}
    state = {"mask": None}

    def hook(name):
        def accumulate(module, inputs, output):
            x = inputs[0].detach()
            x = x[state["mask"]] if state["mask"] is not None else x.reshape(-1, x.shape[-1])
            x = x.to(torch.float64).cpu()
            grams[name] += x.T @ x

        return accumulate

    handles = [lin.register_forward_hook(hook(name)) for name, lin in layers]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        batches = range(0, len(texts), batch_size)
        for i, start in enumerate(batches):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            state["mask"] = enc["attention_mask"].bool()
            model(**enc)
            if progress:
                progress((i + 1) / len(batches))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return grams


def read_texts(path: str | Path, split: str | None = None) -> list[str]:
    """The ``text`` column of a CSV or JSONL file (blank texts skipped); only rows of ``split`` when
    given and the file has a split column (so test messages never calibrate)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: calibration file not found")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            if path.suffix.lower() in (".jsonl", ".json"):
                rows = [json.loads(line) for line in f if line.strip()]
            else:
                rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: not a UTF-8 CSV or JSONL calibration file ({err})") from None
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: every JSONL line must be an object with a text")
    if rows and "text" not in rows[0]:
        raise ValueError(f"{path}: calibration file needs a text column")
    if split and rows and "split" in rows[0]:
        rows = [r for r in rows if r.get("split") == split]
    return [" ".join(str(r.get("text") or "").split()) for r in rows if str(r.get("text") or "").strip()]
