"""Building a model version: compress → heal (LoRA) → evaluate, into one model folder.

The folder holds the healed adapter, the head and the compression's recipe, not the factorised
weights: a process that loads it the first time recomputes them from the base and the calibration
messages (``compression.compress.apply_recipe``) and caches them (``~/.cache/chatbot``). A version
therefore needs the calibration files it was compressed with; when they changed, loading it is
refused ("recompress it"), and the app and replicas then serve the previous version, or the default.

A build starts from one of two places:

* a **tuned source** (an uncompressed classifier trained on the same intents, e.g. the shipped
  one): its adapter and head are merged, the tuned model is compressed, and healing starts from its
  head, gently (:attr:`BuildPolicy.source_lr`) and distilled from it (:attr:`BuildPolicy.source_distill`),
  which measured best (docs/benchmarks.md: whitened attention 0.25, 0.958 against 0.948 undistilled);
* the raw **base**, when no tuned source fits the data: the base is compressed and the classifier
  learnt from scratch (:attr:`BuildPolicy.base_lr`).

What is compressed is a :class:`Compression`: SVD of chosen layers (one rank ratio, or one parameter
budget with ranks chosen per matrix) and, optionally, the vocabulary trimmed to our languages. When
nothing is compressed and there is a source, the source itself is the version (copied and
evaluated, not trained). The admin tab and ``python -m chatbot sweep`` both build through
:func:`build_version`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

from chatbot import lora
from chatbot.classifier import build_model
from chatbot.data import load_dataset
from chatbot.folder import SOURCE_ADAPTER, ModelFolder
from chatbot.lora import LoraSettings
from chatbot.scorecard import score_version
from chatbot.settings import DEFAULT_BASE, ROOT, TRAINING_DATA, compressed_cache, vocab_dir
from chatbot.train import DistillSettings, FitSettings, Start, TrainArgs, train
from compression.compress import CompressArgs, compress_model, store_in_cache
from compression.vocab import apply_corpus_trim, corpus_kept_ids, corpus_recipe, load_trim


@dataclass
class HealArgs:
    fit: FitSettings = field(default_factory=lambda: FitSettings(epochs=3))
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"prefix": "lora_"})
    max_per_intent: int | None = None
    """Heal on at most this many examples per intent and language (faster builds)."""
    distill: DistillSettings = field(default_factory=lambda: DistillSettings(weight=0.0),
                                     metadata={"prefix": "distill_"})
    """Distillation from the source classifier while healing (weight 0 = labels only; build and sweep refuse a weight without a source)."""

    def __post_init__(self):
        if self.max_per_intent is not None and self.max_per_intent < 1:
            raise ValueError("max-per-intent must be ≥ 1")


@dataclass
class BuildPolicy:
    """How an admin build heals, by where it starts (the sweep sets each value itself)."""

    source_lr: float = 5e-4
    """Healing learning rate when a tuned source was compressed (it only has to recover)."""
    source_distill: float = 0.5
    """Weight of the source's soft targets when healing a compressed source."""
    base_lr: float = 1e-3
    """Learning rate when the classifier is learnt from the raw base."""
    epochs: int = 2
    """Healing epochs an admin build runs unless the admin says otherwise."""
    max_per_intent: int | None = 12
    """Healing examples per intent and language an admin build uses unless told otherwise."""

    def heal(self, has_source: bool, epochs: int | None = None, max_per_intent: int | None = None) -> HealArgs:
        lr = self.source_lr if has_source else self.base_lr
        return HealArgs(fit=FitSettings(epochs=epochs or self.epochs, lr=lr),
                        max_per_intent=max_per_intent or self.max_per_intent,
                        distill=DistillSettings(weight=self.source_distill if has_source else 0.0))


def source_problem(source: str | Path, intents: list[str]) -> str | None:
    """Why ``source`` cannot seed a compressed version for data with ``intents``, or None."""
    spec = ModelFolder.read(source)
    if spec.compression or spec.source:
        return f"{source} is itself compressed; start from an uncompressed classifier"
    if spec.labels != list(intents):
        return f"{source} was trained on other intents than the data; start from the base instead"
    return None


def pick_source(candidates: list[Path], intents: list[str]) -> Path | None:
    """The first candidate that can seed a compressed version for ``intents`` (see :func:`source_problem`)."""
    return next((c for c in candidates if source_problem(c, intents) is None), None)


