"""The classifier as a service: a Ray Serve deployment every app process calls over HTTP, and the
client that stands in for an in-process classifier.

One machine keeps the classifier in the app's process (nothing here is used). Past one machine, the
classifier runs under Ray Serve (``python -m chatbot serve``): each replica loads the live model
folder once (:func:`chatbot.runtime.load_serving`: exported on CPUs, PyTorch on GPUs), and ``@serve.batch`` puts
the messages of all app processes that arrive within ``batch_wait_ms`` into one forward pass of up
to ``max_batch_size`` messages. Replicas go on as many CPU or GPU nodes as the Ray cluster has.

An app process uses the service when ``CHATBOT_CLASSIFIER_URL`` is set (:func:`classifier_opener`);
:class:`ServedClassifier` has what the assistant needs of a classifier (``predict(texts, k)`` and
``labels``), so the assistant does not know where it runs.

**Promotion.** The live version is the registry's (``<home>/versions/live.json``, which the admin's
promotion writes): every replica reads it every ``reload_check_s`` seconds and, when it changed, loads
the new folder *beside* the old one while the old one keeps answering, then swaps both in one step;
no request is dropped or answered by half a model. Each answer says which version made it, and the
turn is stored with that version. A version that fails to load leaves the replica on the one it had
(logged, and tried again with a growing wait), and so does a damaged pointer, so a broken folder never
takes the service down; a replica that starts on a version that does not load starts on the previous
one, or the default.

The replica's logic (:class:`Replica`) is plain Python; Ray is imported only to deploy it
(:func:`build_app`), so app processes never need Ray.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from chatbot.predictor import Prediction
from chatbot.runtime import RUNTIME_ENV, load_serving
from chatbot.settings import CACHE_ENV, MAX_MESSAGE_CHARS, ROOT, classifier_url, default_model_dir, home
from chatbot.versions import DEFAULT_VERSION, Registry, open_first

log = logging.getLogger(__name__)
FIRST_RETRY_S, LAST_RETRY_S = 30.0, 600.0
"""A live version a replica could not load is tried again after this long, then twice as long, up to the last."""

MAX_TEXTS = 256
"""Most messages one request may carry (an app process sends at most one Gradio batch, 16)."""
ROUTE = "/classifier"
APP_NAME = "chatbot-classifier"


@dataclass(frozen=True)
class ServedPrediction(Prediction):
    """A prediction with the model version that made it."""

    version: str | None = None


# ==================================================================== the service (replica side)
@dataclass
class ServeArgs:
    replicas: int = 2
    """Replicas of the classifier; each loads the model once (one per GPU, or a few per CPU node)."""
    cpus_per_replica: float = 1.0
    """CPU cores Ray reserves for each replica (also its torch or OpenVINO threads, at least 1)."""
    gpus_per_replica: float = 0.0
    """GPUs Ray reserves for each replica (1 on a GPU node: the model runs there, in bfloat16)."""
    max_batch_size: int = 32
    """Most messages classified in one forward pass (dynamic batching across every app process)."""
    batch_wait_ms: float = 10.0
    """How long a replica waits, after the first message, for more to fill a batch."""
    max_ongoing_requests: int = 64
    """Requests a replica holds at once (Ray routes the rest to other replicas or queues them)."""
    reload_check_s: float = 2.0
    """How often a replica reads the live version from the registry (and loads a promoted one)."""
    host: str = "127.0.0.1"
    """Address of Serve's HTTP proxy (0.0.0.0 to reach it from app servers on other machines)."""
    port: int = 8000
    """Port of Serve's HTTP proxy."""
    address: str | None = None
    """A running Ray cluster to deploy to (``auto`` on one of its nodes); unset: start a local Ray
    instance that lives as long as this command."""
    num_cpus: int | None = None
    """CPUs of the local Ray instance (default: all)."""
    home: str | None = None
    """Where the model versions and the live pointer are (default: $CHATBOT_HOME); on several nodes,
    a shared folder."""
    default_model: str | None = None
    """The model folder served while no version is live (default: $CHATBOT_DEFAULT_MODEL or the shipped one)."""
    device: str | None = None
    """cuda or cpu (default: cuda when the replica has a GPU)."""

    def __post_init__(self):
        if self.replicas < 1 or self.max_batch_size < 1 or self.max_ongoing_requests < 1:
            raise ValueError("replicas, max batch size and max ongoing requests must be ≥ 1")
        if self.cpus_per_replica < 0 or self.gpus_per_replica < 0 or self.cpus_per_replica + self.gpus_per_replica == 0:
            raise ValueError("each replica needs some CPU or GPU")
        if not 0 <= self.batch_wait_ms <= 1000 or not 0.1 <= self.reload_check_s <= 3600:
            raise ValueError("batch wait must be in [0, 1000] ms and the reload check in [0.1, 3600] s")
        if not 0 < self.port < 65536:
            raise ValueError("port must be in 1..65535")
        if self.device not in (None, "cpu", "cuda"):
            raise ValueError("device is cpu or cuda")


