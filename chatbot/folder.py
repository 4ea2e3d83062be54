"""A model folder: one trained classifier on disk, and the only code that reads or writes ``model.json``.

Layout::

    model.json          what the classifier is (this module's :class:`ModelFolder`)
    adapter/            LoRA weights + score head (peft's format)
    source_adapter/     only when built by compressing a tuned classifier: that classifier's adapter,
                        merged into the base before the compression recipe is applied
    evaluation.json     only when evaluated by a build: the summary row and the full report
    vocab_trim.json     only when the vocabulary is trimmed: the kept token ids (``compression.vocab``)

What ``model.json`` says, in the order loading uses it (:func:`chatbot.classifier.load_classifier`):
the ``base`` → merge the ``source`` adapter → apply the ``compression`` recipe → trim the ``vocab``
→ load the ``adapter`` (trained with the ``lora`` settings) → a head over ``labels`` whose logits
are divided by ``temperature``, reading at most ``max_length`` tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from chatbot.model import ModelLoadError
from chatbot.settings import MAX_LENGTH

FORMAT = 1
SETTINGS_FILE, EVALUATION_FILE = "model.json", "evaluation.json"
ADAPTER, SOURCE_ADAPTER = "adapter", "source_adapter"


@dataclass
class ModelFolder:
    base: str
    """The base model: an embedded name, a model folder or a hub id."""
    labels: list[str]
    """The intents, in the order of the head's outputs."""
    temperature: float
    """Calibration: probabilities are softmax(logits / temperature)."""
    max_length: int = MAX_LENGTH
    """Messages are truncated to this many tokens."""
    lora: dict | None = None
    """The adapter's settings (``chatbot.lora.LoraSettings`` as a dict)."""
    compression: dict | None = None
    """The compression recipe re-applied to the (source-merged) base, or None when dense."""
    source: dict | None = None
    """``{adapter, from, fingerprint}`` of the tuned classifier merged before compressing, or None."""
    vocab: dict | None = None
    """The vocabulary trim's recipe (corpora, kept ids' fingerprint; the ids are in vocab_trim.json), or None."""
    languages: list[str] = field(default_factory=list)
    """Languages of the training data."""
    metrics: dict = field(default_factory=dict)
    """Training history, dev accuracy, temperature fit, sizes."""
    train_args: dict = field(default_factory=dict)
    """The arguments training ran with."""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    format: int = FORMAT

    def __post_init__(self):
        if not isinstance(self.base, str) or not self.base:
            raise ModelLoadError("base must be a model name, folder or hub id")
        if (not isinstance(self.labels, list) or not all(isinstance(x, str) and x for x in self.labels)
                or len(self.labels) < 2):
            raise ModelLoadError("labels must be a list of at least two intent names")
        if len(set(self.labels)) != len(self.labels):
            raise ModelLoadError("a model folder needs distinct labels")
        if (isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float))
                or not 0 < self.temperature < float("inf")):
            raise ModelLoadError("temperature must be a finite number > 0")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or not 1 <= self.max_length <= 8192:
            raise ModelLoadError("max_length must be a whole number of tokens in 1..8192")
        for name in ("lora", "compression", "source", "vocab"):
            if not isinstance(getattr(self, name), (dict, type(None))):
                raise ModelLoadError(f"{name} must be an object")
        if self.source is not None and "adapter" not in self.source:
            raise ModelLoadError("source lacks its adapter folder")

    # -- the files ------------------------------------------------------------------------------
    @classmethod
    def read(cls, folder: str | Path) -> "ModelFolder":
        """The folder's ``model.json``; a clear one-line :class:`ModelLoadError` when it cannot be used."""
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            raise ModelLoadError(f"{folder} is not a model folder (no {SETTINGS_FILE}); "
                                 "train one with: python -m chatbot train")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelLoadError(f"{path} is damaged: {err}") from None
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{path} is damaged: not a JSON object")
        for key in ("base", "labels", "temperature"):
            if key not in raw:
                raise ModelLoadError(f"{path} lacks {key!r}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as err:
            raise ModelLoadError(f"{path} is damaged: {err}") from None

    def write(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SETTINGS_FILE).write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))
        return folder

    @staticmethod
    def check_new(out: str | Path, *keep: str | Path | None) -> None:
        """Before a command writes a model folder to ``out``, ValueError unless it is a new or empty
        folder that is none of ``keep`` (what the command reads: its source, its teacher): a model
        written over another keeps the old one's other files (its evaluation, a source adapter) beside
        the new weights, and one written over its own source destroys what it is built from."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file")
        for other in keep:
            if other and Path(other).exists() and out.resolve() == Path(other).resolve():
                raise ValueError(f"--out {out} is the folder this command reads; choose a new one")
        if out.is_dir() and any(out.iterdir()):
            raise ValueError(f"--out {out} exists and is not empty; choose a new folder or remove it first")

    @staticmethod
    def adapter_dir(folder: str | Path) -> Path:
        return Path(folder) / ADAPTER

    def source_adapter_dir(self, folder: str | Path) -> Path | None:
        """The merged-in source's adapter, which a folder holds itself (builds copy it in): a path that
        leads out of the folder is refused, so a model.json cannot make the app read files elsewhere."""
        if not self.source:
            return None
        adapter = self.source.get("adapter") if isinstance(self.source, dict) else None
        path = Path(folder) / adapter if isinstance(adapter, str) else None
        if path is None or not path.resolve().is_relative_to(Path(folder).resolve()):
            raise ModelLoadError(f"{folder}: model.json's source adapter must be a folder inside the model folder")
        return path

    @property
    def is_compressed(self) -> bool:
        return self.compression is not None or self.vocab is not None

    def read_trim(self, folder: str | Path) -> tuple[dict, list[int]] | None:
        """(recipe, kept ids) of a trimmed vocabulary, or None when the vocabulary is whole."""
        from compression.vocab import TRIM_FILE, load_trim  # torch: only where a trimmed model is built

        if self.vocab is None:
            return None
        try:
            trim = load_trim(folder)
        except ValueError as err:
            raise ModelLoadError(str(err)) from None
        if trim is None or trim[0]["fingerprint"] != self.vocab["fingerprint"]:
            raise ModelLoadError(f"{folder} says its vocabulary is trimmed but its {TRIM_FILE} is missing or other")
        return trim

    @staticmethod
    def write_trim(folder: str | Path, recipe: dict, kept: list[int]) -> None:
        from compression.vocab import save_trim

        save_trim(folder, recipe, kept)

    # -- evaluation -----------------------------------------------------------------------------
    @staticmethod
    def write_evaluation(folder: str | Path, summary: dict, report: dict) -> None:
        (Path(folder) / EVALUATION_FILE).write_text(json.dumps({"summary": summary, "report": report}, indent=2))

    @staticmethod
    def read_evaluation(folder: str | Path) -> dict:
        """``evaluation.json`` as written by a build or by ``python -m chatbot evaluate``, or {}."""
        try:
            return json.loads((Path(folder) / EVALUATION_FILE).read_text())
        except (OSError, ValueError):
            return {}
