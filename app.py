"""The web app: the customer chat at ``/`` (no sign-in) and the staff console at ``/staff`` (sign-in).

    python app.py     # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT), staff at /staff

Two Gradio apps on one FastAPI server. The customer app holds the chat and the public API
(``/chat``, ``/analyse``); it has no staff screen and no staff handler. The staff app (agent assist,
admin) is mounted with Gradio's sign-in, which checks our accounts (:meth:`Service.sign_in`: Argon2,
lockout); Gradio then refuses every route of it, its event handlers included, without a session.
Every staff handler also asks :meth:`Service.caller` who the session's user is *now* (role,
disabled) and passes that caller to the Service, which refuses the wrong role: hiding the Admin tab
from agents is only a convenience.

This file only wires: one builder per tab, module-level handlers ``handler(service, …)`` bound to
the service with :func:`bind`; they call only ``Service``'s public methods and ``views``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import anyio
import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from chatbot import views
from chatbot.accounts import AccessDenied
from chatbot.service import Service
from chatbot.web import Guard, Throttle, client_address

TITLE = "Multilingual customer service"
CSS = """
.meta-note {opacity: 0.7}
footer {display: none !important}
"""
log = logging.getLogger("app")


def bind(handler, service: Service):
    """``handler(service, *inputs)`` as an event listener of ``*inputs``, that Gradio can still inspect
    (``gr.Request``, ``gr.Progress`` and ``gr.SelectData`` parameters are recognised by annotation)."""
    @functools.wraps(handler)
    def listener(*args, **kwargs):
        return handler(service, *args, **kwargs)

    signature = inspect.signature(handler)
    listener.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return listener


# ==================================================================== customers (no sign-in)
def render(service: Service, conversation_id, accept, meta, turn):
    """The customer's own conversation (the id from their browser is the proof) and the choices."""
    lang = (turn or {}).get("lang") or service.language(conversation_id, accept)
    choices = (turn or {}).get("choices") or []
    labels = [c["label"] for c in choices] + ["", ""]
    return (views.chat_history(service.history(conversation_id), service.greeting(lang), bool(meta)),
            gr.update(visible=bool(choices)), gr.update(value=labels[0]), gr.update(value=labels[1]), choices)


def customer_load(service: Service, conversation_id, meta, request: gr.Request):
    accept = request.headers.get("accept-language", "") if request else ""
    return (accept, *render(service, conversation_id, accept, meta, {}))


def chat_batch(service: Service, texts, conversation_ids, accepts):
    turns = service.chat(texts, conversation_ids, accepts)
    return [t.conversation_id for t in turns], [t.as_dict() for t in turns], ["" for _ in turns]


def choose(service: Service, index: int, choices, conversation_id, accept):
    if not isinstance(choices, list) or not 0 <= index < len(choices) or not isinstance(choices[index], dict):
        return conversation_id, {}
    turn = service.choose(conversation_id, choices[index].get("intent"), accept)
    return turn.conversation_id, turn.as_dict()


def choose_first(service: Service, choices, conversation_id, accept):
    return choose(service, 0, choices, conversation_id, accept)


def choose_second(service: Service, choices, conversation_id, accept):
    return choose(service, 1, choices, conversation_id, accept)


def new_conversation():
    return "", {}


def refresh_chat(service: Service, conversation_id, accept, meta, turn, current):
    """Timer: new agent messages appear without the customer doing anything."""
    if not conversation_id:
        return (gr.skip(),) * 5
    rendered = render(service, conversation_id, accept, meta, turn)
    if len(rendered[0]) == len(current or []):
        return (gr.skip(),) * 5
    return rendered


# batch=True: Gradio's queue gathers concurrent calls, so each argument arrives as a list; the
# annotations describe one call, which is what API users send and see. client_message_id is
# optional (the 3-argument call of the published API keeps working): a retry with the same one is
# answered from the stored turn.
def api_chat(service: Service, text: str, conversation_id: str, accept_language: str,
             client_message_id: str | None = None) -> dict:
    return [[t.as_dict() for t in service.chat(text, conversation_id, accept_language, client_message_id)]]


