"""What the screens show: the customer's chat, the agents' inbox and conversation, the out-of-scope
report, the admins' builds, versions table and plot.

Pure functions of the store's, the service's and the registry's records, so they are tested without
a browser and ``app.py`` keeps to wiring. Everything a customer or an agent wrote (and every other
stored text) goes through :func:`text`, which escapes it: it is shown as text, never as HTML or
Markdown. The markup's classes are styled by ``assets/ui/app.css``; elements a click acts on carry
a ``data-pick`` attribute that ``assets/ui/live.js`` turns into a Gradio ``select`` event with that value.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

from chatbot.replies import person_name
from chatbot.settings import LANGUAGES, OUT_OF_SCOPE

FLAGS = {"en": "gb", "fr": "fr", "de": "de", "nl": "nl", "es": "es", "it": "it", "pt": "pt"}
"""The flag shown beside a conversation's language (drawn in CSS, ``.flag-gb`` …: emoji flags are
missing from many systems' fonts), with the language code."""
REASONS = {"contact_human_agent": "Asked for a person", "complaint": "Complaint",
           "repeated_failures": "Bot could not help"}
"""Hand-off reasons in words."""


def text(value) -> str:
    """Stored text as HTML that shows it as it was written (tags, Markdown and entities stay text)."""
    return html.escape("" if value is None else str(value), quote=True)


def _moment(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _clock(iso: str | None) -> str:
    """``<time>`` (HH:MM UTC; the page shows it in the reader's time zone)."""
    moment = _moment(iso)
    if moment is None:
        return ""
    return f'<time datetime="{text(moment.isoformat())}">{moment.strftime("%H:%M")}</time>'


def ago(iso: str | None, now: datetime | None = None) -> str:
    """"<1 min", "4 min", "2 h 5 min", "3 d": how long ago ``iso`` was."""
    moment = _moment(iso)
    if moment is None:
        return ""
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - moment).total_seconds()))
    if seconds < 60:
        return "<1 min"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def flag(lang: str | None) -> str:
    """The language's flag and code (``lang`` is one of ours, else shown as "?")."""
    code = lang if lang in FLAGS else None
    return (f'<span class="lang" title="{text(code or "unknown language")}"><span class="flag flag-{FLAGS.get(code, "none")}">'
            f'</span>{text((code or "?").upper())}</span>')


# ==================================================================== the customer's chat
def customer_chat(view: dict, greeting: str, words: dict, pending: str | None = None) -> str:
    """The customer's conversation as a support widget: the greeting, then customer bubbles on the
    right and the assistant's and agents' (with the agent's name) on the left, system notes in
    between, the choices the bot offers now as buttons, and a note while waiting or once closed.

    ``view`` is :meth:`chatbot.service.Service.customer_view`; ``words`` the catalogue's widget words
    in the customer's language; ``pending`` a message on its way (shown with a typing indicator)."""
    rows = [_bubble("bot", greeting, words["assistant"])]
    for m in view.get("messages") or []:
        if m["role"] == "customer":
            rows.append(_bubble("customer", m["text"], None, m.get("created_at")))
        elif m["role"] == "bot":
            rows.append(_bubble("bot", m["text"], words["assistant"], m.get("created_at")))
        elif m["role"] == "agent":
            who = f"{person_name(m.get('author') or '')} · {words['agent']}" if m.get("author") else words["agent"]
            rows.append(_bubble("agent", m["text"], who, m.get("created_at")))
        else:
            rows.append(f'<div class="cb-note" data-role="system">{text(m["text"])}</div>')
    status = view.get("status")
    if pending:
        rows.append(_bubble("customer", pending, None, pending=True))
        rows.append('<div class="cb-typing" aria-label="…"><span></span><span></span><span></span></div>')
    elif view.get("choices"):
        buttons = "".join(f'<button class="cb-chip" type="button" data-choice="{text(c.get("intent"))}" '
                          f'data-pick="{text(c.get("intent"))}" data-index="{i}">{text(c.get("label"))}</button>'
                          for i, c in enumerate(view["choices"]))
        rows.append(f'<div class="cb-choices">{buttons}</div>')
    if status == "waiting" and not pending:
        rows.append(f'<div class="cb-banner" data-banner="waiting">{text(words["waiting"])}</div>')
    elif status == "closed" and not pending:
        rows.append(f'<div class="cb-banner" data-banner="closed">{text(words["closed"])}</div>')
    return f'<div class="cb-chat" data-status="{text(status or "new")}">{"".join(rows)}</div>'


