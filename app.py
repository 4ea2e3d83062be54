"""The web app: the customer chat at ``/`` (no sign-in) and the staff console at ``/staff`` (sign-in).

    python app.py     # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT), staff at /staff

Two Gradio apps on one FastAPI server. The customer app holds the chat widget and the public API
(``/chat``, ``/analyse``); it has no staff screen and no staff handler. The staff app has the agents'
inbox and conversation view, the out-of-scope report and, for admins, builds and versions. The live
views are ``gr.HTML`` rendered by ``chatbot.views`` (everything people wrote escaped) and driven by
``assets/ui/live.js`` (a click on a ``data-pick`` element is a ``select`` event) and timers. The staff app (agent assist,
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
import PIL.Image
import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from chatbot import hf_sign_in, views
from chatbot.accounts import AccessDenied
from chatbot.service import Service
from chatbot.settings import MAX_MESSAGE_CHARS, UI_DIR, chat_turns_per_minute
from chatbot.web import Guard, Throttle, client_address

TITLE = "Multilingual customer service"
CSS = (UI_DIR / "app.css").read_text(encoding="utf-8")
LIVE_JS = (UI_DIR / "live.js").read_text(encoding="utf-8")
"""The script of the live views (clicks as select events, local times, scrolling, the inbox chime)."""
log = logging.getLogger("app")


class Click(gr.SelectData):
    """``gr.SelectData`` for the select handlers: a call that carries no event data (an API client;
    a browser always sends it) is a click on nothing, not a TypeError inside Gradio."""

    def __init__(self, target, data):
        super().__init__(target, {"index": None, "value": None, **(data if isinstance(data, dict) else {})})


def bind(handler, service: Service):
    """``handler(service, *inputs)`` as an event listener of ``*inputs``, that Gradio can still inspect
    (``gr.Request``, ``gr.Progress`` and ``gr.SelectData`` (:class:`Click`) parameters are recognised by annotation)."""
    @functools.wraps(handler)
    def listener(*args, **kwargs):
        return handler(service, *args, **kwargs)

    signature = inspect.signature(handler)
    listener.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return listener


# ==================================================================== customers (no sign-in)
def chat_view(service: Service, conversation_id, accept, pending: str | None = None):
    """The customer's own conversation (the id from their browser is the proof) as the widget shows
    it, its signature (what a refresh compares) and its language."""
    view = service.customer_view(conversation_id, accept)
    html = views.customer_chat(view, service.greeting(view["lang"]), service.words(view["lang"]), pending)
    return html, views.chat_signature(view), view["lang"]


def customer_load(service: Service, conversation_id, request: gr.Request):
    """The page opens: the conversation kept in the browser (choices still offered included), and the
    widget's words in the customer's language."""
    accept = request.headers.get("accept-language", "") if request else ""
    html, signature, lang = chat_view(service, conversation_id, accept)
    words = service.words(lang)
    return (accept, html, signature, gr.update(placeholder=words["placeholder"]), gr.update(value=words["send"]),
            gr.update(value=words["new_conversation"]))


def stage(service: Service, text, conversation_id, accept):
    """Send pressed: the message shows at once (with a typing indicator) while the bot answers; a
    message with no letter or digit (empty, emoji only) is not sent, and the customer is told why."""
    text = text if isinstance(text, str) else ""
    if not any(ch.isalnum() for ch in text):
        note = service.words(service.language(conversation_id, accept))["no_words"] if text.strip() else ""
        return "", gr.skip(), gr.skip(), note
    html, _, _ = chat_view(service, conversation_id, accept, pending=text[:MAX_MESSAGE_CHARS])
    return text, "", html, ""


def chat_batch(service: Service, texts, conversation_ids, accepts):
    """The staged messages of several customers at once (batch=True: each argument is a list)."""
    ids = list(conversation_ids)
    todo = [i for i, t in enumerate(texts) if isinstance(t, str) and t]
    turns = service.chat([texts[i] for i in todo], [ids[i] for i in todo], [accepts[i] for i in todo]) if todo else []
    for i, turn in zip(todo, turns):
        ids[i] = turn.conversation_id
    shown = [chat_view(service, ids[i], accepts[i]) for i in range(len(texts))]
    return ids, [s[0] for s in shown], [s[1] for s in shown], ["" for _ in texts]


def choose(service: Service, conversation_id, accept, evt: Click):
    """A clarification choice clicked in the chat: taken when the conversation offers it now."""
    try:
        conversation_id = service.choose(conversation_id, evt.value, accept).conversation_id
    except ValueError:
        pass  # not offered (any more): the chat is redrawn as it is
    html, signature, _ = chat_view(service, conversation_id, accept)
    return conversation_id, html, signature


def new_conversation(service: Service, accept):
    html, signature, _ = chat_view(service, "", accept)
    return "", html, signature, ""


def refresh_chat(service: Service, conversation_id, accept, signature):
    """Timer: an agent's messages (and a close) appear without the customer doing anything."""
    if not conversation_id:
        return gr.skip(), gr.skip()
    html, new_signature, _ = chat_view(service, conversation_id, accept)
    return (gr.skip(), gr.skip()) if new_signature == signature else (html, new_signature)


