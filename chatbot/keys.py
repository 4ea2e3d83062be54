"""Per-installation secrets: the key that encrypts personal data at rest and the browser-state secret.

Each comes from its environment variable when set (several app servers behind one database must
share them), else from a file in the home folder, generated once with owner-only permissions
(0600) and reused at every start. Nothing secret is a constant in the code.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from chatbot.settings import BROWSER_SECRET_ENV, SECRET_KEY_ENV, home

KEY_FILE = "secret.key"
BROWSER_SECRET_FILE = "browser.secret"


def installation_secret(name: str, env: str, make, home_dir: str | Path | None = None) -> str:
    """``$env`` if set, else the content of ``<home>/name``, created by ``make()`` at first use (0600)."""
    if value := os.environ.get(env):
        return value
    folder = Path(home_dir) if home_dir else home()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:  # created just now by this process: nobody else has read it
        f.write(make())
    return path.read_text().strip()


def browser_secret(home_dir: str | Path | None = None) -> str:
    """What ``gr.BrowserState`` encrypts the customer's conversation id with."""
    return installation_secret(BROWSER_SECRET_FILE, BROWSER_SECRET_ENV, lambda: secrets.token_urlsafe(32), home_dir)


class Vault:
    """Encrypts and decrypts personal values (Fernet: AES-128-CBC + HMAC-SHA256, from ``cryptography``).

    The key is ``$CHATBOT_SECRET_KEY`` (a Fernet key, or any passphrase, which is hashed into one) or
    a key generated once in the home folder."""

    def __init__(self, key: str | bytes | None = None, home_dir: str | Path | None = None):
        key = key or installation_secret(KEY_FILE, SECRET_KEY_ENV, lambda: Fernet.generate_key().decode(), home_dir)
        self._fernet = Fernet(_as_fernet_key(key))

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as err:
            raise ValueError("this value cannot be decrypted with the installation's key") from err


def _as_fernet_key(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())
