"""A version's scorecard: the row of the admin's versions table and plot, written to ``evaluation.json``
beside the full evaluation report by ``build`` and ``soup``.

The row says how the version was made (the fields its maker passes: base, compression, source, the
soup's ingredients), its size (``parameters``, ``non_embedding_parameters``, ``size_mb``), how it
scores on the evaluated split (``accuracy``, ``macro_f1``, ``per_language``, ``per_language_f1``,
``n``), PyTorch's ``latency_ms`` and, under ``serving``, the same model exported for the runtime
that serves it (:mod:`chatbot.runtime`): its latency, messages per second, size on disk and top-1
agreement with PyTorch. These field names are read by outside scripts; extend, do not rename.
"""

from __future__ import annotations

import time
from pathlib import Path

from chatbot.classifier import load_classifier
from chatbot.data import Example
from chatbot.evaluate import evaluate, latency_summary


def summarise(folder: Path, classifier, report: dict, **made: object) -> dict:
    """The version's table row: how it was made, its size, accuracy and latency."""
    embedding = classifier.embedding_parameters()
    return {
        "folder": str(folder), **made, "parameters": report["parameters"],
        "non_embedding_parameters": report["parameters"] - embedding,
        "size_mb": report["parameters"] * next(classifier.model.parameters()).element_size() / 1e6,
        "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
        "per_language": {k: v["accuracy"] for k, v in report.get("per_language", {}).items()},
        "per_language_f1": {k: v["macro_f1"] for k, v in report.get("per_language", {}).items()},
        "latency_ms": report["latency_ms"], "n": report["n"],
    }


def measure_serving(folder: Path, rows: list[Example], report: dict, sample: int = 50) -> dict | None:
    """Export the version for serving and measure it on this machine: latency of single messages,
    messages per second in batches of 32, size on disk, and how often its top-1 agrees with the
    PyTorch evaluation ``report``. None where the runtime is PyTorch itself."""
    from chatbot.runtime import load_serving, pick_runtime

    runtime = pick_runtime()
    if runtime == "torch":
        return None
    served = load_serving(folder, runtime)
    rows = [e for e in rows if e.intent in served.labels]  # the rows the evaluation scored, in its order
    texts = [e.text for e in rows]
    predicted = served.predict(texts)
    agreement = sum(p.intent == e for p, e in zip(predicted, report["predicted"])) / len(texts)
    step = max(1, len(texts) // sample)
    latency = latency_summary(served.latency_ms(texts[::step][:sample]))
    started = time.perf_counter()
    served.logits(texts[:512], batch_size=32)
    return {"runtime": runtime, "latency_ms": latency, "messages_per_s": min(512, len(texts)) / (time.perf_counter() - started),
            "disk_mb": served.forward.disk_bytes() / 1e6, "agreement": agreement,
            "accuracy": sum(p.intent == e.intent for p, e in zip(predicted, rows)) / len(texts)}


def score_version(folder: str | Path, rows: list[Example], step=None, **made: object) -> tuple[dict, dict]:
    """Evaluate the model folder on ``rows`` in PyTorch, then export and measure it as served: its
    table row (with ``made``) and the full report. The caller adds what only it knows and writes both
    with ``ModelFolder.write_evaluation``."""
    step = step or (lambda fraction, desc="": None)
    folder = Path(folder)
    if not rows:
        raise ValueError("there are no rows to evaluate the version on")
    step(0.0, "evaluating")
    classifier = load_classifier(folder)
    report = evaluate(classifier, rows)
    summary = summarise(folder, classifier, report, **made)
    del classifier
    step(0.5, "exporting the serving model")
    summary["serving"] = measure_serving(folder, rows, report)
    return summary, report

