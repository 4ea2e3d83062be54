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
3. ``GET /staff/`` again: the gate lets it through, and :func:`staff_user`, the staff app's
   ``auth_dependency``, names the user ``hf:<username>`` when a list gives them a role. Gradio hands
   that name to every handler as ``request.username``; ``Service.caller`` maps it to a role at each
   call (:func:`chatbot.accounts.hf_caller`), so the server checks the role as it does for passwords.
4. Signed in but on neither list: the gate answers 403 with a way to sign out; Gradio answers 401 to
   the staff app's config and to every handler, since :func:`staff_user` names nobody.
5. ``/logout`` (Gradio's) forgets the session in the browser and goes back to the customer chat;
   :class:`StaffGate` notes the time first (:class:`chatbot.accounts.HfSessions`, in the database), and
   every session of that user signed in before it is refused from then on, by every process of the
   app and after a restart (the session lives in the cookie, so without this a copy of it would
   outlive the sign-out).

Sign-ins (seen when ``/login/callback`` has put a listed user in the session) and sign-outs go to the
audit trail.

A session is trusted until the ``expires_at`` Hugging Face gave it, and one without it not at all.
One deployment uses one way in: the password sign-in is not mounted at all under this one.
"""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Callable, Mapping

from chatbot.accounts import HF_PREFIX, HfSessions, hf_role
from chatbot.web import client_address

LOGIN = "/login/huggingface"
LOGOUT = "/logout"
CALLBACK = "/login/callback"
SignedOut = Callable[[str], "float | None"]
"""When a user last signed out (seconds since the epoch), or None: :meth:`HfSessions.signed_out_at`."""


def username(session: Mapping | None, now: float | None = None, signed_out: SignedOut | None = None) -> str | None:
    """The Hugging Face username a session cookie holds, while its sign-in has not expired and its user
    has not signed out since (``signed_out``, as :class:`StaffGate` notes it)."""
    info = session.get("oauth_info") if session else None
    if not isinstance(info, Mapping):
        return None
    expires = info.get("expires_at")
    if not _number(expires) or expires < (time.time() if now is None else now):
        return None
    user = info.get("userinfo")
    name = user.get("preferred_username") if isinstance(user, Mapping) else None
    if not isinstance(name, str) or not name:
        return None
    if signed_out is not None and (out := signed_out(name.lower())) is not None:
        lifetime = info.get("expires_in")
        issued = expires - lifetime if _number(lifetime) else float("-inf")
        if issued < int(out):  # signed in before they signed out (to the second Hugging Face counts in)
            return None
    return name


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def staff_user(request, signed_out: SignedOut | None = None) -> str | None:
    """The staff app's ``auth_dependency``: ``hf:<username>`` for a signed-in user with a role, else None."""
    name = username(request.scope.get("session"), signed_out=signed_out)
    return f"{HF_PREFIX}{name}" if hf_role(name) else None


class StaffGate:
    """ASGI middleware in front of the staff page (``GET {path}/``; inside ``SessionMiddleware``):
    to Hugging Face's sign-in without a session, a 403 page with a sign-out link for a user with no
    role. It notes in ``sessions`` when a listed user signed in (after ``/login/callback``) and when a
    user signed out (before ``/logout``). Every other request passes untouched (Gradio refuses the
    staff app's handlers by itself)."""

    def __init__(self, app, sessions: HfSessions, path: str = "/staff"):
        self.app = app
        self.page = path.rstrip("/") + "/"
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") not in (self.page, LOGOUT, CALLBACK):
            return await self.app(scope, receive, send)
        name = username(scope.get("session"), signed_out=self.sessions.signed_out_at)
        if scope["path"] == LOGOUT:
            if name:
                self.sessions.sign_out(name, client_address.get())
            return await self.app(scope, receive, send)
        if scope["path"] == CALLBACK:
            await self.app(scope, receive, send)  # Gradio's callback puts what Hugging Face said in the session
            signed_in = username(scope.get("session"), signed_out=self.sessions.signed_out_at)
            if signed_in and hf_role(signed_in):
                self.sessions.sign_in(signed_in, client_address.get())
            return
        if name is None:
            return await respond(send, 302, b"", [(b"location", f"{LOGIN}?_target_url={self.page}".encode())])
        if hf_role(name) is None:
            body = (f"<!doctype html><meta charset='utf-8'><title>Not on the staff lists</title>"
                    f"<p>You are signed in with Hugging Face as <b>{html.escape(name)}</b>, who is not on this "
                    f"deployment's staff lists. An admin adds staff to <code>CHATBOT_HF_ADMINS</code> or "
                    f"<code>CHATBOT_HF_AGENTS</code>.</p><p><a href='{LOGOUT}'>Sign out</a> · "
                    f"<a href='/'>the customer chat</a></p>").encode()
            return await respond(send, 403, body, [(b"content-type", b"text/html; charset=utf-8")])
        return await self.app(scope, receive, send)


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
    return functools.partial(staff_user, signed_out=sessions.signed_out_at)
