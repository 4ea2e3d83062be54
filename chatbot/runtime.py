"""The fast inference path: a model folder exported once to OpenVINO and served without PyTorch.

Why OpenVINO (measured on this project's 2-core CPU, docs/benchmarks.md): it is the one fast runtime
whose predictions agree with PyTorch fp32 on ≥ 99.5 % of our test split (bf16 inference precision);
onnxruntime fp32 agrees fully but is slower than PyTorch bf16, onnxruntime's dynamic int8 is fast but
agrees on 97 % only. Single messages run through models compiled for static shapes ``[1, bucket]``
(about 7 ms less per message than dynamic shapes on this CPU); batches run through the dynamic one,
several of their calls at once (:data:`BATCH_STREAMS`).

The artefact is built from the model folder (base → source → recipe → trim → adapter, merged, in
float32, by :func:`chatbot.classifier.load_classifier`), exported with the torch dynamo ONNX exporter
(``input_ids`` → ``logits``: with right padding and a causal model the real positions never see the
pads, and the head reads the last non-pad token, so no attention mask is needed) and converted to
OpenVINO IR (weights stored as fp16, then as int8 for ``openvino``: below). It is cached under
``$CHATBOT_CACHE/runtime/<fingerprint>``, the fingerprint covering every file the folder's weights come
from, with the (pruned) tokenizer and the label map beside it: serving a cached folder loads neither
the base nor PyTorch (nor transformers: :class:`ServedTokenizer`), about 250 MB less memory in a
serving process; PyTorch is imported only to build the artefact.

Weights (``openvino``, the served default): the matrices of the linear layers are stored as int8,
per output channel with a zero point (nncf's ``INT8_ASYM``: ``W ≈ s ⊙ (Q − z)``, ``Q`` in 0…255), and
OpenVINO multiplies with them directly: its CPU plugin quantises each product's input on the fly, in
groups of 32 values (``DYNAMIC_QUANTIZATION_GROUP_SIZE``, 32 by default in OpenVINO 2026.4; turned off,
the default's batches of ``[2, 16]`` to ``[32, 16]`` took 20–30 % longer on the development CPU), so
the arithmetic is int8 where the CPU has int8 dot products (AVX512-VNNI there).
The agreement below is measured with it on. The weights on disk halve, a
compiled shape's copy in memory shrinks by a third (165 against 242 MB), short messages (close to
memory-bound) run a little faster, longer ones are compute-bound and gain nothing (docs/benchmarks.md).
The embedding is int8 too; ``v_proj`` stays fp16: with every matrix in int8, the default's top-1
agreement with PyTorch fp32 was 99.5 % on our dev split and 99.3 % on test; keeping v_proj (2.9 M of
its parameters) gave 99.7 % and 99.5 % (v_proj also shows the largest truncation error in the SVD
accounting). ``openvino-fp16`` serves the same graph with fp16 weights (the reference for the int8 one).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

from chatbot.folder import ModelFolder
from chatbot.machine import cpu_has_amx, cpu_has_native_bf16
from chatbot.predictor import IntentClassifier
from chatbot.settings import cache_dir

log = logging.getLogger(__name__)

EXPORT_VERSION = 3
"""Bumped when the exported graph or its files change (older artefacts are then rebuilt)."""
BUCKETS = (16, 24, 48)
"""Sequence lengths single messages are padded to, with the model's ``max_length`` as the last one, so
that no single message goes through the dynamic model (each shape is compiled once, when first
needed, and holds its own copy of the weights, about 165 MB for the int8 default). Of our training
messages 58 % have ≤ 16 tokens, 80 % ≤ 24 and 97 % ≤ 48: a fourth shape (32, for the 8 % between 25
and 32 tokens) cost more memory than the time it saved."""
DYNAMIC_CACHE = 0
"""Entries of OpenVINO's shape cache (``CPU_RUNTIME_CACHE_CAPACITY``) for the dynamic model that runs
batches. Its default (5,000) keeps the kernels of every batch shape seen: a server's batches rarely
repeat a shape: after 200 batches of random sizes a process serving the default held 2.5 GB with the
cache and 0.9 GB without it, for 6 % more messages per second (docs/benchmarks.md)."""
BATCH_LENGTH_STEP = 4
"""Batches (the dynamic model) are padded to a multiple of this many tokens (at most ``max_length``).
Without a shape cache the dynamic model plans its kernels again whenever the input's shape is not the
one it has just run, and a compressed model has two matrix products of shapes of their own for each
factorised matrix, so rounding lengths lets calls share shapes; padding costs arithmetic. With the
length split (:func:`chatbot.predictor.length_groups`) and two streams, measured on 512 test
messages (msg/s for step 8 → 4 → 1; 512 at once / random batches of 2–32 / batches of 32 in file
order): the default 170 → 198 → 207 / 109 → 119 → 116 / 126 → 131 → 125; the 40 % build (89 factorised
matrices) 156 → 162 → 149 / 61 → 59 → 51 / 75 → 74 → 64 (docs/benchmarks.md). 8 was chosen before
the length split, when batches were cut in file order."""
BATCH_STREAMS = 2
"""OpenVINO streams of the dynamic model: a batch's forward calls (:func:`chatbot.predictor.length_groups`)
run this many at once, each on its share of the cores (one each on a 2-core machine). One call of a
few short messages keeps two threads busy badly (per-operation overhead, small matrix products);
two calls at once overlap it. Measured on the served default (2-core development CPU, 512 test
messages; msg/s, one stream → two, medians of 3 rounds): 512 at once 162 → 175, random batches of
2–32 99 → 106; a serving process's peak memory: +97 MiB (docs/benchmarks.md). Fewer streams where
fewer threads or cores are allowed."""
RUNTIME_ENV = "CHATBOT_RUNTIME"
SERVING_RUNTIMES = ("openvino", "openvino-fp16", "torch")
"""``openvino``: exported, int8 weights (see above); ``openvino-fp16``: exported, fp16 weights;
``torch``: the PyTorch model."""
RUNTIMES = ("auto", *SERVING_RUNTIMES)
"""What ``$CHATBOT_RUNTIME`` may say; ``auto``: PyTorch on a GPU, else ``openvino`` where it is installed."""
WEIGHTS = {"openvino": "int8", "openvino-fp16": "fp16"}
"""How each exported runtime stores its weights."""
FP16_MODULES = ("v_proj",)
"""Linear layers whose weights stay fp16 in an int8 export (their factors too, in a compressed model)."""


def fingerprint(folder: str | Path, weights: str = "int8") -> str:
    """What the exported model depends on: the folder's settings, adapters and kept ids, the base's
    name (and, for a base that is a local folder, its files' names, sizes and times: a base trained
    again in place gives a new artefact), how weights are stored (with nncf's version and the modules
    kept in fp16 for int8) and this module's export version (and OpenVINO's, whose IR it writes)."""
    import openvino

    folder = Path(folder)
    how = weights
    if weights == "int8":
        how = f"int8 nncf {version('nncf')} fp16 {','.join(FP16_MODULES)}"
    digest = hashlib.sha256(f"{EXPORT_VERSION} {how} {openvino.__version__} {version('torch')}".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "evaluation.json"):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    base = Path(str(ModelFolder.read(folder).base))
    if base.is_dir():
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(base)} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def artefact_dir(folder: str | Path, weights: str = "int8") -> Path:
    return cache_dir() / "runtime" / fingerprint(folder, weights)


def _exportable(model):
    """``input_ids`` (right-padded) → logits: the graph that is exported."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model(input_ids=input_ids, use_cache=False).logits

    return Logits().eval()


