"""Calling a Gradio app's event handlers the way its browser page does (``/config``, the queue), for
tests that act as an outsider: any handler by its index, with any values."""

from __future__ import annotations

import json
import secrets

import httpx


def config(client: httpx.Client, prefix: str = "") -> dict:
    response = client.get(f"{prefix}config")
    response.raise_for_status()
    return response.json()


def call(client: httpx.Client, fn_index: int, data: list, prefix: str = "", event_data=None,
         trigger_id: int | None = None, timeout: float = 60) -> dict:
    """``{"status": HTTP status of the join, "success": bool | None, "output": …, "text": raw SSE}``."""
    session = secrets.token_hex(8)
    joined = client.post(f"{prefix}gradio_api/queue/join",
                         json={"data": data, "fn_index": fn_index, "session_hash": session,
                               "event_data": event_data, "trigger_id": trigger_id})
    if joined.status_code != 200:
        return {"status": joined.status_code, "success": None, "output": None, "text": joined.text}
    event_id = joined.json().get("event_id")
    raw = []
    with client.stream("GET", f"{prefix}gradio_api/queue/data", params={"session_hash": session},
                       timeout=timeout) as stream:
        for line in stream.iter_lines():
            raw.append(line)
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") not in (None, event_id):
                continue
            if message.get("msg") == "process_completed":
                return {"status": 200, "success": message.get("success"), "output": message.get("output"),
                        "text": "\n".join(raw)}
            if message.get("msg") == "close_stream":
                break
    return {"status": 200, "success": None, "output": None, "text": "\n".join(raw)}
