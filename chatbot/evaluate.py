"""Scoring a classifier on labelled messages: the report that ``evaluate``, ``bench`` and the admin use.

Report fields (a contract for outside scripts): ``accuracy``, ``macro_f1``, ``n``, ``per_language``
(``{lang: {accuracy, macro_f1, n}}``), ``per_intent`` (``{intent: {precision, recall, f1, support}}``),
``confusion`` (``{labels, matrix}``), ``latency_ms`` (``{p50, p95}``), ``parameters``, plus
``unknown_intents`` (rows whose intent the model does not know: reported, not scored).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from chatbot.data import Example


def score(gold: list[str], pred: list[str], langs: list[str] | None = None) -> dict:
    """Accuracy, macro-F1, per-language and per-intent scores and the confusion matrix."""
    labels = sorted(set(gold))
    report = {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "n": len(gold),
    }
    if langs is not None:
        groups = defaultdict(list)
        for i, lang in enumerate(langs):
            groups[lang or "unknown"].append(i)
        report["per_language"] = {
            lang: {
                "accuracy": float(accuracy_score([gold[i] for i in idx], [pred[i] for i in idx])),
                "macro_f1": float(f1_score([gold[i] for i in idx], [pred[i] for i in idx],
                                           labels=sorted({gold[i] for i in idx}), average="macro", zero_division=0)),
                "n": len(idx),
            }
            for lang, idx in sorted(groups.items())
        }
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    report["per_intent"] = {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, label in enumerate(labels)
    }
    report["confusion"] = {"labels": labels, "matrix": confusion_matrix(gold, pred, labels=labels).tolist()}
    return report


def latency_summary(times_ms: list[float]) -> dict:
    return {"p50": float(np.percentile(times_ms, 50)), "p95": float(np.percentile(times_ms, 95)),
            "n": len(times_ms)}


def known_rows(examples: list[Example], known: set[str]) -> tuple[list[Example], dict[str, int]]:
    """Rows whose intent the model knows, and a count of the others by intent."""
    unknown = Counter(e.intent for e in examples if e.intent not in known)
    return [e for e in examples if e.intent in known], dict(sorted(unknown.items()))


def evaluate(classifier, examples: list[Example], latency_sample: int = 50, batch_size: int = 32) -> dict:
    """The full report for a loaded :class:`~chatbot.classifier.IntentClassifier`."""
    rows, unknown = known_rows(examples, set(classifier.labels))
    if not rows:
        raise ValueError("none of the rows has an intent the model knows")
    predictions = classifier.predict([e.text for e in rows], batch_size=batch_size)
    report = score([e.intent for e in rows], [p.intent for p in predictions], [e.lang for e in rows])
    step = max(1, len(rows) // latency_sample)
    report["latency_ms"] = latency_summary(classifier.latency_ms([e.text for e in rows[::step][:latency_sample]]))
    report["parameters"] = classifier.parameter_count()
    report["unknown_intents"] = unknown
    report["mean_confidence"] = float(np.mean([p.confidence for p in predictions]))
    return report


def format_report(report: dict) -> str:
    """A plain-text table for the terminal."""
    lines = [f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   n {report['n']}"]
    if "latency_ms" in report:
        lat = report["latency_ms"]
        lines.append(f"latency p50 {lat['p50']:.1f} ms   p95 {lat['p95']:.1f} ms   parameters {report.get('parameters', 0):,}")
    if report.get("per_language"):
        lines.append("")
        lines.append(f"{'language':<10}{'accuracy':>10}{'macro-F1':>10}{'n':>7}")
        for lang, r in report["per_language"].items():
            lines.append(f"{lang:<10}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}{r['n']:>7}")
    lines.append("")
    lines.append(f"{'intent':<28}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>6}")
    for intent, r in report["per_intent"].items():
        lines.append(f"{intent:<28}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}{r['support']:>6}")
    if report.get("unknown_intents"):
        lines.append("")
        lines.append("not scored (intent unknown to the model): "
                     + ", ".join(f"{k} ({v})" for k, v in report["unknown_intents"].items()))
    return "\n".join(lines)