def _bubble(role: str, body, who: str | None, at: str | None = None, pending: bool = False) -> str:
    head = f'<div class="cb-who">{text(who)}</div>' if who else ""
    extra = " cb-pending" if pending else ""
    return (f'<div class="cb-row cb-{role}{extra}" data-role="{role}">{head}<div class="cb-bubble">{text(body)}</div>'
            f'<div class="cb-time">{_clock(at)}</div></div>')


def chat_signature(view: dict) -> str:
    """What changes the customer's chat (the last message and the status): unchanged, not redrawn."""
    messages = view.get("messages") or []
    return f"{messages[-1]['id'] if messages else 0}:{view.get('status')}"


# ==================================================================== the agents' inbox
def inbox(boxes: dict, selected: str | None = None, now: datetime | None = None) -> str:
    """The agents' inbox: waiting conversations first (oldest hand-off first, with the reason and how
    long they have waited), then those a person handles (unread customer replies first), then recent
    ones; each with its language flag, the last customer message and an unread count. The waiting
    count is a badge (``data-waiting`` on the root: the page chimes when it grows)."""
    waiting, handled, recent = boxes.get("waiting", []), boxes.get("agent", []), boxes.get("recent", [])
    total = max(len(waiting), int(boxes.get("waiting_total") or 0))
    parts = [f'<div class="ib" data-waiting="{total}">',
             _section("Waiting for an agent", waiting, "waiting", selected, now, total),
             _section("With an agent", handled, "agent", selected, now),
             _section("Recent conversations", recent, "recent", selected, now), "</div>"]
    return "".join(parts)


def _section(title: str, rows: list[dict], kind: str, selected: str | None, now: datetime | None,
             total: int | None = None) -> str:
    total = len(rows) if total is None else total
    badge = f'<span class="ib-badge" data-count="{total}">{total}</span>' if kind == "waiting" else \
        f'<span class="ib-count">{total}</span>'
    body = "".join(_inbox_row(c, kind, selected, now) for c in rows) or '<div class="ib-empty">Nothing here.</div>'
    if total > len(rows):
        body += f'<div class="ib-empty">and {total - len(rows)} more waiting (later hand-offs)</div>'
    return f'<div class="ib-section" data-section="{kind}"><div class="ib-head">{text(title)} {badge}</div>{body}</div>'


def _inbox_row(c: dict, kind: str, selected: str | None, now: datetime | None) -> str:
    unread = int(c.get("unread") or 0) if kind in ("waiting", "agent") else 0  # the bot's are nobody's to read
    if kind == "waiting":
        title = REASONS.get(c.get("handoff_reason") or "", (c.get("handoff_reason") or "waiting").replace("_", " "))
        when = f"waiting {ago(c.get('handoff_at') or c.get('updated_at'), now)}"
    elif kind == "agent":
        title = f"With {person_name(c['agent'])}" if c.get("agent") else "With an agent"
        when = ago(c.get("last_customer_at") or c.get("updated_at"), now)
    else:
        title = {"bot": "Bot", "closed": "Closed", "waiting": "Waiting", "agent": "With an agent"}.get(c["status"],
                                                                                                    c["status"])
        when = ago(c.get("updated_at"), now)
    preview = (c.get("last_customer_message") or "").strip()
    preview = preview[:90] + ("…" if len(preview) > 90 else "")
    classes = "ib-row" + (" ib-unread" if unread else "") + (" ib-selected" if c["id"] == selected else "")
    marker = f'<span class="ib-new" title="unread customer messages">{unread} new</span>' if unread else ""
    return (f'<div class="{classes}" data-id="{text(c["id"])}" data-pick="{text(c["id"])}" role="button" tabindex="0">{flag(c.get("lang"))}'
            f'<div class="ib-main"><div class="ib-top"><b class="ib-title">{text(title)}</b>'
            f'<span class="ib-when">{text(when)}</span></div>'
            f'<div class="ib-preview">{text(preview) or "<i>no message yet</i>"}</div></div>{marker}</div>')


def inbox_signature(boxes: dict) -> str:
    """What changes the inbox: its conversations, their states, last messages and unread counts (the
    waiting times are redrawn on the next change)."""
    return f"{boxes.get('waiting_total', '')}|" + "|".join(
        f"{c['id']}:{c['status']}:{c.get('last_message_id')}:{c.get('unread')}"
        for kind in ("waiting", "agent", "recent") for c in boxes.get(kind, []))


# ==================================================================== one conversation, for agents
ROLE_NAMES = {"customer": "Customer", "bot": "Bot", "agent": "Agent", "system": "Note"}