def _log_step(fraction: float, desc: str = "") -> None:
    """Progress of a first export where nobody passed a progress bar (the app's first start): the log."""
    log.info("preparing the serving model (once per model version): %s, %d %%", desc, round(100 * fraction))


def _matmuls_of(onnx_path: Path, modules: tuple[str, ...]) -> list[str]:
    """Names of the exported MatMul nodes that belong to the named modules (their factors included):
    the dynamo exporter records each node's module path, and OpenVINO keeps the node names."""
    import onnx

    names = []
    for node in onnx.load(str(onnx_path)).graph.node:
        scopes = next((ast.literal_eval(p.value) for p in node.metadata_props
                       if p.key == "pkg.torch.onnx.name_scopes"), [])
        if node.op_type in ("MatMul", "Gemm") and any(str(s).split(".")[-1] in modules for s in scopes):
            names.append(node.name)
    if modules and not names:  # the exporter stopped recording module paths: nothing would stay fp16
        raise RuntimeError(f"no exported MatMul belongs to {', '.join(modules)}: cannot keep them in fp16")
    return names


def int8_weights(model, keep_fp16: list[str]):
    """The OpenVINO model with int8 weights in every MatMul but those named (and in the embedding,
    which nncf compresses with the matrices)."""
    import nncf

    compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                       ignored_scope=nncf.IgnoredScope(names=keep_fp16))
    stored = weight_types(compressed)
    if not stored.count("u8") == len(stored) - len(keep_fp16) > 0:
        raise RuntimeError(f"int8 export: {stored.count('u8')} of {len(stored)} matrices in int8, "
                           f"expected all but the {len(keep_fp16)} kept in fp16")
    return compressed


