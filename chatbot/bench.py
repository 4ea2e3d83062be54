"""``python -m chatbot bench``: LLM classifiers against a TF-IDF + linear SVM baseline, same splits, one run
(or, with ``--serve``, the serving paths of trained model folders: :mod:`chatbot.speed`).

Every system trains on the same rows and is scored on the same evaluation split. Each runs in its
own process so its peak memory (max RSS) is its own. The early-stopping/calibration dev set of the
LLMs is carved from the training rows (a seeded random ``dev_per_language`` rows of each language, at
most a fifth of them), so the evaluation split is never seen in training; the baseline trains on
exactly the LLMs' training rows.

Writes ``bench.json`` and ``bench.md`` (a Markdown table) to ``--report``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import resource
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from chatbot import machine
from chatbot.data import Example, limit_per_intent, load_dataset, stratified_sample
from chatbot.evaluate import latency_summary, scope_scores, score
from chatbot.lora import LoraSettings
from chatbot.policy import OutOfScopeBudget, PolicyConfig
from chatbot.runtime import SERVING_RUNTIMES
from chatbot.settings import DEFAULT_BASE, OUT_OF_SCOPE
from chatbot.speed import serve_systems
from chatbot.train import DistillSettings, FitSettings


@dataclass
class BenchArgs:
    data: list[str]
    """Data files (text,intent[,lang][,split])."""
    report: str
    """Folder for bench.json and bench.md."""
    bases: list[str] = field(default_factory=lambda: [DEFAULT_BASE])
    """Embedded bases (or folders/hub ids) to train; tfidf-svm always runs."""
    eval_split: str = "test"
    """Split scored: test (Banking77, ours) or dev (MASSIVE)."""
    shots: int | None = None
    """Train on at most this many examples per intent and language (few-shot)."""
    max_train: int | None = None
    """Stratified subsample of the training rows to at most this many."""
    dev_per_language: int = 300
    """Rows carved from the training rows per language for early stopping and calibration."""
    eval_limit: int | None = None
    """Score at most this many evaluation rows (a seeded stratified sample)."""
    tune_split: str | None = None
    """A split never trained on (e.g. dev) on which the LLM's out-of-scope threshold is tuned; default: the carved dev."""
    budget: OutOfScopeBudget = field(default_factory=OutOfScopeBudget)
    """How that threshold is chosen on the tune split (only for data with an out-of-scope class)."""
    fit: FitSettings = field(default_factory=FitSettings)
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"prefix": "lora_"})
    teacher: list[str] = field(default_factory=list)
    """Trained model folders (the data's intents, never trained on the scored split) whose averaged
    log-probabilities the LLM classifiers also learn from (distillation from one model or an ensemble)."""
    distill: DistillSettings = field(default_factory=DistillSettings, metadata={"prefix": "distill_"})
    """How the teachers' soft targets are used (only with --teacher)."""
    serve: list[str] = field(default_factory=list)
    """Instead of training: model folders whose serving paths to compare (speed, size, memory, accuracy);
    ``FOLDER@RUNTIME`` serves that folder by that runtime only, a plain folder by every one of --runtimes."""
    runtimes: list[str] = field(default_factory=lambda: ["torch", "openvino-fp16", "openvino"])
    """With --serve: the runtimes each folder is served by (torch, openvino-fp16, openvino: int8 weights)."""
    rounds: int = 3
    """With --serve: rounds of single messages and batches, the systems taking turns."""
    latency_messages: int = 100
    """With --serve: single messages timed per system and round."""
    name: str = ""
    """A title for the table."""
    keep_models: bool = False
    """Keep the trained model folders under the report folder."""
    cli_aliases: ClassVar[dict[str, str]] = {"targets": "lora_targets", "distill": "distill_weight"}

    def __post_init__(self):
        if self.eval_split not in ("test", "dev"):
            raise ValueError("eval split must be test or dev")
        if self.tune_split is not None and self.tune_split not in ("dev", "test", "train"):
            raise ValueError("tune split must be train, dev or test")
        if self.tune_split == self.eval_split:
            raise ValueError("tune the threshold on another split than the one scored")
        if unknown := set(self.runtimes) - set(SERVING_RUNTIMES):
            raise ValueError(f"unknown runtime(s) {', '.join(sorted(unknown))}: use {', '.join(SERVING_RUNTIMES)}")
        serve_systems(self.serve, self.runtimes)  # a clear error now for a wrong runtime or a system twice
        if self.rounds < 1 or self.latency_messages < 1:
            raise ValueError("rounds and latency messages must be ≥ 1")
        if self.distill.noisy_copies and not self.teacher:
            raise ValueError("--distill-noisy-copies learns from the teachers: give --teacher")


