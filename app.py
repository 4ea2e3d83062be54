"""Gradio app: customer chat, agent assist and admin. Only wiring: every handler calls into chatbot/.

    python app.py            # http://127.0.0.1:7860, the shipped default model
    CHATBOT_ADMIN_PASSWORD=... python app.py   # enables the admin tab

Per-user state travels through components (the conversation id in the browser's localStorage,
the browser's Accept-Language in a session State); the server's resources (model, store, versions)
belong to one :class:`chatbot.service.Service` passed to :func:`build_app`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import gradio as gr

from chatbot import views
from chatbot.service import AdminDenied, Service, check_admin

TITLE = "Multilingual customer service"
CSS = """
.meta-note {opacity: 0.7}
footer {display: none !important}
"""


def build_app(service: Service) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"## {TITLE}\nWrite in English, Français, Deutsch, Nederlands, Español, Italiano or Português.")
        conversation = gr.BrowserState("", storage_key="chatbot-conversation-id",
                                       secret=os.environ.get("CHATBOT_BROWSER_SECRET", "chatbot-demo"))
        accept_language = gr.State("")
        pending_choices = gr.State([])
        last_turn = gr.State({})

        # ---------------------------------------------------------------- customers
        with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
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

        def render(conversation_id, accept, meta, turn):
            lang = (turn or {}).get("lang") or _lang_of(conversation_id, accept)
            greeting = service.assistant.greeting(lang)
            messages = service.store.messages(conversation_id) if conversation_id else []
            choices = (turn or {}).get("choices") or []
            labels = [c["label"] for c in choices] + ["", ""]
            return (views.chat_history(messages, greeting, meta), gr.update(visible=bool(choices)),
                    gr.update(value=labels[0]), gr.update(value=labels[1]), choices)

        def _lang_of(conversation_id, accept):
            known = service.store.conversation(conversation_id) if conversation_id else None
            if known and known["lang"]:
                return known["lang"]
            return service.assistant.detector.detect("", None, accept).lang

        def on_load(conversation_id, meta, request: gr.Request):
            accept = request.headers.get("accept-language", "") if request else ""
            return (accept, *render(conversation_id, accept, meta, {}))

        def chat_batch(texts, conversation_ids, accepts):
            turns = service.chat(texts, conversation_ids, accepts)
            return [t.conversation_id for t in turns], [t.as_dict() for t in turns], ["" for _ in turns]

        def choose(index, choices, conversation_id, accept):
            if not choices or index >= len(choices):
                return conversation_id, {}
            turn = service.respond_batch([{"conversation_id": conversation_id or None, "text": "",
                                           "accept_language": accept, "choice": choices[index]["intent"]}])[0]
            return turn.conversation_id, turn.as_dict()

        def refresh(conversation_id, accept, meta, turn, current):
            """Timer: new agent messages appear without the customer doing anything."""
            if not conversation_id:
                return (gr.skip(),) * 5
            rendered = render(conversation_id, accept, meta, turn)
            if len(rendered[0]) == len(current or []):
                return (gr.skip(),) * 5
            return rendered

        render_out = [chat, choice_row, choice_a, choice_b, pending_choices]
        demo.load(on_load, [conversation, show_meta], [accept_language, *render_out], api_visibility="private")
        for trigger in (send.click, box.submit):
            trigger(chat_batch, [box, conversation, accept_language], [conversation, last_turn, box], batch=True,
                    max_batch_size=16, concurrency_id="model", concurrency_limit=1,
                    api_visibility="private").then(
                render, [conversation, accept_language, show_meta, last_turn], render_out, api_visibility="private")
        for index, button in enumerate((choice_a, choice_b)):
            button.click(lambda c, cid, a, i=index: choose(i, c, cid, a),
                         [pending_choices, conversation, accept_language], [conversation, last_turn],
                         concurrency_id="model", api_visibility="private").then(
                render, [conversation, accept_language, show_meta, last_turn], render_out, api_visibility="private")
        new_chat.click(lambda: ("", {}), None, [conversation, last_turn], api_visibility="private").then(
            render, [conversation, accept_language, show_meta, last_turn], render_out, api_visibility="private")
        show_meta.change(render, [conversation, accept_language, show_meta, last_turn], render_out,
                         api_visibility="private")
        poll.tick(refresh, [conversation, accept_language, show_meta, last_turn, chat], render_out,
                  api_visibility="private", show_progress="hidden")

        # ---------------------------------------------------------------- agents
        with gr.Tab("Agent assist", id="agent", elem_id="tab-agent"):
            with gr.Row():
                with gr.Column(scale=1):
                    gr.Markdown("### Waiting for an agent (oldest first)")
                    queue = gr.Dataframe(headers=views.QUEUE_COLUMNS, interactive=False, wrap=True,
                                         elem_id="agent-queue")
                    gr.Markdown("### Recent conversations")
                    recent = gr.Dataframe(headers=views.QUEUE_COLUMNS, interactive=False, wrap=True,
                                          elem_id="agent-recent")
                    refresh_queue = gr.Button("Refresh", size="sm", elem_id="agent-refresh")
                with gr.Column(scale=1):
                    selected = gr.Textbox(label="Conversation", interactive=True, elem_id="agent-conversation",
                                          placeholder="click a row in the queue, or paste an id")
                    status = gr.Markdown("", elem_id="agent-status")
                    transcript = gr.Dataframe(headers=views.TRANSCRIPT_COLUMNS, interactive=False, wrap=True,
                                              elem_id="agent-transcript")
                    intents = gr.Label(num_top_classes=3, label="Top intents of the selected message",
                                       elem_id="agent-top")
                    suggestion = gr.Textbox(label="Suggested reply (edit, then send)", lines=4,
                                            elem_id="agent-reply")
                    with gr.Row():
                        agent_send = gr.Button("Send to customer", variant="primary", elem_id="agent-send")
                        take_over = gr.Button("Take over", elem_id="agent-take-over")
                        close = gr.Button("Close conversation", elem_id="agent-close")
            with gr.Accordion("Analyse any message", open=False):
                with gr.Row():
                    probe = gr.Textbox(label="Message", scale=4, elem_id="analyse-input")
                    analyse_btn = gr.Button("Analyse", elem_id="analyse-button")
                with gr.Row():
                    probe_lang = gr.JSON(label="Language")
                    probe_top = gr.Label(num_top_classes=3, label="Intents")
            agent_poll = gr.Timer(5.0)

        def queues():
            return views.queue_rows(service.store.queue()), views.queue_rows(service.store.recent(15))

        def open_conversation(conversation_id):
            conversation_id = (conversation_id or "").strip()
            info = service.store.conversation(conversation_id) if conversation_id else None
            if info is None:
                return "Select a conversation.", [], {}, ""
            messages = service.store.messages(conversation_id)
            customer = [m for m in messages if m["role"] == "customer"]
            suggested = service.assistant.suggested_reply(conversation_id)
            head = (f"**{info['status']}** · language **{info['lang'] or '?'}** · "
                    f"{len(customer)} customer message(s)" + (f" · hand-off: {info['handoff_reason']}"
                                                               if info["handoff_reason"] else ""))
            return (head, views.transcript_rows(messages), views.top_intents(customer[-1] if customer else None),
                    suggested["reply"])

        def pick_row(table, evt: gr.SelectData):
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            return table.iloc[row, -1] if hasattr(table, "iloc") else table[row][-1]

        def pick_message(conversation_id, evt: gr.SelectData):
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            messages = service.store.messages(conversation_id.strip())
            return views.top_intents(messages[row]) if row < len(messages) else {}

        def act(action, conversation_id, text):
            conversation_id = (conversation_id or "").strip()
            try:
                if action == "send":
                    service.store.agent_message(conversation_id, text)
                elif action == "take":
                    service.assistant.take_over(conversation_id)
                else:
                    service.assistant.close(conversation_id)
            except ValueError as err:
                gr.Warning(str(err))
            return (*open_conversation(conversation_id), *queues())

        conversation_view = [status, transcript, intents, suggestion]
        demo.load(queues, None, [queue, recent], api_visibility="private")
        refresh_queue.click(queues, None, [queue, recent], api_visibility="private")
        agent_poll.tick(queues, None, [queue, recent], api_visibility="private", show_progress="hidden")
        queue.select(pick_row, queue, selected, api_visibility="private")
        recent.select(pick_row, recent, selected, api_visibility="private")
        selected.change(open_conversation, selected, conversation_view, api_visibility="private")
        transcript.select(pick_message, selected, intents, api_visibility="private")
        for button, action in ((agent_send, "send"), (take_over, "take"), (close, "close")):
            button.click(lambda cid, text, a=action: act(a, cid, text), [selected, suggestion],
                         [*conversation_view, queue, recent], api_visibility="private")

        def analyse_probe(text):
            result = service.assistant.analyse(text)
            return result["lang"], {t["intent"]: t["confidence"] for t in result.get("top", [])}

        analyse_btn.click(analyse_probe, probe, [probe_lang, probe_top], api_visibility="private",
                          concurrency_id="model")

        # ---------------------------------------------------------------- admins
        with gr.Tab("Admin", id="admin", elem_id="tab-admin"):
            password = gr.Textbox(label="Admin password", type="password", elem_id="admin-password")
            admin_note = gr.Markdown("", elem_id="admin-note")
            with gr.Row():
                ratio = gr.Slider(0.05, 1.0, value=0.25, step=0.05, label="Rank ratio (1 = uncompressed)",
                                  info="Compresses the live classifier (the shipped one when the live one is "
                                       "already compressed), then heals it with LoRA.", elem_id="admin-ratio")
                method = gr.Radio(["whitened", "plain"], value="whitened", label="Method", elem_id="admin-method")
                targets = gr.Radio(["attn", "mlp", "attn+mlp"], value="attn", label="Layers",
                                   elem_id="admin-targets")
            with gr.Row():
                epochs = gr.Number(2, precision=0, minimum=1, maximum=10, label="Healing epochs",
                                   elem_id="admin-epochs")
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
                promote = gr.Button("Promote to live", elem_id="admin-promote")
                rollback = gr.Button("Roll back", elem_id="admin-rollback")
                delete = gr.Button("Delete", variant="stop", elem_id="admin-delete")

        def versions_view(pw):
            try:
                check_admin(pw)
            except AdminDenied as err:
                return f"{err}", [], None, gr.update(choices=[])
            summaries = service.registry.summaries()
            path = Path(tempfile.gettempdir()) / f"chatbot-versions-{os.getpid()}-{time.time_ns()}.png"
            live = next((s["name"] for s in summaries if s["live"]), None)
            views.plot_versions([{**s, "folder": s["name"]} for s in summaries], path, live=live)
            return (f"Live version: **{live}**", views.version_rows(summaries), str(path),
                    gr.update(choices=[s["name"] for s in summaries], value=live))

        def start_build(pw, r, m, t, e, k, progress=gr.Progress()):
            try:
                check_admin(pw)
                job = service.start_build(float(r), m, t, int(e) if e else None, int(k) if k else None)
            except (AdminDenied, ValueError) as err:
                return f"{err}"
            while job.status == "running":
                progress(job.progress, desc=job.stage)
                time.sleep(0.5)
            if job.status == "done":
                res = job.result
                return (f"Built **{job.name}**: accuracy {res['accuracy']:.4f}, macro-F1 {res['macro_f1']:.4f}, "
                        f"{res['parameters'] / 1e6:.1f} M parameters. The live model is unchanged until you promote it.")
            return f"Build **{job.name}** {job.status}: {job.error or 'cancelled by an admin'}. The live model is unchanged."

        def cancel_build(pw):
            try:
                check_admin(pw)
            except AdminDenied as err:
                return f"{err}"
            return f"Cancelling {service.cancel_jobs()} running build(s)…"

        def version_action(action, pw, name):
            try:
                check_admin(pw)
                if action == "promote":
                    service.promote(name)
                elif action == "rollback":
                    name = service.rollback()
                else:
                    service.delete(name)
                message = f"{action} {name}: done"
            except (AdminDenied, ValueError) as err:
                message = f"{err}"
            return (message, *versions_view(pw)[1:])

        admin_view = [admin_note, versions, trade_off, version_name]
        password.submit(versions_view, password, admin_view, api_visibility="private")
        build.click(start_build, [password, ratio, method, targets, epochs, per_intent], job_status,
                    concurrency_id="admin", concurrency_limit=1, api_visibility="private").then(
            versions_view, password, admin_view, api_visibility="private")
        cancel.click(cancel_build, password, job_status, api_visibility="private", queue=False)
        for button, action in ((promote, "promote"), (rollback, "rollback"), (delete, "delete")):
            button.click(lambda pw, n, a=action: version_action(a, pw, n), [password, version_name], admin_view,
                         api_visibility="private")

        # ---------------------------------------------------------------- API (gradio_client)
        # batch=True: Gradio's queue gathers concurrent calls, so each argument arrives as a list;
        # the annotations describe one call, which is what API users send and see.
        def api_chat(text: str, conversation_id: str, accept_language: str) -> dict:
            return [[t.as_dict() for t in service.chat(text, conversation_id, accept_language)]]

        def api_analyse(text: str) -> dict:
            return service.assistant.analyse(text)

        gr.api(api_chat, api_name="chat", batch=True, max_batch_size=16, concurrency_id="model")
        gr.api(api_analyse, api_name="analyse", concurrency_id="model")
    demo.queue(default_concurrency_limit=4)
    return demo


def main() -> None:
    default_model = os.environ.get("CHATBOT_DEFAULT_MODEL")
    service = Service(default_model=default_model) if default_model else Service()
    demo = build_app(service)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), css=CSS, ssr_mode=False,
                footer_links=["api"])


if __name__ == "__main__":
    main()