# batch=True: Gradio's queue gathers concurrent calls, so each argument arrives as a list; the
# annotations describe one call, which is what API users send and see. client_message_id is
# optional (the 3-argument call of the published API keeps working): a retry with the same one is
# answered from the stored turn.
def api_chat(service: Service, text: str, conversation_id: str, accept_language: str,
             client_message_id: str | None = None) -> dict:
    return [[t.as_dict() for t in service.chat(text, conversation_id, accept_language, client_message_id)]]


def api_analyse(service: Service, text: str) -> dict:
    return service.analyse(text)


COUNT_JS = f"(text) => `${{(text || '').length}} / {MAX_MESSAGE_CHARS}`"
"""The characters typed against the limit, counted in the browser as the customer types."""


def chat_tab(service: Service, demo: gr.Blocks) -> None:
    conversation = gr.BrowserState("", storage_key="chatbot-conversation-id", secret=service.browser_secret())
    # What the batched handler (chat_batch) reads or writes lives in the page, in hidden fields, never in
    # gr.State: Gradio runs a batch of several customers' calls with the first caller's session state,
    # so a State would give every customer in the batch the first one's message and language.
    accept_language, signature, staged = (gr.Textbox("", visible=False, elem_id=f"customer-{name}")
                                          for name in ("accept-language", "signature", "staged"))
    with gr.Column(elem_id="customer-widget"):
        gr.Markdown(f"## {TITLE}\nEnglish · Français · Deutsch · Nederlands · Español · Italiano · Português",
                    elem_id="customer-title")
        chat = gr.HTML("", elem_id="customer-chat", js_on_load=LIVE_JS, apply_default_css=False)  # filled on load
        with gr.Row(elem_id="customer-composer"):
            box = gr.Textbox(placeholder="Type your message…", show_label=False, lines=1, max_lines=5, scale=8,
                             max_length=MAX_MESSAGE_CHARS, elem_id="customer-input", autofocus=True, container=False)
            send = gr.Button("Send", variant="primary", scale=1, min_width=84, elem_id="customer-send")
        with gr.Row(elem_id="customer-footer"):
            new_chat = gr.Button("New conversation", size="sm", scale=0, min_width=150, elem_id="new-conversation")
            notice = gr.Markdown("", elem_id="customer-notice")
            count = gr.Markdown(f"0 / {MAX_MESSAGE_CHARS}", elem_id="customer-count")
    poll = gr.Timer(3.0)

    private = {"api_visibility": "private"}
    demo.load(bind(customer_load, service), conversation, [accept_language, chat, signature, box, send, new_chat],
              **private)
    box.change(None, box, count, js=COUNT_JS, queue=False, **private)
    for trigger in (send.click, box.submit):
        trigger(bind(stage, service), [box, conversation, accept_language], [staged, box, chat, notice],
                queue=False, show_progress="hidden", **private).then(
            bind(chat_batch, service), [staged, conversation, accept_language], [conversation, chat, signature, staged],
            batch=True, max_batch_size=16, concurrency_id="model", concurrency_limit=1, show_progress="hidden",
            **private)
    chat.select(bind(choose, service), [conversation, accept_language], [conversation, chat, signature],
                concurrency_id="model", show_progress="hidden", **private)
    new_chat.click(bind(new_conversation, service), accept_language, [conversation, chat, signature, notice],
                   **private)
    poll.tick(bind(refresh_chat, service), [conversation, accept_language, signature], [chat, signature],
              show_progress="hidden", **private)