def make_splits(args: BenchArgs) -> dict[str, list[Example]]:
    """train / dev (carved from train) / eval rows, all as given by the arguments."""
    dataset = load_dataset(args.data, seed=args.fit.seed, min_examples=1)
    pool = dataset.split("train")
    evaluation = dataset.split(args.eval_split)
    if not pool or not evaluation:
        raise ValueError(f"the data needs a train split and a {args.eval_split} split")
    rng = random.Random(args.fit.seed)
    by_lang = defaultdict(list)
    for e in pool:
        by_lang[e.lang].append(e)
    dev, train = [], []
    for lang in sorted(by_lang):
        rows = list(by_lang[lang])
        rng.shuffle(rows)
        k = min(args.dev_per_language, len(rows) // 5)
        dev += rows[:k]
        train += rows[k:]
    if args.shots:
        train = limit_per_intent(train, args.shots, args.fit.seed)
    if args.max_train:
        train = stratified_sample(train, args.max_train, args.fit.seed)
    if args.eval_limit:
        evaluation = stratified_sample(evaluation, args.eval_limit, args.fit.seed)
    tune = dataset.split(args.tune_split) if args.tune_split and args.tune_split != "train" else dev
    return {"train": train, "dev": dev, "eval": evaluation, "tune": tune}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _throughput(predict, texts: list[str], batch_size: int = 32) -> float:
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        predict(texts[i:i + batch_size])
    return len(texts) / (time.perf_counter() - started)


def _latencies(predict, texts: list[str], n: int = 50) -> list[float]:
    sample = texts[:: max(1, len(texts) // n)][:n]
    for t in sample[:3]:
        predict([t])
    times = []
    for t in sample:
        started = time.perf_counter()
        predict([t])
        times.append((time.perf_counter() - started) * 1000)
    return times


def run_tfidf(splits: dict, args: BenchArgs) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    train = splits["train"]
    started = time.perf_counter()
    model = make_pipeline(
        make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                   TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
        LinearSVC(C=1.0),
    )
    model.fit([e.text for e in train], [e.intent for e in train])
    train_time = time.perf_counter() - started
    return _score_system(lambda texts: list(model.predict(texts)), splits, train_time, parameters=None)


def run_llm(splits: dict, args: BenchArgs, base: str, workdir: Path) -> dict:
    from chatbot.classifier import load_classifier
    from chatbot.folder import ModelFolder
    from chatbot.train import TrainArgs, train

    folder = workdir / f"model-{base.replace('/', '_')}"
    data = workdir / "bench_train.jsonl"
    with data.open("w") as f:
        for split, rows in (("train", splits["train"]), ("dev", splits["dev"])):
            for e in rows:
                f.write(json.dumps({"text": e.text, "intent": e.intent, "lang": e.lang, "split": split}) + "\n")
    held_out = workdir / "bench_held_out.jsonl"  # what is scored and tuned on: never a noisy copy
    with held_out.open("w") as f:
        for e in splits["eval"] + (splits["tune"] or []):
            f.write(json.dumps({"text": e.text, "intent": e.intent, "lang": e.lang, "split": "test"}) + "\n")
    started = time.perf_counter()
    train(TrainArgs(data=[str(data)], out=str(folder), base=base, fit=args.fit, lora=args.lora,
                    patience=args.fit.epochs, teacher=args.teacher, distill=args.distill, held_out=[str(held_out)]))
    train_time = time.perf_counter() - started
    classifier = load_classifier(folder)
    result = _score_system(lambda texts: [p.intent for p in classifier.predict(texts)], splits, train_time,
                           parameters=classifier.parameter_count())
    result["model_folder"] = str(folder) if args.keep_models else None
    result["dev_accuracy"] = ModelFolder.read(folder).metrics["dev_accuracy"]
    if OUT_OF_SCOPE in classifier.labels:
        result["threshold"] = _threshold_variant(classifier, splits, args.budget)
    return result


def _threshold_variant(classifier, splits: dict, budget: OutOfScopeBudget) -> dict:
    """Out of scope also below a confidence threshold on the best intent, tuned on the tune split."""
    from chatbot.evaluate import policy_verdicts, scope_scores, tune_out_of_scope

    tune = splits["tune"]
    tuned = tune_out_of_scope(classifier.predict([e.text for e in tune]), [e.intent for e in tune],
                              **asdict(budget))
    rows = splits["eval"]
    verdict, _ = policy_verdicts(classifier.predict([e.text for e in rows]), PolicyConfig(out_of_scope=tuned["threshold"]))
    return {"tuned": tuned, "tune_rows": len(tune),
            **scope_scores([e.intent for e in rows], verdict, [e.lang for e in rows])}


def _score_system(predict, splits: dict, train_time: float, parameters: int | None) -> dict:
    rows = splits["eval"]
    texts = [e.text for e in rows]
    known = {e.intent for e in splits["train"]}
    preds = []
    for i in range(0, len(texts), 64):
        preds += predict(texts[i:i + 64])
    report = score([e.intent for e in rows], preds, [e.lang for e in rows])
    report.pop("confusion")
    if OUT_OF_SCOPE in known:  # trained with an out-of-scope class: scored as CLINC150 does
        report.update(scope_scores([e.intent for e in rows], preds, [e.lang for e in rows]))
    report["unknown_eval_intents"] = sorted({e.intent for e in rows} - known)
    report["train_time_s"] = train_time
    report["latency_ms"] = latency_summary(_latencies(predict, texts))
    report["messages_per_s_batched"] = _throughput(predict, texts[:512])
    report["parameters"] = parameters
    return report


def _child(system: str, splits: dict, args: BenchArgs, workdir: str, queue) -> None:
    try:
        if system == "tfidf-svm":
            result = run_tfidf(splits, args)
        else:
            result = run_llm(splits, args, system, Path(workdir))
        result["peak_memory_mb"] = _peak_mb()
        queue.put(("ok", result))
    except Exception as err:  # noqa: BLE001 - reported in the table, the run goes on
        queue.put(("error", f"{type(err).__name__}: {err}"))


def run_bench(args: BenchArgs) -> dict:
    if args.serve:  # the serving paths of trained folders, not a training comparison
        from chatbot.speed import run_speed

        return run_speed(args, make_splits(args)["eval"])
    splits = make_splits(args)
    report_dir = Path(args.report)
    report_dir.mkdir(parents=True, exist_ok=True)
    systems = ["tfidf-svm", *args.bases]
    results = {}
    ctx = mp.get_context("spawn")
    for system in systems:
        print(f"[bench] {system}: {len(splits['train'])} train / {len(splits['dev'])} dev / "
              f"{len(splits['eval'])} {args.eval_split} rows", flush=True)
        queue = ctx.Queue()
        process = ctx.Process(target=_child, args=(system, splits, args, str(report_dir), queue))
        process.start()
        status, value = queue.get()
        process.join()
        results[system] = value if status == "ok" else {"error": value}
        if status == "ok":
            print(f"[bench] {system}: accuracy {value['accuracy']:.4f} macro-F1 {value['macro_f1']:.4f}", flush=True)
        else:
            print(f"[bench] {system} failed: {value}", flush=True)
    report = {
        "name": args.name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "args": {**asdict(args), **asdict(args.budget)},  # max_reject where reports before the budget had it
        "rows": {k: len(v) for k, v in splits.items()},
        "languages": sorted({e.lang for e in splits["eval"]}),
        "results": results,
    }
    (report_dir / "bench.json").write_text(json.dumps(report, indent=2))
    (report_dir / "bench.md").write_text(markdown_table(report))
    print(markdown_table(report))
    return report


def markdown_table(report: dict) -> str:
    langs = report["languages"]
    show_langs = len(langs) > 1
    scoped = any("out_of_scope" in r for r in report["results"].values())
    head = (["system", "accuracy", "macro-F1"] + (["in-scope acc", "out-of-scope recall"] if scoped else [])
            + ([f"acc {lang}" for lang in langs] if show_langs else [])
            + ["train s", "p50 ms", "p95 ms", "msg/s batched", "peak MB", "parameters"])
    lines = [f"### {report['name'] or 'bench'}", "",
             f"{report['date']} · {report['machine']} · rows: " +
             ", ".join(f"{k} {v}" for k, v in report["rows"].items()), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, r in report["results"].items():
        if "error" in r:
            lines.append(f"| {system} | failed: {r['error']} |")
            continue
        cells = [system, f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"]
        if scoped:
            cells += [_scope(r, "in_scope", "accuracy"), _scope(r, "out_of_scope", "recall")]
        if show_langs:
            cells += [f"{r['per_language'].get(lang, {}).get('accuracy', float('nan')):.3f}" for lang in langs]
        cells += [f"{r['train_time_s']:.0f}", f"{r['latency_ms']['p50']:.1f}", f"{r['latency_ms']['p95']:.1f}",
                  f"{r['messages_per_s_batched']:.0f}", f"{r['peak_memory_mb']:.0f}",
                  f"{r['parameters']:,}" if r.get("parameters") else "–"]
        lines.append("| " + " | ".join(cells) + " |")
        if "threshold" in r:
            t = r["threshold"]
            lines.append(f"| {system} + threshold {t['tuned']['threshold']:.2f} (tuned on {t['tune_rows']} rows) | | | "
                         f"{_scope(t, 'in_scope', 'accuracy')} | {_scope(t, 'out_of_scope', 'recall')} |")
    return "\n".join(lines) + "\n"


def _scope(result: dict, part: str, key: str) -> str:
    value = result.get(part, {}).get(key)
    return "–" if value is None else f"{value:.4f}"