def weight_types(model) -> list[str]:
    """For every MatMul of an OpenVINO model with a constant weight, the type that weight is stored in
    (``u8`` for int8 weights, behind their decompression)."""
    types = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        node, hops = op.input_value(1).get_node(), 0
        while node.get_type_name() in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose") and hops < 8:
            node, hops = node.input_value(0).get_node(), hops + 1
        if node.get_type_name() == "Constant":
            types.append(node.get_element_type().get_type_name())
    return types


def export(folder: str | Path, progress=None, weights: str = "int8") -> Path:
    """Build and cache the OpenVINO artefact of a model folder (once; later calls find it), with
    ``int8`` or ``fp16`` weights. PyTorch is imported only when the artefact has to be built."""
    if weights not in WEIGHTS.values():
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS.values())}")
    target = artefact_dir(folder, weights)
    if (target / "model.xml").exists():
        return target
    import openvino as ov
    import torch

    from chatbot.classifier import load_classifier

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
        torch.onnx.export(_exportable(classifier.model), (example["input_ids"],), str(tmp / "model.onnx"),
                          dynamo=True, input_names=["input_ids"], output_names=["logits"],
                          dynamic_shapes={"input_ids": {0: batch, 1: seq}}, optimize=True, external_data=False)
        step(0.7, "converting to OpenVINO")
        ov.save_model(ov.convert_model(str(tmp / "model.onnx")), str(tmp / "model.xml"))  # fp16 weights
        if weights == "int8":  # from the fp16 model, so what stays out of int8 is stored as fp16
            step(0.8, "int8 weights")
            model = int8_weights(ov.Core().read_model(str(tmp / "model.xml")),
                                 _matmuls_of(tmp / "model.onnx", FP16_MODULES))
            ov.save_model(model, str(tmp / "int8.xml"))
            for suffix in (".xml", ".bin"):
                os.replace(tmp / f"int8{suffix}", tmp / f"model{suffix}")
        (tmp / "model.onnx").unlink()
        classifier.tokenizer.save_pretrained(tmp / "tokenizer")
        (tmp / "info.json").write_text(json.dumps({
            "labels": classifier.labels, "temperature": classifier.temperature, "max_length": classifier.max_length,
            "pad_token_id": classifier.tokenizer.pad_token_id, "parameters": classifier.parameter_count(),
            "embedding_parameters": classifier.embedding_parameters(), "folder": str(Path(folder).resolve())}))
        if target.exists() and not (target / "model.xml").exists():
            shutil.rmtree(target)  # what a crash or a hand left, never a whole artefact: ours replaces it
        try:
            os.replace(tmp, target)  # atomic: a crash never leaves a half-written artefact in use
        except OSError:
            if not (target / "model.xml").exists():
                raise  # else another process finished the same artefact first: theirs is used
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    step(1.0, "exported")
    return target


