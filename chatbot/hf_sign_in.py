"""Staff sign-in with Hugging Face, on a Space, instead of our passwords (``CHATBOT_STAFF_SIGN_IN=huggingface``).

The Space's README front matter has ``hf_oauth: true``, so Hugging Face gives the Space an OAuth app
(``OAUTH_CLIENT_ID``, ``OAUTH_CLIENT_SECRET``, ``OAUTH_SCOPES``, ``OPENID_PROVIDER_URL``). Who may do
what stays ours: the allow-lists ``$CHATBOT_HF_ADMINS`` and ``$CHATBOT_HF_AGENTS`` give roles
(:func:`chatbot.accounts.hf_role`); every other Hugging Face user is nobody to the staff console.

The way in, step by step:

1. ``GET /staff/`` without a Hugging Face session: :class:`StaffGate` redirects to
   ``/login/huggingface?_target_url=/staff/``.
2. Gradio's OAuth routes (:func:`gradio.oauth.attach_oauth`, put on the outer app by :func:`attach`)
   send the browser to Hugging Face and, at ``/login/callback``, keep what it answers in a signed
   session cookie (Starlette's ``SessionMiddleware``; the key is derived from the OAuth secret).
3. The first sign-in of a listed username notes which Hugging Face account holds it (``sub``, an id that
   never changes), before the cookie goes out; only that account's sessions are let in. Another
   account signing in under the name (someone took a renamed staff member's old name) gets a refusal
   page showing its id; an admin gives the name to an id, or to the next account that signs in, with
   ``users hf-release NAME [--hf-id ID]``. A session of a name no account holds (first use, released,
   or issued before names were held) is sent to sign in again, which takes it.
   ``GET /staff/`` again: the gate lets it through, and :func:`staff_user`, the staff app's
   ``auth_dependency``, names the user ``hf:<username>`` when a list gives them a role. Gradio hands
   that name to every handler as ``request.username``; ``Service.caller`` maps it to a role at each
   call (:func:`chatbot.accounts.hf_caller`), so the server checks the role as it does for passwords.
4. Signed in but on neither list, or under a name another account holds: the gate answers 403 with a
   way to sign out; Gradio answers 401 to the staff app's config and to every handler, since
   :func:`staff_user` names nobody.
5. ``/logout`` (Gradio's) forgets the session in the browser and goes back to the customer chat;
   for a listed user with a good session :class:`StaffGate` notes the time first
   (:class:`chatbot.accounts.HfSessions`, in the database), and every session of that user issued
   before it or in the same second is refused from then on, by every process of the app and after a
   restart that keeps the database (the session lives in the cookie, so without this a copy of it
   would outlive the sign-out). If the database fails, the browser is signed out all the same and the
   failure is logged.

Listed users' sign-ins (seen when ``/login/callback`` has put them in the session), refused sign-ins
and sign-outs go to the audit trail; other Hugging Face users leave nothing in the database.

A session is trusted until the ``expires_at`` Hugging Face gave it, and one without it not at all.
One deployment uses one way in: the password sign-in is not mounted at all under this one.
"""

from __future__ import annotations

import functools
import html
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from chatbot.accounts import HF_PREFIX, HfRecord, HfSessions, hf_role
from chatbot.web import client_address, route_path

log = logging.getLogger(__name__)
LOGIN = "/login/huggingface"
LOGOUT = "/logout"
CALLBACK = "/login/callback"
Lookup = Callable[[str], "HfRecord | None"]
"""What the database holds of a username: :meth:`HfSessions.record`."""


@dataclass(frozen=True)
class SessionUser:
    """Who a session cookie says signed in with Hugging Face."""
    name: str
    """Their username."""
    sub: str
    """Hugging Face's id of their account (it never changes)."""
    issued: float
    """When Hugging Face signed them in (seconds since the epoch; -inf when it did not say)."""


def session_user(session: Mapping | None, now: float | None = None) -> SessionUser | None:
    """The user a session cookie holds while its sign-in has not expired; None for no session, an expired
    one, or one without the expiry, the username or the account id Hugging Face always gives."""
    info = session.get("oauth_info") if session else None
    if not isinstance(info, Mapping):
        return None
    expires = info.get("expires_at")
    if not _number(expires) or expires < (time.time() if now is None else now):
        return None
    user = info.get("userinfo")
    name, sub = (user.get("preferred_username"), user.get("sub")) if isinstance(user, Mapping) else (None, None)
    if not isinstance(name, str) or not name or not isinstance(sub, str) or not sub:
        return None
    lifetime = info.get("expires_in")
    return SessionUser(name, sub, expires - lifetime if _number(lifetime) else float("-inf"))


def refusal(user: SessionUser, record: HfRecord | None) -> str | None:
    """Why the database refuses a session of ``user``: ``"not held"`` when no account holds the name yet
    (first use, released, or a session from before names were held: a fresh sign-in takes it),
    ``"taken"`` when another Hugging Face account holds it, ``"signed out"`` when its user signed out
    since it was issued; else None."""
    if record is None or record.sub is None:
        return "not held"
    if record.sub != user.sub:
        return "taken"
    if record.signed_out_at is not None and user.issued <= record.signed_out_at:
        return "signed out"  # Hugging Face's times are whole seconds: one issued in the second of a sign-out is older
    return None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


async def staff_user(request, lookup: Lookup | None = None) -> str | None:
    """The staff app's ``auth_dependency`` (Gradio awaits it at every request): ``hf:<username>`` for a
    user with a role whose session is still good (not expired and, by ``lookup``, neither signed out
    since nor under a name another account holds), else None. The database is read off the event loop."""
    user = session_user(request.scope.get("session"))
    if user is None or not hf_role(user.name):
        return None
    if lookup is not None and refusal(user, await anyio.to_thread.run_sync(lookup, user.name)):
        return None
    return f"{HF_PREFIX}{user.name}"


