"""The machine a model runs on: which device, which dtype, and a one-line description for reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(device: str | None = None) -> torch.device:
    """``cuda`` when available unless a device is given."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """True when the processor multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    flags = _cpu_flags()
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_has_amx() -> bool:
    """True when the processor has Intel's AMX tiles (where OpenVINO's bfloat16 streams can go wrong:
    :func:`chatbot.runtime.bf16_streams_sound`)."""
    return " amx_tile" in _cpu_flags()


def inference_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA and on CPUs that compute it natively, float32 elsewhere."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def describe() -> str:
    """Processor, cores, memory, GPU and torch version, for the header of every report."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {gpu}, torch {torch.__version__}"
