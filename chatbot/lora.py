"""LoRA for the classifier: the adapter's settings, what trains, loading with key checks, merging.

A LoRA adapter adds to a frozen linear layer W a low-rank update, y = W x + (α/r)·B A x, with
A ∈ ℝ^{r×n} (random init) and B ∈ ℝ^{m×r} (zero init, so training starts from the base model).
Only A, B and the classification head (``score``) train; peft's ``SEQ_CLS`` task keeps the head in
``modules_to_save``. Merging folds (α/r)·B A into W, after which the model is plain weights again.

Where SVD compression replaced a target by a :class:`~compression.svd.LowRankLinear` (``up ∘ down``),
both factors are adapted, as SVD-LLM heals a compressed model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from chatbot.model import ModelLoadError
from compression.compress import MODULE_NAMES, TARGET_GROUPS
from compression.svd import LowRankLinear


@dataclass
class LoraSettings:
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    targets: list[str] = field(default_factory=lambda: list(TARGET_GROUPS["attn"]))
    """Modules LoRA adapts (compressed ones on both factors): q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj."""

    def __post_init__(self):
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ValueError("LoRA rank and alpha must be ≥ 1 and dropout in [0, 1)")
        if not self.targets:
            raise ValueError("give at least one LoRA target")
        if unknown := [t for t in self.targets if t not in MODULE_NAMES]:
            raise ValueError(f"unknown LoRA target(s) {', '.join(unknown)}; use {', '.join(MODULE_NAMES)}")

    @classmethod
    def on(cls, r: int, layers: str) -> "LoraSettings":
        """Rank ``r`` (alpha 2r, as the shipped builds) on ``layers``: attn, mlp or attn+mlp."""
        groups = layers.split("+") if isinstance(layers, str) else [None]
        if any(group not in TARGET_GROUPS for group in groups) or len(set(groups)) < len(groups):
            raise ValueError(f"LoRA layers are {', '.join(TARGET_GROUPS)} or attn+mlp, not {layers!r}")
        return cls(r=r, alpha=2 * r, targets=[m for group in groups for m in TARGET_GROUPS[group]])

    def describe(self) -> dict:
        """What a version's row says about its adapter: the rank, the modules and, where they make
        whole groups, the groups' names (``attn+mlp``)."""
        groups = [g for g, names in TARGET_GROUPS.items() if set(names) <= set(self.targets)]
        whole = sorted(self.targets) == sorted(m for g in groups for m in TARGET_GROUPS[g])
        return {"r": self.r, "targets": list(self.targets), "layers": "+".join(groups) if whole else ",".join(self.targets)}


def target_names(model, targets: list[str]) -> list[str]:
    """Full names of the Linear layers LoRA adapts: each layer named in ``targets``, or, where SVD
    compression replaced it by a :class:`LowRankLinear`, both of its factors."""
    names = []
    for full, module in model.named_modules():
        if full.rsplit(".", 1)[-1] not in targets:
            continue
        if isinstance(module, LowRankLinear):
            names += [f"{full}.down", f"{full}.up"]
        elif isinstance(module, torch.nn.Linear):
            names.append(full)
    if not names:
        raise ValueError(f"no layers named {', '.join(targets)} to adapt")
    return names


def apply(model, settings: LoraSettings):
    """Wrap ``model`` so that exactly the adapters on ``settings.targets`` and the score head train."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=target_names(model, settings.targets))
    return get_peft_model(model, config)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """A copy of the trainable tensors (to restore the best epoch)."""
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def save(model, folder: str | Path) -> None:
    """The adapter and the head, in peft's format (``adapter_config.json`` + safetensors)."""
    model.save_pretrained(folder)


def load(model, adapter_dir: str | Path):
    """``model`` with the adapter of ``adapter_dir`` loaded; every adapter key must land.

    Shape mismatches (an adapter trained on another base) and unexpected or missing adapter keys
    are refused with a one-line :class:`ModelLoadError` rather than half-loading."""
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.exists():
        raise ModelLoadError(f"{adapter_dir} has no adapter_model.safetensors")
    try:
        config = PeftConfig.from_pretrained(str(adapter_dir))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{adapter_dir}: unreadable adapter config ({str(err).splitlines()[0]})") from None
    if getattr(config, "peft_type", None) is None:
        raise ModelLoadError(f"{adapter_dir}: unreadable adapter config (no peft_type)")
    config.inference_mode = True
    peft_model = get_peft_model(model, config)
    try:
        state = load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - safetensors' own error type: a damaged or foreign file
        raise ModelLoadError(f"{weights} is not a readable safetensors file ({str(err).splitlines()[0]})") from None
    try:
        result = set_peft_model_state_dict(peft_model, state)
    except RuntimeError as err:  # shape mismatch: an adapter trained on another base
        raise ModelLoadError(f"adapter does not fit the base: {str(err).splitlines()[0]}") from None
    if result.unexpected_keys:
        raise ModelLoadError(f"adapter does not fit the base: unexpected keys {result.unexpected_keys[:3]}")
    missing = [k for k in result.missing_keys if "lora_" in k or "modules_to_save" in k]
    if missing:
        raise ModelLoadError(f"adapter is incomplete: missing keys {missing[:3]}")
    return peft_model


def merge(peft_model):
    """Fold the adapters into the weights; returns the plain model (head included), all trainable
    again, so that whatever wraps it next decides what trains."""
    model = peft_model.merge_and_unload()
    model.requires_grad_(True)
    return model


def fingerprint(adapter_dir: str | Path) -> str:
    """What merged weights depend on: the adapter's tensors and its config (alpha, targets)."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((Path(adapter_dir) / name).read_bytes())
    return digest.hexdigest()[:16]