def bf16_streams_sound(path: Path, config: dict) -> bool:
    """Whether OpenVINO runs the exported model at ``path`` with ``config`` (several bfloat16 streams)
    as it runs it in float32: tried once, in a child process, on CPUs with AMX, and remembered beside
    the model (True elsewhere, and where the child fails for another reason: the real compile then
    raises it).

    On a Xeon with AMX, OpenVINO 2026.4's CPU plugin, given several bfloat16 streams, dies of SIGFPE
    compiling some small models (no exception: the whole server would go) and gives logits in the
    thousands for others (our tests' tiny models, hidden sizes 32 to 128); the shipped models run right.
    The child compiles the model both ways and compares the logits of one batch."""
    if not cpu_has_amx():
        return True
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    verdict = path / f"bf16-streams-{key}.json"
    if verdict.exists():
        return bool(json.loads(verdict.read_text())["sound"])
    script = "import sys; from chatbot.runtime import _compare_bf16_streams; _compare_bf16_streams(sys.argv[1], sys.argv[2])"
    done = subprocess.run([sys.executable, "-c", script, str(path / "model.xml"), json.dumps(config)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                                         os.environ.get("PYTHONPATH")]))})
    if done.returncode > 0:  # an error, not a signal: not this bug; the real compile will say what it is
        return True
    sound = done.returncode == 0 and done.stdout.strip().endswith("sound")
    tmp = verdict.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"sound": sound, "returncode": done.returncode, "said": done.stdout[-200:],
                               "config": config}))
    tmp.replace(verdict)
    return sound


