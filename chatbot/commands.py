"""The ``python -m chatbot`` commands: one argument dataclass and one function each.

Command names, options and report fields are a contract that outside scripts rely on: extend them,
never rename them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from chatbot.classifier import DEFAULT_MODEL_DIR


@dataclass
class EvaluateArgs:
    data: list[str]
    """Labelled data files (text,intent[,lang][,split])."""
    model: str = str(DEFAULT_MODEL_DIR)
    """Model folder to evaluate."""
    split: str = "test"
    """Split to score: train, dev, test or all."""
    report: str | None = None
    """Write the JSON report here."""
    batch_size: int = 32
    """Messages per forward pass."""
    latency_sample: int = 50
    """Messages timed one by one for the latency percentiles."""
    limit: int | None = None
    """Score at most this many rows (a seeded stratified sample)."""

    def __post_init__(self):
        if self.split not in ("train", "dev", "test", "all"):
            raise ValueError("split must be train, dev, test or all")


def run_evaluate(args: EvaluateArgs) -> dict:
    from chatbot.classifier import IntentClassifier
    from chatbot.data import limit_per_intent, load_dataset
    from chatbot.evaluate import evaluate, format_report

    dataset = load_dataset(args.data, min_examples=1)
    rows = dataset.examples if args.split == "all" else dataset.split(args.split)
    if not rows:
        raise ValueError(f"no rows in split {args.split!r}")
    if args.limit:
        per = max(1, args.limit // max(1, len({(e.intent, e.lang) for e in rows})))
        rows = limit_per_intent(rows, per)
    classifier = IntentClassifier.load(args.model)
    report = evaluate(classifier, rows, args.latency_sample, args.batch_size)
    report.update({"model": str(args.model), "data": list(args.data), "split": args.split,
                   "dropped_rows": dataset.dropped})
    print(format_report(report))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        print(f"report written to {args.report}")
    return report


@dataclass
class ClassifyArgs:
    text: list[str]
    """Messages to classify."""
    model: str = str(DEFAULT_MODEL_DIR)
    """Model folder."""
    k: int = 3
    """How many top intents to show."""


def run_classify(args: ClassifyArgs) -> None:
    from chatbot.classifier import IntentClassifier

    classifier = IntentClassifier.load(args.model)
    for text, prediction in zip(args.text, classifier.predict(args.text, k=args.k)):
        print(json.dumps({"text": text, **prediction.as_dict()}, ensure_ascii=False))


def run_train(args) -> None:
    from chatbot.train import train

    out = train(args)
    metrics = json.loads((out / "model.json").read_text())["metrics"]
    print(f"model written to {out} (dev accuracy {metrics['dev_accuracy']:.4f}, "
          f"temperature {metrics['temperature']:.2f})", file=sys.stderr)
