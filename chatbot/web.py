"""The web server's guards, in front of every route: request size, file uploads, sign-in throttling.

:class:`Guard` is a plain ASGI middleware (it wraps the whole FastAPI app, Gradio's routes included):

* a request body larger than ``max_body`` is refused with 413 before the app reads it (by its
  ``Content-Length``, and by counting when the body comes in chunks);
* file uploads (Gradio's ``/gradio_api/upload``) are refused with 403: no feature needs them;
* a request another site's page makes to a ``same_origin`` mount (the staff console) is refused with
  403 (:func:`cross_site`): the browser sends the staff member's sign-in cookie with it (Gradio sets it
  ``SameSite=None``) and Gradio's own CORS layer lets any origin read the answer off a public host, so
  without this any web page a signed-in agent opens could read conversations or act as them; and
  no page elsewhere may sign staff out (``…/logout``, :func:`sign_out_from_elsewhere`);
* sign-in attempts (``POST …/login``) are limited per client address (:class:`Throttle`, 429 beyond),
  on top of the per-account-and-address lockout of :mod:`chatbot.accounts`;
* a call of a handler that does not exist (an ``fn_index`` out of range, an unknown API name) is
  refused with 404 (``handlers``: Gradio would fail it with a 500 and a traceback in the log);
* a call of a *batched* handler (the customers' chat turns) gets exactly as many input values as the
  handler takes (missing ones are None, extra ones dropped): Gradio zips the inputs of the calls it
  batches together, so one call with too few values would otherwise fail every call of its batch; its
  ``fn_index`` must be an integer (Gradio would read ``"3"`` as handler 3 after the guard missed it);
  and with a ``chat_throttle``, one client address may make only so many a minute (429 beyond;
  ``$CHATBOT_CHAT_TURNS_PER_MINUTE``, :func:`chatbot.settings.chat_turns_per_minute`);
* the client's address is put in :data:`client_address` for the audit trail of a sign-in.
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from chatbot.settings import MAX_REQUEST_BYTES

client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_address", default=None)


def route_path(scope) -> str:
    """The request's path as the app's routes see it: without the prefix the app is served under
    (``uvicorn --root-path /bot`` puts ``/bot`` in both ``root_path`` and ``path``)."""
    path, root = scope.get("path", ""), scope.get("root_path", "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


@dataclass
class Throttle:
    """At most ``limit`` events per key within ``window_s`` seconds (a sliding window)."""

    limit: int = 30
    """Sign-in attempts one client address may make per window."""
    window_s: float = 300.0
    """The window, in seconds."""

    def __post_init__(self):
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError("a throttle needs a positive limit and window")
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and now - events[0] > self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            if len(self._events) > 10_000:  # forget idle clients
                for k in [k for k, v in self._events.items() if not v]:
                    del self._events[k]
            return True


class BodyTooLarge(Exception):
    pass


class BadCall(Exception):
    """A call to an event handler the guard refuses with HTTP ``status``; the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_CALL = re.compile(r"^(?P<prefix>.*?)/gradio_api/(?:queue/join|(?P<kind>call/v2|call|run|api)/(?P<name>[\w-]+))/?$")


def _netloc(value: str, scheme: str) -> str:
    """``host[:port]`` in lower case, without the scheme's default port."""
    value = value.strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return value[: -len(default)] if default and value.endswith(default) else value


def cross_site(headers: dict, scheme: str = "http") -> bool:
    """Whether a page on another site made this request: its ``Origin`` names another host than the
    request's ``Host`` (or ``X-Forwarded-Host``, behind a proxy), or is ``null``; or, without an
    ``Origin``, the browser says ``Sec-Fetch-Site: cross-site`` for anything but a navigation (a link
    to the console from elsewhere still opens it). ``headers``: the ASGI scope's, as a dict of bytes."""
    origin = headers.get(b"origin")
    if origin is not None:
        return _elsewhere(origin, headers)
    return headers.get(b"sec-fetch-site") == b"cross-site" and headers.get(b"sec-fetch-mode") != b"navigate"


def sign_out_from_elsewhere(headers: dict) -> bool:
    """Whether a sign-out (``…/logout``, a GET any page can make, an image say) comes from another site:
    the browser says ``Sec-Fetch-Site: cross-site`` (links from elsewhere too); a browser too old to
    say it, by an ``Origin`` or ``Referer`` naming another host than the request's. Typed in the
    address bar, or from a page that sends no referrer, it is this site's."""
    site = headers.get(b"sec-fetch-site")
    if site is not None:
        return site == b"cross-site"
    page = headers.get(b"origin") or headers.get(b"referer")
    return page is not None and _elsewhere(page, headers)