def api_analyse(service: Service, text: str) -> dict:
    return service.analyse(text)


def chat_tab(service: Service, demo: gr.Blocks) -> None:
    conversation = gr.BrowserState("", storage_key="chatbot-conversation-id", secret=service.browser_secret())
    accept_language, pending_choices, last_turn = gr.State(""), gr.State([]), gr.State({})
    chat = gr.Chatbot(label="Chat", height=460, elem_id="customer-chat", buttons=["copy"])
    with gr.Row(visible=False, elem_id="choices") as choice_row:
        choice_a = gr.Button("", size="sm", elem_id="choice-a")
        choice_b = gr.Button("", size="sm", elem_id="choice-b")
    with gr.Row():
        box = gr.Textbox(placeholder="Type your message…", show_label=False, scale=8, max_lines=4,
                         elem_id="customer-input")
        send = gr.Button("Send", variant="primary", scale=1, elem_id="customer-send")
    with gr.Row():
        new_chat = gr.Button("New conversation", size="sm", elem_id="new-conversation")
        show_meta = gr.Checkbox(True, label="Show language · intent · confidence", elem_id="show-meta")
    poll = gr.Timer(3.0)

    render_in = [conversation, accept_language, show_meta, last_turn]
    render_out = [chat, choice_row, choice_a, choice_b, pending_choices]
    private = {"api_visibility": "private"}
    demo.load(bind(customer_load, service), [conversation, show_meta], [accept_language, *render_out], **private)
    for trigger in (send.click, box.submit):
        trigger(bind(chat_batch, service), [box, conversation, accept_language], [conversation, last_turn, box],
                batch=True, max_batch_size=16, concurrency_id="model", concurrency_limit=1, **private).then(
            bind(render, service), render_in, render_out, **private)
    for button, handler in ((choice_a, choose_first), (choice_b, choose_second)):
        button.click(bind(handler, service), [pending_choices, conversation, accept_language],
                     [conversation, last_turn], concurrency_id="model", **private).then(
            bind(render, service), render_in, render_out, **private)
    new_chat.click(new_conversation, None, [conversation, last_turn], **private).then(
        bind(render, service), render_in, render_out, **private)
    show_meta.change(bind(render, service), render_in, render_out, **private)
    poll.tick(bind(refresh_chat, service), [*render_in, chat], render_out, show_progress="hidden", **private)


def build_customer_app(service: Service) -> gr.Blocks:
    """What anybody may open: the chat and the public API. Nothing here reads another conversation."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"## {TITLE}\nWrite in English, Français, Deutsch, Nederlands, Español, Italiano or Português.")
        chat_tab(service, demo)
        gr.api(bind(api_chat, service), api_name="chat", batch=True, max_batch_size=16, concurrency_id="model")
        gr.api(bind(api_analyse, service), api_name="analyse", concurrency_id="model")
    demo.queue(default_concurrency_limit=4)
    return demo


# ==================================================================== staff (signed in)
def caller_of(service: Service, request: gr.Request | None):
    """Who the signed-in session is, from the server's session only (None when nobody)."""
    username = getattr(request, "username", None) if request is not None else None
    client = getattr(getattr(request, "client", None), "host", None) if request is not None else None
    return service.caller(username, client=client)


@contextlib.contextmanager
def shown_as_errors():
    """A refusal or a bad value becomes an error the staff member sees; nothing else is returned."""
    try:
        yield
    except AccessDenied as err:
        raise gr.Error(f"Access denied: {err}") from None
    except ValueError as err:
        raise gr.Error(str(err)) from None


def staff_load(service: Service, request: gr.Request):
    with shown_as_errors():
        caller = service.staff_member(caller_of(service, request))
    queue, recent = queues(service, request)
    who = f"Signed in as **{caller.name}** ({caller.role}) · [Sign out](logout)"
    return who, gr.update(visible=caller.role == "admin"), queue, recent