def build_customer_app(service: Service) -> gr.Blocks:
    """What anybody may open: the chat and the public API. Nothing here reads another conversation."""
    with gr.Blocks(title=TITLE) as demo:
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


def picked(evt: Click | None) -> str:
    """The value a click on a live view sent (``data-pick``), as a string."""
    value = getattr(evt, "value", None)
    return value if isinstance(value, str) else str(value) if isinstance(value, int) else ""


def staff_load(service: Service, request: gr.Request):
    with shown_as_errors():
        caller = service.staff_member(caller_of(service, request))
    sign_out = hf_sign_in.LOGOUT if caller.via == "huggingface" else "logout"  # Gradio's, under /staff/
    who = f"Signed in as **{caller.name}** ({caller.role}) · [Sign out]({sign_out})"
    return (who, gr.update(visible=caller.role == "admin"), *inbox_view(service, "", request))


def inbox_view(service: Service, selected, request: gr.Request):
    with shown_as_errors():
        boxes = service.inbox(caller_of(service, request))
    return views.inbox(boxes, selected if isinstance(selected, str) else None), views.inbox_signature(boxes)


def conversation_view(service: Service, selected, request: gr.Request):
    """The open conversation: header, thread, top intents of the latest customer message, the
    suggested reply (also kept as the draft's origin), the masked values, the signature."""
    selected = selected.strip() if isinstance(selected, str) else ""
    with shown_as_errors():
        view = service.conversation(caller_of(service, request), selected) if selected else None
    if view is None:
        return (views.conversation_header(None), views.conversation([]), {}, "", "",
                gr.update(choices=[], value=None), "", "")
    messages = view["messages"]
    suggestion = view["suggested"]["reply"]
    return (views.conversation_header(view["info"]), views.conversation(messages),
            views.top_intents(views.latest_customer(messages)), suggestion, suggestion,
            gr.update(choices=views.revealable_choices(messages), value=None), "", views.conversation_signature(view))


def open_conversation(service: Service, selected, request: gr.Request):
    return (*conversation_view(service, selected, request), *inbox_view(service, selected, request))


def pick_conversation(service: Service, evt: Click, request: gr.Request):
    """A click in the inbox (or the out-of-scope list): the conversation it names, for the agent tab."""
    with shown_as_errors():
        service.staff_member(caller_of(service, request))
    return picked(evt), gr.Tabs(selected="agent")


def pick_message(service: Service, selected, evt: Click, request: gr.Request):
    """A click on a customer message of the open conversation: its top intents."""
    with shown_as_errors():
        view = service.conversation(caller_of(service, request), (selected or "").strip(), seen=False) \
            if isinstance(selected, str) else None
    message = next((m for m in (view["messages"] if view else []) if str(m["id"]) == picked(evt)), None)
    return views.top_intents(message)