@dataclass
class Compression:
    """What a build does to the model before healing it."""

    method: str = "whitened"
    """plain or whitened (activation-aware) SVD."""
    targets: str = "attn"
    """Layers factorised: attn, mlp, attn+mlp or module names joined by +."""
    ratio: float = 1.0
    """Rank as a share of each matrix's min(m, n); 1 leaves the layers dense."""
    params_keep: float | None = None
    """Keep this share of the targeted parameters, ranks chosen per matrix (overrides ratio)."""
    min_saving: float = 0.0
    """Factorise a matrix only where it cuts at least this share of its multiply-adds (else it stays
    dense): fewer, deeper cuts for the same parameters, faster as served (docs/benchmarks.md)."""
    trim_vocab: bool = False
    """Cut the input embedding to the tokens our languages can produce."""
    keep_layers: int | None = None
    """Keep only the first N decoder layers (``compression.depth``); healing retrains the head on layer N."""
    calib_seed: int | None = None
    """Seed of the calibration sample the factors are computed from (default: --seed). Builds that differ
    only in --seed and share this one start from the same factors, so ``soup`` can average them."""

    def __post_init__(self):
        if not 0 < self.ratio <= 1:
            raise ValueError("rank ratio must be in (0, 1]")
        if self.params_keep is not None and not 0 < self.params_keep < 1:
            raise ValueError("params keep must be in (0, 1)")
        if not 0 <= self.min_saving < 1:
            raise ValueError("min saving must be in [0, 1)")
        if self.keep_layers is not None and self.keep_layers < 1:
            raise ValueError("keep layers must be ≥ 1")

    @property
    def factorises(self) -> bool:
        return self.params_keep is not None or self.ratio < 1

    @property
    def compresses(self) -> bool:
        """Whether the compression recipe has anything to do (factorise, or drop layers)."""
        return self.factorises or self.keep_layers is not None

    @property
    def changes_model(self) -> bool:
        return self.compresses or self.trim_vocab

    def describe(self) -> dict:
        """The fields of a version's table row that say how it was compressed."""
        return {"method": self.method if self.factorises else "none",
                "targets": self.targets if self.factorises else "none", "ratio": self.ratio,
                "params_keep": self.params_keep, "min_saving": self.min_saving,
                "vocab": "trimmed" if self.trim_vocab else "full", "keep_layers": self.keep_layers}


def _compressed_start(base: str, num_labels: int, folder: Path, source: Path | None, spec: Compression, seed: int,
                      step, data: list[str]) -> tuple[Start, dict | None]:
    """The model healing starts from (source merged, factorised, vocabulary trimmed as ``spec`` says)
    and the compression report."""
    own_source, source_info = None, None
    if source:  # copied first: what is merged is what the folder keeps, even if the source changes later
        own_source = folder / SOURCE_ADAPTER
        shutil.copytree(ModelFolder.adapter_dir(source), own_source, dirs_exist_ok=True)
        source_info = {"adapter": SOURCE_ADAPTER, "from": str(source), "fingerprint": lora.fingerprint(own_source)}
    step(0.0, "loading base")
    model, tokenizer = build_model(base, num_labels, source_adapter=own_source)
    start, report = Start(model, tokenizer, base, None, source_info), {}
    if spec.compresses:
        args = CompressArgs(method=spec.method, targets=spec.targets, rank_ratio=spec.ratio, seed=seed,
                            params_keep=spec.params_keep, min_saving=spec.min_saving, calib=list(TRAINING_DATA),
                            keep_layers=spec.keep_layers)
        result = compress_model(model, tokenizer, args, calib_root=ROOT,
                                progress=lambda f, d="": step(0.05 + 0.15 * f, f"compress: {d}"))
        recipe = result["recipe"]
        if source_info:
            recipe["source"] = source_info["fingerprint"]
        store_in_cache(model, compressed_cache(), base, recipe)
        start.compression = recipe
        report = {k: v for k, v in result["report"].items() if k != "layers"}
        report["ranks"] = {r["name"]: (None if r["dense"] else r["rank"]) for r in result["report"]["layers"]}
    if spec.trim_vocab:
        start.trim = vocabulary(base, tokenizer, data)
        start.tokenizer, report["vocab"] = apply_corpus_trim(model, tokenizer, *start.trim)
    return start, report or None


def vocabulary(base: str, tokenizer, data: list[str]) -> tuple[dict, list[int]]:
    """The tokens a trimmed ``base`` keeps: the reviewed set in ``assets/vocab`` (``python -m chatbot
    vocab``), or, for a base that has none, the set learnt from the build's own data."""
    if trim := load_trim(vocab_dir(base)):
        return trim
    texts = [e.text for e in load_dataset(data, min_examples=1).examples]
    kept = corpus_kept_ids(tokenizer, texts)
    return corpus_recipe(tokenizer, kept, list(data)), kept


