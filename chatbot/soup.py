"""A model soup: classifiers tuned from the same start, averaged into one (Wortsman et al., ICML 2022).

Classifiers LoRA-tuned from one base with one recipe and different seeds make different mistakes
(on CLINC150 two of them share about half of theirs), and the mean of their weights keeps much of what
an ensemble of them gains, at the size and speed of one model (docs/benchmarks.md). Only what trained
differs between the ingredients, their LoRA updates and their heads, so the soup stays a LoRA
adapter over the same base and is exact:

    mean_i (W + s_i B_i A_i) = W + B A,   B = [s_1 B_1 / n, …, s_n B_n / n] ∈ ℝ^{m×R},
                                          A = [A_1; …; A_n] ∈ ℝ^{R×k},

with s_i = α_i / r_i, R = Σ r_i and the soup's α = R (scale 1). The head is the mean of the heads.
Merged for serving, it costs what one ingredient costs. The temperature is fitted again on the dev
split of ``--data``, where the soup is also compared with each ingredient; then the soup is scored on
``--eval-split`` and exported for serving, as a build is, into its ``evaluation.json``
(:mod:`chatbot.scorecard`), so it can be listed, compared and promoted like any version.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from chatbot.data import load_dataset
from chatbot.folder import ModelFolder
from chatbot.lora import LoraSettings
from chatbot.scorecard import score_version

MADE = ("base", "method", "targets", "ratio", "params_keep", "min_saving", "vocab", "keep_layers", "source", "compression")
"""The fields of the first ingredient's scorecard that say how the soup's start was made (all share it)."""
SAME = ("base", "labels", "max_length", "compression", "source", "vocab")
"""What every ingredient must share: the model the adapters were trained on, and its head's labels."""


@dataclass
class SoupArgs:
    model: list[str]
    """Model folders to average: two or more, trained on the same base, recipe and intents, with LoRA on the same layers."""
    out: str
    """Folder to write the soup to."""
    data: list[str]
    """Data files whose dev split fits the soup's temperature and compares it with its ingredients."""
    eval_split: str = "test"
    """Split of --data the soup is scored on (its evaluation.json, as a build writes)."""

    def __post_init__(self):
        if len(self.model) < 2:
            raise ValueError("a soup needs at least two --model folders")
        if len({str(Path(m).resolve()) for m in self.model}) < len(self.model):
            raise ValueError("a model folder is named twice")
        if not self.data:
            raise ValueError("give --data with a dev split to fit the soup's temperature")
        if self.eval_split not in ("train", "dev", "test"):
            raise ValueError("eval split must be train, dev or test")


def check_ingredients(folders: list[str], specs: list[ModelFolder]) -> list[dict]:
    """The folders' adapter configs; ValueError unless the folders differ only in what LoRA training
    changed (their settings and adapter configs; :func:`average_adapters` checks the tensors themselves)."""
    first = specs[0]
    for folder, spec in zip(folders[1:], specs[1:]):
        for key in SAME:
            if getattr(spec, key) != getattr(first, key):
                raise ValueError(f"{folder} differs from {folders[0]} in its {key}: only classifiers tuned from "
                                 "the same start can be averaged")
    layers = None
    configs = [_adapter_config(folder) for folder in folders]
    for folder, config in zip(folders, configs):
        if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_rslora") or config.get("use_dora"):
            raise ValueError(f"{folder}: only plain LoRA adapters (one rank and alpha) can be averaged")
        targets = sorted(config.get("target_modules") or [])
        if layers is not None and targets != layers:
            raise ValueError(f"{folder} adapts other layers than {folders[0]}: give folders trained with the same --lora-targets")
        layers = targets
    return configs


def _adapter_config(folder: str | Path) -> dict:
    return json.loads((ModelFolder.adapter_dir(folder) / "adapter_config.json").read_text())


def average_adapters(folders: list[str], configs: list[dict]) -> tuple[dict[str, torch.Tensor], int]:
    """The soup's adapter tensors (see the module docstring) and its rank R, from the folders' adapters
    and their configs (as :func:`check_ingredients` returns them)."""
    from safetensors.torch import load_file

    states = []
    for folder in folders:
        weights = ModelFolder.adapter_dir(folder) / "adapter_model.safetensors"
        try:
            states.append(load_file(str(weights)))
        except Exception as err:  # noqa: BLE001 - safetensors' own error type: a missing, damaged or foreign file
            raise ValueError(f"{weights} is not a readable safetensors file ({str(err).splitlines()[0]})") from None
    keys = set(states[0])
    for folder, state in zip(folders[1:], states[1:]):
        if set(state) != keys:
            raise ValueError(f"{folder} adapts other layers than {folders[0]}: give folders trained with the same --lora-targets")
    n = len(states)
    soup = {}
    for key in sorted(keys):
        tensors = [s[key].float() for s in states]
        if ".lora_A." in key:  # ranks stack: A = [A_1; …; A_n]
            soup[key] = torch.cat(tensors, 0)
        elif ".lora_B." in key:  # B = [s_1 B_1 / n, …]
            scales = [c["lora_alpha"] / c["r"] / n for c in configs]
            soup[key] = torch.cat([t * s for t, s in zip(tensors, scales)], 1)
        else:  # the head (and anything else that trained whole): the mean
            soup[key] = sum(tensors) / n
    rank = sum(c["r"] for c in configs)
    for key in keys:
        if ".lora_A." in key:
            assert soup[key].shape[0] == rank and soup[key.replace("lora_A", "lora_B")].shape[1] == rank
    return soup, rank


