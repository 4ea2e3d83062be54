"""The audit trail: every staff and admin action, who did it and when, in the conversations database.

Written by :class:`~chatbot.accounts.Accounts` (sign-ins, user changes), :class:`~chatbot.service.Service`
(take over, send, close, reveal, erase, builds, promotion, rollback, deletion) and the command line
(purge, user changes); read by admins in the Admin tab. Entries are never updated.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from chatbot.store import Base, Store, now

ACTIONS = ("sign_in", "sign_in_failed", "sign_out", "take_over", "send", "close", "reveal", "erase", "purge", "build",
           "soup", "cancel", "promote", "rollback", "delete", "user_add", "user_disable", "user_enable", "user_passwd",
           "user_bootstrap", "hf_release")


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    """The staff account (``cli`` for the command line), as signed in; for a failed sign-in, the name tried."""
    action: Mapped[str] = mapped_column(String(20), index=True)
    target: Mapped[str | None] = mapped_column(String(80))
    """The conversation, version or account acted on."""
    detail: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(64))
    """The client's address, for actions that came through the web server."""


class Audit:
    def __init__(self, store: Store):
        self.store = store
        store.ensure_tables(AuditEntry.__table__)

    def record(self, actor: str, action: str, target: str | None = None, detail: str | None = None,
               client: str | None = None, session=None) -> None:
        """One entry; inside ``session`` when the action's own transaction must carry it."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        entry = AuditEntry(actor=(actor or "?")[:80], action=action, target=target and str(target)[:80],
                           detail=detail and str(detail)[:2000], client=client and str(client)[:64])
        if session is not None:
            session.add(entry)
            return
        with self.store.session() as s, s.begin():
            s.add(entry)

    def entries(self, limit: int = 200, action: str | None = None) -> list[dict]:
        """The latest entries, newest first."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if action:
            query = query.where(AuditEntry.action == action)
        with self.store.session() as s:
            return [{"id": e.id, "at": e.at.isoformat() if e.at else None, "actor": e.actor, "action": e.action,
                     "target": e.target, "detail": e.detail, "client": e.client} for e in s.scalars(query)]