def refresh_console(service: Service, selected, inbox_signature, thread_signature, draft, suggested,
                    request: gr.Request):
    """Timer: the inbox and the open conversation follow what customers write. The draft is replaced
    by a new suggestion only while the agent has not edited it."""
    with shown_as_errors():
        caller = caller_of(service, request)
        selected = selected.strip() if isinstance(selected, str) else ""
        view = service.conversation(caller, selected) if selected else None
        thread = [gr.skip()] * 8
        if view is not None and views.conversation_signature(view) != thread_signature:
            thread = list(conversation_view(service, selected, request))
            if (draft or "").strip() and draft != suggested:
                thread[3], thread[4] = gr.skip(), gr.skip()  # the agent's own words stay
        boxes = service.inbox(caller)
    signature = views.inbox_signature(boxes)
    inbox = [gr.skip(), gr.skip()] if signature == inbox_signature else [views.inbox(boxes, selected), signature]
    return (*thread, *inbox)


def agent_action(service: Service, action: str, selected, text, request: gr.Request, suggested=None):
    selected = selected.strip() if isinstance(selected, str) else ""
    with shown_as_errors():
        caller = caller_of(service, request)
        if action == "send":
            service.send(caller, selected, text)
        elif action == "take":
            service.take_over(caller, selected)
        else:
            service.close(caller, selected)
    shown = list(open_conversation(service, selected, request))
    if action == "send":  # sent: the box is emptied (a new suggestion comes with the customer's next message)
        shown[3] = shown[4] = ""
    elif action == "take" and (text or "").strip() and text != suggested:
        shown[3], shown[4] = gr.skip(), gr.skip()  # the agent's own words stay, as on the timer
    return tuple(shown)


def agent_send(service: Service, selected, text, suggested, request: gr.Request):
    return agent_action(service, "send", selected, text, request, suggested)


def agent_take_over(service: Service, selected, text, suggested, request: gr.Request):
    return agent_action(service, "take", selected, text, request, suggested)


def agent_close(service: Service, selected, text, suggested, request: gr.Request):
    return agent_action(service, "close", selected, text, request, suggested)


def reveal(service: Service, selected, choice, request: gr.Request):
    """One masked value of the open conversation in clear (written to the audit trail)."""
    with shown_as_errors():
        caller = caller_of(service, request)
        try:
            message_id, index = (int(part) for part in str(choice).split(":"))
        except ValueError:
            raise ValueError("pick a masked value first") from None
        value = service.reveal(caller, (selected or "").strip() if isinstance(selected, str) else "", message_id, index)
    return f"{value['kind']}: {value['value']}"


def analyse_probe(service: Service, text, request: gr.Request):
    with shown_as_errors():
        result = service.staff_analyse(caller_of(service, request), text)
    return result["lang"], {t["intent"]: t["confidence"] for t in result.get("top", [])}


def agent_tab(service: Service, tabs: gr.Tabs):
    selected, inbox_sig, thread_sig, suggested = gr.State(""), gr.State(""), gr.State(""), gr.State("")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            inbox = gr.HTML("", elem_id="agent-inbox", js_on_load=LIVE_JS, apply_default_css=False)
        with gr.Column(scale=3, min_width=360):
            head = gr.HTML(views.conversation_header(None), elem_id="agent-head", js_on_load=None)
            thread = gr.HTML(views.conversation([]), elem_id="agent-thread", js_on_load=LIVE_JS,
                             apply_default_css=False)
            intents = gr.Label(num_top_classes=3, label="Top intents of the latest customer message (click a "
                               "customer message for its own)", elem_id="agent-top", show_heading=False)
            suggestion = gr.Textbox(label="Suggested reply in the customer's language (edit, then send)", lines=5,
                                    elem_id="agent-reply")
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
    poll = gr.Timer(3.0)

    private = {"api_visibility": "private"}
    shown = [head, thread, intents, suggestion, suggested, masked, revealed, thread_sig, inbox, inbox_sig]
    inbox.select(bind(pick_conversation, service), None, [selected, tabs], **private).then(
        bind(open_conversation, service), selected, shown, **private)
    thread.select(bind(pick_message, service), selected, intents, **private)
    poll.tick(bind(refresh_console, service), [selected, inbox_sig, thread_sig, suggestion, suggested], shown,
              show_progress="hidden", **private)
    for button, handler in ((send, agent_send), (take_over, agent_take_over), (close, agent_close)):
        button.click(bind(handler, service), [selected, suggestion, suggested], shown, **private)
    reveal_button.click(bind(reveal, service), [selected, masked], revealed, **private)
    analyse_button.click(bind(analyse_probe, service), probe, [probe_lang, probe_top], concurrency_id="model",
                         **private)
    return inbox, inbox_sig, selected, shown


