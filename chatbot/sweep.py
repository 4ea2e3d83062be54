"""``python -m chatbot sweep``: build a version per rank ratio (or parameter budget) × method ×
compression targets × vocabulary.

The uncompressed model comes first, in the same run; every point is built by
:func:`chatbot.build.build_version`. Writes ``sweep.json`` (after every point, so a stopped sweep keeps
what it measured), ``sweep.md`` and ``sweep.png`` (accuracy against parameters). One failed point
becomes an ``error`` row and the others go on, also when a parallel worker dies.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from chatbot import machine
from chatbot.build import Compression, HealArgs, build_version
from chatbot.settings import DEFAULT_BASE
from chatbot.views import plot_versions


@dataclass
class SweepArgs:
    data: list[str]
    """Intent data (train split heals, test split scores)."""
    report: str
    """Folder for sweep.json, sweep.md, sweep.png and the model folders."""
    base: str = DEFAULT_BASE
    """Base model."""
    source: str | None = None
    """A fine-tuned, uncompressed model folder to compress instead of the raw base (its base is used)."""
    ratios: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.5, 0.25, 0.125])
    """Rank ratios (1 = uncompressed; run once, first)."""
    methods: list[str] = field(default_factory=lambda: ["plain", "whitened"])
    """Factorisation methods."""
    compress_targets: list[str] = field(default_factory=lambda: ["attn", "attn+mlp"])
    """Layers to compress: attn, mlp, attn+mlp or module names joined by + (q_proj+o_proj)."""
    params_keep: list[float] = field(default_factory=list)
    """Parameter budgets (share of the targeted parameters kept) with ranks chosen per matrix, besides the ratios."""
    min_saving: float = 0.0
    """With ``params_keep``: factorise a matrix only at a rank that cuts at least this share of it
    (``build --min-saving``; the served default uses 0.5)."""
    vocab: list[str] = field(default_factory=lambda: ["full"])
    """Vocabulary of every point: full, trimmed (to our languages' tokens), or both."""
    heal: HealArgs = field(default_factory=HealArgs)
    jobs: int = 1
    """Points built at once, each in its own process (a GPU has room for several small models)."""
    cli_aliases: ClassVar[dict[str, str]] = {"targets": "compress_targets", "distill": "distill_weight"}

    def __post_init__(self):
        if any(not 0 < r <= 1 for r in self.ratios):
            raise ValueError("ratios must be in (0, 1]")
        if self.jobs < 1:
            raise ValueError("jobs must be ≥ 1")
        if self.heal.distill.weight and not self.source:
            raise ValueError("--distill needs --source: the tuned classifier is the teacher")
        if self.heal.distill.noisy_copies and not (self.source and self.heal.distill.weight):
            raise ValueError("--distill-noisy-copies learns from the source: give --source and --distill")
        if any(not 0 < k < 1 for k in self.params_keep):
            raise ValueError("params keep must be in (0, 1)")
        Compression(min_saving=self.min_saving)  # its range
        if self.min_saving and not self.params_keep:
            raise ValueError("--min-saving applies to --params-keep points: give at least one budget")
        if not self.vocab or set(self.vocab) - {"full", "trimmed"}:
            raise ValueError("vocab must be full, trimmed or both")


@dataclass(frozen=True)
class Point:
    ratio: float
    method: str
    targets: str
    keep: float | None = None
    vocab: str = "full"

    @property
    def name(self) -> str:
        trimmed = "-trimmed" if self.vocab == "trimmed" else ""
        if self.method == "none":
            return "dense" + trimmed
        size = f"keep{self.keep:g}" if self.keep is not None else f"{self.ratio:g}"
        return f"{self.method}-{self.targets.replace('+', '_')}-{size}{trimmed}"

    def error_row(self, err: BaseException) -> dict:
        return {"ratio": self.ratio, "method": self.method, "targets": self.targets, "params_keep": self.keep,
                "vocab": self.vocab, "error": f"{type(err).__name__}: {err}"}


def points(args: SweepArgs) -> list[Point]:
    """The uncompressed points first (when ratio 1 is asked for), then every compressed combination."""
    dense = [Point(1.0, "none", "none", vocab=v) for v in args.vocab] if 1.0 in args.ratios else []
    sized = [(r, None) for r in args.ratios if r < 1] + [(1.0, k) for k in args.params_keep]
    return dense + [Point(r, m, t, k, v) for v in args.vocab for t in args.compress_targets for m in args.methods
                    for r, k in sized]


def build_point(args: SweepArgs, point: Point, threads: int | None = None) -> dict:
    """One sweep point; a failure becomes an ``error`` row so the other points are kept."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        return build_version(args.data, Path(args.report) / point.name, args.base, point.method, point.targets,
                             point.ratio, args.heal, source=args.source, params_keep=point.keep,
                             trim_vocab=point.vocab == "trimmed",
                             min_saving=args.min_saving if point.keep is not None else 0.0)
    except Exception as err:  # noqa: BLE001 - one failed point does not lose the others
        return point.error_row(err)


def run_points(args: SweepArgs, todo: list[Point], record, build=build_point) -> None:
    """Build every point, one after the other or ``args.jobs`` at a time in spawned processes;
    ``record(index, row)`` sees each row as it comes."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if args.jobs == 1:
        for i, point in enumerate(todo):
            print(f"[sweep] {point.name}", flush=True)
            record(i, build(args, point))
        return
    from chatbot.classifier import describe_base
    from chatbot.folder import ModelFolder
    from chatbot.model import resolve_base

    # dequantise an embedded base once, not in every worker at the same time
    resolve_base(describe_base(ModelFolder.read(args.source).base if args.source else args.base)[0])
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(build, args, point, threads): i for i, point in enumerate(todo)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                record(i, future.result())
            except Exception as err:  # noqa: BLE001 - e.g. a worker killed for memory
                record(i, todo[i].error_row(err))


def run_sweep(args: SweepArgs, build=build_point) -> dict:
    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    todo = points(args)
    rows: list[dict | None] = [None] * len(todo)

    def record(i: int, row: dict) -> None:
        rows[i] = row
        print(f"[sweep] {todo[i].name}: " + (f"accuracy {row['accuracy']:.4f}" if "accuracy" in row else row["error"]),
              flush=True)
        (out / "sweep.json").write_text(json.dumps({"args": asdict(args), "points": [r for r in rows if r]},
                                                   indent=2))

    run_points(args, todo, record, build)
    report = {"args": asdict(args), "machine": machine.describe(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "points": rows}
    (out / "sweep.json").write_text(json.dumps(report, indent=2))
    (out / "sweep.md").write_text(markdown_table(report))
    plot_versions(rows, out / "sweep.png")
    print(markdown_table(report))
    return report


def markdown_table(report: dict) -> str:
    rows = [r for r in report["points"] if "accuracy" in r]
    langs = sorted({lang for r in rows for lang in r["per_language"]})
    head = ["rank ratio", "keep", "method", "targets", "vocab", "parameters", "non-embedding", "size MB", "accuracy",
            "macro-F1"] + [f"acc {lang}" for lang in langs] + ["p50 ms", "served p50 ms", "served msg/s", "served MB",
                                                               "agreement"]
    lines = [f"{report.get('date', '')} · {report.get('machine', '')}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["points"]:
        keep = "–" if r.get("params_keep") is None else f"{r['params_keep']:g}"
        if "error" in r:
            lines.append(f"| {r['ratio']} | {keep} | {r['method']} | {r['targets']} | {r.get('vocab', 'full')} | "
                         f"failed: {r['error']} |")
            continue
        lines.append("| " + " | ".join([f"{r['ratio']:g}", keep, r["method"], r["targets"], r.get("vocab", "full"),
                                         f"{r['parameters']:,}",
                                         f"{r['non_embedding_parameters']:,}" if "non_embedding_parameters" in r else "–",
                                         f"{r['size_mb']:.0f}", f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"]
                                        + [f"{r['per_language'].get(lang, float('nan')):.3f}" for lang in langs]
                                        + [f"{r['latency_ms']['p50']:.1f}"] + _served(r.get("serving"))) + " |")
    return "\n".join(lines) + "\n"


def _served(serving: dict | None) -> list[str]:
    """The exported model's p50, msg/s, size and agreement with PyTorch, or dashes where none was built."""
    if not serving:
        return ["–"] * 4
    return [f"{serving['latency_ms']['p50']:.1f}", f"{serving['messages_per_s']:.0f}", f"{serving['disk_mb']:.0f}",
            f"{serving['agreement']:.4f}"]
