"""The fast inference path: a model folder exported once to OpenVINO and served without PyTorch.

Why OpenVINO (measured on this project's 2-core CPU, docs/benchmarks.md): it is the one fast runtime
whose predictions agree with PyTorch fp32 on ≥ 99.5 % of our test split (bf16 inference precision);
onnxruntime fp32 agrees fully but is slower than PyTorch bf16, onnxruntime's dynamic int8 is fast but
agrees on 97 % only. Single messages run through models compiled for static shapes ``[1, bucket]``
(about 7 ms less per message than dynamic shapes on this CPU); batches run through the dynamic one.

The artefact is built from the model folder (base → source → recipe → trim → adapter, merged, in
float32, by :func:`chatbot.classifier.load_classifier`), exported with the torch dynamo ONNX exporter
(``input_ids`` → ``logits``: with right padding and a causal model the real positions never see the
pads, and the head reads the last non-pad token, so no attention mask is needed) and converted to
OpenVINO IR (weights stored as fp16). It is cached under ``$CHATBOT_CACHE/runtime/<fingerprint>``,
the fingerprint covering every file the folder's weights come from, with the (pruned) tokenizer and
the label map beside it: serving a cached folder loads neither PyTorch weights nor the base.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from chatbot.classifier import IntentClassifier, load_classifier
from chatbot.folder import ModelFolder
from chatbot.machine import cpu_has_native_bf16
from chatbot.settings import cache_dir

log = logging.getLogger(__name__)

EXPORT_VERSION = 1
"""Bumped when the exported graph or its files change (older artefacts are then rebuilt)."""
BUCKETS = (16, 32, 64)
"""Sequence lengths single messages are padded to (each compiled once, when first needed)."""
RUNTIME_ENV = "CHATBOT_RUNTIME"
RUNTIMES = ("auto", "openvino", "torch")


def fingerprint(folder: str | Path) -> str:
    """What the exported model depends on: the folder's settings, adapters and kept ids, the base's
    name and this module's export version (and OpenVINO's, whose IR it writes)."""
    import openvino

    folder = Path(folder)
    digest = hashlib.sha256(f"{EXPORT_VERSION} {openvino.__version__} {torch.__version__}".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "evaluation.json"):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def artefact_dir(folder: str | Path) -> Path:
    return cache_dir() / "runtime" / fingerprint(folder)


class _Logits(torch.nn.Module):
    """``input_ids`` (right-padded) → logits, the graph that is exported."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False).logits


def _log_step(fraction: float, desc: str = "") -> None:
    """Progress of a first export where nobody passed a progress bar (the app's first start): the log."""
    log.info("preparing the serving model (once per model version): %s, %d %%", desc, round(100 * fraction))


def export(folder: str | Path, progress=None) -> Path:
    """Build and cache the OpenVINO artefact of a model folder (once; later calls find it)."""
    import openvino as ov

    target = artefact_dir(folder)
    if (target / "model.xml").exists():
        return target
    step = progress or _log_step
    step(0.0, "loading the model")
    classifier = load_classifier(folder, device="cpu", dtype=torch.float32)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        step(0.4, "exporting (torch dynamo → ONNX)")
        example = classifier.tokenizer(["where is my parcel", "hello"], padding=True, return_tensors="pt")
        batch = torch.export.Dim("batch", min=1, max=256)
        seq = torch.export.Dim("seq", min=2, max=max(classifier.max_length, max(BUCKETS)))
        torch.onnx.export(_Logits(classifier.model).eval(), (example["input_ids"],), str(tmp / "model.onnx"),
                          dynamo=True, input_names=["input_ids"], output_names=["logits"],
                          dynamic_shapes={"input_ids": {0: batch, 1: seq}}, optimize=True, external_data=False)
        step(0.8, "converting to OpenVINO")
        ov.save_model(ov.convert_model(str(tmp / "model.onnx")), str(tmp / "model.xml"))
        (tmp / "model.onnx").unlink()
        classifier.tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "info.json").write_text(json.dumps({
            "labels": classifier.labels, "temperature": classifier.temperature, "max_length": classifier.max_length,
            "pad_token_id": classifier.tokenizer.pad_token_id, "parameters": classifier.parameter_count(),
            "embedding_parameters": classifier.embedding_parameters(), "folder": str(Path(folder).resolve())}))
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written artefact in use
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    step(1.0, "exported")
    return target


class OpenVinoForward:
    """Logits from the exported model: static shapes for single messages, dynamic for batches."""

    def __init__(self, path: Path, pad_token_id: int, parameters: int, embedding: int, threads: int | None = None):
        import openvino as ov

        self.core = ov.Core()
        self.source = self.core.read_model(str(path / "model.xml"))
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if cpu_has_native_bf16() else "f32",
                       "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.pad, self._parameters, self._embedding = pad_token_id, parameters, embedding
        self.dynamic = self.core.compile_model(self.source, "CPU", self.config).create_infer_request()
        self.static: dict[int, object] = {}
        self.path = path

    def _request(self, batch: int, length: int):
        bucket = next((b for b in BUCKETS if b >= length), None)
        if batch != 1 or bucket is None:
            return self.dynamic, length
        if bucket not in self.static:
            shaped = self.source.clone()
            shaped.reshape({0: [1, bucket]})
            self.static[bucket] = self.core.compile_model(shaped, "CPU", self.config).create_infer_request()
        return self.static[bucket], bucket

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids = input_ids.numpy()
        request, length = self._request(*ids.shape)
        if length != ids.shape[1]:
            ids = np.pad(ids, ((0, 0), (0, length - ids.shape[1])), constant_values=self.pad)
        return torch.from_numpy(request.infer({0: ids.astype(np.int64)})[0].astype(np.float32).copy())

    def parameter_count(self) -> int:
        return self._parameters

    def embedding_parameters(self) -> int:
        return self._embedding

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("model.*"))


def load_exported(path: Path, threads: int | None = None) -> IntentClassifier:
    """A classifier served from a cached artefact (no PyTorch weights are loaded)."""
    from transformers import AutoTokenizer

    info = json.loads((path / "info.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
    tokenizer.padding_side = "right"
    forward = OpenVinoForward(path, info["pad_token_id"], info["parameters"], info["embedding_parameters"], threads)
    return IntentClassifier(forward, tokenizer, info["labels"], info["temperature"], info["max_length"])


def pick_runtime(runtime: str | None = None) -> str:
    """``openvino`` or ``torch``: as asked (``$CHATBOT_RUNTIME``), or ``auto``: PyTorch on a GPU, else
    OpenVINO where it is installed."""
    runtime = runtime or os.environ.get(RUNTIME_ENV) or "auto"
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    if torch.cuda.is_available():
        return "torch"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "torch"
    return "openvino"


def load_serving(folder: str | Path, runtime: str | None = None, progress=None,
                 device: str | None = None) -> IntentClassifier:
    """The classifier that serves customers: the exported one (built and cached on first use) or the
    PyTorch one, as :func:`pick_runtime` says; asking for ``device="cuda"`` means PyTorch on the GPU."""
    if device == "cuda" or pick_runtime(runtime) == "torch":
        return load_classifier(folder, device=device)
    ModelFolder.read(folder)  # a clear error for a folder that is not one, before any export work
    return load_exported(export(folder, progress))