def out_of_scope_view(service: Service, days, request: gr.Request):
    with shown_as_errors():
        try:
            days = int(days)
        except (TypeError, ValueError):
            raise ValueError("the window is a number of days") from None
        return views.out_of_scope(service.out_of_scope(caller_of(service, request), days))


def out_of_scope_tab(service: Service, tabs: gr.Tabs, selected: gr.State, shown: list):
    gr.Markdown("What customers asked that the bot does not cover (the raw material for new intents). "
                "Click a message to open its conversation.")
    with gr.Row():
        days = gr.Dropdown([7, 14, 30, 90], value=14, label="Days", elem_id="oos-days", scale=0, min_width=120)
        refresh = gr.Button("Refresh", size="sm", elem_id="oos-refresh", scale=0)
    report = gr.HTML("", elem_id="oos-report", js_on_load=LIVE_JS, apply_default_css=False)
    private = {"api_visibility": "private"}
    for trigger in (days.change, refresh.click):
        trigger(bind(out_of_scope_view, service), days, report, **private)
    report.select(bind(pick_conversation, service), None, [selected, tabs], **private).then(
        bind(open_conversation, service), selected, shown, **private)
    return days, report


def admin_view(service: Service, request: gr.Request, note: str | None = None):
    with shown_as_errors():
        caller = caller_of(service, request)
        summaries = service.versions(caller)
        audit = views.audit_rows(service.audit_log(caller, 200))
        users = views.user_rows(service.users(caller))
        serving = service.serving(caller)
    live = next((s["name"] for s in summaries if s["live"]), None)
    with tempfile.TemporaryDirectory(prefix="chatbot-plot-") as folder:  # Gradio keeps its own copy, by content
        path = views.plot_versions([{**s, "folder": s["name"]} for s in summaries], Path(folder) / "versions.png",
                                   live=live)
        plot = PIL.Image.open(path)
        plot.load()
    names = [s["name"] for s in summaries]
    return (views.live_note(live, serving, note), views.version_rows(summaries), plot,
            gr.update(choices=names, value=live), gr.update(choices=names), audit, users)


def admin_refresh(service: Service, request: gr.Request):
    return admin_view(service, request)


def jobs_view(service: Service, request: gr.Request):
    with shown_as_errors():
        items = service.jobs(caller_of(service, request))
    return views.jobs(items), views.jobs_signature(items)


