"""LoRA fine-tuning of a decoder LM with a classification head: setup → fit → validate → save.

The loop is written out on accelerate (``accelerate launch -m chatbot train …`` spreads it over
several GPUs). The adapter weights and the score head are the only trainable parameters
(:func:`apply_lora` decides that, and a test counts them). The dev split picks the best epoch
(early stopping) and fits the temperature that calibrates the confidences.

With a ``teacher`` (a trained model folder), the loss mixes cross-entropy with the teacher's
softened intent distribution (knowledge distillation, Hinton et al. 2015):
``(1 − w)·CE(z, y) + w·T²·KL(softmax(z_t / T) ‖ softmax(z / T))``. Healing a compressed model
this way teaches it what the uncompressed one knew, not only the training labels.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from chatbot.data import Dataset, Example, limit_per_intent, load_dataset
from chatbot.model import DEFAULT_BASE, cpu_has_native_bf16, describe_base, load_base

MODEL_FORMAT = 1
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class TrainArgs:
    data: list[str]
    """Training data files (CSV or JSONL with text,intent[,lang][,split])."""
    out: str
    """Folder to write the trained model to."""
    base: str = DEFAULT_BASE
    """Base model: smollm2-135m, gemma3-270m, a model folder (also a compressed one) or a hub id."""
    epochs: int = 4
    """Passes over the training split (the best epoch on dev is kept)."""
    lr: float = 1e-3
    """Peak learning rate of the one-cycle schedule."""
    batch_size: int = 16
    """Messages per optimisation step."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    """Module names LoRA adapts (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)."""
    seed: int = 0
    """Seed for the split, sampling, initialisation and shuffling."""
    max_per_intent: int | None = None
    """Use at most this many training examples per intent and language (few-shot runs)."""
    max_length: int = 96
    """Messages are truncated to this many tokens."""
    patience: int = 2
    """Stop after this many epochs without a better dev accuracy."""
    precision: str = "auto"
    """fp32, bf16 (autocast) or auto: bf16 on CUDA and on CPUs with native bfloat16."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    teacher: str | None = None
    """A trained model folder with the same intents whose logits are soft targets (distillation)."""
    distill: float = 0.5
    """Weight w of the teacher's soft targets in the loss (used only with a teacher)."""
    distill_temperature: float = 2.0
    """Temperature T that softens teacher and student distributions for distillation."""

    def __post_init__(self):
        if not self.data:
            raise ValueError("give at least one --data file")
        if self.epochs < 1 or self.batch_size < 1 or self.lora_r < 1 or self.max_length < 8:
            raise ValueError("epochs, batch size and LoRA rank must be ≥ 1, max length ≥ 8")
        if not 0 < self.lr < 1:
            raise ValueError("lr must be in (0, 1)")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError("precision must be auto, fp32 or bf16")
        if self.max_per_intent is not None and self.max_per_intent < 1:
            raise ValueError("max-per-intent must be ≥ 1")
        if not self.targets:
            raise ValueError("give at least one LoRA target")
        if not 0 <= self.distill <= 1 or self.distill_temperature <= 0:
            raise ValueError("distill must be in [0, 1] and its temperature > 0")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def lora_target_names(model, targets: list[str]) -> list[str]:
    """Full names of the Linear layers LoRA adapts: each layer named in ``targets``, or, where SVD
    compression replaced it by a :class:`LowRankLinear`, both of its factors (as SVD-LLM heals)."""
    from compression.svd import LowRankLinear

    names = []
    for full, module in model.named_modules():
        if full.rsplit(".", 1)[-1] not in targets:
            continue
        if isinstance(module, LowRankLinear):
            names += [f"{full}.down", f"{full}.up"]
        elif isinstance(module, torch.nn.Linear):
            names.append(full)
    if not names:
        raise ValueError(f"no layers named {', '.join(targets)} to adapt")
    return names


def apply_lora(model, r: int, alpha: int, dropout: float, targets: list[str]):
    """Wrap ``model`` so that exactly the LoRA adapters on ``targets`` and the score head train."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=lora_target_names(model, targets))
    return get_peft_model(model, config)  # SEQ_CLS adds the score head to modules_to_save


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_batches(tokenizer, examples: list[Example], label_ids: dict[str, int], max_length: int, batch_size: int,
                 shuffle: bool, seed: int = 0, soft: dict[str, torch.Tensor] | None = None) -> DataLoader:
    """Tokenised batches with ``labels`` (and ``teacher_logits`` from ``soft``, keyed by text)."""
    def collate(batch):
        enc = tokenizer([e.text for e in batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        enc["labels"] = torch.tensor([label_ids[e.intent] for e in batch])
        if soft is not None:
            enc["teacher_logits"] = torch.stack([soft[e.text] for e in batch])
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


def teacher_logits(folder: str, examples: list[Example], labels: list[str]) -> dict[str, torch.Tensor]:
    """The teacher's raw logits for each training message (computed once, before training)."""
    from chatbot.classifier import IntentClassifier, read_settings

    if list(read_settings(folder)["labels"]) != list(labels):
        raise ValueError(f"teacher {folder} knows other intents than the data")
    texts = sorted({e.text for e in examples})
    return dict(zip(texts, IntentClassifier.load(folder).logits(texts, batch_size=64)))


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, weight: float,
                      temperature: float) -> torch.Tensor:
    """(1 − w)·CE(z, y) + w·T²·KL(softmax(z_t/T) ‖ softmax(z/T)); T² keeps the gradient scale of CE."""
    import torch.nn.functional as F

    logits, teacher = logits.float(), teacher.float()
    ce = F.cross_entropy(logits, labels)
    kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(teacher / temperature, -1),
                  reduction="batchmean", log_target=True)
    return (1 - weight) * ce + weight * temperature ** 2 * kl


