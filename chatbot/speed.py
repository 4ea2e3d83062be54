"""``python -m chatbot bench --serve FOLDER …``: how fast, how big and how accurate each serving path is.

Every model folder is served by every runtime asked for (PyTorch in the machine's inference dtype,
and the exported OpenVINO model of :mod:`chatbot.runtime`). All systems are loaded in one process
and measured in turns, round by round, so that what else runs on the machine weighs on all of them
alike: single messages (batch of one, p50/p95), then messages per second: 512 messages handed over
at once (the classifier batches them by length, 32 at most in a forward call), and the same messages
in random batches of 2–32 (what concurrent customers give a replica's ``@serve.batch``), then
accuracy and top-1 agreement with the first system on the evaluation rows. Peak memory is each
system's own: a fresh process per system loads it and serves single messages and batches, and
reports its maximum resident set size (a new interpreter: what a serving process imports, no more).

Writes ``speed.json``, ``speed.md`` (a Markdown table with the machine) and ``speed.png`` (accuracy
against single-message latency, one labelled point per system) to ``--report``.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from chatbot import machine
from chatbot.runtime import SERVING_RUNTIMES
from chatbot.settings import child_env


def serve_entry(entry: str, runtimes: list[str]) -> tuple[str, list[str]]:
    """(folder, runtimes) of one ``--serve`` entry: ``FOLDER@RUNTIME`` is served by that runtime only
    (a dense PyTorch reference beside exported builds), a plain folder (also an existing one whose name
    has an ``@``) by every one of ``runtimes``; a ValueError for an unknown runtime after ``@``."""
    folder, at, runtime = entry.rpartition("@")
    if not at or Path(entry).exists():
        return entry, list(runtimes)
    if runtime not in SERVING_RUNTIMES or not folder:
        raise ValueError(f"{entry}: write FOLDER@RUNTIME with a runtime of {', '.join(SERVING_RUNTIMES)}")
    return folder, [runtime]


def serve_systems(serve: list[str], runtimes: list[str]) -> list[tuple[str, str, str]]:
    """(name, folder, runtime) for every ``--serve`` entry × its runtimes, in the order given; a
    ValueError when two would have the same name (the same folder and runtime, or folders of one name)."""
    found = []
    for entry in serve:
        folder, chosen = serve_entry(entry, runtimes)
        found += [(f"{Path(folder).name} · {runtime}", folder, runtime) for runtime in chosen]
    names = [name for name, _, _ in found]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"served twice under one name: {', '.join(twice)}")
    return found


def _load(folder: str, runtime: str):
    from chatbot.runtime import load_serving

    return load_serving(folder, runtime)


def _size(classifier, folder: str, runtime: str) -> float:
    """Megabytes of weights: the exported files on disk, or the PyTorch weights in memory."""
    if runtime != "torch":
        return classifier.forward.disk_bytes() / 1e6
    return sum(p.numel() * p.element_size() for p in classifier.model.parameters()) / 1e6


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB. Linux's ``VmHWM`` belongs to the process image, so a
    spawned child does not inherit its parent's peak (``ru_maxrss`` survives ``exec`` and would)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _serve_and_measure(folder: str, runtime: str, texts: list[str]) -> float:
    """Load one system, serve single messages and batches with it: this process's peak memory in MB."""
    classifier = _load(folder, runtime)
    for text in texts[:100]:
        classifier.predict([text])
    classifier.predict(texts[:256], batch_size=32)
    return _peak_rss_mb()


def peak_memory_mb(folder: str, runtime: str, texts: list[str]) -> float | str:
    """Maximum resident memory of a fresh Python process that loads one system and serves with it.
    A new interpreter rather than a multiprocessing child: a spawned child re-imports the ``python -m
    chatbot`` entry point (training and PyTorch with it), which a serving process does not carry."""
    script = ("import json, sys; from chatbot.speed import _serve_and_measure; "
              "print(json.dumps(_serve_and_measure(**json.load(sys.stdin))))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps({"folder": folder, "runtime": runtime,
                          "texts": texts}), capture_output=True, text=True, env=child_env())
    if done.returncode:
        return (done.stderr.strip().splitlines() or ["failed"])[-1]
    return float(done.stdout.strip().splitlines()[-1])


RANDOM_BATCHES = (2, 32)
"""Smallest and largest size of the random batches (32: the serving deployment's default
``max_batch_size``, and the most messages in one forward call here)."""


def random_batches(texts: list[str], seed: int = 0) -> list[list[str]]:
    """``texts`` shuffled and cut into batches of random sizes in :data:`RANDOM_BATCHES` (the last
    one holds what is left): short and long messages mixed, as concurrent customers send them."""
    rng = random.Random(seed)
    pool = rng.sample(texts, len(texts))
    batches = []
    while pool:
        size = rng.randint(*RANDOM_BATCHES)
        batches.append(pool[:size])
        pool = pool[size:]
    return batches