def queues(service: Service, request: gr.Request):
    with shown_as_errors():
        caller = caller_of(service, request)
        return views.queue_rows(service.queue(caller)), views.queue_rows(service.recent(caller, 15))


def open_conversation(service: Service, conversation_id, request: gr.Request):
    with shown_as_errors():
        caller = caller_of(service, request)
        view = service.conversation(caller, (conversation_id or "").strip() if isinstance(conversation_id, str) else "")
    if view is None:
        return "Select a conversation.", [], {}, "", gr.update(choices=[], value=None), ""
    info, messages = view["info"], view["messages"]
    customer = [m for m in messages if m["role"] == "customer"]
    head = (f"**{info['status']}** · language **{info['lang'] or '?'}** · {len(customer)} customer message(s)"
            + (f" · hand-off: {info['handoff_reason']}" if info["handoff_reason"] else ""))
    return (head, views.transcript_rows(messages), views.top_intents(customer[-1] if customer else None),
            view["suggested"]["reply"], gr.update(choices=views.revealable_choices(messages), value=None), "")


def pick_row(service: Service, table, evt: gr.SelectData, request: gr.Request):
    """The conversation id of the clicked row (the last column) of a table the staff member sees."""
    with shown_as_errors():
        service.staff_member(caller_of(service, request))
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return table.iloc[row, -1] if hasattr(table, "iloc") else table[row][-1]


def pick_message(service: Service, conversation_id, evt: gr.SelectData, request: gr.Request):
    with shown_as_errors():
        view = service.conversation(caller_of(service, request), (conversation_id or "").strip())
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    messages = view["messages"] if view else []
    return views.top_intents(messages[row]) if isinstance(row, int) and 0 <= row < len(messages) else {}


def agent_action(service: Service, action: str, conversation_id, text, request: gr.Request):
    conversation_id = (conversation_id or "").strip() if isinstance(conversation_id, str) else ""
    with shown_as_errors():
        caller = caller_of(service, request)
        if action == "send":
            service.send(caller, conversation_id, text)
        elif action == "take":
            service.take_over(caller, conversation_id)
        else:
            service.close(caller, conversation_id)
    return (*open_conversation(service, conversation_id, request), *queues(service, request))


def agent_send(service: Service, conversation_id, text, request: gr.Request):
    return agent_action(service, "send", conversation_id, text, request)


def agent_take_over(service: Service, conversation_id, text, request: gr.Request):
    return agent_action(service, "take", conversation_id, text, request)


def agent_close(service: Service, conversation_id, text, request: gr.Request):
    return agent_action(service, "close", conversation_id, text, request)


def reveal(service: Service, conversation_id, choice, request: gr.Request):
    """One masked value of the open conversation in clear (written to the audit trail)."""
    with shown_as_errors():
        caller = caller_of(service, request)
        try:
            message_id, index = (int(part) for part in str(choice).split(":"))
        except ValueError:
            raise ValueError("pick a masked value first") from None
        value = service.reveal(caller, (conversation_id or "").strip(), message_id, index)
    return f"{value['kind']}: {value['value']}"


def analyse_probe(service: Service, text, request: gr.Request):
    with shown_as_errors():
        result = service.staff_analyse(caller_of(service, request), text)
    return result["lang"], {t["intent"]: t["confidence"] for t in result.get("top", [])}


