"""Building model versions: compress → heal (LoRA) → evaluate, one point or a whole sweep.

``build_version`` is what the admin tab runs for one rank; ``python -m chatbot sweep`` runs it over
rank ratios × methods × targets (the uncompressed model first, in the same run) and writes
``sweep.json``, ``sweep.md`` and ``sweep.png`` (accuracy against parameters).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chatbot.data import load_dataset
from chatbot.model import DEFAULT_BASE


@dataclass
class HealArgs:
    epochs: int = 3
    """LoRA healing epochs."""
    lr: float = 1e-3
    """Peak learning rate."""
    lora_r: int = 8
    """LoRA rank."""
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Modules LoRA adapts (compressed ones are adapted on both factors)."""
    max_per_intent: int | None = None
    """Heal on at most this many examples per intent and language (faster sweeps)."""
    batch_size: int = 16
    """Training batch size."""
    seed: int = 0
    """Seed."""
    distill: float = 0.0
    """Weight of the source classifier's soft targets in the healing loss (0 = labels only; needs a source)."""


SOURCE_ADAPTER = "source_adapter"
"""Where a version built from a fine-tuned classifier keeps that classifier's adapter (merged first)."""


def source_problem(source: str | Path, intents: list[str]) -> str | None:
    """Why ``source`` cannot seed a compressed version for data with ``intents``, or None."""
    from chatbot.classifier import read_settings

    settings = read_settings(source)
    if settings.get("compression") or settings.get("source"):
        return f"{source} is itself compressed; start from an uncompressed classifier"
    if list(settings["labels"]) != list(intents):
        return f"{source} was trained on other intents than the data; start from the base instead"
    return None