def build_version(data: list[str], out: str | Path, base: str = DEFAULT_BASE, method: str = "whitened",
                  compress_targets: str = "attn", ratio: float = 1.0, heal: HealArgs | None = None,
                  progress=None, eval_split: str = "test", source: str | Path | None = None,
                  params_keep: float | None = None, trim_vocab: bool = False, min_saving: float = 0.0,
                  keep_layers: int | None = None, calib_seed: int | None = None) -> dict:
    """Compress (the first ``keep_layers`` decoder layers kept, when given; at ``ratio``, or to
    ``params_keep`` of the targets' parameters with per-matrix ranks; optionally trimming the
    vocabulary), LoRA-heal on ``data``'s train split, evaluate on
    ``eval_split``. The calibration sample is drawn with ``calib_seed``, by default the training seed.
    Writes a model folder to ``out`` and returns its summary (see the module docstring)."""
    spec = Compression(method, compress_targets, ratio, params_keep, min_saving, trim_vocab, keep_layers, calib_seed)
    heal = heal or HealArgs()
    step = progress or (lambda fraction, desc="": None)
    started = time.perf_counter()
    dataset = load_dataset(data, seed=heal.fit.seed)
    source = Path(source) if source else None
    folder, compression, compress_s, adapter = Path(out), None, 0.0, None
    if source:
        if problem := source_problem(source, dataset.intents):
            raise ValueError(problem)
        base = ModelFolder.read(source).base
    if source and not spec.changes_model:
        shutil.copytree(source, folder, dirs_exist_ok=True)
    else:
        calib = heal.fit.seed if spec.calib_seed is None else spec.calib_seed
        start, compression = _compressed_start(base, len(dataset.intents), folder, source, spec, calib, step, data)
        compress_s = time.perf_counter() - started if compression else 0.0
        train_args = TrainArgs(data=list(data), out=str(out), base=base, fit=heal.fit, lora=heal.lora,
                               max_per_intent=heal.max_per_intent, patience=heal.fit.epochs,
                               teacher=[str(source)] if source and heal.distill.weight > 0 else [],
                               distill=heal.distill)
        folder = train(train_args, progress=lambda f, d="": step(0.2 + 0.65 * f, f"heal: {d}"), start=start)
        adapter = heal.lora.describe()
        del start
    summary, report = score_version(folder, dataset.split(eval_split), lambda f, d="": step(0.85 + 0.15 * f, d),
                                    base=base, **spec.describe(), source=str(source) if source else None,
                                    lora=adapter)
    summary.update(compression=compression, compress_s=compress_s, total_s=time.perf_counter() - started)
    ModelFolder.write_evaluation(folder, summary, report)
    step(1.0, "done")
    return summary


@dataclass
class BuildArgs:
    data: list[str]
    """Intent data (train split heals, dev split picks the epoch, eval split scores)."""
    out: str
    """Model folder to write."""
    source: str | None = None
    """A tuned, uncompressed classifier to compress (its base is used); without it the raw base is."""
    base: str = DEFAULT_BASE
    """Base model when there is no source."""
    compression: Compression = field(default_factory=Compression)
    heal: HealArgs = field(default_factory=HealArgs)
    eval_split: str = "test"
    """Split scored after healing."""
    cli_aliases: ClassVar[dict[str, str]] = {"compress_targets": "targets", "distill": "distill_weight"}

    def __post_init__(self):
        if self.heal.distill.weight and not self.source:
            raise ValueError("--distill needs --source: the tuned classifier is the teacher")
        if self.heal.distill.noisy_copies and not (self.source and self.heal.distill.weight):
            raise ValueError("--distill-noisy-copies learns from the source: give --source and --distill")
        if self.eval_split not in ("train", "dev", "test"):
            raise ValueError("eval split must be train, dev or test")


def run_build(args: BuildArgs) -> dict:
    """``python -m chatbot build``: one version, e.g. the shipped default (see README)."""
    c = args.compression
    ModelFolder.check_new(args.out, args.source, args.base)
    summary = build_version(args.data, args.out, args.base, c.method, c.targets, c.ratio, args.heal,
                            eval_split=args.eval_split, source=args.source, params_keep=c.params_keep,
                            trim_vocab=c.trim_vocab, min_saving=c.min_saving, keep_layers=c.keep_layers,
                            calib_seed=c.calib_seed)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("compression",)}, indent=2))
    return summary