def resolve_precision(precision: str) -> str:
    """accelerate's mixed_precision value for a --precision choice."""
    if precision == "auto":
        native = torch.cuda.is_available() or cpu_has_native_bf16()
        return "bf16" if native else "no"
    return {"fp32": "no", "bf16": "bf16"}[precision]


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
    base_info: dict
    train_n: int


def setup(args: TrainArgs, dataset: Dataset, model=None, tokenizer=None, base_info: dict | None = None) -> Setup:
    """Model with LoRA, data loaders, optimiser and schedule, all prepared by accelerate.

    ``model``/``tokenizer`` may be given (e.g. a compressed base); otherwise ``args.base`` is loaded.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    seed_everything(args.seed)
    # One process may train several times (tests, the app's admin builds) with different precisions;
    # accelerate keeps its state in a singleton, so start each run from a clean one (the process
    # group of a distributed launch is kept).
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=resolve_precision(args.precision), cpu=not torch.cuda.is_available())
    labels = dataset.intents
    label_ids = {name: i for i, name in enumerate(labels)}
    if model is None:
        model, tokenizer = load_base(args.base, num_labels=len(labels))
        base_info = describe_base(args.base)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = label_ids
    model = apply_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.targets)
    train = dataset.split("train")
    if args.max_per_intent:
        train = limit_per_intent(train, args.max_per_intent, args.seed)
    dev = dataset.split("dev")
    if not train or not dev:
        raise ValueError("the data needs a train and a dev split (rows without a split are split automatically)")
    soft = teacher_logits(args.teacher, train, labels) if args.teacher else None
    train_dl = make_batches(tokenizer, train, label_ids, args.max_length, args.batch_size, True, args.seed, soft)
    dev_dl = make_batches(tokenizer, dev, label_ids, args.max_length, 64, False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * math.ceil(len(train) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    model, optimizer, train_dl, dev_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, dev_dl, scheduler)
    return Setup(accelerator, model, tokenizer, labels, train_dl, dev_dl, optimizer, scheduler,
                 base_info or {"base": args.base}, len(train))


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
    """Temperature T minimising the dev negative log-likelihood of softmax(logits / T)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def fit(s: Setup, args: TrainArgs, progress=None) -> dict:
    """Train with early stopping on dev accuracy; the best epoch's weights are restored."""
    from tqdm.auto import tqdm

    history, best, best_state, waited = [], -1.0, None, 0
    total = args.epochs * len(s.train)
    bar = tqdm(total=total, desc="train", disable=not s.accelerator.is_local_main_process)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        s.model.train()
        running = 0.0
        for step, batch in enumerate(s.train):
            teacher = batch.pop("teacher_logits", None)
            with s.accelerator.autocast():
                out = s.model(**batch)
            loss = out.loss if teacher is None else distillation_loss(
                out.logits, batch["labels"], teacher, args.distill, args.distill_temperature)
            s.accelerator.backward(loss)
            s.optimizer.step()
            s.scheduler.step()
            s.optimizer.zero_grad()
            running += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / (step + 1):.3f}")
            if progress:
                progress(bar.n / total, f"epoch {epoch + 1}/{args.epochs}")
        logits, labels = dev_logits(s)
        accuracy = float((logits.argmax(-1) == labels).float().mean())
        history.append({"epoch": epoch + 1, "train_loss": running / len(s.train), "dev_accuracy": accuracy})
        bar.write(f"epoch {epoch + 1}: train loss {running / len(s.train):.4f}, dev accuracy {accuracy:.4f}")
        if accuracy > best:
            best, best_state, waited = accuracy, _trainable_state(s.model), 0
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
    out.mkdir(parents=True, exist_ok=True)
    model = s.accelerator.unwrap_model(s.model)
    if s.accelerator.is_main_process:
        model.save_pretrained(out / "adapter")
        settings = {
            "format": MODEL_FORMAT,
            **s.base_info,
            "labels": s.labels,
            "temperature": val_report["temperature"],
            "max_length": args.max_length,
            "lora": {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                     "targets": list(args.targets)},
            "languages": dataset.languages,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "train_args": asdict(args),
            "metrics": {**fit_report, **val_report, "trainable_parameters": trainable_parameters(model),
                        "train_n": s.train_n,
                        "dropped_rows": dataset.dropped},
        }
        (out / "model.json").write_text(json.dumps(settings, indent=2, ensure_ascii=False))
    return out


def train(args: TrainArgs, progress=None, model=None, tokenizer=None, base_info: dict | None = None) -> Path:
    """setup → fit → validate → save; returns the model folder."""
    dataset = load_dataset(args.data, seed=args.seed)
    s = setup(args, dataset, model, tokenizer, base_info)
    fit_report = fit(s, args, progress)
    val_report = validate(s)
    return save(s, args, fit_report, val_report, dataset)