def agent_tab(service: Service) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("### Waiting for an agent (oldest first)")
            queue = gr.Dataframe(headers=views.QUEUE_COLUMNS, interactive=False, wrap=True, elem_id="agent-queue")
            gr.Markdown("### Recent conversations")
            recent = gr.Dataframe(headers=views.QUEUE_COLUMNS, interactive=False, wrap=True, elem_id="agent-recent")
            refresh_queue = gr.Button("Refresh", size="sm", elem_id="agent-refresh")
        with gr.Column(scale=1):
            selected = gr.Textbox(label="Conversation", interactive=True, elem_id="agent-conversation",
                                  placeholder="click a row in the queue, or paste an id")
            status = gr.Markdown("", elem_id="agent-status")
            transcript = gr.Dataframe(headers=views.TRANSCRIPT_COLUMNS, interactive=False, wrap=True,
                                      elem_id="agent-transcript")
            intents = gr.Label(num_top_classes=3, label="Top intents of the selected message", elem_id="agent-top")
            suggestion = gr.Textbox(label="Suggested reply (edit, then send)", lines=4, elem_id="agent-reply")
            with gr.Row():
                send = gr.Button("Send to customer", variant="primary", elem_id="agent-send")
                take_over = gr.Button("Take over", elem_id="agent-take-over")
                close = gr.Button("Close conversation", elem_id="agent-close")
            with gr.Row():
                masked = gr.Dropdown([], label="Masked value (e-mail, phone, IBAN)", elem_id="agent-masked", scale=3)
                reveal_button = gr.Button("Reveal (audited)", size="sm", elem_id="agent-reveal", scale=1)
            revealed = gr.Textbox(label="Revealed value", interactive=False, elem_id="agent-revealed")
    with gr.Accordion("Analyse any message", open=False):
        with gr.Row():
            probe = gr.Textbox(label="Message", scale=4, elem_id="analyse-input")
            analyse_button = gr.Button("Analyse", elem_id="analyse-button")
        with gr.Row():
            probe_lang = gr.JSON(label="Language")
            probe_top = gr.Label(num_top_classes=3, label="Intents")
    poll = gr.Timer(5.0)

    private = {"api_visibility": "private"}
    view = [status, transcript, intents, suggestion, masked, revealed]
    refresh_queue.click(bind(queues, service), None, [queue, recent], **private)
    poll.tick(bind(queues, service), None, [queue, recent], show_progress="hidden", **private)
    queue.select(bind(pick_row, service), queue, selected, **private)
    recent.select(bind(pick_row, service), recent, selected, **private)
    selected.change(bind(open_conversation, service), selected, view, **private)
    transcript.select(bind(pick_message, service), selected, intents, **private)
    for button, handler in ((send, agent_send), (take_over, agent_take_over), (close, agent_close)):
        button.click(bind(handler, service), [selected, suggestion], [*view, queue, recent], **private)
    reveal_button.click(bind(reveal, service), [selected, masked], revealed, **private)
    analyse_button.click(bind(analyse_probe, service), probe, [probe_lang, probe_top], concurrency_id="model",
                         **private)
    return queue, recent


def admin_view(service: Service, request: gr.Request, note: str | None = None):
    with shown_as_errors():
        caller = caller_of(service, request)
        summaries = service.versions(caller)
        audit = views.audit_rows(service.audit_log(caller, 200))
        users = views.user_rows(service.users(caller))
    path = Path(tempfile.gettempdir()) / f"chatbot-versions-{os.getpid()}-{time.time_ns()}.png"
    live = next((s["name"] for s in summaries if s["live"]), None)
    views.plot_versions([{**s, "folder": s["name"]} for s in summaries], path, live=live)
    return (note or f"Live version: **{live}**", views.version_rows(summaries), str(path),
            gr.update(choices=[s["name"] for s in summaries], value=live), audit, users)


def admin_refresh(service: Service, request: gr.Request):
    return admin_view(service, request)


def start_build(service: Service, ratio, method, targets, epochs, per_intent, request: gr.Request,
                progress=gr.Progress()):
    with shown_as_errors():
        try:
            ratio, epochs = float(ratio), int(epochs) if epochs else None
            per_intent = int(per_intent) if per_intent else None
        except (TypeError, ValueError):
            raise ValueError("ratio, epochs and examples must be numbers") from None
        job = service.start_build(caller_of(service, request), ratio, method, targets, epochs, per_intent)
    while job.status == "running":
        progress(job.progress, desc=job.stage)
        time.sleep(0.5)
    if job.status == "done":
        res = job.result
        return (f"Built **{job.name}**: accuracy {res['accuracy']:.4f}, macro-F1 {res['macro_f1']:.4f}, "
                f"{res['parameters'] / 1e6:.1f} M parameters. The live model is unchanged until you promote it.")
    return f"Build **{job.name}** {job.status}: {job.error or 'cancelled by an admin'}. The live model is unchanged."