def _elsewhere(page: bytes, headers: dict) -> bool:
    """Whether the page URL ``page`` (an ``Origin`` or ``Referer``) is on another host than the request's
    ``Host`` (or ``X-Forwarded-Host``, behind a proxy); ``null`` or nonsense counts as elsewhere."""
    parts = urlsplit(page.decode("latin-1").strip())
    if not parts.scheme or not parts.netloc:
        return True  # "null" (a sandboxed frame, a file) or nonsense
    hosts = [h.decode("latin-1") for h in (headers.get(b"host"), headers.get(b"x-forwarded-host")) if h]
    mine = {_netloc(name, parts.scheme) for h in hosts for name in h.split(",")}
    return _netloc(parts.netloc, parts.scheme) not in mine


class Guard:
    """``batch_inputs`` maps ``(mount prefix, fn_index or api_name)`` of each batched handler to its
    number of inputs (see ``app.batch_inputs``): the customers' chat turns, which ``chat_throttle``
    (when given) also limits per client address (each turn is model time and a stored message).
    ``same_origin``: path prefixes (mounts) that only pages of this site may call. ``handlers`` maps a
    mount's prefix to the ``fn_index`` values and API names of all its handlers (see ``app.handlers``)."""

    def __init__(self, app, max_body: int = MAX_REQUEST_BYTES, login_throttle: Throttle | None = None,
                 batch_inputs: dict | None = None, chat_throttle: Throttle | None = None,
                 same_origin: tuple[str, ...] = (), handlers: dict[str, set] | None = None):
        self.app = app
        self.handlers = handlers or {}
        self.max_body = max_body
        self.login_throttle = login_throttle or Throttle()
        self.batch_inputs = batch_inputs or {}
        self.chat_throttle = chat_throttle
        self.same_origin = tuple(p.rstrip("/") for p in same_origin)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("?", 0))[0]
        client_address.set(client)
        path, method = route_path(scope), scope.get("method", "GET")
        headers = dict(scope.get("headers") or [])
        mounted = any(path == p or path.startswith(p + "/") for p in self.same_origin)
        if mounted and cross_site(headers, scope.get("scheme", "http")):
            return await _refuse(send, 403, "Requests from other sites to the staff console are refused.")
        if path.rstrip("/").endswith("/logout") and sign_out_from_elsewhere(headers):
            return await _refuse(send, 403, "Sign out from this site's own pages.")  # no page elsewhere signs staff out
        if path.rstrip("/").endswith("/gradio_api/upload"):
            return await _refuse(send, 403, "File uploads are disabled.")
        if method == "POST" and path.rstrip("/").endswith("/login") and not self.login_throttle.allow(client):
            return await _refuse(send, 429, "Too many sign-in attempts from this address; wait a few minutes.")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_body
            except ValueError:
                return await _refuse(send, 400, "Bad Content-Length.")
            if too_large:
                return await _refuse(send, 413, f"Request body over {self.max_body} bytes.")
        call = _CALL.match(path) if method == "POST" and (self.batch_inputs or self.handlers) else None
        if call:
            try:
                receive = await self._shaped(call, scope, receive, client)
            except BadCall as err:
                return await _refuse(send, err.status, str(err))
            if receive is None:
                return await _refuse(send, 413, f"Request body over {self.max_body} bytes.")
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, 413, f"Request body over {self.max_body} bytes.")


    async def _shaped(self, call: re.Match, scope, receive, client: str):
        """``receive`` giving the body with a batched handler's ``data`` cut or padded to its inputs
        (None when the body is too large); a chat turn over the client's throttle raises BadCall."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return None
        try:
            payload = json.loads(body)
            index = payload.get("fn_index")
            if index is not None and type(index) is not int:  # noqa: E721 - bool is an int too
                # Gradio would turn "3" or 3.0 into 3 after this guard had looked for "3" among the
                # batched handlers and let the call through unshaped, to break the batch it joins.
                raise BadCall(400, "fn_index must be an integer.")
            # Gradio runs the handler /call/<name> names (the body's index is ignored there); on the
            # other routes the body's index when given (/run/predict), else the path's name
            by_name = call.group("kind") in ("call", "call/v2")
            target = call.group("name") if by_name or index is None else index
            known = self.handlers.get(call.group("prefix"))
            if known is not None and target is not None and target not in known:
                raise BadCall(404, "No such handler.")
            # by the name in the path, else by the index in the body: Gradio runs the handler the body
            # names whatever the path says (/run/predict), so both must find a batched handler
            width = self.batch_inputs.get((call.group("prefix"), call.group("name")))
            if width is None and index is not None and not by_name:
                width = self.batch_inputs.get((call.group("prefix"), index))
            if width is not None and self.chat_throttle and not self.chat_throttle.allow(client):
                raise BadCall(429, "Too many messages from this address; wait a minute.")
            if width is not None:
                data = payload.get("data")
                data = list(data) if isinstance(data, list) else []
                payload["data"] = (data + [None] * width)[:width]
                body = json.dumps(payload).encode()
                scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"] + [
                    (b"content-length", str(len(body)).encode())]
        except (ValueError, AttributeError, TypeError):
            pass  # not a JSON object: the app refuses it itself
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