def start_build(service: Service, ratio, method, targets, epochs, per_intent, seed, params_keep, min_saving,
                keep_layers, trim_vocab, lora_r, lora_targets, request: gr.Request):
    """Start a build in the background; its progress shows in the builds list for every admin.
    A parameter share or layers kept of 0 means "not used"."""
    with shown_as_errors():
        try:
            ratio, epochs = float(ratio), int(epochs) if epochs else None
            per_intent = int(per_intent) if per_intent else None
            seed = int(seed) if seed not in (None, "") else 0
            params_keep = float(params_keep) if params_keep else None
            min_saving = float(min_saving) if min_saving else 0.0
            keep_layers = int(keep_layers) if keep_layers else None
            lora_r = float(lora_r) if lora_r not in (None, "") else 8
            if lora_r != int(lora_r):
                raise ValueError
            lora_r = int(lora_r)
        except (TypeError, ValueError, OverflowError):
            raise ValueError("ratio, epochs, examples, seed, share, saving, layers and LoRA rank must be numbers") from None
        job = service.start_build(caller_of(service, request), ratio, method, targets, epochs, per_intent, seed,
                                  params_keep=params_keep, min_saving=min_saving, keep_layers=keep_layers,
                                  trim_vocab=bool(trim_vocab), lora_r=lora_r, lora_targets=lora_targets)
    return (f"Build **{job.name}** started: follow it below. The live model is unchanged until you promote a "
            "version.", *jobs_view(service, request))


def start_soup(service: Service, names, request: gr.Request):
    """Average the chosen versions into a new one in the background (the builds list shows its progress)."""
    with shown_as_errors():
        job = service.start_soup(caller_of(service, request), list(names or []))
    return (f"Soup **{job.name}** started: the mean of {len(job.params['soup'])} versions, scored like a build. "
            "The live model is unchanged until you promote a version.", *jobs_view(service, request))


def cancel_build(service: Service, evt: Click, request: gr.Request):
    """The Cancel button of one build in the list: that build, and only that one, is cancelled."""
    with shown_as_errors():
        name = service.cancel_job(caller_of(service, request), picked(evt))
    return (f"Cancelling **{name}**…", *jobs_view(service, request))


def admin_tick(service: Service, signature, request: gr.Request):
    """Timer: the builds list (and, when a build ends, the versions) for whoever has the page open.
    An agent's page has the (hidden) admin tab too: it gets nothing, silently."""
    with shown_as_errors():
        caller = service.staff_member(caller_of(service, request))
    if caller.role != "admin":
        return (gr.skip(),) * 9
    html, new_signature = jobs_view(service, request)
    if new_signature == signature:
        return (gr.skip(),) * 9
    ended = [part.split(":")[1] for part in new_signature.split("|") if part] != \
        [part.split(":")[1] for part in (signature or "").split("|") if part]
    return (html, new_signature, *(admin_view(service, request) if ended else (gr.skip(),) * 7))


def version_action(service: Service, action: str, name, request: gr.Request, progress=None):
    """Promote, roll back or delete a version; a promotion or rollback that has to prepare the serving
    model first (minutes, once per version and machine) shows its stages in ``progress``."""
    step = (lambda fraction, stage="": progress(fraction, desc=stage)) if progress is not None else None
    with shown_as_errors():
        caller = caller_of(service, request)
        if action == "promote":
            service.promote(caller, name, progress=step)
        elif action == "rollback":
            name = service.rollback(caller, progress=step)
        else:
            service.delete(caller, name)
    return admin_view(service, request, f"{action} {name}: done")


def promote(service: Service, name, request: gr.Request, progress=gr.Progress()):  # noqa: B008 - Gradio's way
    return version_action(service, "promote", name, request, progress)


def rollback(service: Service, name, request: gr.Request, progress=gr.Progress()):  # noqa: B008
    return version_action(service, "rollback", name, request, progress)


def delete(service: Service, name, request: gr.Request):
    return version_action(service, "delete", name, request)