def _fingerprint(adapter: Path) -> str:
    """What the merged weights depend on: the adapter's tensors and its config (alpha, targets)."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((adapter / name).read_bytes())
    return digest.hexdigest()[:16]


def build_version(data: list[str], out: str | Path, base: str = DEFAULT_BASE, method: str = "whitened",
                  targets: str = "attn", ratio: float = 1.0, heal: HealArgs | None = None,
                  progress=None, eval_split: str = "test", source: str | Path | None = None) -> dict:
    """Compress at ``ratio`` (1 = leave dense), LoRA-heal on ``data``'s train split, evaluate on
    ``eval_split``. Writes a model folder to ``out`` and returns its summary.

    Without ``source`` the raw ``base`` is compressed and the classifier learnt from scratch. With
    ``source`` (a fine-tuned, uncompressed model folder) its adapter and head are merged first, the
    tuned model is compressed and healing starts from its head: far less for healing to recover.
    At ratio 1 with a source, the source itself is the version (copied and evaluated, not trained).
    """
    from chatbot.classifier import IntentClassifier, read_settings
    from chatbot.evaluate import evaluate
    from chatbot.model import cache_dir, load_base
    from chatbot.train import TrainArgs, train
    from compression.compress import CompressArgs, compress_model, store_in_cache

    heal = heal or HealArgs()
    step = progress or (lambda fraction, desc="": None)
    started = time.perf_counter()
    dataset = load_dataset(data, seed=heal.seed)
    source = Path(source) if source else None
    compression, folder, compress_s = None, Path(out), 0.0
    if source:
        if problem := source_problem(source, dataset.intents):
            raise ValueError(problem)
        base = read_settings(source)["base"]
    if source and ratio >= 1:
        shutil.copytree(source, folder, dirs_exist_ok=True)
    else:
        own_source = None
        if source:  # copied first: what is merged is what the folder keeps, even if the source changes
            own_source = folder / SOURCE_ADAPTER
            shutil.copytree(source / "adapter", own_source, dirs_exist_ok=True)
        step(0.0, "loading base")
        model, tokenizer = load_base(base, num_labels=len(dataset.intents), source=own_source)
        base_info = {"base": base, "compression": None}
        if own_source:
            base_info["source"] = {"adapter": SOURCE_ADAPTER, "from": str(source),
                                   "fingerprint": _fingerprint(own_source)}
        if ratio < 1:
            args = CompressArgs(method=method, targets=targets, rank_ratio=ratio, seed=heal.seed)
            result = compress_model(model, tokenizer, args,
                                    progress=lambda f, d="": step(0.05 + 0.15 * f, f"compress: {d}"))
            recipe = result["recipe"]
            if own_source:
                recipe["source"] = base_info["source"]["fingerprint"]
            store_in_cache(model, cache_dir() / "compressed", base, recipe)
            base_info["compression"] = recipe
            compression = {k: v for k, v in result["report"].items() if k != "layers"}
            compress_s = time.perf_counter() - started
        train_args = TrainArgs(data=list(data), out=str(out), base=base, epochs=heal.epochs, lr=heal.lr,
                               lora_r=heal.lora_r, targets=list(heal.targets), max_per_intent=heal.max_per_intent,
                               batch_size=heal.batch_size, seed=heal.seed, patience=heal.epochs,
                               teacher=str(source) if source and heal.distill > 0 else None,
                               distill=heal.distill)
        folder = train(train_args, progress=lambda f, d="": step(0.2 + 0.65 * f, f"heal: {d}"), model=model,
                       tokenizer=tokenizer, base_info=base_info)
        del model
    step(0.85, "evaluating")
    classifier = IntentClassifier.load(folder)
    report = evaluate(classifier, dataset.split(eval_split))
    summary = {
        "folder": str(folder), "base": base, "method": method if ratio < 1 else "none",
        "targets": targets if ratio < 1 else "none", "ratio": ratio,
        "source": str(source) if source else None,
        "parameters": report["parameters"],
        "non_embedding_parameters": report["parameters"] - classifier.model.get_input_embeddings().weight.numel(),
        "size_mb": report["parameters"] * next(classifier.model.parameters()).element_size() / 1e6,
        "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
        "per_language": {k: v["accuracy"] for k, v in report.get("per_language", {}).items()},
        "per_language_f1": {k: v["macro_f1"] for k, v in report.get("per_language", {}).items()},
        "latency_ms": report["latency_ms"], "n": report["n"],
        "compression": compression, "compress_s": compress_s, "total_s": time.perf_counter() - started,
    }
    (Path(folder) / "evaluation.json").write_text(json.dumps({"summary": summary, "report": report}, indent=2))
    step(1.0, "done")
    return summary


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
    targets: list[str] = field(default_factory=lambda: ["attn", "attn+mlp"])
    """Layers to compress: attn, mlp, attn+mlp or module names joined by + (q_proj+o_proj)."""
    epochs: int = 3
    """Healing epochs per point."""
    max_per_intent: int | None = None
    """Heal on at most this many examples per intent and language."""
    lr: float = 1e-3
    """Peak learning rate of healing (lower suits healing a tuned --source)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Modules LoRA heals (compressed ones on both factors)."""
    distill: float = 0.0
    """Heal by distillation from --source: weight of its soft targets in the loss (0 = labels only)."""
    seed: int = 0
    """Seed."""
    jobs: int = 1
    """Points built at once, each in its own process (a GPU has room for several small models)."""

    def __post_init__(self):
        if any(not 0 < r <= 1 for r in self.ratios):
            raise ValueError("ratios must be in (0, 1]")
        if self.jobs < 1:
            raise ValueError("jobs must be ≥ 1")
        if not 0 <= self.distill <= 1:
            raise ValueError("distill must be in [0, 1]")
        if self.distill and not self.source:
            raise ValueError("--distill needs --source: the tuned classifier is the teacher")


def _point_name(ratio: float, method: str, targets: str) -> str:
    return "dense" if ratio == 1 else f"{method}-{targets.replace('+', '_')}-{ratio:g}"


def _build_point(data, out, base, method, targets, ratio, heal, source=None, threads=None) -> dict:
    """One sweep point; a failure becomes an ``error`` row so the other points are kept."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        return build_version(data, out, base, method, targets, ratio, heal, source=source)
    except Exception as err:  # noqa: BLE001 - one failed point does not lose the others
        return {"ratio": ratio, "method": method, "targets": targets, "error": f"{type(err).__name__}: {err}"}