def _compare_bf16_streams(xml: str, config: str) -> None:
    """In the child of :func:`bf16_streams_sound`: print ``sound`` when a batch's logits under ``config``
    are within bfloat16's error of float32's, else the largest difference."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(xml)
    ids = (np.arange(2 * 12, dtype=np.int64).reshape(2, 12) % 13) + 3
    reference = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    expected = reference.infer({0: ids})[0].astype(np.float32)
    got = core.compile_model(model, "CPU", json.loads(config)).create_infer_request().infer({0: ids})[0]
    error = float(np.abs(got.astype(np.float32) - expected).max())
    print("sound" if error <= 0.1 * max(1.0, float(np.abs(expected).max())) else f"off by {error:g}")


class OpenVinoForward:
    """Logits from the exported model: static shapes for single messages (:data:`BUCKETS`, then
    ``max_length``), the dynamic model for batches (lengths rounded up: :data:`BATCH_LENGTH_STEP`),
    whose calls run on :data:`BATCH_STREAMS` streams at once (:meth:`many`)."""

    def __init__(self, path: Path, pad_token_id: int, parameters: int, embedding: int, max_length: int,
                 threads: int | None = None):
        import openvino as ov

        self.core = ov.Core()
        self.source = self.core.read_model(str(path / "model.xml"))
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if cpu_has_native_bf16() else "f32",
                       "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads:  # unpinned: OpenVINO pins to the first cores of the affinity mask, the same ones in every process
            self.config.update({"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False})
        self.pad, self._parameters, self._embedding = pad_token_id, parameters, embedding
        streams = max(1, min(BATCH_STREAMS, threads or len(os.sched_getaffinity(0))))
        dynamic = {**self.config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams,
                   "CPU_RUNTIME_CACHE_CAPACITY": DYNAMIC_CACHE}
        if streams > 1 and dynamic["INFERENCE_PRECISION_HINT"] == "bf16" and not bf16_streams_sound(path, dynamic):
            log.warning("OpenVINO crashes or computes wrongly with %s on %d bfloat16 streams on this CPU: its "
                        "batches run in float32", path, streams)
            dynamic["INFERENCE_PRECISION_HINT"] = "f32"
        self.dynamic = self.core.compile_model(self.source, "CPU", dynamic)
        self.streams = int(self.dynamic.get_property("NUM_STREAMS"))
        self.queue = self._new_queue()
        self.static: dict[int, object] = {}
        self.buckets = (*(b for b in BUCKETS if b < max_length), max_length)
        self.path = path

    def _static(self, length: int):
        """The infer request of the static shape ``[1, bucket]`` for a message of ``length`` tokens and
        that bucket, or ``(None, None)`` when the message is longer than every bucket."""
        bucket = next((b for b in self.buckets if b >= length), None)
        if bucket is None:
            return None, None
        if bucket not in self.static:
            shaped = self.source.clone()
            shaped.reshape({0: [1, bucket]})
            self.static[bucket] = self.core.compile_model(shaped, "CPU", self.config).create_infer_request()
        return self.static[bucket], bucket

    def _padded(self, input_ids: np.ndarray, length: int) -> np.ndarray:
        if length == input_ids.shape[1]:
            return np.ascontiguousarray(input_ids)
        return np.pad(input_ids, ((0, 0), (0, length - input_ids.shape[1])), constant_values=self.pad)

    def _new_queue(self):
        import openvino as ov

        queue = ov.AsyncInferQueue(self.dynamic, self.streams)
        queue.set_callback(_keep_logits)
        return queue

    def many(self, calls: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """The logits of several forward calls (``(input_ids, attention_mask)``, right-padded), in their
        order: batches through the dynamic model, as many at once as it has streams (each on its share
        of the cores); single messages through the static shapes, meanwhile. A call that fails raises
        a RuntimeError here, and the next batch gets a fresh queue (OpenVINO's keeps raising a failed
        request's error)."""
        out: list[np.ndarray | None] = [None] * len(calls)
        singles = []
        try:
            for k, (input_ids, _) in enumerate(calls):
                request, bucket = self._static(input_ids.shape[1]) if len(input_ids) == 1 else (None, None)
                if request is not None:
                    singles.append((k, request, self._padded(input_ids, bucket)))
                    continue
                rounded = -(-input_ids.shape[1] // BATCH_LENGTH_STEP) * BATCH_LENGTH_STEP
                length = min(rounded, max(input_ids.shape[1], self.buckets[-1]))
                self.queue.start_async({0: self._padded(input_ids, length)}, (out, k))
            for k, request, input_ids in singles:
                out[k] = request.infer({0: input_ids})[0].astype(np.float32)
            self.queue.wait_all()
        except Exception as err:
            self._drop_queue()
            raise RuntimeError(f"the exported model failed on a batch: {err}") from err
        if any(logits is None for logits in out):
            raise RuntimeError("the exported model returned no logits for a batch")
        return out

    def _drop_queue(self) -> None:
        """After a failed call: let the other requests finish, then start from a fresh queue."""
        for request in self.queue:
            try:
                request.wait()
            except Exception:  # noqa: BLE001 - the failure is being raised already
                pass
        self.queue = self._new_queue()

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.many([(input_ids, attention_mask)])[0]

    def parameter_count(self) -> int:
        return self._parameters

    def embedding_parameters(self) -> int:
        return self._embedding

    def threads(self) -> int:
        return int(self.dynamic.get_property("INFERENCE_NUM_THREADS"))

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("model.*"))


def _keep_logits(request, slot: tuple[list, int]) -> None:
    """A finished batch call: its logits into its place (a copy: the request reuses its output). What
    it raises OpenVINO records and raises at :meth:`OpenVinoForward.many`'s wait, which then starts a
    fresh queue."""
    out, k = slot
    out[k] = request.get_output_tensor(0).data.astype(np.float32)


class ServedTokenizer:
    """The exported model's tokenizer, read by the ``tokenizers`` library from the ``tokenizer.json``
    that transformers saved: the same encoding (transformers' fast tokenizers are this library) without
    importing transformers and PyTorch. Called as :class:`~chatbot.predictor.IntentClassifier` calls a
    transformers tokenizer: a list of texts, right padding, truncation to ``max_length``, NumPy arrays."""

    def __init__(self, path: Path, pad_token_id: int):
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.pad_token_id = pad_token_id
        self.backend.enable_padding(direction="right", pad_id=pad_token_id,
                                    pad_token=self.backend.id_to_token(pad_token_id))

    def __call__(self, texts: list[str], padding: bool = True, truncation: bool = True,
                 max_length: int | None = None, return_tensors: str = "np") -> dict[str, np.ndarray]:
        if isinstance(texts, str) or not (padding and return_tensors == "np"):
            raise ValueError("the served tokenizer encodes lists of texts into padded NumPy arrays")
        if truncation and max_length:
            self.backend.enable_truncation(max_length)
        else:
            self.backend.no_truncation()
        encoded = self.backend.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64)}