def cancel_build(service: Service, request: gr.Request):
    with shown_as_errors():
        return f"Cancelling {service.cancel_jobs(caller_of(service, request))} running build(s)…"


def version_action(service: Service, action: str, name, request: gr.Request):
    with shown_as_errors():
        caller = caller_of(service, request)
        if action == "promote":
            service.promote(caller, name)
        elif action == "rollback":
            name = service.rollback(caller)
        else:
            service.delete(caller, name)
    return admin_view(service, request, f"{action} {name}: done")


def promote(service: Service, name, request: gr.Request):
    return version_action(service, "promote", name, request)


def rollback(service: Service, name, request: gr.Request):
    return version_action(service, "rollback", name, request)


def delete(service: Service, name, request: gr.Request):
    return version_action(service, "delete", name, request)


def erase_conversation(service: Service, conversation_id, request: gr.Request):
    with shown_as_errors():
        conversation_id = (conversation_id or "").strip() if isinstance(conversation_id, str) else ""
        count = service.erase(caller_of(service, request), conversation_id)
    return (f"Conversation {conversation_id} erased ({count} message(s)).", *admin_view(service, request)[4:])


def admin_tab(service: Service):
    admin_note = gr.Markdown("", elem_id="admin-note")
    with gr.Row():
        ratio = gr.Slider(0.05, 1.0, value=0.25, step=0.05, label="Rank ratio (1 = uncompressed)",
                          info="Compresses the live classifier (the shipped one when the live one is already "
                               "compressed), then heals it with LoRA.", elem_id="admin-ratio")
        method = gr.Radio(["whitened", "plain"], value="whitened", label="Method", elem_id="admin-method")
        targets = gr.Radio(["attn", "mlp", "attn+mlp"], value="attn", label="Layers", elem_id="admin-targets")
    with gr.Row():
        epochs = gr.Number(2, precision=0, minimum=1, maximum=10, label="Healing epochs", elem_id="admin-epochs")
        per_intent = gr.Number(12, precision=0, minimum=1, label="Healing examples per intent and language",
                               elem_id="admin-per-intent")
        build = gr.Button("Build version", variant="primary", elem_id="admin-build")
        cancel = gr.Button("Cancel build", variant="stop", elem_id="admin-cancel")
    job_status = gr.Markdown("", elem_id="admin-job")
    versions = gr.Dataframe(headers=views.VERSION_COLUMNS, interactive=False, elem_id="admin-versions")
    trade_off = gr.Image(label="Accuracy against parameters (live version ringed)", type="filepath",
                         elem_id="admin-plot", height=380)
    with gr.Row():
        version_name = gr.Dropdown([], label="Version", allow_custom_value=False, elem_id="admin-version")
        promote_button = gr.Button("Promote to live", elem_id="admin-promote")
        rollback_button = gr.Button("Roll back", elem_id="admin-rollback")
        delete_button = gr.Button("Delete", variant="stop", elem_id="admin-delete")
    with gr.Accordion("Erase a conversation (a customer's request)", open=False):
        with gr.Row():
            erase_id = gr.Textbox(label="Conversation id", elem_id="admin-erase-id", scale=4)
            erase_button = gr.Button("Erase", variant="stop", elem_id="admin-erase", scale=1)
        erase_note = gr.Markdown("", elem_id="admin-erase-note")
    gr.Markdown("### Audit trail (newest first)")
    audit = gr.Dataframe(headers=views.AUDIT_COLUMNS, interactive=False, wrap=True, elem_id="admin-audit")
    gr.Markdown("### Staff accounts (managed with `python -m chatbot users`)")
    users = gr.Dataframe(headers=views.USER_COLUMNS, interactive=False, elem_id="admin-users")
    refresh = gr.Button("Refresh", size="sm", elem_id="admin-refresh")

    private = {"api_visibility": "private"}
    view = [admin_note, versions, trade_off, version_name, audit, users]
    refresh.click(bind(admin_refresh, service), None, view, **private)
    build.click(bind(start_build, service), [ratio, method, targets, epochs, per_intent], job_status,
                concurrency_id="admin", concurrency_limit=1, **private).then(
        bind(admin_refresh, service), None, view, **private)
    cancel.click(bind(cancel_build, service), None, job_status, queue=False, **private)
    for button, handler in ((promote_button, promote), (rollback_button, rollback), (delete_button, delete)):
        button.click(bind(handler, service), version_name, view, **private)
    erase_button.click(bind(erase_conversation, service), erase_id, [erase_note, audit, users], **private)
    return view