def _rate(classifier, batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        classifier.predict(batch, batch_size=32)
    return sum(map(len, batches)) / (time.perf_counter() - started)


def run_speed(args, rows) -> dict:
    """Measure every system of ``args`` (``serve``, ``runtimes``, ``rounds``, ``latency_messages``) on ``rows``."""
    from chatbot.evaluate import latency_summary

    systems = serve_systems(args.serve, args.runtimes)
    texts = [e.text for e in rows]
    sample = random.Random(0).sample(texts, min(args.latency_messages, len(texts)))
    loaded, results = {}, {}
    for name, folder, runtime in systems:
        started = time.perf_counter()
        loaded[name] = _load(folder, runtime)
        results[name] = {"folder": folder, "runtime": runtime, "load_s": time.perf_counter() - started,
                         "parameters": loaded[name].parameter_count(), "size_mb": _size(loaded[name], folder, runtime)}
        loaded[name].latency_ms(sample[:5])  # warm-up, and static shapes compiled
    times = {name: [] for name, _, _ in systems}
    rates = {name: [] for name, _, _ in systems}
    mixed = {name: [] for name, _, _ in systems}
    batches = random_batches(texts[:512])
    for _ in range(args.rounds):
        for name in loaded:
            times[name] += loaded[name].latency_ms(sample, warmup=0)
        for name in loaded:
            rates[name].append(_rate(loaded[name], [texts[:512]]))
        for name in loaded:
            mixed[name].append(_rate(loaded[name], batches))
    reference = None
    for name, _, _ in systems:
        predicted = [p.intent for p in loaded[name].predict(texts)]
        reference = reference or predicted
        results[name].update(latency_ms=latency_summary(times[name]), messages_per_s=float(np.median(rates[name])),
                             messages_per_s_random=float(np.median(mixed[name])),
                             accuracy=sum(p == e.intent for p, e in zip(predicted, rows)) / len(rows),
                             agreement=sum(p == r for p, r in zip(predicted, reference)) / len(rows))
    first = systems[0][0]
    for name in results:
        results[name]["speedup_p50"] = results[first]["latency_ms"]["p50"] / results[name]["latency_ms"]["p50"]
    del loaded
    for name, folder, runtime in systems:
        results[name]["peak_memory_mb"] = peak_memory_mb(folder, runtime, texts)
    report = {"name": args.name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine.describe(), "threads": _threads(), "rows": len(rows), "latency_messages": len(sample),
              "rounds": args.rounds, "reference": first, "results": results}
    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(report, indent=2))
    (out / "speed.md").write_text(markdown_table(report))
    plot_speed(report, out / "speed.png")
    print(markdown_table(report))
    return report


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def markdown_table(report: dict) -> str:
    head = ["system", "parameters", "weights MB", "p50 ms", "p95 ms", f"× vs {report['reference']}", "msg/s batched",
            "msg/s random batches",
            "peak MB", "accuracy", "agreement", "load s"]
    lines = [f"### {report['name'] or 'serving paths'}", "",
             f"{report['date']} · {report['machine']} · {report['threads']} threads · {report['rows']} rows, "
             f"{report['latency_messages']} single messages × {report['rounds']} rounds", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["results"].items():
        peak = r["peak_memory_mb"]
        lines.append("| " + " | ".join([
            name, f"{r['parameters'] / 1e6:.1f} M", f"{r['size_mb']:.0f}", f"{r['latency_ms']['p50']:.1f}",
            f"{r['latency_ms']['p95']:.1f}", f"{r['speedup_p50']:.2f}", f"{r['messages_per_s']:.0f}",
            f"{r['messages_per_s_random']:.0f}" if "messages_per_s_random" in r else "–",
            f"{peak:.0f}" if isinstance(peak, float) else f"failed: {peak}", f"{r['accuracy']:.4f}",
            f"{r['agreement']:.4f}", f"{r['load_s']:.0f}"]) + " |")
    return "\n".join(lines) + "\n"


def plot_speed(report: dict, path: Path) -> Path:
    """Accuracy against p50 latency, one point per system, its area growing with its parameters and
    labelled with its name, parameters and msg/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name, r in report["results"].items():
        x, y = r["latency_ms"]["p50"], r["accuracy"]
        ax.scatter([x], [y], s=20 + r["parameters"] / 1e6, alpha=0.6)
        ax.annotate(f"{name}\n{r['parameters'] / 1e6:.0f} M · {r['messages_per_s']:.0f} msg/s", (x, y),
                    textcoords="offset points", xytext=(6, 4), fontsize=7, color="#333")
    ax.set_xlabel("p50 ms, one message (lower is faster)")
    ax.set_ylabel(f"accuracy ({report['rows']} rows)")
    ax.set_title(f"{report['name'] or 'serving paths'} · {report['date'][:16]} UTC", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