def erase_conversation(service: Service, conversation_id, request: gr.Request):
    with shown_as_errors():
        conversation_id = (conversation_id or "").strip() if isinstance(conversation_id, str) else ""
        count = service.erase(caller_of(service, request), conversation_id)
    return (f"Conversation {conversation_id} erased ({count} message(s)).", *admin_view(service, request)[5:])


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
        seed = gr.Number(0, precision=0, minimum=0, label="Seed",
                         info="Builds that differ only in their seed can be averaged into one (below).",
                         elem_id="admin-seed")
        build = gr.Button("Build version", variant="primary", elem_id="admin-build")
    with gr.Accordion("More compression and healing (the shipped default: share 0.9, saving 0.5, first 11 layers, "
                      "trimmed vocabulary, attn+mlp; LoRA r16 on attn+mlp)", open=False, elem_id="admin-more"):
        with gr.Row():
            params_keep = gr.Slider(0.0, 0.95, value=0.0, step=0.05, elem_id="admin-params-keep",
                                    label="Parameter share kept (0: use the rank ratio)",
                                    info="Keeps this share of the chosen layers' parameters, ranks chosen per matrix.")
            min_saving = gr.Slider(0.0, 0.9, value=0.0, step=0.05, elem_id="admin-min-saving",
                                   label="Minimum saving per matrix",
                                   info="A matrix is factorised only where it saves this share of its work.")
            keep_layers = gr.Number(0, precision=0, minimum=0, elem_id="admin-keep-layers",
                                    label="Keep the first N decoder layers (0: all)")
            trim_vocab = gr.Checkbox(False, label="Trim the vocabulary to our languages", elem_id="admin-trim-vocab")
        with gr.Row():
            lora_r = gr.Number(8, precision=0, minimum=1, maximum=64, label="LoRA rank of the healing adapter",
                               info="Alpha is twice the rank; the shipped default has 16 on attn+mlp.",
                               elem_id="admin-lora-r")
            lora_targets = gr.Radio(["attn", "mlp", "attn+mlp"], value="attn", label="LoRA on",
                                    elem_id="admin-lora-targets")
    job_note = gr.Markdown("", elem_id="admin-job")
    gr.Markdown("### Builds (live progress; a running build can be cancelled by name)")
    jobs = gr.HTML("", elem_id="admin-jobs", js_on_load=LIVE_JS, apply_default_css=False)
    jobs_sig = gr.State("")
    versions = gr.Dataframe(headers=views.VERSION_COLUMNS, interactive=False, elem_id="admin-versions")
    trade_off = gr.Image(label="Accuracy against parameters (every version labelled; the live one ringed in red)",
                         type="filepath", elem_id="admin-plot", height=420)
    with gr.Row():
        version_name = gr.Dropdown([], label="Version", allow_custom_value=False, elem_id="admin-version")
        promote_button = gr.Button("Promote to live", elem_id="admin-promote")
        rollback_button = gr.Button("Roll back", elem_id="admin-rollback")
        delete_button = gr.Button("Delete", variant="stop", elem_id="admin-delete")
    with gr.Row():
        soup_names = gr.Dropdown([], multiselect=True, allow_custom_value=False, scale=4, elem_id="admin-soup-versions",
                                 label="Versions to average (a soup: the same build with other seeds; same size, "
                                       "usually more accurate)")
        soup_button = gr.Button("Average into a new version", scale=1, elem_id="admin-soup")
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
    poll = gr.Timer(2.0, active=False)

    private = {"api_visibility": "private"}
    view = [admin_note, versions, trade_off, version_name, soup_names, audit, users]
    refresh.click(bind(admin_refresh, service), None, view, **private)
    build.click(bind(start_build, service), [ratio, method, targets, epochs, per_intent, seed, params_keep, min_saving,
                                             keep_layers, trim_vocab, lora_r, lora_targets], [job_note, jobs, jobs_sig],
                concurrency_id="admin", concurrency_limit=1, **private)
    soup_button.click(bind(start_soup, service), soup_names, [job_note, jobs, jobs_sig],
                      concurrency_id="admin", concurrency_limit=1, **private)
    jobs.select(bind(cancel_build, service), None, [job_note, jobs, jobs_sig], queue=False, **private)
    poll.tick(bind(admin_tick, service), jobs_sig, [jobs, jobs_sig, *view], show_progress="hidden", **private)
    for button, handler in ((promote_button, promote), (rollback_button, rollback), (delete_button, delete)):
        button.click(bind(handler, service), version_name, view, **private)
    erase_button.click(bind(erase_conversation, service), erase_id, [erase_note, audit, users], **private)
    return [*view, jobs, jobs_sig, poll]


