"""Staff accounts (agents and admins), sign-in with lockout, and who a caller is.

Accounts live in the conversations database (table ``staff_accounts``); passwords are hashed with
Argon2id (argon2-cffi, its recommended parameters) and never stored or logged in clear. After
``max_failures`` failed sign-ins within ``window_s`` from one client address, the account is locked
for ``lock_s`` *at that address*, whatever password comes next from it (table ``sign_in_failures``):
whoever guesses from one address stops there, but cannot lock the account's owner out from another
(the names of staff are no secret; a lock per account let anyone keep ``admin`` locked). Guessing
from many addresses (or behind a proxy that lets clients name their address) is stopped by a second,
higher count over all addresses: ``account_max_failures`` lock the account everywhere.
Every sign-in and every change to an account is written to the audit trail.

A :class:`Caller` is made only by :meth:`Accounts.caller` from the name the web server's session
holds (or by :func:`hf_caller` from a Hugging Face sign-in, roles by :func:`hf_role`), never from
anything a client fills in;
:func:`require` is the one check every staff and admin operation goes through.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, DateTime, Integer, String, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from chatbot.audit import Audit
from chatbot.settings import HF_ADMINS_ENV, HF_AGENTS_ENV
from chatbot.store import Base, Store, now, sqlite_write_lock

ROLES = ("agent", "admin")
"""An admin may do everything an agent may."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10


class AccessDenied(PermissionError):
    """The caller may not do this (the message says why, without saying what exists)."""


class NotSignedIn(AccessDenied):
    pass


class AccountDisabled(AccessDenied):
    pass


class WrongRole(AccessDenied):
    pass


@dataclass(frozen=True)
class Caller:
    """A signed-in member of staff, as the database knows them at the time of the request."""

    name: str
    role: str
    disabled: bool = False
    via: str = "password"
    """How they signed in: ``password`` (our accounts) or ``huggingface`` (allow-list)."""
    client: str | None = None
    """The address the request came from (for the audit trail)."""


def require(caller: Caller | None, role: str = "agent") -> Caller:
    """``caller`` if they may act as ``role`` (agent: agents and admins; admin: admins), else raise."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if caller is None:
        raise NotSignedIn("Sign in as staff first.")
    if caller.disabled:
        raise AccountDisabled("This account is disabled.")
    if role == "admin" and caller.role != "admin":
        raise WrongRole("Only admins may do this.")
    if caller.role not in ROLES:
        raise WrongRole("This account has no staff role.")
    return caller


def hf_role(username: str | None, environ=os.environ) -> str | None:
    """The role of a Hugging Face user by the allow-lists ``$CHATBOT_HF_ADMINS`` / ``$CHATBOT_HF_AGENTS``
    (comma-separated usernames, case-insensitive); ``None`` for everybody else."""
    if not username:
        return None

    def names(env: str) -> set[str]:
        return {n.strip().lower() for n in (environ.get(env) or "").split(",") if n.strip()}

    if username.lower() in names(HF_ADMINS_ENV):
        return "admin"
    if username.lower() in names(HF_AGENTS_ENV):
        return "agent"
    return None


HF_PREFIX = "hf:"
"""Staff signed in with Hugging Face are ``hf:<username>`` (never a password account's name: ``NAME``
has no colon), in the audit trail and wherever a conversation names its agent."""


def hf_caller(name: str | None, environ=os.environ) -> Caller | None:
    """The caller behind a Hugging Face session's name (``hf:<username>``), with the role
    :func:`hf_role` gives them now; ``None`` for any other name or a user on neither list."""
    if not isinstance(name, str) or not name.startswith(HF_PREFIX):
        return None
    role = hf_role(name[len(HF_PREFIX):], environ)
    return Caller(name, role, via="huggingface") if role else None


@dataclass
class LockoutPolicy:
    max_failures: int = 5
    """Failed sign-ins from one address within ``window_s`` that lock the account at that address."""
    window_s: float = 15 * 60
    """How long failures are counted together."""
    lock_s: float = 15 * 60
    """How long a locked account refuses every password from that address (or from all of them)."""
    account_max_failures: int = 50
    """Failed sign-ins from all addresses together within ``window_s`` that lock the account everywhere."""

    def __post_init__(self):
        if self.max_failures < 1 or self.window_s <= 0 or self.lock_s <= 0:
            raise ValueError("lockout needs at least one failure, a positive window and a positive lock time")
        if self.account_max_failures < self.max_failures:
            raise ValueError("the lock over all addresses needs at least as many failures as one address's")


class StaffAccount(Base):
    __tablename__ = "staff_accounts"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    last_sign_in: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # failed sign-ins from all addresses together, and the lock over all addresses (LockoutPolicy)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SignInFailures(Base):
    """Recent failed sign-ins of one account from one client address, and that address's lock."""

    __tablename__ = "sign_in_failures"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HfStaff(Base):
    """A Hugging Face user as the staff console has seen them (the Hugging Face sign-in,
    :mod:`chatbot.hf_sign_in`): the account that holds the name, and when they last signed out."""

    __tablename__ = "hf_staff"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    """``hf:<username>``, lower-cased (Hugging Face usernames ignore case)."""
    sub: Mapped[str | None] = mapped_column(String(100))
    """Hugging Face's id of the account that first signed in under the name (it never changes; a
    username can be given up and taken by someone else)."""
    signed_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """The last sign-out: every session of theirs issued before it is refused."""