def conversation_header(info: dict | None, now: datetime | None = None) -> str:
    if not info:
        return '<div class="cv-head cv-none">Select a conversation in the inbox.</div>'
    status = {"bot": "with the bot", "waiting": "waiting for an agent", "agent": "with an agent",
              "closed": "closed"}.get(info["status"], info["status"])
    parts = [f'<b class="cv-status" data-status="{text(info["status"])}">{text(status)}</b>', flag(info.get("lang"))]
    if info.get("handoff_reason"):
        parts.append(text(REASONS.get(info["handoff_reason"], info["handoff_reason"])))
    if info.get("agent"):
        parts.append(f"handled by {text(person_name(info['agent']))}")
    parts.append(f"started {text(ago(info.get('created_at'), now))} ago")
    return f'<div class="cv-head">{" · ".join(parts)}</div>'


def conversation(messages: list[dict]) -> str:
    """The conversation as a chat for agents: who said what (customer, bot, agent by name, notes),
    with each customer message's language, intent and confidence (out of scope marked) and what it
    gave (order number, amount, date); a click on a customer message shows its top intents."""
    rows = []
    for m in messages:
        role = m["role"]
        if role == "system":
            by = f' — {text(person_name(m["author"]))}' if m.get("author") else ""
            rows.append(f'<div class="cv-note" data-role="system">{text(m["text"])}{by} {_clock(m.get("created_at"))}</div>')
            continue
        who = ROLE_NAMES.get(role, role)
        if role == "agent" and m.get("author"):
            who = f"{person_name(m['author'])} (agent)"
        meta = [_clock(m.get("created_at"))]
        if role == "customer":
            meta.append(flag(m.get("lang")))
            if m.get("intent") == OUT_OF_SCOPE:
                meta.append('<span class="cv-oos">out of scope</span>')
            elif m.get("intent"):
                meta.append(f'<span class="cv-intent">{text(m["intent"])}</span>')
            if m.get("confidence") is not None:
                meta.append(f'<span class="cv-conf">{m["confidence"]:.2f}</span>')
            if m.get("action"):
                meta.append(f'<span class="cv-action">{text(m["action"])}</span>')
            for kind, value in (m.get("entities") or {}).items():
                meta.append(f'<span class="cv-given">{text(kind)}: {text(value)}</span>')
        elif role == "bot" and m.get("action"):
            meta.append(f'<span class="cv-action">{text(m["action"])}</span>')
        clickable = f' data-pick="{int(m["id"])}" role="button" tabindex="0"' if role == "customer" else ""
        rows.append(f'<div class="cv-msg cv-{role}" data-role="{role}" data-message="{int(m["id"])}"{clickable}>'
                    f'<div class="cv-meta"><b>{text(who)}</b> {" ".join(meta)}</div>'
                    f'<div class="cv-text">{text(m["text"])}</div></div>')
    return f'<div class="cv-thread">{"".join(rows) or "<i>No messages.</i>"}</div>'


def conversation_signature(view: dict | None) -> str:
    if not view:
        return ""
    messages = view["messages"]
    return f"{view['info']['id']}:{view['info']['status']}:{messages[-1]['id'] if messages else 0}"


def top_intents(message: dict | None) -> dict[str, float]:
    """``{intent: confidence}`` of a stored customer message (for ``gr.Label``)."""
    if not message or not message.get("top"):
        return {}
    return {t["intent"]: float(t["confidence"]) for t in message["top"] if "intent" in t}


def latest_customer(messages: list[dict]) -> dict | None:
    return next((m for m in reversed(messages) if m["role"] == "customer"), None)


def revealable_choices(messages: list[dict]) -> list[tuple[str, str]]:
    """``(label, "message_id:index")`` for every masked value staff may reveal, for a dropdown."""
    return [(f"message {m['id']} ({m['role']}) · {v['kind']} #{v['index']}", f"{m['id']}:{v['index']}")
            for m in messages for v in m.get("revealable") or []]