def admin_load(service: Service, request: gr.Request):
    """The admin tab's content (and its live timer) when an admin opens the console; nothing (and no
    error) for an agent."""
    try:
        service.staff_member(caller_of(service, request), "admin")
    except AccessDenied:
        return (gr.skip(),) * 10
    return (*admin_view(service, request), *jobs_view(service, request), gr.Timer(active=True))


def build_staff_app(service: Service) -> gr.Blocks:
    """Agent assist, out of scope and admin, for signed-in staff (mount it with :func:`staff_auth`)."""
    with gr.Blocks(title=f"{TITLE} · staff") as demo:
        who = gr.Markdown("", elem_id="staff-who")
        with gr.Tabs() as tabs:
            with gr.Tab("Agent assist", id="agent", elem_id="tab-agent"):
                inbox, inbox_sig, selected, shown = agent_tab(service, tabs)
            with gr.Tab("Out of scope", id="out-of-scope", elem_id="tab-oos") as oos_tab:
                days, report = out_of_scope_tab(service, tabs, selected, shown)
            with gr.Tab("Admin", id="admin", elem_id="tab-admin", visible=False) as admin:
                admin_outputs = admin_tab(service)
        private = {"api_visibility": "private"}
        demo.load(bind(staff_load, service), None, [who, admin, inbox, inbox_sig], **private)
        demo.load(bind(admin_load, service), None, admin_outputs, **private)
        oos_tab.select(bind(out_of_scope_view, service), days, report, **private)
    demo.queue(default_concurrency_limit=4)
    return demo


async def staff_auth(service: Service, username: str, password: str) -> bool:
    """Gradio's sign-in check for the staff app: our accounts, off the event loop (Argon2 takes a while)."""
    client = client_address.get()
    return await anyio.to_thread.run_sync(service.sign_in, username, password, client)


# ==================================================================== the server
def create_server(service: Service, login_throttle: Throttle | None = None, limit: int | None = None):
    """The ASGI app: staff at ``/staff`` (signed in), customers at ``/``, behind :class:`chatbot.web.Guard`
    (``limit``: chat turns per client address and minute, else ``$CHATBOT_CHAT_TURNS_PER_MINUTE``; 0: none)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/staff", lambda: RedirectResponse("/staff/"), include_in_schema=False)
    if service.sign_in_with == "huggingface":  # before any mount: its routes must come first
        sign_in = {"auth_dependency": hf_sign_in.attach(app, service.accounts.hf_sessions, "/staff")}
    else:
        sign_in = {"auth": functools.partial(staff_auth, service), "auth_message": "Staff sign-in (agents and admins)."}
    staff = build_staff_app(service)
    gr.mount_gradio_app(app, staff, "/staff", **sign_in,
                        footer_links=[], ssr_mode=False, css=CSS, max_file_size=1, run_history=False)
    customers = build_customer_app(service)
    gr.mount_gradio_app(app, customers, "/", footer_links=["api"], ssr_mode=False, css=CSS,
                        max_file_size=1, run_history=False, show_error=False)  # no internals shown to customers
    turns = chat_turns_per_minute() if limit is None else limit
    return Guard(app, login_throttle=login_throttle, batch_inputs=batch_inputs(customers, ""),
                 chat_throttle=Throttle(limit=turns, window_s=60) if turns else None, same_origin=("/staff",),
                 handlers={"": handlers(customers), "/staff": handlers(staff)})


def handlers(blocks: gr.Blocks) -> set:
    """The ``fn_index`` values and API names of every handler of ``blocks`` (what the guard lets be called)."""
    return {*blocks.fns, *(fn.api_name for fn in blocks.fns.values() if isinstance(fn.api_name, str))}


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