@dataclass(frozen=True)
class HfRecord:
    """What the database holds of one Hugging Face username (:meth:`HfSessions.record`)."""
    sub: str | None
    signed_out_at: float | None
    """Seconds since the epoch."""


class HfSessions:
    """What the server keeps of Hugging Face staff sessions, whose content lives in the browser's signed
    cookie, in the database (so a restart of the app, or another of its processes, acts as this one):

    * the account that holds each username, from its first sign-in: only its sessions are let in, and a
      sign-in under that name by another account (the owner renamed themselves and someone took the
      old name, which is still on the lists) is refused until an admin gives the name to it
      (``python -m chatbot users hf-release NAME [--hf-id ID]``);
    * when each user last signed out, which ends every session they had signed in before;
    * the audit entries of their sign-ins and sign-outs (actor ``hf:<username>``)."""

    def __init__(self, store: Store, audit: Audit):
        self.store, self.audit = store, audit
        store.ensure_tables(HfStaff.__table__)

    def record(self, username: str) -> HfRecord | None:
        with self.store.session() as s:
            row = s.get(HfStaff, _hf_key(username))
            return None if row is None else HfRecord(row.sub, _utc(row.signed_out_at).timestamp()
                                                     if row.signed_out_at else None)

    def sign_in(self, username: str, sub: str, client: str | None = None) -> bool:
        """Audit a sign-in of ``username`` as the account ``sub`` and, the first time, note that ``sub``
        holds the name; False (audited as a failed sign-in) when another account holds it."""
        actor = f"{HF_PREFIX}{username}"
        with self._row(username) as (s, row):
            if row.sub is None:
                row.sub = sub
            elif row.sub != sub:
                self.audit.record(actor, "sign_in_failed", actor, f"the name belongs to another Hugging Face account "
                                  f"(id {row.sub}); this one is {sub}", client, session=s)
                return False
            self.audit.record(actor, "sign_in", actor, "with Hugging Face", client, session=s)
            return True

    def sign_out(self, username: str, client: str | None = None) -> None:
        """Note now as ``username``'s last sign-out (a later time another process noted meanwhile is kept)."""
        moment = now()
        with self._row(username) as (s, row):
            if row.signed_out_at is None or _utc(row.signed_out_at) < moment:
                row.signed_out_at = moment
            self.audit.record(f"{HF_PREFIX}{username}", "sign_out", f"{HF_PREFIX}{username}", None, client, session=s)

    def release(self, username: str, actor: str = "cli", sub: str | None = None) -> str | None:
        """Give ``username`` (``hf:`` in front or not) to the account ``sub``, or with None to the next account
        that signs in under it; the id that held it before, or None (nothing written when no account held
        it and none is given)."""
        if username[:len(HF_PREFIX)].lower() == HF_PREFIX:
            username = username[len(HF_PREFIX):]
        if sub is None and (self.record(username) or HfRecord(None, None)).sub is None:
            return None
        with self._row(username) as (s, row):
            held, row.sub = row.sub, sub
            self.audit.record(actor, "hf_release", f"{HF_PREFIX}{username}",
                              f"held by id {held}; now {sub or 'the next account to sign in'}", session=s)
            return held

    @contextmanager
    def _row(self, username: str):
        """``(session, row)`` of ``username`` in one transaction, the row created when missing and locked."""
        key = _hf_key(username)
        with self.store.session() as s, s.begin():
            # The store runs on PostgreSQL or SQLite. Another process inserting the same name is no
            # error, and on SQLite this write (even when it inserts nothing) takes the write lock first.
            insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[s.get_bind().dialect.name]
            s.execute(insert(HfStaff).values(name=key).on_conflict_do_nothing())
            yield s, s.get(HfStaff, key, with_for_update=True)


