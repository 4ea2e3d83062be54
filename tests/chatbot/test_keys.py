"""Installation secrets: from the environment, else generated once in the home folder (0600)."""

import stat

import pytest

from chatbot.keys import Vault, browser_secret


def test_generated_once_per_installation_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv("CHATBOT_BROWSER_SECRET", raising=False)
    monkeypatch.delenv("CHATBOT_SECRET_KEY", raising=False)
    first = browser_secret(tmp_path)
    assert len(first) >= 32 and browser_secret(tmp_path) == first
    assert browser_secret(tmp_path / "other") != first
    token = Vault(home_dir=tmp_path).seal("jan@example.nl")
    assert Vault(home_dir=tmp_path).open(token) == "jan@example.nl"  # the same key at the next start
    for name in ("browser.secret", "secret.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        Vault(home_dir=tmp_path / "other").open(token)


def test_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_BROWSER_SECRET", "from-the-environment")
    monkeypatch.setenv("CHATBOT_SECRET_KEY", "any passphrase works")
    assert browser_secret(tmp_path) == "from-the-environment"
    token = Vault(home_dir=tmp_path).seal("+33 6 12 34 56 78")
    assert "33 6" not in token and Vault().open(token) == "+33 6 12 34 56 78"
    assert not list(tmp_path.iterdir())  # nothing written
