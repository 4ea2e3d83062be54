"""What factorisation costs: time one plain or whitened SVD of a matrix of a given shape.

:func:`svd_timing_report` factorises random matrices (the cost of an SVD does not depend on the
values) on the CPU and, where there is one, the GPU; ``python -m chatbot bench-svd --shapes
4096x4096,4096x14336`` runs it and writes ``svd_timing.json`` and ``svd_timing.md``. With Llama-3-8B's four weight shapes timed, the table
adds what compressing the whole 8B model's attention (and MLP) costs on that device: 32 layers of
q, k, v, o (and gate, up, down). Collecting the calibration Gram matrices (forward passes) is not
included; it costs a few forward passes of the model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from compression.compress import CompressArgs
from compression.svd import METHODS, factorise

LLAMA3_8B = {"layers": 32, "attn": ["4096x4096", "1024x4096", "1024x4096", "4096x4096"],
             "mlp": ["14336x4096", "14336x4096", "4096x14336"]}
"""Llama-3-8B's weight shapes (out × in) per decoder layer: q, k, v, o and gate, up, down."""


@dataclass
class SvdTimingArgs:
    shapes: list[str] = field(default_factory=lambda: ["4096x4096", "1024x4096", "14336x4096", "4096x14336"])
    """Matrix shapes out×in to factorise (Llama-3-8B's by default)."""
    methods: list[str] = field(default_factory=lambda: ["plain", "whitened"])
    """Factorisation methods."""
    devices: list[str] = field(default_factory=lambda: ["cpu", "cuda"])
    """Devices to time on (cuda is skipped where there is none)."""
    rank_ratio: float = 0.25
    """Rank kept, as a share of min(out, in)."""
    calib_tokens: int = 2048
    """Rows of the random calibration inputs whose Gram matrix whitens."""
    repeats: int = 1
    """Timed repetitions per point (the minimum is reported)."""

    def __post_init__(self):
        for shape in self.shapes:
            parse_shape(shape)
        if unknown := set(self.methods) - set(METHODS):
            raise ValueError(f"unknown method(s) {', '.join(sorted(unknown))}")
        if not 0 < self.rank_ratio <= 1 or self.repeats < 1 or self.calib_tokens < 1:
            raise ValueError("rank ratio must be in (0, 1], repeats and calib tokens ≥ 1")


def parse_shape(shape: str) -> tuple[int, int]:
    try:
        m, n = (int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {shape!r} is not OUTxIN, e.g. 4096x14336") from None
    if m < 1 or n < 1:
        raise ValueError(f"shape {shape!r} must be positive")
    return m, n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_factorisation(m: int, n: int, method: str, device: str | torch.device = "cpu", rank_ratio: float = 0.25,
                       calib_tokens: int = 2048, repeats: int = 1, seed: int = 0) -> float:
    """Seconds for one factorisation of a random m×n float32 weight (the least of ``repeats``)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(m, n, generator=generator) / n ** 0.5).to(device)
    gram = None
    if method == "whitened":
        x = torch.randn(calib_tokens, n, generator=generator).to(device)
        gram = (x.T @ x).double()
    rank = CompressArgs(rank_ratio=rank_ratio).rank_for(m, n)
    if device.type == "cuda":
        factorise(weight[:64, :64], 8, method, None if gram is None else gram[:64, :64])  # solver start-up
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        factorise(weight, rank, method, gram)
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return best


def llama3_8b_estimate(times: dict[str, float]) -> dict[str, float] | None:
    """Seconds to factorise all of Llama-3-8B's attention, and attention + MLP, from per-shape times."""
    if not all(s in times for s in LLAMA3_8B["attn"] + LLAMA3_8B["mlp"]):
        return None
    attn = LLAMA3_8B["layers"] * sum(times[s] for s in LLAMA3_8B["attn"])
    mlp = LLAMA3_8B["layers"] * sum(times[s] for s in LLAMA3_8B["mlp"])
    return {"attn": attn, "attn+mlp": attn + mlp}


def svd_timing_report(args: SvdTimingArgs, machine: str) -> dict:
    """Time every (device, method, shape) of ``args``; the report names ``machine``."""
    from tqdm.auto import tqdm

    devices = [d for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    rows, estimates = [], {}
    jobs = [(d, meth, s) for d in devices for meth in args.methods for s in args.shapes]
    for device, method, shape in tqdm(jobs, desc="factorising"):
        m, n = parse_shape(shape)
        seconds = time_factorisation(m, n, method, device, args.rank_ratio, args.calib_tokens, args.repeats)
        rows.append({"device": device, "method": method, "shape": shape,
                     "rank": CompressArgs(rank_ratio=args.rank_ratio).rank_for(m, n), "seconds": seconds})
        tqdm.write(f"{device} {method} {shape}: {seconds:.2f} s")
    for device in devices:
        for method in args.methods:
            times = {r["shape"]: r["seconds"] for r in rows if r["device"] == device and r["method"] == method}
            if (estimate := llama3_8b_estimate(times)) is not None:
                estimates[f"{device} {method}"] = estimate
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
            "args": asdict(args), "rows": rows, "llama3_8b_seconds": estimates}


def write_report(report: dict, folder: str | Path) -> None:
    """``svd_timing.json`` and ``svd_timing.md`` in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "svd_timing.json").write_text(json.dumps(report, indent=2))
    (out / "svd_timing.md").write_text(markdown_table(report))


def markdown_table(report: dict) -> str:
    lines = [f"{report['date']} · {report['machine']}", "",
             "| device | method | shape (out×in) | rank | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['device']} | {r['method']} | {r['shape']} | {r['rank']} | {r['seconds']:.2f} |"
              for r in report["rows"]]
    if report["llama3_8b_seconds"]:
        lines += ["", "Whole Llama-3-8B (32 layers), from the per-shape times:", "",
                  "| device, method | attention s | attention + MLP s |", "|---|---|---|"]
        lines += [f"| {k} | {v['attn']:.0f} | {v['attn+mlp']:.0f} |" for k, v in report["llama3_8b_seconds"].items()]
    return "\n".join(lines) + "\n"
