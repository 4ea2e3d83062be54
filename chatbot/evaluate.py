"""Scoring a classifier on labelled messages: the report that ``evaluate``, ``bench`` and the admin use.

Report fields (a contract for outside scripts): ``accuracy``, ``macro_f1``, ``n``, ``per_language``
(``{lang: {accuracy, macro_f1, n}}``), ``per_intent`` (``{intent: {precision, recall, f1, support}}``),
``confusion`` (``{labels, matrix}``), ``latency_ms`` (``{p50, p95}``), ``parameters``, plus
``unknown_intents`` (rows whose intent the model does not know: reported, not scored), ``predicted``
(the top intent of every scored row, in order) and ``policy``
(the share of messages the dialogue policy would answer, clarify, fall back on, say out of scope or
hand off, as a first message of a conversation).

When the data has ``out_of_scope`` rows, ``in_scope`` (``{accuracy, n, per_language}``) and
``out_of_scope`` (``{recall, precision, n, per_language}``) score them as CLINC150 does: a message
counts as out of scope when the policy says so (the label, or a confidence threshold); in-scope
accuracy counts such a verdict on an in-scope message as wrong.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from chatbot.data import Example
from chatbot.policy import OutOfScopeBudget, PolicyConfig, decide, in_scope
from chatbot.settings import OUT_OF_SCOPE


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


def scope_scores(gold: list[str], verdict: list[str], langs: list[str]) -> dict:
    """In-scope accuracy and out-of-scope recall/precision (CLINC150's definitions), overall and per language."""
    def one(idx: list[int]) -> tuple[dict, dict]:
        inside = [i for i in idx if gold[i] != OUT_OF_SCOPE]
        outside = [i for i in idx if gold[i] == OUT_OF_SCOPE]
        said_out = [i for i in idx if verdict[i] == OUT_OF_SCOPE]
        caught = sum(verdict[i] == OUT_OF_SCOPE for i in outside)
        return ({"accuracy": sum(verdict[i] == gold[i] for i in inside) / len(inside) if inside else None,
                 "n": len(inside)},
                {"recall": caught / len(outside) if outside else None,
                 "precision": caught / len(said_out) if said_out else None, "n": len(outside)})

    everything = list(range(len(gold)))
    in_scope, out_of_scope = one(everything)
    groups = defaultdict(list)
    for i, lang in enumerate(langs):
        groups[lang or "unknown"].append(i)
    per = {lang: one(idx) for lang, idx in sorted(groups.items())}
    in_scope["per_language"] = {lang: v[0] for lang, v in per.items()}
    out_of_scope["per_language"] = {lang: v[1] for lang, v in per.items()}
    return {"in_scope": in_scope, "out_of_scope": out_of_scope}


def policy_verdicts(predictions, policy: PolicyConfig) -> tuple[list[str], dict[str, float]]:
    """Per message, the label or ``out_of_scope`` when the policy says so; and the share of each action."""
    actions = [decide(policy, p.top, 0) for p in predictions]
    verdict = [OUT_OF_SCOPE if a == "out_of_scope" else p.intent for a, p in zip(actions, predictions)]
    shares = {a: n / len(actions) for a, n in sorted(Counter(actions).items())}
    return verdict, shares


def tune_out_of_scope(predictions, gold: list[str], policy: PolicyConfig | None = None,
                      max_reject: float | None = None, max_in_scope_loss: float | None = None) -> dict:
    """The threshold on the best intent's confidence (``PolicyConfig.out_of_scope``), with in-scope
    accuracy and out-of-scope recall at it on the labelled data: by default the one that maximises
    their sum (steps of 0.01); with ``max_reject``, the highest one that calls at most that share of
    the in-scope messages out of scope by confidence (on top of those the label already does); with
    ``max_in_scope_loss``, the highest one that lowers in-scope accuracy by at most that much
    (absolute): of the n in-scope messages, at most ⌊loss·n⌋ that the label gets right are turned
    away. Both budgets are choices made from in-scope messages alone."""
    policy = policy or PolicyConfig()

    def at(t: float) -> dict:
        verdict, _ = policy_verdicts(predictions, PolicyConfig(**{**policy.__dict__, "out_of_scope": float(t)}))
        scores = scope_scores(gold, verdict, [""] * len(gold))
        return {"threshold": float(t), "in_scope_accuracy": scores["in_scope"]["accuracy"],
                "out_of_scope_recall": scores["out_of_scope"]["recall"],
                "objective": (scores["in_scope"]["accuracy"] or 0) + (scores["out_of_scope"]["recall"] or 0)}

    OutOfScopeBudget(max_reject, max_in_scope_loss)  # the same checks as on the command line
    n_inside = sum(g != OUT_OF_SCOPE for g in gold)
    budget = max_reject if max_reject is not None else max_in_scope_loss
    k = int((budget or 0) * n_inside + 1e-9)  # how many in-scope messages may go
    if max_reject is not None or max_in_scope_loss is not None:
        # What may go: any in-scope message the label keeps in scope (reject budget), or one it gets
        # right (loss budget: turning a wrong one away costs nothing). k of the n in-scope messages may
        # go, and at most k of those that count lie strictly below the (k+1)-th smallest confidence.
        counts = (lambda p, g: p.intent != OUT_OF_SCOPE) if max_reject is not None else (lambda p, g: p.intent == g)
        confidences = np.sort([intents[0][1] for p, g in zip(predictions, gold)
                               if g != OUT_OF_SCOPE and counts(p, g) and (intents := in_scope(p.top))])
        if not len(confidences):
            raise ValueError("no in-scope message the label keeps in scope to choose the threshold from"
                             if max_reject is not None else "no in-scope message is classified right: no accuracy to keep")
        chosen = at(float(confidences[min(k, len(confidences) - 1)]))
        if max_reject is not None:
            return {**chosen, "max_reject": max_reject}
        return {**chosen, "max_in_scope_loss": max_in_scope_loss,
                "in_scope_accuracy_label_only": at(0.0)["in_scope_accuracy"]}
    best = None
    for t in np.round(np.arange(0.0, 0.96, 0.01), 2):
        candidate = at(t)
        if best is None or candidate["objective"] > best["objective"] + 1e-12:  # ties: the lowest threshold
            best = candidate
    return best


def evaluate(classifier, examples: list[Example], latency_sample: int = 50, batch_size: int = 32,
             policy: PolicyConfig | None = None) -> dict:
    """The full report for a loaded :class:`~chatbot.classifier.IntentClassifier`."""
    rows, unknown = known_rows(examples, set(classifier.labels))
    if not rows:
        raise ValueError("none of the rows has an intent the model knows")
    predictions = classifier.predict([e.text for e in rows], batch_size=batch_size)
    gold, langs = [e.intent for e in rows], [e.lang for e in rows]
    report = score(gold, [p.intent for p in predictions], langs)
    verdict, report["policy"] = policy_verdicts(predictions, policy or PolicyConfig())
    if OUT_OF_SCOPE in gold:
        report.update(scope_scores(gold, verdict, langs))
    step = max(1, len(rows) // latency_sample)
    report["latency_ms"] = latency_summary(classifier.latency_ms([e.text for e in rows[::step][:latency_sample]]))
    report["parameters"] = classifier.parameter_count()
    report["unknown_intents"] = unknown
    report["mean_confidence"] = float(np.mean([p.confidence for p in predictions]))
    report["predicted"] = [p.intent for p in predictions]
    return report


def format_report(report: dict) -> str:
    """A plain-text table for the terminal."""
    lines = [f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   n {report['n']}"]
    if "latency_ms" in report:
        lat = report["latency_ms"]
        lines.append(f"latency p50 {lat['p50']:.1f} ms   p95 {lat['p95']:.1f} ms   parameters {report.get('parameters', 0):,}")
    if "out_of_scope" in report:
        ins, out = report["in_scope"], report["out_of_scope"]
        lines.append(f"in-scope accuracy {_maybe(ins['accuracy'])} (n {ins['n']})   out-of-scope recall "
                     f"{_maybe(out['recall'])}, precision {_maybe(out['precision'])} (n {out['n']})")
    if report.get("policy"):
        lines.append("policy: " + ", ".join(f"{a} {share:.1%}" for a, share in report["policy"].items()))
    if report.get("per_language"):
        lines.append("")
        lines.append(f"{'language':<10}{'accuracy':>10}{'macro-F1':>10}{'n':>7}")
        scoped = "out_of_scope" in report
        if scoped:
            lines[-1] += f"{'in-scope':>10}{'oos rec.':>10}"
        for lang, r in report["per_language"].items():
            line = f"{lang:<10}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}{r['n']:>7}"
            if scoped:
                line += (f"{_maybe(report['in_scope']['per_language'][lang]['accuracy']):>10}"
                         f"{_maybe(report['out_of_scope']['per_language'][lang]['recall']):>10}")
            lines.append(line)
    lines.append("")
    lines.append(f"{'intent':<28}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>6}")
    for intent, r in report["per_intent"].items():
        lines.append(f"{intent:<28}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}{r['support']:>6}")
    if report.get("unknown_intents"):
        lines.append("")
        lines.append("not scored (intent unknown to the model): "
                     + ", ".join(f"{k} ({v})" for k, v in report["unknown_intents"].items()))
    return "\n".join(lines)


def _maybe(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