def admin_load(service: Service, request: gr.Request):
    """The admin tab's content when an admin opens the console; nothing (and no error) for an agent."""
    try:
        service.staff_member(caller_of(service, request), "admin")
    except AccessDenied:
        return (gr.skip(),) * 6
    return admin_view(service, request)


def build_staff_app(service: Service) -> gr.Blocks:
    """Agent assist and admin, for signed-in staff (mount it with :func:`staff_auth`)."""
    with gr.Blocks(title=f"{TITLE} · staff") as demo:
        who = gr.Markdown("", elem_id="staff-who")
        with gr.Tab("Agent assist", id="agent", elem_id="tab-agent"):
            queue, recent = agent_tab(service)
        with gr.Tab("Admin", id="admin", elem_id="tab-admin", visible=False) as admin:
            admin_outputs = admin_tab(service)
        demo.load(bind(staff_load, service), None, [who, admin, queue, recent], api_visibility="private")
        demo.load(bind(admin_load, service), None, admin_outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=4)
    return demo


async def staff_auth(service: Service, username: str, password: str) -> bool:
    """Gradio's sign-in check for the staff app: our accounts, off the event loop (Argon2 takes a while)."""
    client = client_address.get()
    return await anyio.to_thread.run_sync(service.sign_in, username, password, client)


# ==================================================================== the server
def create_server(service: Service, login_throttle: Throttle | None = None):
    """The ASGI app: staff at ``/staff`` (signed in), customers at ``/``, behind :class:`chatbot.web.Guard`."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/staff", lambda: RedirectResponse("/staff/"), include_in_schema=False)
    gr.mount_gradio_app(app, build_staff_app(service), "/staff", auth=functools.partial(staff_auth, service),
                        auth_message="Staff sign-in (agents and admins).",
                        footer_links=[], ssr_mode=False, css=CSS, max_file_size=1, run_history=False)
    customers = build_customer_app(service)
    gr.mount_gradio_app(app, customers, "/", footer_links=["api"], ssr_mode=False, css=CSS,
                        max_file_size=1, run_history=False, show_error=False)  # no internals shown to customers
    return Guard(app, login_throttle=login_throttle, batch_inputs=batch_inputs(customers, ""))


def batch_inputs(blocks: gr.Blocks, prefix: str) -> dict:
    """``{(prefix, fn_index or api_name): number of inputs}`` of the batched handlers of ``blocks``."""
    shapes = {}
    for index, fn in blocks.fns.items():
        if fn.batch:
            shapes[(prefix, index)] = len(fn.inputs)
            if fn.api_name:
                shapes[(prefix, fn.api_name)] = len(fn.inputs)
    return shapes


class Server:
    """The app served by uvicorn in a background thread (tests; ``main`` serves in the foreground)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{host}:{port}/"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    default_model = os.environ.get("CHATBOT_DEFAULT_MODEL")
    service = Service(default_model=default_model) if default_model else Service()
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    log.info("Customers: http://%s:%d/  ·  staff (sign-in): http://%s:%d/staff/", host, port, host, port)
    uvicorn.run(create_server(service), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
