"""Settings that several modules share, each defined once: paths, environment variables, languages.

Everything a deployment may change comes from the environment, read when it is needed (so tests
and the app can set it per process):

| variable | what | default |
|---|---|---|
| ``CHATBOT_HOME`` | conversations database, model versions, secrets | ``~/.local/share/chatbot`` |
| ``CHATBOT_CACHE`` | dequantised bases, cached compression factors | ``~/.cache/chatbot`` |
| ``CHATBOT_DATABASE_URL`` | any SQLAlchemy URL (``postgresql://user:pw@host/db`` goes through psycopg 3) | a SQLite file in the home |
| ``CHATBOT_CLASSIFIER_URL`` | the Ray Serve classifier (``http://host:8000/classifier``) the app calls | unset: classify in the app's process |
| ``CHATBOT_DEFAULT_MODEL`` | the model folder served when no version is live | ``assets/model`` |
| ``CHATBOT_ADMIN_PASSWORD`` | bootstraps the first admin account ``admin`` when none exists | unset |
| ``CHATBOT_BROWSER_SECRET`` | encrypts what the browser keeps (the conversation id) | generated per installation |
| ``CHATBOT_SECRET_KEY`` | encrypts e-mails, phone numbers and IBANs at rest (Fernet) | generated per installation |
| ``CHATBOT_HF_ADMINS``, ``CHATBOT_HF_AGENTS`` | Hugging Face usernames (comma-separated) given a role | unset |
| ``CHATBOT_RETENTION_DAYS`` | what ``purge`` deletes when given no ``--older-than`` | 90 |
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository: assets are read from here whatever the working directory."""
ASSETS = ROOT / "assets"
DEFAULT_MODEL_DIR = ASSETS / "model"
"""The shipped default model, compressed (see README for how it is rebuilt)."""
DENSE_MODEL_DIR = ASSETS / "model-dense"
"""The uncompressed classifier the default was compressed from: the source admin builds compress and
distil from, and the reference benchmarks compare with."""
REPLIES_DIR = ASSETS / "replies"
UI_DIR = ASSETS / "ui"
"""The web app's style sheet and the script of its live views."""
DATA_DIR = ASSETS / "data"

LANGUAGES = ("en", "fr", "de", "nl", "es", "it", "pt")
"""The languages customers are answered in (detection, data, replies, reports)."""
DEFAULT_BASE = "gemma3-270m"
"""The embedded base model the shipped classifier is built on."""
MAX_LENGTH = 96
"""Messages are truncated to this many tokens (training, inference, calibration)."""

HOME_ENV, CACHE_ENV, DATABASE_ENV = "CHATBOT_HOME", "CHATBOT_CACHE", "CHATBOT_DATABASE_URL"
DEFAULT_MODEL_ENV, ADMIN_PASSWORD_ENV, BROWSER_SECRET_ENV = (
    "CHATBOT_DEFAULT_MODEL", "CHATBOT_ADMIN_PASSWORD", "CHATBOT_BROWSER_SECRET")
SECRET_KEY_ENV, HF_ADMINS_ENV, HF_AGENTS_ENV, RETENTION_ENV = (
    "CHATBOT_SECRET_KEY", "CHATBOT_HF_ADMINS", "CHATBOT_HF_AGENTS", "CHATBOT_RETENTION_DAYS")
CLASSIFIER_URL_ENV = "CHATBOT_CLASSIFIER_URL"
CHAT_LIMIT_ENV = "CHATBOT_CHAT_TURNS_PER_MINUTE"
STAFF_SIGN_IN_ENV = "CHATBOT_STAFF_SIGN_IN"
STAFF_SIGN_INS = ("password", "huggingface")
"""How staff sign in: our accounts with passwords, or Hugging Face on a Space (allow-lists give roles)."""

MAX_MESSAGE_CHARS = 1000
"""Longest customer message the bot classifies; longer ones are stored (cut) and refused."""
STORED_CHARS = 20000
"""Longest text stored for one message (after masking, so a cut never leaves a card number in clear)."""
RAW_CHARS = STORED_CHARS + 4000
"""Raw input is cut to this many characters before any other work (cleaning, masking, detection):
a megabyte message costs what a long one does. The margin keeps a value that the stored cut goes
through whole until it has been masked."""
MAX_REQUEST_BYTES = 1 << 20
"""Largest HTTP request body the server reads (413 beyond)."""


OUT_OF_SCOPE = "out_of_scope"
"""The label of messages none of the intents serves (trained on examples we wrote)."""
INTENT_DATA = tuple(f"assets/data/{lang}.csv" for lang in LANGUAGES)
"""Short, clean requests for each intent, one file per language (the language detector learns how
customers write each language from these); 13 rows on topics no intent serves are labelled out of scope
there (relabelled on 2026-11-30, where the near-miss data disagreed)."""
TRAINING_DATA = INTENT_DATA + tuple(f"assets/data/{kind}/{lang}.csv"
                                   for kind in ("out_of_scope", "hard", "varied", "near_miss", "indirect",
                                                "other_services")
                                   for lang in LANGUAGES)