def _hf_key(username: str) -> str:
    return f"{HF_PREFIX}{username}".lower()[:100]


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite gives datetimes back without their zone; every stored one is UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


class Accounts:
    def __init__(self, store: Store, audit: Audit | None = None, lockout: LockoutPolicy | None = None,
                 hasher: PasswordHasher | None = None):
        self.store = store
        self.audit = audit or Audit(store)
        self.lockout = lockout or LockoutPolicy()
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash = self.hasher.hash("not a password of anybody")
        store.ensure_tables(StaffAccount.__table__, SignInFailures.__table__)
        self.hf_sessions = HfSessions(store, self.audit)

    # -- managing accounts (command line) ------------------------------------------------------
    def add(self, name: str, role: str, password: str, actor: str = "cli") -> None:
        if not NAME.match(name or ""):
            raise ValueError("a user name is 1–64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        _check_password(password)
        with self.store.session() as s, s.begin():
            if s.get(StaffAccount, name) is not None:
                raise ValueError(f"user {name} exists already")
            s.add(StaffAccount(name=name, role=role, password_hash=self.hasher.hash(password)))
            self.audit.record(actor, "user_add", name, f"role {role}", session=s)

    def set_password(self, name: str, password: str, actor: str = "cli") -> None:
        _check_password(password)
        with self.store.session() as s, s.begin():
            account = self._get(s, name)
            account.password_hash = self.hasher.hash(password)
            self._unlock(s, name)
            self.audit.record(actor, "user_passwd", name, session=s)

    def set_disabled(self, name: str, disabled: bool, actor: str = "cli") -> None:
        with self.store.session() as s, s.begin():
            account = self._get(s, name)
            account.disabled = disabled
            if not disabled:
                self._unlock(s, name)
            self.audit.record(actor, "user_disable" if disabled else "user_enable", name, session=s)

    def list(self) -> list[dict]:
        """Every account; ``locked_until``: the latest lock still running at some address, and
        ``locked_addresses``: how many addresses it is locked at."""
        with self.store.session() as s:
            moment = now()
            locks: dict[str, list[datetime]] = {}
            for row in s.scalars(select(SignInFailures).where(SignInFailures.locked_until.is_not(None))):
                if self._locked(row, moment):
                    locks.setdefault(row.name, []).append(_utc(row.locked_until))
            rows = []
            for a in s.scalars(select(StaffAccount).order_by(StaffAccount.name)):
                everywhere = self._locked(a, moment)
                until = [*locks.get(a.name, []), *([_utc(a.locked_until)] if everywhere else [])]
                rows.append({"name": a.name, "role": a.role, "disabled": a.disabled,
                             "created_at": _iso(a.created_at), "last_sign_in": _iso(a.last_sign_in),
                             "locked_until": _iso(max(until)) if until else None,
                             "locked_addresses": len(locks.get(a.name, [])), "locked_everywhere": everywhere})
            return rows

    def has_admin(self) -> bool:
        with self.store.session() as s:
            return s.scalars(select(StaffAccount.name).where(StaffAccount.role == "admin").limit(1)).first() is not None

    def bootstrap_admin(self, password: str | None) -> bool:
        """Create the admin ``admin`` with ``password`` when the database has no admin yet; True if created."""
        if not password or self.has_admin():
            return False
        with self.store.session() as s:
            if s.get(StaffAccount, "admin") is not None:
                raise ValueError("an account named admin exists but is not an admin: promote someone with "
                                 "`python -m chatbot users add NAME --role admin`")
        try:
            self.add("admin", "admin", password, actor="bootstrap")
        except (IntegrityError, ValueError):
            if self.has_admin():  # another app process starting at the same time created it first
                return False
            raise
        self.audit.record("bootstrap", "user_bootstrap", "admin", "from CHATBOT_ADMIN_PASSWORD")
        return True

    # -- signing in and identifying callers ----------------------------------------------------
    def sign_in(self, name: str, password: str, client: str | None = None) -> bool:
        """True when ``password`` is right for an enabled account not locked at ``client`` (the address
        the try comes from); every try is audited."""
        name, password = str(name or "")[:64], str(password or "")[:1024]
        moment = now()
        with self.store.session() as s, s.begin():
            # locked until commit: tries at several app processes count one after the other
            sqlite_write_lock(s, StaffAccount.__table__)
            account = s.get(StaffAccount, name, with_for_update=True) if NAME.match(name) else None
            if account is None:
                self._verify(self._dummy_hash, password)  # the same work as for a real account
                self.audit.record(name or "?", "sign_in_failed", name, "no such account", client, session=s)
                return False
            # the account's row is locked: no other try inserts this address's row meanwhile
            address = str(client or "?")[:64]
            failed = s.get(SignInFailures, (name, address), with_for_update=True)
            everywhere = self._locked(account, moment)
            if everywhere or (failed is not None and self._locked(failed, moment)):
                where = "everywhere" if everywhere else "at this address"
                self.audit.record(name, "sign_in_failed", name, f"account locked {where}", client, session=s)
                return False
            if not self._verify(account.password_hash, password):
                if failed is None:
                    failed = SignInFailures(name=name, client=address, failures=0)
                    s.add(failed)
                detail, minutes = "wrong password", f"{self.lockout.lock_s / 60:g} min"
                if self._count_failure(failed, moment, self.lockout.max_failures):
                    detail += f"; account locked at this address for {minutes}"
                if self._count_failure(account, moment, self.lockout.account_max_failures):
                    detail += f"; too many failures from all addresses: locked everywhere for {minutes}"
                self.audit.record(name, "sign_in_failed", name, detail, client, session=s)
                return False
            if account.disabled:
                self.audit.record(name, "sign_in_failed", name, "account disabled", client, session=s)
                return False
            if failed is not None:
                s.delete(failed)
            account.failures, account.first_failure_at, account.locked_until = 0, None, None
            account.last_sign_in = moment
            if self.hasher.check_needs_rehash(account.password_hash):
                account.password_hash = self.hasher.hash(password)
            self.audit.record(name, "sign_in", name, None, client, session=s)
            return True

    def caller(self, name: str | None) -> Caller | None:
        """The account behind a signed-in session's user name, as it is now (role, disabled)."""
        if not name or not isinstance(name, str):
            return None
        with self.store.session() as s:
            account = s.get(StaffAccount, name)
            return None if account is None else Caller(account.name, account.role, account.disabled)

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _count_failure(self, row: SignInFailures | StaffAccount, moment: datetime, limit: int) -> bool:
        """One more failure on ``row`` (failures within ``window_s`` add up); True when that makes
        ``limit`` and ``row`` is now locked for ``lock_s``."""
        first = _utc(row.first_failure_at)
        if first is None or moment - first > timedelta(seconds=self.lockout.window_s):
            row.failures, row.first_failure_at = 0, moment
        row.failures = (row.failures or 0) + 1
        if row.failures < limit:
            return False
        row.locked_until = moment + timedelta(seconds=self.lockout.lock_s)
        row.failures, row.first_failure_at = 0, None
        return True

    def _locked(self, row: SignInFailures | StaffAccount, moment: datetime | None = None) -> bool:
        until = _utc(row.locked_until)
        return until is not None and until > (moment or now())

    @staticmethod
    def _unlock(s, name: str) -> None:
        """Forget an account's failed sign-ins and locks at every address (a new password, enabled again)."""
        s.execute(delete(SignInFailures).where(SignInFailures.name == name))
        account = s.get(StaffAccount, name)
        account.failures, account.first_failure_at, account.locked_until = 0, None, None

    @staticmethod
    def _get(s, name: str) -> StaffAccount:
        account = s.get(StaffAccount, name)
        if account is None:
            raise ValueError(f"no user {name}")
        return account


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValueError(f"a password has at least {MIN_PASSWORD} characters")


def _iso(moment: datetime | None) -> str | None:
    return _utc(moment).isoformat() if moment else None