def run_sweep(args: SweepArgs) -> dict:
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from chatbot.bench import machine_description

    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    heal = HealArgs(epochs=args.epochs, lr=args.lr, lora_r=args.lora_r, targets=list(args.lora_targets),
                    max_per_intent=args.max_per_intent, seed=args.seed, distill=args.distill)
    points = [(1.0, "none", "none")] if 1.0 in args.ratios else []
    points += [(r, m, t) for t in args.targets for m in args.methods for r in args.ratios if r < 1]
    rows: list[dict | None] = [None] * len(points)

    def record(i: int, row: dict) -> None:
        rows[i] = row
        name = _point_name(*points[i])
        print(f"[sweep] {name}: " + (f"accuracy {row['accuracy']:.4f}" if "accuracy" in row else row["error"]),
              flush=True)
        (out / "sweep.json").write_text(json.dumps({"args": asdict(args), "points": [r for r in rows if r]},
                                                   indent=2))

    calls = [(args.data, out / _point_name(*p), args.base, p[1], p[2], p[0], heal, args.source) for p in points]
    if args.jobs > 1:  # dequantise an embedded base once, not in every worker at the same time
        from chatbot.classifier import read_settings
        from chatbot.model import resolve_base

        resolve_base(read_settings(args.source)["base"] if args.source else args.base)
    if args.jobs == 1:
        for i, call in enumerate(calls):
            print(f"[sweep] {_point_name(*points[i])}", flush=True)
            record(i, _build_point(*call))
    else:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_build_point, *call, threads): i for i, call in enumerate(calls)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    record(i, future.result())
                except Exception as err:  # noqa: BLE001 - e.g. a worker killed for memory
                    record(i, _error_row(points[i], err))
    report = {"args": asdict(args), "machine": machine_description(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "points": rows}
    (out / "sweep.json").write_text(json.dumps(report, indent=2))
    (out / "sweep.md").write_text(markdown_table(report))
    plot(rows, out / "sweep.png")
    print(markdown_table(report))
    return report


def markdown_table(report: dict) -> str:
    rows = [r for r in report["points"] if "accuracy" in r]
    langs = sorted({lang for r in rows for lang in r["per_language"]})
    head = ["rank ratio", "method", "targets", "parameters", "non-embedding", "size MB", "accuracy", "macro-F1"] + \
           [f"acc {lang}" for lang in langs] + ["p50 ms"]
    lines = [f"{report.get('date', '')} · {report.get('machine', '')}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["points"]:
        if "error" in r:
            lines.append(f"| {r['ratio']} | {r['method']} | {r['targets']} | failed: {r['error']} |")
            continue
        lines.append("| " + " | ".join([f"{r['ratio']:g}", r["method"], r["targets"], f"{r['parameters']:,}",
                                         f"{r['non_embedding_parameters']:,}" if "non_embedding_parameters" in r else "–",
                                         f"{r['size_mb']:.0f}", f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"]
                                        + [f"{r['per_language'].get(lang, float('nan')):.3f}" for lang in langs]
                                        + [f"{r['latency_ms']['p50']:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, live: str | None = None, title: str = "Accuracy against parameters"):
    """Accuracy against parameters (millions), one series per method × targets; ``live`` is ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    series: dict[str, list[dict]] = {}
    for r in rows:
        if "accuracy" in r:
            series.setdefault(f"{r['method']} · {r['targets']}" if r["method"] != "none" else "uncompressed",
                              []).append(r)
    for label, points in sorted(series.items()):
        points = sorted(points, key=lambda r: r["parameters"])
        marker = "*" if label == "uncompressed" else "o"
        ax.plot([p["parameters"] / 1e6 for p in points], [p["accuracy"] for p in points], marker=marker,
                markersize=12 if marker == "*" else 6, label=label, linestyle="-" if len(points) > 1 else "none")
    for r in rows:
        if live and r.get("name", r.get("folder")) == live and "accuracy" in r:
            ax.scatter([r["parameters"] / 1e6], [r["accuracy"]], s=260, facecolors="none", edgecolors="red",
                       linewidths=2, label="live", zorder=5)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("accuracy (test split)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