class Replica:
    """One replica's model and its version: classify a batch, follow the live version.

    ``current`` holds ``(version, classifier)`` and is replaced in one assignment, so a batch always
    sees a matching pair."""

    def __init__(self, home_dir: str | Path, default_model: str | Path, device: str | None = None,
                 loader=load_serving, name: str = ""):
        self.registry = Registry(home_dir, default_model)
        self.device, self.loader, self.name = device, loader, name
        self.current = open_first(self.registry, self._load, f"replica {name}")
        self._reloading = threading.Lock()
        self._failed: tuple[tuple, float, float] | None = None
        """(the pointer that failed to load, when to try it again, the wait after that)."""
        try:
            pointer = self.registry.pointed()
        except ValueError:
            pointer = None
        if pointer is not None and (pointer.get("live") or DEFAULT_VERSION) != self.version:  # it did not load
            self._back_off(pointer, FIRST_RETRY_S)
        self.batches = {"batches": 0, "messages": 0, "largest": 0}
        """How full the forward passes were (the batching across app processes), since the start."""

    def _load(self, version: str):
        started = time.perf_counter()
        classifier = self.loader(self.registry.folder(version), device=self.device)
        log.info("replica %s loaded version %s in %.1f s", self.name, version, time.perf_counter() - started)
        return classifier

    @property
    def version(self) -> str:
        return self.current[0]

    def classify(self, texts: list[str], k: int = 3) -> tuple[str, list[Prediction]]:
        """(version, predictions) of one forward pass over ``texts``."""
        version, classifier = self.current
        predictions = classifier.predict(list(texts), k=k)
        self.batches["batches"] += 1
        self.batches["messages"] += len(texts)
        self.batches["largest"] = max(self.batches["largest"], len(texts))
        return version, predictions

    def info(self) -> dict:
        version, classifier = self.current
        return {"version": version, "labels": list(classifier.labels), "replica": self.name,
                "device": str(getattr(classifier, "device", "cpu")), "threads": classifier.threads(),
                "batches": dict(self.batches)}

    def follow(self) -> bool:
        """Load the live version if it is not the one served; True when it was swapped in. Requests go
        on being answered by the old model while the new one loads (call this off the request path).
        The replica keeps what it serves while the pointer is damaged (not switching to the default),
        and when the live version does not load: it tries that promotion again after 30 s, then after
        twice as long each time (at most 10 min), not at every check."""
        try:
            pointer = self.registry.pointed()
        except ValueError as err:
            log.warning("replica %s keeps serving %s: %s", self.name, self.version, err)
            return False
        live = pointer.get("live") or DEFAULT_VERSION
        failed = self._failed if self._failed and self._failed[0] == _promotion(pointer) else None
        if live == self.version or (failed and time.monotonic() < failed[1]) \
                or not self._reloading.acquire(blocking=False):
            return False
        try:
            classifier = self._load(live)
        except Exception:  # noqa: BLE001 - a broken version must not take the replica down
            wait = self._back_off(pointer, failed[2] if failed else FIRST_RETRY_S)
            log.exception("replica %s could not load version %s; it keeps serving %s and tries again in %.0f s",
                          self.name, live, self.version, wait)
            return False
        finally:
            self._reloading.release()
        self.current, self._failed = (live, classifier), None
        return True

    def _back_off(self, pointer: dict, wait: float) -> float:
        """Try the promotion ``pointer`` names again only after ``wait`` seconds, the time after twice that."""
        self._failed = (_promotion(pointer), time.monotonic() + wait, min(2 * wait, LAST_RETRY_S))
        return wait


def _promotion(pointer: dict) -> tuple:
    """What tells one promotion from another: the version and when it was promoted."""
    return pointer.get("live"), pointer.get("promoted_at")


