"""What the screens show: chat history, queue and transcript rows, the versions table and plot.

Pure functions of the store's and the registry's records, so they are tested without a browser and
``app.py`` keeps to wiring.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from chatbot.settings import LANGUAGES

AGENT_PREFIX = "👤 "


def chat_history(messages: list[dict], greeting: str, show_meta: bool = True, agent_label: str = "Agent") -> list[dict]:
    """Gradio ``messages`` for the customer's chat: greeting, then the conversation; an info line
    (language · intent · confidence) under bot answers when ``show_meta``."""
    history = [{"role": "assistant", "content": greeting}]
    last_customer = None
    for m in messages:
        if m["role"] == "customer":
            last_customer = m
            history.append({"role": "user", "content": m["text"]})
        elif m["role"] == "bot":
            content = m["text"]
            if show_meta and last_customer is not None:
                content += "\n\n" + meta_line(last_customer)
            history.append({"role": "assistant", "content": content})
        elif m["role"] == "agent":
            history.append({"role": "assistant", "content": f"**{AGENT_PREFIX}{agent_label}:** {m['text']}"})
        else:
            history.append({"role": "assistant", "content": f"*{m['text']}*"})
    return history


def meta_line(message: dict) -> str:
    parts = [message.get("lang") or "?"]
    if message.get("intent"):
        parts.append(message["intent"])
    if message.get("confidence") is not None:
        parts.append(f"{message['confidence']:.0%}")
    if message.get("action"):
        parts.append(message["action"])
    return "<sub>" + " · ".join(parts) + "</sub>"


def _time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


QUEUE_COLUMNS = ["since", "language", "reason", "last message", "status", "conversation"]
"""The conversation id comes last: clicking any cell of a row opens that conversation."""


def queue_rows(conversations: list[dict]) -> list[list]:
    return [[_time(c["handoff_at"] or c["updated_at"]), c["lang"] or "", c["handoff_reason"] or "",
             (c["last_customer_message"] or "")[:60], c["status"], c["id"]] for c in conversations]


TRANSCRIPT_COLUMNS = ["#", "time", "from", "message", "language", "intent", "confidence"]


def transcript_rows(messages: list[dict]) -> list[list]:
    return [[m["id"], _time(m["created_at"]), m["role"], m["text"], m["lang"] or "", m["intent"] or "",
             "" if m["confidence"] is None else f"{m['confidence']:.2f}"] for m in messages]


def top_intents(message: dict | None) -> dict[str, float]:
    """``{intent: confidence}`` of a stored customer message (for ``gr.Label``)."""
    if not message or not message.get("top"):
        return {}
    return {t["intent"]: float(t["confidence"]) for t in message["top"] if "intent" in t}


VERSION_COLUMNS = (["live", "version", "rank ratio", "method", "targets", "parameters (M)", "size MB", "accuracy",
                    "macro-F1"] + [f"acc {lang}" for lang in LANGUAGES] + ["p50 ms"])


def version_rows(summaries: list[dict]) -> list[list]:
    rows = []
    for s in summaries:
        per = s.get("per_language", {})
        number = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
        rows.append(["●" if s["live"] else "", s["name"], number(s.get("ratio"), "g"), s.get("method", ""),
                     s.get("targets", ""), number(s["parameters"] / 1e6 if s.get("parameters") else None, ".1f"),
                     number(s.get("size_mb"), ".0f"), number(s.get("accuracy"), ".4f"), number(s.get("macro_f1"), ".4f")]
                    + [number(per.get(lang), ".3f") for lang in LANGUAGES]
                    + [number(s.get("latency_ms", {}).get("p50"), ".1f")])
    return rows


def plot_versions(rows: list[dict], path: Path, live: str | None = None,
                  title: str = "Accuracy against parameters") -> Path:
    """Accuracy against parameters (millions), one series per method × targets; ``live`` is ringed.

    ``rows`` are version summaries or sweep points (``name`` or ``folder`` identifies the live one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    series: dict[str, list[dict]] = {}
    for r in rows:
        if "accuracy" in r:
            series.setdefault(f"{r['method']} · {r['targets']}" if r["method"] != "none" else "uncompressed",
                              []).append(r)
    for label, points in sorted(series.items()):
        points = sorted(points, key=lambda r: r["parameters"])
        marker = "*" if label == "uncompressed" else "o"
        ax.plot([p["parameters"] / 1e6 for p in points], [p["accuracy"] for p in points], marker=marker,
                markersize=12 if marker == "*" else 6, label=label, linestyle="-" if len(points) > 1 else "none")
    for r in rows:
        if live and r.get("name", r.get("folder")) == live and "accuracy" in r:
            ax.scatter([r["parameters"] / 1e6], [r["accuracy"]], s=260, facecolors="none", edgecolors="red",
                       linewidths=2, label="live", zorder=5)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("accuracy (test split)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


AUDIT_COLUMNS = ["when", "who", "action", "on", "detail", "from"]


def audit_rows(entries: list[dict]) -> list[list]:
    return [[_time(e["at"]), e["actor"], e["action"], e["target"] or "", e["detail"] or "", e["client"] or ""]
            for e in entries]


USER_COLUMNS = ["user", "role", "state", "last sign-in"]


def user_rows(users: list[dict]) -> list[list]:
    return [[u["name"], u["role"], "disabled" if u["disabled"] else ("locked" if u["locked_until"] else "active"),
             _time(u["last_sign_in"])] for u in users]


def revealable_choices(messages: list[dict]) -> list[tuple[str, str]]:
    """``(label, "message_id:index")`` for every masked value staff may reveal, for a dropdown."""
    return [(f"message {m['id']} ({m['role']}) · {v['kind']} #{v['index']}", f"{m['id']}:{v['index']}")
            for m in messages for v in m.get("revealable") or []]