def write_soup(folders: list[str], specs: list[ModelFolder], configs: list[dict], out: Path) -> dict:
    """The soup's folder (temperature 1 until it is fitted): the averaged adapter beside whatever the
    ingredients share (a source adapter, a vocabulary trim). Returns its LoRA settings."""
    from safetensors.torch import save_file

    state, rank = average_adapters(folders, configs)
    adapter = ModelFolder.adapter_dir(out)
    adapter.mkdir(parents=True)
    config = {**configs[0], "r": rank, "lora_alpha": rank}
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in state.items()}, str(adapter / "adapter_model.safetensors"))
    first = specs[0]
    if first.source:
        shutil.copytree(first.source_adapter_dir(folders[0]), out / first.source["adapter"])
    if trim := first.read_trim(folders[0]):
        ModelFolder.write_trim(out, *trim)
    lora = {**(first.lora or {}), "r": rank, "alpha": rank}
    ModelFolder(base=first.base, labels=first.labels, temperature=1.0, max_length=first.max_length, lora=lora,
                compression=first.compression, source=first.source, vocab=first.vocab,
                languages=sorted({lang for s in specs for lang in s.languages})).write(out)
    return lora


def soup(args: SoupArgs, progress=None) -> Path:
    """Average the folders, fit the soup's temperature on dev, record how it and each ingredient score
    there, then score the soup on the eval split and export it for serving. ``progress(fraction, stage)``
    hears of each step (an exception it raises, e.g. a cancellation, stops the soup and removes its folder)."""
    step = progress or (lambda fraction, desc="": None)
    out = Path(args.out)
    ModelFolder.check_new(out, *args.model)
    specs = [ModelFolder.read(f) for f in args.model]
    configs = check_ingredients(args.model, specs)
    dataset = load_dataset(args.data)
    dev, rows = dataset.split("dev"), dataset.split(args.eval_split)
    for name, split in (("dev", dev), (args.eval_split, rows)):
        if not split:
            raise ValueError(f"the data has no {name} split (dev fits the temperature, --eval-split scores the soup)")
    if unknown := sorted({e.intent for e in dev + rows} - set(specs[0].labels)):
        raise ValueError(f"the data has intents the models do not know: {', '.join(unknown[:5])}")
    try:
        step(0.0, "averaging the adapters")
        lora = write_soup(args.model, specs, configs, out)
        _fit_and_compare(args, specs, out, dev, lambda f, d: step(0.05 + 0.45 * f, d))
        first = ModelFolder.read_evaluation(args.model[0]).get("summary", {})
        made = {"base": specs[0].base, **{k: v for k, v in first.items() if k in MADE}, "soup": list(args.model),
                "lora": _described(lora)}
        summary, report = score_version(out, rows, lambda f, d="": step(0.5 + 0.5 * f, d), **made)
        ModelFolder.write_evaluation(out, summary, report)
        step(1.0, "done")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written folder that looks like a model
        raise
    return out


def _described(lora: dict) -> dict:
    """The soup's adapter as a version's row shows it (rank R, the layers), as a build's row does."""
    return LoraSettings(r=lora["r"], alpha=lora["alpha"], targets=list(lora["targets"])).describe()


def _fit_and_compare(args: SoupArgs, specs: list[ModelFolder], out: Path, dev, step) -> None:
    """The soup's temperature, fitted on dev, and its and each ingredient's dev accuracy, into its model.json."""
    from chatbot.classifier import load_classifier
    from chatbot.train import fit_temperature

    labels = torch.tensor([specs[0].labels.index(e.intent) for e in dev])
    texts = [e.text for e in dev]
    accuracy = lambda z: float((z.argmax(-1) == labels).float().mean())  # noqa: E731
    ingredients = []
    for i, folder in enumerate(args.model):
        step(i / (len(args.model) + 1), f"dev accuracy of {Path(folder).name}")
        ingredients.append(accuracy(torch.from_numpy(load_classifier(folder).logits(texts, batch_size=64))))
    step(len(args.model) / (len(args.model) + 1), "dev accuracy and temperature of the soup")
    logits = torch.from_numpy(load_classifier(out).logits(texts, batch_size=64)).float()
    temperature = fit_temperature(logits, labels)
    spec = ModelFolder.read(out)
    spec.temperature = temperature
    spec.train_args = {"soup": list(args.model), "data": list(args.data)}
    spec.metrics = {"dev_accuracy": accuracy(logits), "dev_n": len(dev), "temperature": temperature,
                    "ingredients": [{"model": f, "dev_accuracy": a} for f, a in zip(args.model, ingredients)],
                    "ingredient_train_args": [s.train_args for s in specs]}
    spec.write(out)


def run_soup(args: SoupArgs) -> None:
    import sys

    from tqdm import tqdm

    with tqdm(total=100, desc="soup", unit="%") as bar:
        def progress(fraction, stage=""):
            bar.n = round(100 * fraction)
            bar.set_description(f"soup: {stage}" if stage else "soup")
        out = soup(args, progress)
    metrics = ModelFolder.read(out).metrics
    for row in metrics["ingredients"]:
        print(f"{row['model']}: dev accuracy {row['dev_accuracy']:.4f}", file=sys.stderr)
    summary = ModelFolder.read_evaluation(out)["summary"]
    served = summary.get("serving") or {}
    print(f"soup written to {out} (dev accuracy {metrics['dev_accuracy']:.4f} on {metrics['dev_n']} rows, "
          f"temperature {metrics['temperature']:.2f}); {args.eval_split} accuracy {summary['accuracy']:.4f} "
          f"on {summary['n']} rows" + (f", served ({served['runtime']}) {served['accuracy']:.4f}" if served else ""),
          file=sys.stderr)