def parse_request(body) -> tuple[list[str], int]:
    """``{"texts": [str, …], "k": int}`` checked; ValueError with what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("texts"), list):
        raise ValueError('expected {"texts": [...], "k": 3}')
    texts, k = body["texts"], body.get("k", 3)
    if len(texts) > MAX_TEXTS or not all(isinstance(t, str) and len(t) <= 4 * MAX_MESSAGE_CHARS for t in texts):
        raise ValueError(f"at most {MAX_TEXTS} texts of at most {4 * MAX_MESSAGE_CHARS} characters each")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
        raise ValueError("k is an integer in 1..100")
    return texts, k


def encode(version: str, prediction: Prediction) -> dict:
    return {"intent": prediction.intent, "confidence": prediction.confidence, "top": prediction.top,
            "version": version}


def build_app(args: ServeArgs):
    """The Ray Serve application: the :class:`Replica` behind Serve's HTTP proxy, batched with
    ``@serve.batch``. Requires ``ray[serve]`` (requirements-scale.txt)."""
    from ray import serve
    from starlette.responses import JSONResponse

    home_dir = str(Path(args.home or home()).resolve())
    default_model = str(Path(args.default_model or default_model_dir()).resolve())
    threads = max(1, int(args.cpus_per_replica))
    # replicas import this package from the checkout (every node has one at the same path)
    env = {"PYTHONPATH": str(ROOT), **{k: os.environ[k] for k in (RUNTIME_ENV, CACHE_ENV) if k in os.environ}}
    options = {"num_cpus": args.cpus_per_replica, "num_gpus": args.gpus_per_replica,
               "runtime_env": {"env_vars": env}}  # the runtime asked for reaches every replica

    @serve.deployment(name="classifier", num_replicas=args.replicas, ray_actor_options=options,
                      max_ongoing_requests=args.max_ongoing_requests)
    class Classifier:
        async def __init__(self):
            import torch

            torch.set_num_threads(threads)
            name = serve.get_replica_context().replica_id.unique_id
            loader = functools.partial(load_serving, threads=threads)  # OpenVINO: the replica's cores only
            self.replica = Replica(home_dir, default_model, args.device, loader=loader, name=name)
            self._watch = asyncio.get_running_loop().create_task(self._follow())

        async def _follow(self):
            while True:
                await asyncio.sleep(args.reload_check_s)
                try:
                    await asyncio.to_thread(self.replica.follow)
                except Exception:  # noqa: BLE001 - keep watching
                    log.exception("reading the live version failed")

        @serve.batch(max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_ms / 1000)
        async def classify_one(self, items: list[tuple[str, int]]) -> list[dict]:
            k = max(item[1] for item in items)
            version, predictions = await asyncio.to_thread(self.replica.classify, [t for t, _ in items], k)
            return [{**encode(version, p), "top": p.top[:want], "batch": len(items)}
                    for p, (_, want) in zip(predictions, items)]

        async def __call__(self, request):
            if request.method == "GET":
                return {**self.replica.info(), "pid": os.getpid()}
            try:
                texts, k = parse_request(await request.json())
            except ValueError as err:
                return JSONResponse({"error": str(err)}, status_code=400)
            results = await asyncio.gather(*(self.classify_one((text, k)) for text in texts))
            return {"replica": self.replica.name, "predictions": results}

    return Classifier.bind()


def deploy(args: ServeArgs) -> str:
    """Start Serve's HTTP proxy and deploy the classifier on the Ray instance this process is connected
    to (``ray.init``); returns the URL app processes use. Waits until every replica is ready."""
    from ray import serve

    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(args), name=APP_NAME, route_prefix=ROUTE,
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    return f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}{ROUTE}"


def run_serve(args: ServeArgs) -> None:
    """``python -m chatbot serve``: deploy the classifier; without ``--address``, on a local Ray instance
    that this command starts and stops (Ctrl-C or SIGTERM)."""
    import signal

    import ray
    from ray import serve

    local = args.address is None
    if local:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, configure_logging=False)
    else:
        ray.init(address=args.address)
    url = deploy(args)
    print(f"classifier served at {url} ({args.replicas} replica(s)); set CHATBOT_CLASSIFIER_URL={url}", flush=True)
    if not local:
        return  # the cluster keeps serving; `serve shutdown` stops it
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


# ==================================================================== the client (app side)
class ServedClassifier:
    """``predict(texts, k)`` and ``labels`` answered by the deployment at ``url``: what the assistant
    needs of a classifier. Thread-safe (one connection pool per process)."""

    def __init__(self, url: str, timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=64), transport=transport)
        self._info: dict | None = None

    def info(self, timeout: float | None = None) -> dict:
        """What a replica serves: ``{"version", "labels", "replica", "device", "threads", "batches", "pid"}``
        (``timeout``: seconds, instead of the client's)."""
        response = self._http.get(self.url, **({"timeout": timeout} if timeout is not None else {}))
        response.raise_for_status()
        self._info = response.json()
        return self._info

    @property
    def labels(self) -> list[str]:
        return (self._info or self.info())["labels"]

    @property
    def version(self) -> str | None:
        """The version of the last answer seen (replicas may differ for a moment after a promotion)."""
        return self._info["version"] if self._info else None

    def predict(self, texts: list[str], k: int = 3) -> list[ServedPrediction]:
        if not texts:
            return []
        response = self._http.post(self.url, json={"texts": list(texts), "k": k})
        if response.status_code == 400:
            raise ValueError(response.json().get("error", "bad request"))
        response.raise_for_status()
        predictions = response.json()["predictions"]
        if len(predictions) != len(texts):
            raise RuntimeError("the classifier service answered a different number of messages")
        version = predictions[0]["version"]
        if self._info is None or self._info.get("version") != version:
            self.info()  # a promoted version may know other intents
        return [ServedPrediction(p["intent"], float(p["confidence"]), [(i, float(c)) for i, c in p["top"]],
                                 p["version"]) for p in predictions]

    def close(self) -> None:
        self._http.close()


def classifier_opener(url: str | None = None):
    """How this process gets the classifier of a model folder: ``open(folder)``.

    With a classifier URL (``$CHATBOT_CLASSIFIER_URL``), one client of the Ray Serve deployment stands
    for every folder (the replicas serve the registry's live version); without, the folder is loaded
    in this process."""
    url = url if url is not None else classifier_url()
    if not url:
        return load_serving
    client = ServedClassifier(url)
    return lambda folder, progress=None: client
