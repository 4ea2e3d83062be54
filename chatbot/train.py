"""LoRA fine-tuning of a decoder LM with a classification head: setup → fit → validate → save.

The loop is written out on accelerate (``accelerate launch -m chatbot train …`` spreads it over
several GPUs). The adapter weights and the score head are the only trainable parameters
(:mod:`chatbot.lora` decides that, and a test counts them). The dev split picks the best epoch
(early stopping) and fits the temperature that calibrates the confidences.

With a ``teacher`` (one or more trained model folders), the loss mixes cross-entropy with the teacher's
softened intent distribution (knowledge distillation, Hinton et al. 2015):
``(1 − w)·CE(z, y) + w·T²·KL(softmax(z_t / T) ‖ softmax(z / T))``. Healing a compressed model
this way teaches it what the uncompressed one knew, not only the training labels. Several teachers
act as one ensemble: z_t is the mean of their log-probabilities (their geometric mean), which a
single student can learn to approximate at the cost of one model (Hinton et al.'s use of it). A teacher older than
the data (trained before rows were added or relabelled) is wrong on some of them; with
``DistillSettings(teacher_errors=False)`` those rows learn from their label alone (w = 0 there), so its
mistakes are not passed on. With ``DistillSettings(noisy_copies=n)`` the teachers also label n noisy copies
of each training message (:mod:`chatbot.noisy`), which learn from them alone (w = 1 there): the
transfer set on which an ensemble knows more than its members.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import DataLoader

from chatbot import lora
from chatbot.classifier import build_model, describe_base, load_classifier
from chatbot.data import Dataset, Example, limit_per_intent, load_dataset
from chatbot.folder import ModelFolder
from chatbot.lora import LoraSettings
from chatbot.machine import cpu_has_native_bf16
from chatbot.noisy import NOISY, noisy_copies
from chatbot.settings import DEFAULT_BASE, MAX_LENGTH


@dataclass
class FitSettings:
    epochs: int = 4
    """Passes over the training split (the best epoch on dev is kept)."""
    lr: float = 1e-3
    """Peak learning rate of the one-cycle schedule."""
    batch_size: int = 16
    """Messages per optimisation step."""
    seed: int = 0
    """Seed for the split, sampling, initialisation and shuffling."""

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be ≥ 1")
        if not 0 < self.lr < 1:
            raise ValueError("lr must be in (0, 1)")


@dataclass
class DistillSettings:
    """How a teacher's soft targets enter the loss (training and healing compose this, flags ``--distill-*``)."""

    weight: float = 0.5
    """Weight w of the teacher's soft targets in the loss (0 = labels only; the teacher is train's --teacher, build's and sweep's --source)."""
    temperature: float = 2.0
    """Temperature T that softens teacher and student distributions for distillation."""
    teacher_errors: bool = True
    """Distil also on training rows whose label the teacher's top intent misses (--no-distill-teacher-errors: those rows learn from their label alone)."""
    noisy_copies: int = 0
    """Noisy copies of each training message (a word left out or swapped, a typo) that learn from the teacher's soft targets alone."""

    def __post_init__(self):
        if not 0 <= self.weight <= 1 or self.temperature <= 0:
            raise ValueError("distill must be in [0, 1] and its temperature > 0")
        if not 0 <= self.noisy_copies <= 8:
            raise ValueError("noisy copies must be between 0 and 8")


