"""What the app serves: the live assistant, the conversation store, model versions and admin jobs.

One :class:`Service` per server process. Customers, agents and admins all go through it; the UI
(``app.py``) only wires components to these methods. Promotion swaps the live classifier under a
lock after the new one is fully loaded, so a customer turn sees either the old or the new model.
A build runs in a background thread; if it fails or is cancelled, the live model is untouched.
"""

from __future__ import annotations

import hmac
import os
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.assistant import Assistant
from chatbot.build import BuildPolicy, build_version, pick_source
from chatbot.classifier import load_classifier
from chatbot.data import load_dataset
from chatbot.folder import ModelFolder
from chatbot.language import LanguageDetector
from chatbot.replies import Catalogue
from chatbot.settings import ADMIN_PASSWORD_ENV, database_url, default_model_dir, home, training_files
from chatbot.store import Store
from chatbot.versions import DEFAULT_VERSION, Registry


class AdminDenied(PermissionError):
    """Wrong or missing admin password, or admin disabled."""


def check_admin(password: str | None) -> None:
    """Raise :class:`AdminDenied` unless ``password`` matches ``$CHATBOT_ADMIN_PASSWORD``."""
    expected = os.environ.get(ADMIN_PASSWORD_ENV)
    if not expected:
        raise AdminDenied(f"Admin is disabled: set the {ADMIN_PASSWORD_ENV} environment variable and restart.")
    if not hmac.compare_digest((password or "").encode(), expected.encode()):
        raise AdminDenied("Wrong admin password.")


class Cancelled(Exception):
    pass


@dataclass
class Job:
    name: str
    params: dict
    status: str = "running"  # running, done, failed, cancelled
    progress: float = 0.0
    stage: str = "starting"
    error: str | None = None
    result: dict | None = None
    started: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)


class Service:
    def __init__(self, home_dir: str | Path | None = None, database: str | None = None,
                 default_model: str | Path | None = None, data: list[str] | None = None,
                 policy: BuildPolicy | None = None):
        self.home = Path(home_dir or home())
        self.home.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(self.home, default_model or default_model_dir())
        self.store = Store(database or database_url(self.home))
        self.data = data or training_files()
        self.policy = policy or BuildPolicy()
        self._swap = threading.Lock()
        self._jobs: dict[str, Job] = {}
        live = self.registry.live
        self.assistant = Assistant(load_classifier(self.registry.folder(live)), self.store,
                                   Catalogue.load(), LanguageDetector().warm_up(), version=live)

    # -- customers -----------------------------------------------------------------------------
    def respond_batch(self, requests: list[dict]):
        with self._swap:
            assistant = self.assistant
        return assistant.respond_batch(requests)

    def chat(self, texts: list[str], conversation_ids: list[str], accept_languages: list[str]):
        """A batch of customer messages, as Gradio's queue hands them over (parallel lists)."""
        return self.respond_batch([{"conversation_id": c or None, "text": t, "accept_language": a}
                                   for t, c, a in zip(texts, conversation_ids, accept_languages)])

    # -- versions ------------------------------------------------------------------------------
    def promote(self, name: str) -> None:
        classifier = load_classifier(self.registry.folder(name))  # fully loaded before the swap
        with self._swap:
            self.registry.set_live(name)
            self.assistant = Assistant(classifier, self.store, self.assistant.catalogue, self.assistant.detector,
                                       self.assistant.policy, version=name)

    def rollback(self) -> str:
        previous = self.registry.previous
        if not previous or previous == self.registry.live:
            raise ValueError("there is no previous version to roll back to")
        self.promote(previous)
        return previous

    def delete(self, name: str) -> None:
        self.registry.delete(name)

    # -- admin builds --------------------------------------------------------------------------
    def start_build(self, ratio: float, method: str, targets: str, epochs: int | None = None,
                    max_per_intent: int | None = None) -> Job:
        """Compress → heal → evaluate in a background thread; the version appears only when complete.

        It compresses the live classifier when that one is uncompressed, else the shipped one, so
        healing starts from a tuned model; the raw base when neither fits the data (see chatbot.build)."""
        if any(j.status == "running" for j in self._jobs.values()):
            raise ValueError("a build is already running; wait for it or cancel it")
        if not 0 < ratio <= 1:
            raise ValueError("rank ratio must be in (0, 1]")
        candidates = [self.registry.folder(self.registry.live), self.registry.folder(DEFAULT_VERSION)]
        base = ModelFolder.read(candidates[0]).base  # the live model's base
        name = self.registry.new_name(ratio, method, targets)
        job = Job(name, {"ratio": ratio, "method": method, "targets": targets, "epochs": epochs,
                         "max_per_intent": max_per_intent})
        self._jobs[name] = job
        folder = self.registry.folder(name)
        staging = folder.with_name(folder.name + ".building")

        def progress(fraction, stage=""):
            if job.cancel.is_set():
                raise Cancelled()
            job.progress, job.stage = float(fraction), stage or job.stage

        def work():
            try:
                source = pick_source(candidates, load_dataset(self.data).intents)
                heal = self.policy.heal(source is not None, epochs, max_per_intent)
                job.result = build_version(self.data, staging, base=base, method=method, compress_targets=targets,
                                           ratio=ratio, heal=heal, progress=progress, source=source)
                staging.rename(folder)  # only a complete version ever appears in the registry
                job.status, job.progress, job.stage = "done", 1.0, "done"
            except Cancelled:
                job.status, job.stage = "cancelled", "cancelled"
            except Exception as err:  # noqa: BLE001 - shown to the admin; the live model is untouched
                job.status, job.error = "failed", f"{type(err).__name__}: {err}"
                traceback.print_exc()
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)

        threading.Thread(target=work, name=f"build-{name}", daemon=True).start()
        return job

    def cancel_jobs(self) -> int:
        running = [j for j in self._jobs.values() if j.status == "running"]
        for j in running:
            j.cancel.set()
        return len(running)