def load_exported(path: Path, threads: int | None = None) -> IntentClassifier:
    """A classifier served from a cached artefact (neither PyTorch nor its weights are loaded)."""
    info = json.loads((path / "info.json").read_text())
    tokenizer = ServedTokenizer(path / "tokenizer", info["pad_token_id"])
    forward = OpenVinoForward(path, info["pad_token_id"], info["parameters"], info["embedding_parameters"],
                              info["max_length"], threads)
    return IntentClassifier(forward, tokenizer, info["labels"], info["temperature"], info["max_length"])


def pick_runtime(runtime: str | None = None) -> str:
    """One of :data:`RUNTIMES` but ``auto``: as asked (``$CHATBOT_RUNTIME``), or for ``auto`` PyTorch on
    a GPU, else ``openvino`` where it is installed."""
    runtime = runtime or os.environ.get(RUNTIME_ENV) or "auto"
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    if _cuda_available():
        return "torch"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "torch"
    return "openvino"


def _cuda_available() -> bool:
    """A GPU PyTorch can use; PyTorch is imported for the question only where an NVIDIA device exists."""
    if "torch" not in sys.modules and not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):
        return False
    import torch

    return torch.cuda.is_available()


def load_serving(folder: str | Path, runtime: str | None = None, progress=None,
                 device: str | None = None, threads: int | None = None) -> IntentClassifier:
    """The classifier that serves customers: the exported one (built and cached on first use) or the
    PyTorch one, as :func:`pick_runtime` says; asking for ``device="cuda"`` means PyTorch on the GPU.
    ``threads`` caps the exported model's threads (and with them its streams) and leaves them unpinned,
    so that processes sharing a machine spread over its cores (a mixed batch's single messages run
    meanwhile on the static shapes: briefly up to twice ``threads``); unset, it uses up to every core the
    process may run on, pinned. PyTorch's threads are the caller's (``torch.set_num_threads``)."""
    runtime = "torch" if device == "cuda" else pick_runtime(runtime)
    if runtime == "torch":
        from chatbot.classifier import load_classifier

        return load_classifier(folder, device=device)
    ModelFolder.read(folder)  # a clear error for a folder that is not one, before any export work
    path = export(folder, progress, WEIGHTS[runtime])
    try:
        return load_exported(path, threads)
    except Exception as err:  # noqa: BLE001 - a damaged cache entry (a file lost or cut short): built again
        log.warning("the cached serving model %s does not load (%s); building it again", path, err)
        shutil.rmtree(path, ignore_errors=True)
        return load_exported(export(folder, progress, WEIGHTS[runtime]), threads)