"""All our own data, relative to :data:`ROOT`: the intents, out-of-scope messages, hard messages
(multi-sentence, typos, texting style, confusable pairs) and requests in varied tone and wording
(anger and swearing, less common synonyms, "can you help me" framing), and near-misses: out-of-scope
questions about the shop's world (card data, coupons, stock, warranty, physical shops, other companies)
beside in-scope messages on the same topics (train and dev only); and indirect requests: wrapped in
help-seeking phrasing ("I don't know how to…", "I need help to see…"), statements of need, 2–4 words,
with both sides of each confusable pair (10 per intent and language, train and dev only); and requests meant
for someone else (out of scope: a personal assistant's calendar, e-mail, lists, smart home, music, food and
travel, social media, another named company's accounts; 84 per language, train and dev only). The default model trains on
it and compression calibrates on it (recipes record these relative paths, so they re-apply on any
checkout)."""


VOCAB_CORPORA = ("../shared/data/massive/massive_7lang_train_dev.csv:train",
                 "../shared/data/bitext-customer-support/bitext_intent_8k.csv:train",
                 "../shared/data/banking77/banking77.csv:train", "../shared/data/clinc150/clinc150.csv:train")
"""Public training splits (FILE:SPLIT, relative to :data:`ROOT`) that, with all our data, decide which
tokens a trimmed vocabulary keeps: the words customers use in our languages."""


def vocab_dir(base: str) -> Path:
    """Where the trimmed vocabulary of an embedded base is kept (``vocab_trim.json`` inside)."""
    return ASSETS / "vocab" / base


def absolute(paths) -> list[str]:
    """Repository-relative data paths as absolute paths, for reading from any working directory."""
    return [str(ROOT / path) for path in paths]


def training_files() -> list[str]:
    """:data:`TRAINING_DATA`, absolute."""
    return absolute(TRAINING_DATA)


def home() -> Path:
    """Where the app keeps its state: ``$CHATBOT_HOME`` or ``~/.local/share/chatbot``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".local" / "share" / "chatbot")


def child_env() -> dict[str, str]:
    """This process's environment for a new Python interpreter that imports this project's code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def cache_dir() -> Path:
    """Where derived model files are cached: ``$CHATBOT_CACHE`` or ``~/.cache/chatbot``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "chatbot")


def compressed_cache() -> Path:
    """Factorised weights of compression recipes, keyed by recipe (see ``compression.compress``)."""
    return cache_dir() / "compressed"


def database_url(home_dir: str | Path | None = None) -> str:
    """``$CHATBOT_DATABASE_URL``, or a SQLite file in the home folder."""
    if url := os.environ.get(DATABASE_ENV):
        return url
    folder = Path(home_dir) if home_dir else home()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'conversations.db'}"


def classifier_url() -> str | None:
    """``$CHATBOT_CLASSIFIER_URL``: where the classifier is served (None: in the app's own process)."""
    return os.environ.get(CLASSIFIER_URL_ENV) or None


def chat_turns_per_minute() -> int:
    """``$CHATBOT_CHAT_TURNS_PER_MINUTE`` or 60: chat turns one client address may send a minute (0: no
    limit, e.g. for ``loadtest``, whose conversations all come from one address). A person types a few;
    a script flooding the queue, the database (a new conversation per call) or the agents' inbox (a
    hand-off per call) stops at one a second. On a Hugging Face Space (``$SPACE_ID`` set) it is 0 unless
    set: every request comes through Hugging Face's proxy, so all customers would share one address."""
    value = int(os.environ.get(CHAT_LIMIT_ENV) or (0 if os.environ.get("SPACE_ID") else 60))
    if value < 0:
        raise ValueError(f"{CHAT_LIMIT_ENV} must be ≥ 0")
    return value


def staff_sign_in(value: str | None = None) -> str:
    """``value``, else ``$CHATBOT_STAFF_SIGN_IN``, else ``password``: how staff sign in to ``/staff`` (one
    way per deployment; ``huggingface`` needs a Space with ``hf_oauth: true``, see :mod:`chatbot.hf_sign_in`)."""
    value = (value or os.environ.get(STAFF_SIGN_IN_ENV) or "password").strip().lower()
    if value not in STAFF_SIGN_INS:
        raise ValueError(f"{STAFF_SIGN_IN_ENV} must be one of {', '.join(STAFF_SIGN_INS)}, not {value!r}")
    return value


def retention_days() -> int:
    """``$CHATBOT_RETENTION_DAYS`` or 90: how long conversations are kept by default."""
    return int(os.environ.get(RETENTION_ENV) or 90)


def default_model_dir() -> Path:
    """``$CHATBOT_DEFAULT_MODEL`` or the shipped model."""
    return Path(os.environ.get(DEFAULT_MODEL_ENV) or DEFAULT_MODEL_DIR)
