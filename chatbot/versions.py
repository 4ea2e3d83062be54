"""Model versions: every model folder the admin built, which one is live, promotion and rollback.

Versions live in ``<home>/versions/<name>/`` (model folders with an ``evaluation.json``); the shipped
default (``assets/model``) is the read-only version ``default``. ``live.json`` names the live
version and the previous one; it is replaced atomically (written to a file of its own, fsync, rename),
so a crash leaves either the old or the new pointer, never a broken one. Every change of it (promote,
rollback, a delete that clears ``previous``) reads and writes it holding ``versions/.lock``
(``flock``), so processes sharing ``versions/`` change it one at a time and none undoes another's.
A deleted version is first renamed out of the listing (``versions/.trash/``), then removed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from chatbot.folder import ModelFolder

log = logging.getLogger(__name__)
DEFAULT_VERSION = "default"
_IN_PROCESS = threading.Lock()  # flock excludes open files, but NFS emulates it by per-process locks
T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Registry:
    def __init__(self, home: str | Path, default_folder: str | Path):
        self.root = Path(home) / "versions"
        self.root.mkdir(parents=True, exist_ok=True)
        self.default_folder = Path(default_folder)
        self.pointer = self.root / "live.json"

    def folder(self, name: str) -> Path:
        if name == DEFAULT_VERSION:
            return self.default_folder
        if not _NAME.match(name or ""):
            raise ValueError(f"invalid version name {name!r}")
        return self.root / name

    def exists(self, name: str) -> bool:
        try:
            ModelFolder.read(self.folder(name))
            return True
        except (ValueError, RuntimeError):  # an invalid name, or no readable model folder
            return False

    def staging(self, name: str) -> Path:
        """Where a build of version ``name`` is written until it is complete: ``versions/.staging/``, on
        the same file system as the versions (it is renamed into place) but never listed, promoted or
        deleted as one (no version name starts with a dot)."""
        return self.root / ".staging" / self.folder(name).name

    def names(self) -> list[str]:
        built = sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.exists(p.name))
        return [DEFAULT_VERSION, *built]

    def new_name(self, ratio: float, method: str, targets: str, params_keep: float | None = None,
                 keep_layers: int | None = None, trim_vocab: bool = False, min_saving: float = 0.0,
                 seed: int = 0) -> str:
        """A new build's name (see :meth:`build_kind` and :meth:`stamped_name`)."""
        return self.stamped_name(self.build_kind(ratio, method, targets, params_keep, keep_layers, trim_vocab,
                                                 min_saving, seed))

    @staticmethod
    def build_kind(ratio: float, method: str, targets: str, params_keep: float | None = None,
                   keep_layers: int | None = None, trim_vocab: bool = False, min_saving: float = 0.0,
                   seed: int = 0) -> str:
        """What a build's name says: what it factorises and how much (``r`` rank ratio, ``p`` parameter
        share, and ``s`` the minimum saving; or ``dense``), then ``-l<N>`` for the first N layers kept,
        ``-tv`` for a trimmed vocabulary and ``-seed<N>`` for a healing seed other than 0."""
        factorised = params_keep is not None or ratio < 1
        cut = (f"p{params_keep:g}" if params_keep is not None else f"r{ratio:g}") + (f"-s{min_saving:g}" if min_saving else "")
        kind = f"{method}-{targets.replace('+', '_')}-{cut}" if factorised else "dense"
        return kind + (f"-l{keep_layers}" if keep_layers else "") + ("-tv" if trim_vocab else "") \
            + (f"-seed{seed}" if seed else "")

    def stamped_name(self, kind: str, taken=()) -> str:
        """A new version's name, ``v<UTC time>-<kind>``, with ``-2``, ``-3``… when a version, a build in
        progress or a name in ``taken`` (e.g. a server's jobs) already has it. A name is at most 64
        characters (the store's column): a longer kind loses whole parts before its last one (which keeps
        the seed), and the versions table and the builds list show the whole recipe."""
        stamp = f"v{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-"
        room = 64 - len(stamp) - len("-9999")
        parts = kind.split("-")
        while len("-".join(parts)) > room and len(parts) > 2:
            del parts[-2]  # whole parts only, never a number cut short; the first and last stay
        kind = "-".join(parts)[:room].rstrip("-._")
        name = stamp + kind
        used = lambda n: n in taken or self.folder(n).exists() or self.staging(n).exists()  # noqa: E731
        return next(n for n in (name, *(f"{name}-{i}" for i in range(2, 10_000))) if not used(n))

    def reserve(self, kind: str, taken=()) -> tuple[str, Path]:
        """``(name, staging folder)`` for a new build of ``kind`` (:meth:`stamped_name`), the name held by
        creating its empty staging folder: that is atomic, so two processes sharing ``versions/`` that
        start a build of one recipe in the same second get two names, and never write one folder."""
        (self.root / ".staging").mkdir(exist_ok=True)
        while True:
            name = self.stamped_name(kind, taken)
            try:
                self.staging(name).mkdir()
                return name, self.staging(name)
            except FileExistsError:  # another process took it between the look and the mkdir
                continue

    # -- the live pointer ----------------------------------------------------------------------
    def _read_pointer(self, strict: bool = False) -> dict:
        """``live`` and ``previous`` as the pointer names them (and ``promoted_at``); the shipped default
        when there is no pointer yet. A damaged one (unreadable, not JSON, not an object, names that
        are not strings) reads as the default too, logged; with ``strict`` it raises ValueError instead
        (a replica then keeps serving what it serves rather than switch to the default)."""
        fallback = {"live": DEFAULT_VERSION, "previous": None}
        try:
            pointer = json.loads(self.pointer.read_text())
        except FileNotFoundError:
            return fallback
        except (OSError, ValueError) as err:
            pointer, problem = None, f"{type(err).__name__}: {err}"
        else:
            problem = "not an object naming versions"
        names = {k: pointer.get(k) for k in ("live", "previous")} if isinstance(pointer, dict) else None
        if names is not None and all(v is None or isinstance(v, str) for v in names.values()):
            return {**pointer, **names}
        if strict:
            raise ValueError(f"{self.pointer} is damaged ({problem})")
        log.warning("%s is damaged (%s): the shipped default reads as live", self.pointer, problem)
        return fallback

    def pointed(self) -> dict:
        """The pointer as written (``live``, ``previous``, ``promoted_at``), not checked against the
        folders; ValueError when it is damaged. What replicas follow."""
        return self._read_pointer(strict=True)

    @property
    def live(self) -> str:
        name = self._read_pointer().get("live") or DEFAULT_VERSION
        return name if self.exists(name) else DEFAULT_VERSION

    @property
    def previous(self) -> str | None:
        return self._read_pointer().get("previous")

    def set_live(self, name: str) -> None:
        """Make ``name`` live (and the live one previous). A damaged pointer is replaced, with no previous:
        promoting is how an admin repairs it."""
        with self._locked():
            if not self.exists(name):
                raise ValueError(f"no version {name!r}")
            try:
                pointer = self._read_pointer(strict=True)
                current = pointer["live"] if pointer["live"] and self.exists(pointer["live"]) else DEFAULT_VERSION
            except ValueError:
                pointer, current = {"previous": None}, None
            self._write_pointer({"live": name, "previous": current if current != name else pointer["previous"],
                                 "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    @contextmanager
    def _locked(self):
        """Hold the pointer's lock: this process's threads, then every process sharing ``versions/``."""
        with _IN_PROCESS, open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_pointer(self, payload: dict) -> None:
        """Replace the pointer atomically, through a temporary file no other writer uses."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".live-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from replicas run as other users
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.pointer)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> None:
        """Remove a version that is neither the default nor live (checked holding the pointer's lock, so
        a promote of it at the same time either wins, and the delete is refused, or finds it gone).
        Refused while the pointer is damaged: which version replicas serve is unknown then."""
        if name == DEFAULT_VERSION:
            raise ValueError("the shipped default version cannot be deleted")
        folder = self.folder(name)
        trash = self.root / ".trash" / f"{name}-{uuid.uuid4().hex[:8]}"
        with self._locked():
            try:
                pointer = self._read_pointer(strict=True)
            except ValueError as err:
                raise ValueError(f"{err}: promote a version to repair it, then delete") from None
            if name == pointer["live"]:
                raise ValueError("the live version cannot be deleted; promote another one first")
            if not folder.is_dir():
                raise ValueError(f"no version {name!r}")
            trash.parent.mkdir(exist_ok=True)
            folder.rename(trash)  # out of the listing at once; removing the files can take a while
            if name == pointer["previous"]:  # rollback would name a folder that is gone
                self._write_pointer({**pointer, "previous": None})
        for left in trash.parent.iterdir():  # this one, and any an earlier delete could not remove (NFS)
            shutil.rmtree(left, ignore_errors=True)

    # -- what the admin table and plot show ----------------------------------------------------
    def summaries(self) -> list[dict]:
        rows = []
        live = self.live
        for name in self.names():
            folder = self.folder(name)
            evaluation = summary_of(ModelFolder.read_evaluation(folder))
            rows.append({"name": name, "live": name == live, "created": ModelFolder.read(folder).created,
                         **{k: v for k, v in evaluation.items() if k not in ("folder",)}})
        return rows


def _umask() -> int:
    """The process's file-creation mask: from /proc on Linux (reading it with ``os.umask`` sets it for
    a moment, for every thread), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_first(registry: Registry, load: Callable[[str], T], who: str) -> tuple[str, T]:
    """``(version, load(version))`` of the first of the live version, the previous one and the shipped
    default that loads: a version promoted broken (by a process that does not load models itself), or
    whose folder cannot be used on this machine, must not keep ``who`` (the app, a replica) from
    serving. Each failure is logged; RuntimeError when none loads."""
    tried = []
    for version in dict.fromkeys(v for v in (registry.live, registry.previous, DEFAULT_VERSION) if v):
        try:
            return version, load(version)
        except Exception:  # noqa: BLE001 - the next candidate is tried; all failing is raised
            log.exception("%s could not load version %s", who, version)
            tried.append(version)
    raise RuntimeError(f"{who}: no version loads (tried {', '.join(tried)})")


def summary_of(evaluation: dict) -> dict:
    """The table row of a version: the ``summary`` a build writes, or one made from a plain
    ``python -m chatbot evaluate`` report (as the shipped default has)."""
    if "summary" in evaluation:
        return evaluation["summary"]
    if "accuracy" not in evaluation:
        return {}
    return {"ratio": 1.0, "method": "none", "targets": "none", "parameters": evaluation.get("parameters"),
            "size_mb": (evaluation.get("parameters") or 0) * 2 / 1e6, "accuracy": evaluation["accuracy"],
            "macro_f1": evaluation["macro_f1"], "latency_ms": evaluation.get("latency_ms", {}),
            "per_language": {k: v["accuracy"] for k, v in evaluation.get("per_language", {}).items()}}
