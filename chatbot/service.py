"""What the app serves: the live assistant, the conversation store, staff accounts, versions and builds.

One :class:`Service` per server process. Customers, agents and admins all go through its public
methods; the UI (``app.py``) only wires components to them. Customers are anonymous: a conversation
id the server handed out is their capability, and the customer methods return nothing of any other
conversation. Every staff and admin method takes the :class:`~chatbot.accounts.Caller` (made from the
web session's user name by :meth:`Service.caller`) and refuses with an
:class:`~chatbot.accounts.AccessDenied` the wrong role, a disabled account or no caller; each action
is written to the audit trail with who did it.

Promotion swaps the live classifier under a lock after the new one is fully loaded, so a customer
turn sees either the old or the new model. A build runs in a background thread as a job that every
admin sees (state, stage, progress, who started it), whoever opened the page and when; one named job
can be cancelled; if it fails or is cancelled, the live model is untouched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.accounts import Accounts, Caller, hf_caller, require
from chatbot.assistant import Assistant
from chatbot.audit import Audit
from chatbot.data import load_dataset
from chatbot.folder import ModelFolder
from chatbot.keys import Vault, browser_secret
from chatbot.language import LanguageDetector
from chatbot.replies import UI_WORDS, Catalogue
from chatbot.serving import classifier_opener
from chatbot.settings import (ADMIN_PASSWORD_ENV, DENSE_MODEL_DIR, database_url, default_model_dir, home,
                              staff_sign_in, training_files)
from chatbot.store import Store, now, valid_conversation_id
from chatbot.versions import DEFAULT_VERSION, Registry, open_first

if TYPE_CHECKING:
    from chatbot.build import BuildPolicy

log = logging.getLogger(__name__)


INBOX_WAITING = 200
"""Waiting conversations the inbox lists (the oldest hand-offs; the badge counts all): every agent's
page redraws the inbox every few seconds, and 5,000 waiting conversations made that 2.4 MB of HTML."""


class Cancelled(Exception):
    pass


CLOSED = "this conversation is closed; the customer's next message starts a new one"


def _refuse_unless_open(conversation, caller: Caller) -> None:
    """Under the conversation's lock, before an agent acts on it: refused (ValueError) when it was
    closed, or when another agent holds it and the caller is not an admin."""
    if conversation.status == "closed":
        raise ValueError(CLOSED)
    if conversation.status == "agent" and conversation.agent not in (None, caller.name) and caller.role != "admin":
        raise ValueError(f"{conversation.agent} is handling this conversation")


@dataclass
class Job:
    """One build or soup of a version, as admins see it."""

    name: str
    params: dict
    started_by: str = ""
    status: str = "running"  # running, done, failed, cancelled
    progress: float = 0.0
    stage: str = "starting"
    error: str | None = None
    result: dict | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict:
        result = self.result or {}
        return {"name": self.name, "params": dict(self.params), "started_by": self.started_by, "status": self.status,
                "progress": self.progress, "stage": self.stage, "error": self.error, "started": self.started,
                "finished": self.finished, "cancelling": self.cancel.is_set() and self.status == "running",
                "accuracy": result.get("accuracy"), "parameters": result.get("parameters")}


class Service:
    def __init__(self, home_dir: str | Path | None = None, database: str | None = None,
                 default_model: str | Path | None = None, data: list[str] | None = None,
                 policy: BuildPolicy | None = None, sign_in: str | None = None):
        self.home = Path(home_dir or home())
        self.home.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(self.home, default_model or default_model_dir())
        self.store = Store(database or database_url(self.home), vault=Vault(home_dir=self.home))
        self.audit = Audit(self.store)
        self.accounts = Accounts(self.store, self.audit)
        self.sign_in_with = staff_sign_in(sign_in)
        """How staff sign in (``password`` or ``huggingface``, :data:`chatbot.settings.STAFF_SIGN_INS`):
        which names :meth:`caller` accepts."""
        try:
            if self.accounts.bootstrap_admin(os.environ.get(ADMIN_PASSWORD_ENV)):
                log.warning("Created the admin account 'admin' from %s (the database had no admin). Sign in at "
                            "/staff/, then manage accounts with `python -m chatbot users`.", ADMIN_PASSWORD_ENV)
        except ValueError as err:  # a too short password: the app serves customers all the same
            log.error("No admin created from %s: %s", ADMIN_PASSWORD_ENV, err)
        self.data = data or training_files()
        self.policy = policy
        """How admin builds heal (:class:`chatbot.build.BuildPolicy`; its defaults when None)."""
        self._swap = threading.Lock()
        self._promoting = threading.Lock()  # a pointer write and its swap, one promotion at a time
        self._jobs: dict[str, Job] = {}
        self._job_lock = threading.Lock()
        self.open_classifier = classifier_opener()  # in this process, or served ($CHATBOT_CLASSIFIER_URL)
        live, classifier = open_first(self.registry, lambda v: self.open_classifier(self.registry.folder(v)),
                                      "the app")
        self.assistant = Assistant(classifier, self.store, Catalogue.load(), LanguageDetector().warm_up(),
                                   version=live)

    def _live(self) -> Assistant:
        with self._swap:
            return self.assistant

    # -- customers (anonymous: a conversation id is their capability) -------------------------
    def respond_batch(self, requests: list[dict]):
        return self._live().respond_batch(requests)

    def chat(self, texts, conversation_ids, accept_languages, client_message_ids=None):
        """A batch of customer messages, as Gradio's queue hands them over (parallel lists); each one
        succeeds or fails on its own, whatever its fields hold."""
        def column(values):
            return list(values) if isinstance(values, (list, tuple)) else [values]

        texts = column(texts)
        count = len(texts)
        ids, accepts = column(conversation_ids), column(accept_languages)
        client_ids = column(client_message_ids) if client_message_ids is not None else []
        at = lambda values, i: values[i] if i < len(values) else None  # noqa: E731
        return self.respond_batch([{"conversation_id": at(ids, i), "text": texts[i], "accept_language": at(accepts, i),
                                    "client_message_id": at(client_ids, i)} for i in range(count)])

    def choose(self, conversation_id, intent, accept_language=None):
        """The customer clicked a clarification choice: one the conversation offers now, else ValueError."""
        view = self.customer_view(conversation_id, accept_language)
        if not isinstance(intent, str) or intent not in [c.get("intent") for c in view["choices"]]:
            raise ValueError("that choice is not offered")
        return self.respond_batch([{"conversation_id": conversation_id, "text": "", "choice": intent,
                                    "accept_language": accept_language}])[0]

    def history(self, conversation_id) -> list[dict]:
        """The messages of the caller's own conversation (the id is the proof); [] for any other value."""
        return self.store.messages(conversation_id) if valid_conversation_id(conversation_id) else []

    def customer_view(self, conversation_id, accept_language: str | None = None) -> dict:
        """What the customer's widget shows of their own conversation: ``{"lang", "status", "messages",
        "choices"}`` (``status`` None and no messages for any id that names no conversation)."""
        known = self.store.conversation(conversation_id) if valid_conversation_id(conversation_id) else None
        messages = self.history(conversation_id) if known else []
        return {"lang": self.language(conversation_id, accept_language), "status": known["status"] if known else None,
                "messages": messages, "choices": self._offered(known, messages)}

    @staticmethod
    def _offered(conversation: dict | None, messages: list[dict]) -> list[dict]:
        """The choices the last bot message offers, while the customer has not answered and the bot
        still handles the conversation."""
        if not conversation or conversation["status"] != "bot" or not messages or messages[-1]["role"] != "bot":
            return []
        return list(messages[-1].get("choices") or [])

    def language(self, conversation_id, accept_language: str | None) -> str:
        """The conversation's language, else the browser's (for the greeting)."""
        known = self.store.conversation(conversation_id) if valid_conversation_id(conversation_id) else None
        if known and known["lang"]:
            return known["lang"]
        return self._live().detector.detect("", None, accept_language if isinstance(accept_language, str) else "").lang

    def greeting(self, lang: str) -> str:
        return self._live().greeting(lang)

    def words(self, lang: str) -> dict[str, str]:
        """The customer widget's words (``chatbot.replies.UI_WORDS``) in ``lang``."""
        catalogue = self._live().catalogue
        return {word: catalogue.ui(word, lang) for word in UI_WORDS}

    def analyse(self, text) -> dict:
        """Language and top intents of a message, stored nowhere (the public /analyse endpoint)."""
        return self._live().analyse(text)

    def browser_secret(self) -> str:
        """What the customer's browser state (their conversation id) is scrambled with. Gradio sends it to
        the page, so it hides nothing from the customer: the id's own randomness protects a conversation."""
        return browser_secret(self.home)

    # -- staff ---------------------------------------------------------------------------------
    def sign_in(self, name: str, password: str, client: str | None = None) -> bool:
        return self.accounts.sign_in(name, password, client)

    def caller(self, name: str | None, client: str | None = None) -> Caller | None:
        """The staff member a web session names, as the database knows them now, or as the Hugging Face
        allow-lists do under Hugging Face sign-in (None: nobody)."""
        caller = hf_caller(name) if self.sign_in_with == "huggingface" else self.accounts.caller(name)
        return replace(caller, client=client) if caller and client else caller

    def _record(self, caller: Caller, action: str, target=None, detail=None, session=None) -> None:
        self.audit.record(caller.name, action, target, detail, caller.client, session=session)

    def staff_member(self, caller: Caller | None, role: str = "agent") -> Caller:
        """``caller`` if they may act as ``role`` now; else :class:`~chatbot.accounts.AccessDenied`."""
        return require(caller, role)

    def staff_analyse(self, caller: Caller | None, text) -> dict:
        """:meth:`analyse` from the agent console."""
        require(caller, "agent")
        return self.analyse(text)

    def inbox(self, caller: Caller | None, recent: int = 15) -> dict:
        """The agents' inbox: ``{"waiting": [oldest hand-off first, at most INBOX_WAITING], "waiting_total":
        how many wait, "agent": [handled by a person, those with unread customer messages first], "recent":
        [the other latest conversations]}``. Bounded, as every agent's page redraws it every few seconds."""
        require(caller, "agent")
        waiting = self.store.queue(INBOX_WAITING)
        handled = self.store.with_status("agent", 100)  # most recently active first
        handled = [c for c in handled if c["unread"]] + [c for c in handled if not c["unread"]]
        shown = {c["id"] for c in waiting + handled}
        others = [c for c in self.store.recent(max(1, min(int(recent), 200)) + len(shown)) if c["id"] not in shown]
        total = len(waiting) if len(waiting) < INBOX_WAITING else self.store.count_waiting()
        return {"waiting": waiting, "waiting_total": total, "agent": handled,
                "recent": others[:max(1, min(int(recent), 200))]}

    def conversation(self, caller: Caller | None, conversation_id, seen: bool = True) -> dict | None:
        """``{"info", "messages", "suggested"}`` of one conversation, or None when there is none; with
        ``seen``, staff have now seen all of it (its unread count drops), unless another agent holds
        it: a colleague who merely has it open must not hide its new messages from its agent."""
        require(caller, "agent")
        info = self.store.conversation(conversation_id)
        if info is None:
            return None
        messages = self.store.messages(conversation_id)
        theirs = info["status"] == "agent" and info.get("agent") not in (None, caller.name)
        if seen and not theirs and messages and (info["unread"] or 0):
            self.store.mark_seen(conversation_id, messages[-1]["id"])
            info = {**info, "unread": 0}
        return {"info": info, "messages": messages,
                "suggested": self._live().suggested_reply(conversation_id, agent=caller.name)}

    def take_over(self, caller: Caller | None, conversation_id) -> None:
        """The caller handles the conversation from now on (it leaves the waiting queue). Refused when
        it is closed or another agent holds it (an admin may take it from them); taking over one's
        own conversation again changes nothing."""
        require(caller, "agent")
        lang = self._open(conversation_id)["lang"] or "en"

        def check(conversation):
            _refuse_unless_open(conversation, caller)
            return not (conversation.status == "agent" and conversation.agent == caller.name)

        self.store.set_status(conversation_id, "agent", self._live().catalogue.line("agent_joined", lang),
                              author=caller.name, check=check,
                              audit=lambda s: self._record(caller, "take_over", conversation_id, session=s))

    def send(self, caller: Caller | None, conversation_id, text: str) -> None:
        """A reply from the caller, signed with their name (it takes the conversation over). Refused
        when it is closed or another agent holds it (but for admins)."""
        require(caller, "agent")
        self._open(conversation_id)
        self.store.agent_message(conversation_id, text if isinstance(text, str) else "", author=caller.name,
                                 check=lambda conversation: _refuse_unless_open(conversation, caller),
                                 audit=lambda s: self._record(caller, "send", conversation_id, session=s))

    def close(self, caller: Caller | None, conversation_id) -> None:
        """Close the conversation: the customer's next message starts a new one."""
        require(caller, "agent")
        lang = self._open(conversation_id)["lang"] or "en"
        self.store.set_status(conversation_id, "closed", self._live().catalogue.line("closed", lang),
                              author=caller.name,
                              check=lambda conversation: _refuse_unless_open(conversation, caller),
                              audit=lambda s: self._record(caller, "close", conversation_id, session=s))

    def out_of_scope(self, caller: Caller | None, days: int = 14, limit: int = 200) -> dict:
        """What customers asked that the bot does not cover: ``{"days", "per_day": [(day, count)] for
        every day of the window, oldest first, "total", "messages": [the newest, with their
        conversation_id]}``."""
        require(caller, "agent")
        days = max(1, min(int(days), 366))
        today = now().date()
        first = today - timedelta(days=days - 1)
        found = self.store.out_of_scope(now().replace(hour=0, minute=0, second=0, microsecond=0)
                                        - timedelta(days=days - 1), max(1, min(int(limit), 1000)))
        counts = dict(found["per_day"])
        per_day = [((first + timedelta(days=i)).isoformat(), counts.get((first + timedelta(days=i)).isoformat(), 0))
                   for i in range(days)]
        return {"days": days, "per_day": per_day, "total": sum(n for _, n in per_day), "messages": found["messages"]}

    def reveal(self, caller: Caller | None, conversation_id, message_id: int, index: int) -> dict:
        """The clear value behind one ``#n`` placeholder of one message (audited, refused or not found)."""
        require(caller, "agent")
        self._existing(conversation_id)
        value = self.store.reveal(conversation_id, message_id, index)
        self._record(caller, "reveal", conversation_id, f"message {message_id} value #{index} ({value['kind']})")
        return value

    def _existing(self, conversation_id) -> dict:
        info = self.store.conversation(conversation_id)
        if info is None:
            raise ValueError("no such conversation")
        return info

    def _open(self, conversation_id) -> dict:
        info = self._existing(conversation_id)
        if info["status"] == "closed":
            raise ValueError(CLOSED)
        return info

    # -- admins: data ----------------------------------------------------------------------------
    def erase(self, caller: Caller | None, conversation_id) -> int:
        """Delete one conversation on the customer's request; returns the number of messages deleted."""
        require(caller, "admin")
        return self.store.erase(conversation_id, audit=lambda s: self._record(caller, "erase", conversation_id,
                                                                               session=s))

    def audit_log(self, caller: Caller | None, limit: int = 200) -> list[dict]:
        require(caller, "admin")
        return self.audit.entries(max(1, min(int(limit), 1000)))

    def users(self, caller: Caller | None) -> list[dict]:
        require(caller, "admin")
        return self.accounts.list()

    def purge(self, older_than: timedelta, actor: str = "cli") -> int:
        """Delete conversations older than ``older_than`` (the retention command; no web caller)."""
        return self.store.purge(older_than, audit=lambda s, n: self.audit.record(
            actor, "purge", None, f"{n} conversation(s) older than {older_than}", session=s))

    # -- admins: versions ----------------------------------------------------------------------
    def versions(self, caller: Caller | None) -> list[dict]:
        require(caller, "admin")
        return self.registry.summaries()

    def serving(self, caller: Caller | None) -> str | None:
        """The version that answers customers, as this process sees it: the one it loaded (in process;
        not the live one when that did not load at start), or what a replica says it serves (served;
        None when no replica answers). The Admin tab shows it beside the live pointer when they differ."""
        require(caller, "admin")
        assistant = self._live()
        if not hasattr(assistant.classifier, "info"):
            return assistant.version
        try:
            return assistant.classifier.info(timeout=5)["version"]  # an Admin tab view waits no longer
        except Exception:  # noqa: BLE001 - the tab says it could not ask
            log.exception("could not ask the classifier service which version it serves")
            return None

    def promote(self, caller: Caller | None, name: str, progress=None) -> None:
        """Make ``name`` live; ``progress(fraction, stage)`` follows the preparation of its serving model
        when this process loads it for the first time."""
        require(caller, "admin")
        self._audited(caller, "promote", name, lambda: self._promote(name, progress))

    def _promote(self, name: str, progress=None) -> None:
        # in this process: fully loaded before the swap; served: the replicas follow the live pointer.
        # The pointer is written (a file lock other processes may hold) outside the lock every turn takes.
        classifier = self.open_classifier(self.registry.folder(name), progress=progress)
        with self._promoting:
            self.registry.set_live(name)
            with self._swap:
                self.assistant = Assistant(classifier, self.store, self.assistant.catalogue,
                                           self.assistant.detector, self.assistant.policy, version=name)

    def rollback(self, caller: Caller | None, progress=None) -> str:
        require(caller, "admin")
        previous = self.registry.previous
        if not previous or previous == self.registry.live or not self.registry.exists(previous):
            raise ValueError("there is no previous version to roll back to")
        self._audited(caller, "rollback", previous, lambda: self._promote(previous, progress))
        return previous

    def delete(self, caller: Caller | None, name: str) -> None:
        require(caller, "admin")
        self._audited(caller, "delete", name, lambda: self.registry.delete(name))

    def _audited(self, caller: Caller, action: str, name: str, act) -> None:
        """``act()`` on version ``name`` written to the audit trail first (an action that cannot be
        audited does not happen), and its failure after it, with why. A name that cannot be a version is
        refused first: it is nothing to audit."""
        self.registry.folder(name)
        self._record(caller, action, name)
        try:
            act()
        except Exception as err:
            try:
                self._record(caller, action, name, f"failed: {type(err).__name__}: {err}"[:500])
            except Exception:  # noqa: BLE001 - the admin sees the action's own error
                log.exception("could not audit the failure of %s %s", action, name)
            raise

    # -- admin builds ---------------------------------------------------------------------------
    def start_build(self, caller: Caller | None, ratio: float, method: str, targets: str, epochs: int | None = None,
                    max_per_intent: int | None = None, seed: int = 0, params_keep: float | None = None,
                    min_saving: float = 0.0, keep_layers: int | None = None, trim_vocab: bool = False,
                    lora_r: int = 8, lora_targets: str = "attn") -> Job:
        """Compress → heal → evaluate in a background thread; the version appears only when complete.

        It compresses the live classifier when that one is uncompressed, else the shipped one, else the
        shipped dense one, so healing starts from a tuned model; the raw base when none fits the data
        (see chatbot.build). What is compressed is a :class:`chatbot.build.Compression`: ``ratio`` or
        ``params_keep`` (a share of the targets' parameters, ranks per matrix), ``min_saving``,
        ``keep_layers`` and ``trim_vocab`` as ``python -m chatbot build`` takes them. The healing adapter
        is LoRA of rank ``lora_r`` (alpha 2r, as in the shipped builds) on ``lora_targets`` (attn, mlp or
        attn+mlp); a build that changes nothing (ratio 1 and no other cut) copies its tuned source and
        heals nothing. ``seed`` is the healing's seed; every admin build computes its factors with
        calibration seed 0, so builds that differ only in ``seed`` can be averaged (:meth:`start_soup`)."""
        require(caller, "admin")
        self._refuse_if_busy()
        from chatbot.build import Compression  # PyTorch: when an admin builds
        from chatbot.lora import LoraSettings

        if ratio is None:
            raise ValueError("rank ratio must be in (0, 1]")
        numbers = {"rank ratio": ratio, "parameter share": params_keep, "minimum saving": min_saving}
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in numbers.values()):
            raise ValueError("rank ratio, parameter share and minimum saving must be numbers")
        if isinstance(seed, bool) or not isinstance(seed, int) or \
                (keep_layers is not None and (isinstance(keep_layers, bool) or not isinstance(keep_layers, int))):
            raise ValueError("the seed and the layers kept are whole numbers")
        if method not in ("whitened", "plain") or not isinstance(targets, str) \
                or not re.fullmatch(r"[a-z_]+(\+[a-z_]+)*", targets):
            raise ValueError("method is whitened or plain; layers are attn, mlp, attn+mlp or module names")
        if not 0 <= seed < 2**31:
            raise ValueError("the seed is a whole number from 0 to 2147483647")
        if not isinstance(trim_vocab, bool):
            raise ValueError("trim vocabulary is yes or no")
        if isinstance(lora_r, bool) or not isinstance(lora_r, int) or not 1 <= lora_r <= 64:
            raise ValueError("the LoRA rank is a whole number from 1 to 64")
        if lora_targets not in ("attn", "mlp", "attn+mlp"):
            raise ValueError("LoRA goes on attn, mlp or attn+mlp")
        adapter = LoraSettings.on(lora_r, lora_targets)
        spec = Compression(method, targets, ratio, params_keep, min_saving, trim_vocab, keep_layers, calib_seed=0)
        candidates = [self.registry.folder(self.registry.live), self.registry.folder(DEFAULT_VERSION), DENSE_MODEL_DIR]
        base = ModelFolder.read(candidates[0]).base  # the live model's base

        def make(staging, progress):
            from chatbot.build import BuildPolicy, build_version, pick_source

            source = pick_source(candidates, load_dataset(self.data).intents)
            heal = (self.policy or BuildPolicy()).heal(source is not None, epochs, max_per_intent)
            heal.fit.seed, heal.lora = seed, adapter
            return build_version(self.data, staging, base=base, method=method, compress_targets=targets,
                                 ratio=ratio, heal=heal, progress=progress, source=source, params_keep=params_keep,
                                 trim_vocab=trim_vocab, min_saving=min_saving, keep_layers=keep_layers,
                                 calib_seed=spec.calib_seed)

        params = {"ratio": ratio, "method": method, "targets": targets, "epochs": epochs,
                  "max_per_intent": max_per_intent, "seed": seed, "params_keep": params_keep,
                  "min_saving": min_saving, "keep_layers": keep_layers, "trim_vocab": trim_vocab,
                  "lora_r": lora_r, "lora_targets": lora_targets}
        kind = self.registry.build_kind(ratio, method, targets, params_keep, keep_layers, trim_vocab, min_saving, seed)
        extras = {"parameter share": params_keep, "minimum saving": min_saving or None, "first layers": keep_layers,
                  "trimmed vocabulary": trim_vocab or None}
        detail = f"ratio {ratio:g}, {method}, {targets}, epochs {epochs}, {max_per_intent} per intent, seed {seed}, " \
            f"LoRA r{lora_r} on {lora_targets}" + "".join(f", {k} {v}" for k, v in extras.items() if v is not None)
        return self._start_job(caller, kind, params, make, "build", detail)

    def start_soup(self, caller: Caller | None, names: list[str]) -> Job:
        """Average versions built from the same start (e.g. the same build with other seeds) into a new
        version in a background thread: fitted, scored and exported as a build is (chatbot.soup).
        Versions that cannot be averaged are refused at once, before anything runs."""
        require(caller, "admin")
        self._refuse_if_busy()
        from chatbot.soup import SoupArgs, check_ingredients, soup

        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise ValueError("choose the versions to average")
        if len(set(names)) < 2 or len(set(names)) < len(names):
            raise ValueError("choose at least two different versions to average")
        for name in names:
            if not self.registry.exists(name):
                raise ValueError(f"no version {name!r}")
        folders = [str(self.registry.folder(n)) for n in names]
        check_ingredients(folders, [ModelFolder.read(f) for f in folders])

        def make(staging, progress):
            out = soup(SoupArgs(model=folders, out=str(staging), data=list(self.data)), progress=progress)
            return ModelFolder.read_evaluation(out)["summary"]

        return self._start_job(caller, f"soup{len(names)}", {"soup": list(names)}, make, "soup", ", ".join(names))

    def _refuse_if_busy(self) -> None:
        if any(j.status == "running" for j in self._jobs.values()):
            raise ValueError("a build is already running; wait for it or cancel it")

    def _start_job(self, caller: Caller, kind: str, params: dict, make, action: str, detail: str) -> Job:
        """Run ``make(staging, progress)`` in a background thread; its folder becomes a new version named
        after ``kind`` only when complete. ``progress`` raises :class:`Cancelled` once the job is cancelled."""
        with self._job_lock:  # one job at a time, whoever calls; and one name per job
            self._refuse_if_busy()
            name, staging = self.registry.reserve(kind, taken=self._jobs)
            job = Job(name, params, started_by=caller.name)
            try:
                self._record(caller, action, name, detail)  # first: a job that cannot be audited does not run
            except Exception:
                staging.rmdir()
                raise
            self._jobs[name] = job
        folder = self.registry.folder(name)

        def progress(fraction, stage=""):
            if job.cancel.is_set():
                raise Cancelled()
            job.progress, job.stage = float(fraction), stage or job.stage

        def work():
            try:
                job.result = make(staging, progress)
                with self._job_lock:  # a cancel either comes before this, and nothing is published, or finds it done
                    if job.cancel.is_set():
                        raise Cancelled()
                    staging.rename(folder)  # only a complete version ever appears in the registry
                    job.status, job.progress, job.stage = "done", 1.0, "done"
            # an unpublished staging folder goes before the status says the job ended: whoever waits on
            # the status finds nothing left behind
            except Cancelled:
                shutil.rmtree(staging, ignore_errors=True)
                job.status, job.stage = "cancelled", "cancelled"
            except Exception as err:  # noqa: BLE001 - shown to the admin; the live model is untouched
                traceback.print_exc()
                shutil.rmtree(staging, ignore_errors=True)
                job.status, job.error = "failed", f"{type(err).__name__}: {err}"
            finally:
                job.finished = time.time()
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)

        threading.Thread(target=work, name=f"{action}-{name}", daemon=True).start()
        return job

    def jobs(self, caller: Caller | None, limit: int = 20) -> list[dict]:
        """The builds of this server, newest first (running ones included, with their progress)."""
        require(caller, "admin")
        return [j.as_dict() for j in sorted(self._jobs.values(), key=lambda j: -j.started)][:max(1, int(limit))]

    def cancel_job(self, caller: Caller | None, name) -> str:
        """Cancel the running build ``name`` (and only that one); its state says when it has stopped."""
        require(caller, "admin")
        job = self._jobs.get(name) if isinstance(name, str) else None
        if job is None:
            raise ValueError("no such build")
        with self._job_lock:
            if job.status != "running":
                raise ValueError(f"build {name} is not running ({job.status})")
            job.cancel.set()
        self._record(caller, "cancel", job.name)
        return job.name