# ==================================================================== out of scope
def out_of_scope(found: dict) -> str:
    """What customers asked that the bot does not cover: a bar per day of the window and the
    messages, newest first (a click opens the conversation)."""
    most = max([n for _, n in found["per_day"]] + [1])
    bars = "".join(f'<div class="os-day" data-day="{text(day)}" data-count="{n}"><span class="os-date">{text(day)}</span>'
                   f'<span class="os-bar" style="width:{max(2, round(100 * n / most)) if n else 0}%"></span>'
                   f'<span class="os-n">{n}</span></div>' for day, n in reversed(found["per_day"]))
    rows = "".join(f'<div class="os-msg" data-id="{text(m["conversation_id"])}" data-pick="{text(m["conversation_id"])}" '
                   f'role="button" tabindex="0">'
                   f'<span class="os-when">{text((m.get("created_at") or "")[:16].replace("T", " "))}</span>'
                   f'{flag(m.get("lang"))}<span class="os-text">{text(m["text"])}</span></div>'
                   for m in found["messages"])
    return (f'<div class="os"><div class="os-summary"><b>{found["total"]}</b> out-of-scope message(s) in the last '
            f'{found["days"]} days</div><div class="os-days">{bars}</div>'
            f'<div class="os-list">{rows or "<i>None in this window.</i>"}</div></div>')


# ==================================================================== admins
def jobs(items: list[dict], now: datetime | None = None) -> str:
    """The builds, newest first: name, who started it and when, state, a progress bar with the stage,
    the result; a running build has a Cancel button aimed at it alone (``data-job``)."""
    if not items:
        return '<div class="jb jb-none">No builds since this server started.</div>'
    moment = now or datetime.now(timezone.utc)
    rows = []
    for j in items:
        started = datetime.fromtimestamp(j["started"], timezone.utc).isoformat()
        percent = round(100 * float(j.get("progress") or 0))
        state = "cancelling" if j.get("cancelling") else j["status"]
        if j["status"] == "done" and j.get("accuracy") is not None:
            outcome = f"accuracy {j['accuracy']:.4f}" + (f", {j['parameters'] / 1e6:.1f} M parameters"
                                                        if j.get("parameters") else "")
        elif j["status"] == "failed":
            outcome = j.get("error") or "failed"
        else:
            outcome = j.get("stage") or ""
        p = j.get("params") or {}
        recipe = (f"soup of {', '.join(p['soup'])}" if p.get("soup") else
                  (f"parameter share {p['params_keep']}" if p.get("params_keep") else f"ratio {p.get('ratio')}")
                  + f", {p.get('method')}, {p.get('targets')}"
                  + (f", saving ≥ {p['min_saving']}" if p.get("min_saving") else "")
                  + (f", first {p['keep_layers']} layers" if p.get("keep_layers") else "")
                  + (", trimmed vocabulary" if p.get("trim_vocab") else "")
                  + (f", LoRA r{p['lora_r']} on {p['lora_targets']}" if p.get("lora_r") else "")
                  + f", epochs {p.get('epochs')}" + (f", seed {p['seed']}" if p.get("seed") else ""))
        cancel = (f'<button class="jb-cancel" type="button" data-job="{text(j["name"])}" data-pick="{text(j["name"])}">'
                  f'Cancel {text(j["name"])}'
                  f'</button>' if j["status"] == "running" and not j.get("cancelling") else "")
        rows.append(f'<div class="jb-row" data-job-row="{text(j["name"])}" data-state="{text(state)}">'
                    f'<div class="jb-top"><b>{text(j["name"])}</b> <span class="jb-state jb-{text(state)}">'
                    f'{text(state)}</span> <span class="jb-who">by {text(j.get("started_by") or "?")}, '
                    f'{text(ago(started, moment))} ago</span>{cancel}</div>'
                    f'<div class="jb-recipe">{text(recipe)}</div>'
                    f'<div class="jb-progress"><span style="width:{percent}%"></span></div>'
                    f'<div class="jb-stage"><span class="jb-percent">{percent}%</span> {text(outcome)}</div></div>')
    return f'<div class="jb">{"".join(rows)}</div>'


def jobs_signature(items: list[dict]) -> str:
    return "|".join(f"{j['name']}:{j['status']}:{j.get('cancelling')}:{round(100 * float(j.get('progress') or 0))}:"
                    f"{j.get('stage')}" for j in items)


VERSION_COLUMNS = (["live", "version", "rank ratio or parameter share", "method", "targets", "parameters (M)", "size MB", "accuracy",
                    "macro-F1"] + [f"acc {lang}" for lang in LANGUAGES] + ["p50 ms"])


def live_note(live: str | None, serving: str | None, note: str | None = None) -> str:
    """The Admin tab's line above the versions: ``note`` (what an action did) or the live version, and a
    warning when customers are answered by another one (the live one did not load here, replicas have
    not loaded it yet, or none answers)."""
    line = note or f"Live version: **{live}**"
    if serving is None:
        return f"{line} · ⚠ the classifier service did not say which version it serves (see its logs)"
    if serving != live:
        return (f"{line} · ⚠ customers are answered by **{serving}**: {live} has not loaded (yet) where the "
                f"model runs; see the logs, or roll back")
    return line