class StaffGate:
    """ASGI middleware in front of the staff page (``GET {path}/``; inside ``SessionMiddleware``):
    to Hugging Face's sign-in without a good session, a 403 page with a sign-out link for a user with
    no role or a name another account holds. For listed users it notes in ``sessions`` a sign-in (when
    ``/login/callback`` has put a new one in the session, before its answer goes out: no sign-in
    without its audit entry) and a sign-out (before ``/logout``). Every other request passes untouched
    (Gradio refuses the staff app's handlers by itself). The database is used off the event loop."""

    def __init__(self, app, sessions: HfSessions, path: str = "/staff"):
        self.app = app
        self.page = path.rstrip("/") + "/"
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        path, root = route_path(scope), scope.get("root_path", "").rstrip("/")  # under uvicorn --root-path
        if scope["type"] != "http" or scope.get("method") != "GET" or path not in (self.page, LOGOUT, CALLBACK):
            return await self.app(scope, receive, send)
        if path == CALLBACK:
            return await self.app(scope, receive, self._noting_sign_in(scope, send))
        user = session_user(scope.get("session"))
        listed = user is not None and hf_role(user.name) is not None
        if path == LOGOUT:
            if listed:
                await self._note_sign_out(user)
            return await self.app(scope, receive, send)
        why = refusal(user, await anyio.to_thread.run_sync(self.sessions.record, user.name)) if listed else None
        if user is None or why in ("not held", "signed out"):
            return await respond(send, 302, b"", [(b"location", f"{root}{LOGIN}?_target_url={root}{self.page}".encode())])
        if why == "taken" or not listed:
            return await respond(send, 403, refused_page(user, why, root), [(b"content-type", b"text/html; charset=utf-8")])
        return await self.app(scope, receive, send)

    async def _note_sign_out(self, user: SessionUser) -> None:
        """Note the sign-out of a listed user whose session is good (not of a copy signed out already, nor
        of whoever took a staff member's old name). When the database fails, that is logged and the
        browser's session is forgotten all the same."""
        try:
            if refusal(user, await anyio.to_thread.run_sync(self.sessions.record, user.name)) is None:
                await anyio.to_thread.run_sync(self.sessions.sign_out, user.name, client_address.get())
        except Exception:  # noqa: BLE001 - the sign-out in the browser must still happen
            log.exception("could not note the sign-out of %s%s; its browser is signed out all the same", HF_PREFIX,
                          user.name)

    def _noting_sign_in(self, scope, send):
        """``send`` for Gradio's callback: as its answer starts, a new listed user in the session is noted
        (a callback that fails, a bad ``state`` say, leaves the session's sign-in as it was: nothing)."""
        session = scope.get("session")
        before = session.get("oauth_info") if session is not None else None
        client = client_address.get()

        async def send_noting(message):
            if message["type"] == "http.response.start" and session is not None:
                user = session_user(session) if session.get("oauth_info") is not before else None
                if user is not None and hf_role(user.name):
                    await anyio.to_thread.run_sync(self.sessions.sign_in, user.name, user.sub, client)
            await send(message)

        return send_noting


def refused_page(user: SessionUser, why: str | None, root: str = "") -> bytes:
    """The staff page for a Hugging Face user the console does not take (``why``: ``"taken"`` or None;
    ``root``: the prefix the app is served under, if any)."""
    if why == "taken":
        reason = ("but the staff console knows this name as another Hugging Face account's (a member of staff "
                  "renamed themselves and the name was taken again?). If the name is yours, give an admin your "
                  f"account id, <code>{html.escape(user.sub)}</code>: they give you the name with "
                  "<code>python -m chatbot users hf-release NAME --hf-id ID</code>.")
    else:
        reason = ("who is not on this deployment's staff lists. An admin adds staff to "
                  "<code>CHATBOT_HF_ADMINS</code> or <code>CHATBOT_HF_AGENTS</code>.")
    return (f"<!doctype html><meta charset='utf-8'><title>Not let in to the staff console</title>"
            f"<p>You are signed in with Hugging Face as <b>{html.escape(user.name)}</b>, {reason}</p>"
            f"<p><a href='{html.escape(root)}{LOGOUT}'>Sign out</a> · <a href='{html.escape(root)}/'>the customer chat</a></p>"
            ).encode()


async def respond(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def attach(app, sessions: HfSessions, path: str = "/staff"):
    """Hugging Face sign-in on ``app`` (the outer FastAPI app; call it before mounting anything at ``/``,
    whose routes would hide these): Gradio's OAuth routes and session cookie, and :class:`StaffGate`
    noting sign-ins and sign-outs in ``sessions``. Returns the staff app's ``auth_dependency``
    (:func:`staff_user`, knowing who signed out). Refused outside a Space: there Gradio would sign
    everyone in as the machine's own HF account."""
    from gradio.oauth import attach_oauth
    from gradio.utils import get_space

    if get_space() is None:
        raise RuntimeError("CHATBOT_STAFF_SIGN_IN=huggingface works on a Hugging Face Space with `hf_oauth: true` "
                           "in its README; elsewhere staff sign in with passwords (leave it unset).")
    app.add_middleware(StaffGate, sessions=sessions, path=path)  # first: the session middleware runs before it
    attach_oauth(app)
    return functools.partial(staff_user, lookup=sessions.record)