@dataclass
class TrainArgs:
    data: list[str]
    """Training data files (CSV or JSONL with text,intent[,lang][,split])."""
    out: str
    """Folder to write the trained model to."""
    base: str = DEFAULT_BASE
    """Base model: smollm2-135m, gemma3-270m, a model folder (also a compressed one) or a hub id."""
    fit: FitSettings = field(default_factory=FitSettings)
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"prefix": "lora_"})
    max_per_intent: int | None = None
    """Use at most this many training examples per intent and language (few-shot runs)."""
    max_length: int = MAX_LENGTH
    """Messages are truncated to this many tokens."""
    patience: int = 2
    """Stop after this many epochs without a better dev accuracy."""
    precision: str = "auto"
    """fp32, bf16 (autocast) or auto: bf16 on CUDA and on CPUs with native bfloat16."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    teacher: list[str] = field(default_factory=list)
    """Trained model folders with the same intents whose (averaged) log-probabilities are soft targets (distillation)."""
    held_out: list[str] = field(default_factory=list)
    """Data files of messages kept from training (evaluation data): no noisy copy equals one of them, nor a message of --data."""
    distill: DistillSettings = field(default_factory=DistillSettings, metadata={"prefix": "distill_"})
    """How the teacher's soft targets are used (only with a teacher)."""
    cli_aliases: ClassVar[dict[str, str]] = {"targets": "lora_targets", "distill": "distill_weight"}

    def __post_init__(self):
        if not self.data:
            raise ValueError("give at least one --data file")
        if self.max_length < 8 or self.patience < 1:
            raise ValueError("max length must be ≥ 8 and patience ≥ 1")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError("precision must be auto, fp32 or bf16")
        if self.max_per_intent is not None and self.max_per_intent < 1:
            raise ValueError("max-per-intent must be ≥ 1")
        if self.distill.noisy_copies and not self.teacher:
            raise ValueError("noisy copies learn from a teacher: give --teacher")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_batches(tokenizer, examples: list[Example], label_ids: dict[str, int], max_length: int, batch_size: int,
                 shuffle: bool, seed: int = 0, soft: dict[str, torch.Tensor] | None = None) -> DataLoader:
    """Tokenised batches with ``labels`` (and, from ``soft``, keyed by text, ``teacher_logits`` and
    ``teacher_only``: which rows are noisy copies)."""
    def collate(batch):
        enc = tokenizer([e.text for e in batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        enc["labels"] = torch.tensor([label_ids[e.intent] for e in batch])
        if soft is not None:
            enc["teacher_logits"] = torch.stack([soft[e.text] for e in batch])
            enc["teacher_only"] = torch.tensor([e.split == NOISY for e in batch])
        return enc

    if not shuffle:
        return DataLoader(examples, batch_size=batch_size, shuffle=False, collate_fn=collate)
    lengths = [len(tokenizer(e.text, truncation=True, max_length=max_length)["input_ids"]) for e in examples]
    return DataLoader(examples, batch_sampler=LengthBuckets(lengths, batch_size, seed), collate_fn=collate)


class LengthBuckets(torch.utils.data.Sampler):
    """Shuffled batches of similar length: less padding, so far fewer wasted FLOPs on a CPU.

    Each epoch shuffles all examples, cuts them into pools of 50 batches, sorts each pool by length,
    forms batches and shuffles the batch order.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, pool: int = 50):
        self.lengths, self.batch_size, self.pool = lengths, batch_size, pool * batch_size
        self.rng = random.Random(seed)

    def __iter__(self):
        order = list(range(len(self.lengths)))
        self.rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.pool):
            chunk = sorted(order[start:start + self.pool], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        self.rng.shuffle(batches)
        return iter(batches)

    def __len__(self):
        return -(-len(self.lengths) // self.batch_size)


def teacher_logits(folders: list[str], examples: list[Example], labels: list[str]) -> dict[str, torch.Tensor]:
    """The teachers' mean log-probabilities (raw logits, before calibration) for each training
    message, computed once before training; one teacher's log-probabilities are its logits up to a
    constant, which no softmax sees."""
    for folder in folders:
        if ModelFolder.read(folder).labels != list(labels):
            raise ValueError(f"teacher {folder} knows other intents than the data")
    texts = sorted({e.text for e in examples})
    logp = [torch.from_numpy(load_classifier(f).logits(texts, batch_size=64)).float().log_softmax(-1)
            for f in folders]
    return dict(zip(texts, torch.stack(logp).mean(0)))


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, weight: float,
                      temperature: float, teacher_errors: bool = True,
                      teacher_only: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of (1 − w)·CE(z, y) + w·T²·KL(softmax(z_t/T) ‖ softmax(z/T)); T² keeps the
    gradient scale of CE. Without ``teacher_errors``, w is 0 on rows where argmax z_t ≠ y; on the rows
    ``teacher_only`` marks (noisy copies) w is 1."""
    import torch.nn.functional as F

    logits, teacher = logits.float(), teacher.float()
    ce = F.cross_entropy(logits, labels, reduction="none")
    kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(teacher / temperature, -1),
                  reduction="none", log_target=True).sum(-1)
    w = torch.full_like(ce, weight)
    if not teacher_errors:
        w = w * (teacher.argmax(-1) == labels)
    if teacher_only is not None:
        w = torch.where(teacher_only, torch.ones_like(w), w)
    return ((1 - w) * ce + w * temperature ** 2 * kl).mean()


def resolve_precision(precision: str) -> str:
    """accelerate's mixed_precision value for a --precision choice."""
    if precision == "auto":
        native = torch.cuda.is_available() or cpu_has_native_bf16()
        return "bf16" if native else "no"
    return {"fp32": "no", "bf16": "bf16"}[precision]


@dataclass
class Start:
    """What the adapter trains on, and what the model folder records so that loading rebuilds it
    (:func:`chatbot.classifier.build_model` with the same base, source and compression)."""

    model: object
    tokenizer: object
    base: str
    compression: dict | None = None
    source: dict | None = None
    trim: tuple[dict, list[int]] | None = None
    """(recipe, kept ids) when the vocabulary is trimmed."""

    @classmethod
    def from_base(cls, base: str, num_labels: int) -> "Start":
        """A base by name or folder; a compressed base folder records its base and recipe."""
        model, tokenizer = build_model(base, num_labels)
        name, recipe = describe_base(base)
        return cls(model, tokenizer, name, recipe)


@dataclass
class Setup:
    accelerator: object
    model: object
    tokenizer: object
    labels: list[str]
    train: DataLoader
    dev: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: object
    start: Start
    train_n: int


def setup(args: TrainArgs, dataset: Dataset, start: Start | None = None) -> Setup:
    """Model with LoRA, data loaders, optimiser and schedule, all prepared by accelerate.

    ``start`` may be given (e.g. a compressed model); otherwise ``args.base`` is loaded.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    seed_everything(args.fit.seed)
    # One process may train several times (tests, the app's admin builds) with different precisions;
    # accelerate keeps its state in a singleton, so start each run from a clean one (the process
    # group of a distributed launch is kept).
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=resolve_precision(args.precision), cpu=not torch.cuda.is_available())
    labels = dataset.intents
    if len(labels) < 2:  # one label: every message gets it with confidence 1, a classifier of nothing
        raise ValueError(f"training needs at least two intents; the data has {len(labels)}")
    label_ids = {name: i for i, name in enumerate(labels)}
    start = start or Start.from_base(args.base, len(labels))
    model, tokenizer = start.model, start.tokenizer
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = label_ids
    model = lora.apply(model, args.lora)
    train = dataset.split("train")
    if args.max_per_intent:
        train = limit_per_intent(train, args.max_per_intent, args.fit.seed)
    dev = dataset.split("dev")
    if not train or not dev:
        raise ValueError("the data needs a train and a dev split (rows without a split are split automatically)")
    if args.distill.noisy_copies:
        unseen = {e.text for e in dataset.examples}
        unseen |= {e.text for e in load_dataset(args.held_out, min_examples=1).examples} if args.held_out else set()
        train = train + noisy_copies(train, args.distill.noisy_copies, args.fit.seed, exclude=unseen)
    soft = teacher_logits(args.teacher, train, labels) if args.teacher else None
    fit_ = args.fit
    train_dl = make_batches(tokenizer, train, label_ids, args.max_length, fit_.batch_size, True, fit_.seed, soft)
    dev_dl = make_batches(tokenizer, dev, label_ids, args.max_length, 64, False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=fit_.lr, weight_decay=args.weight_decay)
    steps = fit_.epochs * math.ceil(len(train) / fit_.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=fit_.lr, total_steps=steps, pct_start=0.1)
    model, optimizer, train_dl, dev_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, dev_dl, scheduler)
    return Setup(accelerator, model, tokenizer, labels, train_dl, dev_dl, optimizer, scheduler, start, len(train))


@torch.no_grad()
def dev_logits(s: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of the dev split (gathered over processes)."""
    s.model.eval()
    logits, labels = [], []
    for batch in s.dev:
        y = batch.pop("labels")
        with s.accelerator.autocast():
            out = s.model(**batch).logits.float()
        out, y = s.accelerator.gather_for_metrics((out, y))
        logits.append(out.cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature T minimising the dev negative log-likelihood of softmax(logits / T), in [0.05, 20].
    L-BFGS with a line search: with a fixed step it can overshoot to NaN when the best T is far from 1."""
    if not torch.isfinite(logits).all():
        raise ValueError("the dev logits are not finite (did training diverge?)")
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def train_epoch(s: Setup, args: TrainArgs, epoch: int, bar, progress=None) -> float:
    """One pass over the training batches; returns the mean training loss."""
    s.model.train()
    running = 0.0
    total = args.fit.epochs * len(s.train)
    for step, batch in enumerate(s.train):
        teacher, teacher_only = batch.pop("teacher_logits", None), batch.pop("teacher_only", None)
        with s.accelerator.autocast():
            out = s.model(**batch)
        loss = out.loss if teacher is None else distillation_loss(
            out.logits, batch["labels"], teacher, args.distill.weight, args.distill.temperature,
            args.distill.teacher_errors, teacher_only)
        s.accelerator.backward(loss)
        s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad()
        running += loss.item()
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{running / (step + 1):.3f}")
        if progress:
            progress(bar.n / total, f"epoch {epoch + 1}/{args.fit.epochs}")
    return running / len(s.train)


def fit(s: Setup, args: TrainArgs, progress=None) -> dict:
    """Train with early stopping on dev accuracy; the best epoch's weights are restored."""
    from tqdm.auto import tqdm

    history, best, best_state, waited = [], -1.0, None, 0
    bar = tqdm(total=args.fit.epochs * len(s.train), desc="train", disable=not s.accelerator.is_local_main_process)
    started = time.perf_counter()
    for epoch in range(args.fit.epochs):
        loss = train_epoch(s, args, epoch, bar, progress)
        logits, labels = dev_logits(s)
        accuracy = float((logits.argmax(-1) == labels).float().mean())
        history.append({"epoch": epoch + 1, "train_loss": loss, "dev_accuracy": accuracy})
        bar.write(f"epoch {epoch + 1}: train loss {loss:.4f}, dev accuracy {accuracy:.4f}")
        if accuracy > best:
            best, best_state, waited = accuracy, lora.trainable_state(s.model), 0
        else:
            waited += 1
            if waited >= args.patience:
                break
    bar.close()
    with torch.no_grad():
        params = dict(s.model.named_parameters())
        for k, v in best_state.items():
            params[k].copy_(v)
    return {"history": history, "train_time_s": time.perf_counter() - started, "best_dev_accuracy": best}


def validate(s: Setup) -> dict:
    """Dev accuracy of the restored best model and the calibration temperature fitted on it."""
    logits, labels = dev_logits(s)
    temperature = fit_temperature(logits, labels)
    nll = float(torch.nn.functional.cross_entropy(logits / temperature, labels))
    return {"dev_accuracy": float((logits.argmax(-1) == labels).float().mean()), "temperature": temperature,
            "dev_nll": nll, "dev_n": len(labels)}


def save(s: Setup, args: TrainArgs, fit_report: dict, val_report: dict, dataset: Dataset) -> Path:
    """Write a self-contained model folder: adapter + head, label map, settings and metrics."""
    out = Path(args.out)
    model = s.accelerator.unwrap_model(s.model)
    if s.accelerator.is_main_process:
        lora.save(model, ModelFolder.adapter_dir(out))
        ModelFolder(
            base=s.start.base, compression=s.start.compression, source=s.start.source,
            vocab=s.start.trim[0] if s.start.trim else None, labels=s.labels,
            temperature=val_report["temperature"], max_length=args.max_length, lora=asdict(args.lora),
            languages=dataset.languages, train_args=asdict(args),
            metrics={**fit_report, **val_report, "trainable_parameters": lora.trainable_parameters(model),
                     "train_n": s.train_n, "dropped_rows": dataset.dropped},
        ).write(out)
        if s.start.trim:
            ModelFolder.write_trim(out, *s.start.trim)
    s.accelerator.wait_for_everyone()  # under `accelerate launch`, no process returns before the folder is whole
    return out


def train(args: TrainArgs, progress=None, start: Start | None = None) -> Path:
    """setup → fit → validate → save; returns the model folder."""
    dataset = load_dataset(args.data, seed=args.fit.seed)
    s = setup(args, dataset, start)
    fit_report = fit(s, args, progress)
    val_report = validate(s)
    return save(s, args, fit_report, val_report, dataset)