def version_rows(summaries: list[dict]) -> list[list]:
    rows = []
    for s in summaries:
        per = s.get("per_language", {})
        number = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
        cut = f"share {s['params_keep']:g}" if s.get("params_keep") else number(s.get("ratio"), "g")
        rows.append(["●" if s["live"] else "", s["name"], cut, s.get("method", ""),
                     s.get("targets", "") + (f" · first {s['keep_layers']} layers" if s.get("keep_layers") else "")
                     + (" · trimmed vocabulary" if s.get("vocab") == "trimmed" else "")
                     + (f" · soup of {len(s['soup'])}" if s.get("soup") else "")
                     + (f" · LoRA r{s['lora']['r']} on {s['lora']['layers']}" if s.get("lora") else ""),
                     number(s["parameters"] / 1e6 if s.get("parameters") else None, ".1f"),
                     number(s.get("size_mb"), ".0f"), number(s.get("accuracy"), ".4f"), number(s.get("macro_f1"), ".4f")]
                    + [number(per.get(lang), ".3f") for lang in LANGUAGES]
                    + [number(s.get("latency_ms", {}).get("p50"), ".1f")])
    return rows


def point_label(row: dict) -> str:
    """A version's or sweep point's name on the plot (a folder path by its last part)."""
    return Path(str(row.get("name") or row.get("folder") or "")).name


def labelled_points(rows: list[dict], live: str | None = None) -> list[tuple[float, float, str, bool]]:
    """``(parameters in millions, accuracy, label, is live)`` per place on the plot: versions at the
    same place (identical builds) share one label listing their names."""
    places: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("accuracy") is not None and r.get("parameters"):
            places.setdefault((round(r["parameters"] / 1e6, 3), round(r["accuracy"], 4)), []).append(r)
    return [(x, y, "\n".join(sorted(point_label(r) for r in here)),
             bool(live) and any(r.get("name", r.get("folder")) == live for r in here))
            for (x, y), here in sorted(places.items())]


def plot_versions(rows: list[dict], path: Path, live: str | None = None,
                  title: str = "Accuracy against parameters") -> Path:
    """Accuracy against parameters (millions), one series per method × targets, every point labelled
    with its name (points at the same place share one label), the ``live`` one ringed and marked.

    ``rows`` are version summaries or sweep points (``name`` or ``folder`` identifies the live one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    series: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("accuracy") is not None and r.get("parameters"):
            series.setdefault(f"{r['method']} · {r['targets']}" if r.get("method", "none") != "none"
                              else "uncompressed", []).append(r)
    for label, points in sorted(series.items()):
        points = sorted(points, key=lambda r: r["parameters"])
        marker = "*" if label == "uncompressed" else "o"
        ax.plot([p["parameters"] / 1e6 for p in points], [p["accuracy"] for p in points], marker=marker,
                markersize=12 if marker == "*" else 6, label=label, linestyle="-" if len(points) > 1 else "none")
    for x, y, label, live_point in labelled_points(rows, live):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=7, color="#333")
        if live_point:
            ax.scatter([x], [y], s=260, facecolors="none", edgecolors="red", linewidths=2, label="live", zorder=5)
            ax.annotate("LIVE", (x, y), textcoords="offset points", xytext=(-14, -18), fontsize=8, color="red",
                        fontweight="bold")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("accuracy (test split)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


AUDIT_COLUMNS = ["when", "who", "action", "on", "detail", "from"]


def _time(iso: str | None) -> str:
    moment = _moment(iso)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else (iso or "")


def audit_rows(entries: list[dict]) -> list[list]:
    return [[_time(e["at"]), e["actor"], e["action"], e["target"] or "", e["detail"] or "", e["client"] or ""]
            for e in entries]


USER_COLUMNS = ["user", "role", "state", "last sign-in"]


def account_state(row: dict) -> str:
    """How a row of :meth:`chatbot.accounts.Accounts.list` reads in the CLI and the admin tab."""
    if row["disabled"]:
        return "disabled"
    if row.get("locked_everywhere"):
        return "locked at every address"
    if row["locked_until"]:
        n = row.get("locked_addresses", 1)
        return f"locked at {n} address{'es' if n != 1 else ''}"
    return "active"


def user_rows(users: list[dict]) -> list[list]:
    return [[u["name"], u["role"], account_state(u), _time(u["last_sign_in"])] for u in users]
