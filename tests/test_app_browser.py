"""The app as people use it: Playwright driving Debian's Chromium against `python app.py` on localhost.

Starts the app on the shipped default model with a fresh home folder (the first admin bootstrapped
from CHATBOT_ADMIN_PASSWORD, agents made with `python -m chatbot users add`), then: customers chat
in French and Dutch and see no staff screen; staff sign in at /staff/ (a wrong password is refused,
repeated failures lock the account); a hand-off reaches a signed-in agent's queue and the agent's
reply reaches the customer; an agent has no Admin tab; an admin builds a version and sees it in the
table and plot, and the audit trail. Screenshots of the three screens go to docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
AGENT, AGENT_PASSWORD = "marie", "marie's long password"
LOCKED = "lucas"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def catalogue(lang: str) -> set[str]:
    data = json.loads((ROOT / "assets" / "replies" / f"{lang}.json").read_text())
    return {v["reply"] for v in data["intents"].values()} | set(data["bot"].values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: .ci/run installs Debian's chromium package")
    home = tmp_path_factory.mktemp("app-home")
    port = free_port()
    env = {**os.environ, "CHATBOT_HOME": str(home), "CHATBOT_ADMIN_PASSWORD": PASSWORD,
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("CHATBOT_DATABASE_URL", None)
    for name in (AGENT, LOCKED):
        made = subprocess.run([sys.executable, "-m", "chatbot", "users", "add", name, "--role", "agent",
                               "--password-stdin"], cwd=ROOT, env=env, input=AGENT_PASSWORD + "\n", text=True,
                              capture_output=True, timeout=120)
        assert made.returncode == 0, made.stderr
    log_path = home / "app.log"
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log_path.open("w"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 420
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail("app.py exited:\n" + log_path.read_text()[-3000:])
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("app.py did not start in time:\n" + log_path.read_text()[-3000:])
    yield url
    process.terminate()
    process.wait(timeout=30)
    assert "Created the admin account 'admin'" in log_path.read_text()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_page(browser, url, accept_language):
    context = browser.new_context(locale=accept_language.split(",")[0],
                                  extra_http_headers={"Accept-Language": accept_language},
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator("#customer-input textarea").wait_for()
    page.locator('#customer-chat [data-testid="bot"]').first.wait_for()
    return page


def staff_page(browser, url, name, password, expect_ok=True):
    """The staff console after signing in at /staff/ (Gradio's sign-in form on our accounts)."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url + "staff/")
    sign_in(page, name, password)
    if expect_ok:
        page.locator("#staff-who").get_by_text(name).wait_for()
    return page


def sign_in(page, name, password) -> int:
    """Fill Gradio's sign-in form and send it; the HTTP status of the sign-in."""
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    with page.expect_response(lambda r: r.url.endswith("/staff/login") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Login").click()
    return answer.value.status


def bot_messages(page) -> list[str]:
    return page.locator('#customer-chat [data-testid="bot"]').all_inner_texts()


def say(page, text: str) -> str:
    before = len(bot_messages(page))
    page.locator("#customer-input textarea").fill(text)
    page.locator("#customer-send").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#customer-chat [data-testid=\"bot\"]').length > n", arg=before,
        timeout=120_000)
    return bot_messages(page)[-1]


def reply_of(message: str) -> str:
    """The bot's reply without the info line (language · intent · confidence)."""
    return message.strip().split("\n")[0].strip()


def known(message: str, lang: str) -> bool:
    return reply_of(message) in {reply_of(s) for s in catalogue(lang)}


@pytest.mark.parametrize("lang, accept, text", [
    ("fr", "fr-FR,fr;q=0.9", "Bonjour, je voudrais savoir où en est ma commande 48213, elle n'est toujours pas arrivée."),
    ("nl", "nl-NL,nl;q=0.9", "Hallo, ik wil graag mijn bestelling 5521 annuleren, ik heb me bedacht."),
])
def test_customer_gets_answers_in_their_language(app_url, browser, lang, accept, text):
    page = open_page(browser, app_url, accept)
    assert known(bot_messages(page)[0], lang)  # greeted in the browser's language
    answer = say(page, text)
    assert known(answer, lang), answer
    assert re.search(rf"\b{lang} · ", answer), answer  # the info line names the detected language
    if lang == "fr":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)
    page.reload()  # refreshing the page keeps the conversation
    page.get_by_text(text[:30]).first.wait_for()
    page.context.close()


def test_a_customer_sees_no_staff_screen(app_url, browser):
    page = open_page(browser, app_url, "en-GB,en;q=0.9")
    assert page.get_by_role("tab", name="Agent assist").count() == 0
    assert page.get_by_role("tab", name="Admin").count() == 0
    assert page.locator("#agent-queue, #agent-recent, #admin-versions, #admin-audit").count() == 0
    page.goto(app_url + "staff/")  # the console asks for a staff sign-in first
    page.get_by_role("button", name="Login").wait_for()
    assert page.locator("#agent-queue").count() == 0 and page.get_by_role("tab", name="Agent assist").count() == 0
    page.context.close()


def test_a_wrong_password_is_refused_and_repeated_failures_lock_the_account(app_url, browser):
    page = staff_page(browser, app_url, LOCKED, "not the password", expect_ok=False)
    page.get_by_text("Incorrect Credentials").wait_for()
    assert [sign_in(page, LOCKED, "still not the password") for _ in range(4)] == [400] * 4  # five failures
    assert sign_in(page, LOCKED, AGENT_PASSWORD) == 400  # the right password, on a locked account
    page.wait_for_timeout(1000)
    assert page.locator("#staff-who").count() == 0 and page.get_by_role("button", name="Login").is_visible()
    page.context.close()


def test_handoff_reaches_the_agent_and_the_agent_reply_reaches_the_customer(app_url, browser):
    customer = open_page(browser, app_url, "fr-FR,fr;q=0.9")
    answer = say(customer, "Je veux parler à un vrai conseiller humain tout de suite, s'il vous plaît.")
    assert known(answer, "fr") and "handoff" in answer, answer

    agent = staff_page(browser, app_url, AGENT, AGENT_PASSWORD)
    assert agent.get_by_role("tab", name="Admin").count() == 0  # agents have no admin screen
    agent.locator("#agent-refresh").click()
    queue = agent.locator("#agent-queue")
    # Gradio's table keeps a hidden copy of its cells for measuring: only visible ones count.
    queue.get_by_text("contact_human_agent").filter(visible=True).first.click()
    agent.locator("#agent-transcript").get_by_text("vrai conseiller").filter(visible=True).first.wait_for()
    reply_box = agent.locator("#agent-reply textarea")
    assert reply_box.input_value().strip()  # a suggested reply, in the customer's language
    reply_box.fill("Bonjour, je m'appelle Marie et je reprends votre demande.")
    agent.locator("#agent-send").click()
    agent.locator("#agent-status strong").get_by_text("agent", exact=True).filter(visible=True).first.wait_for()
    agent.locator("#agent-transcript").get_by_text("je m'appelle Marie").filter(visible=True).first.wait_for()
    agent.locator("#agent-queue").get_by_text("contact_human_agent").filter(visible=True).first.wait_for(
        state="detached")  # taken over: it left the queue
    SHOTS.mkdir(parents=True, exist_ok=True)
    agent.screenshot(path=str(SHOTS / "agent.png"), full_page=True)

    customer.get_by_text("je m'appelle Marie").first.wait_for(timeout=30_000)  # the chat polls the store
    customer.context.close()
    agent.context.close()


def test_an_admin_builds_a_version_and_sees_the_audit_trail(app_url, browser):
    page = staff_page(browser, app_url, "admin", PASSWORD)
    page.get_by_role("tab", name="Admin").click()
    page.locator("#admin-note").get_by_text("Live version").wait_for()
    audit = page.locator("#admin-audit")
    audit.get_by_text("sign_in_failed").filter(visible=True).first.wait_for()  # the locked account's tries
    audit.get_by_text("account locked").filter(visible=True).first.wait_for()
    audit.get_by_text(AGENT, exact=True).filter(visible=True).first.wait_for()
    table = page.locator("#admin-versions")
    table.get_by_text("default", exact=True).filter(visible=True).first.wait_for()
    assert not table.get_by_text("whitened-attn-r0.5").filter(visible=True).count()
    page.locator("#admin-ratio input[type=number]").fill("0.5")
    page.locator("#admin-ratio input[type=number]").press("Enter")
    page.locator("#admin-epochs input").fill("1")
    page.locator("#admin-per-intent input").fill("1")
    page.locator("#admin-build").click()
    page.locator("#admin-job").get_by_text("Built").wait_for(timeout=900_000)
    table.get_by_text(re.compile(r"v\d{8}-\d{6}-whitened-attn-r0\.5")).filter(visible=True).first.wait_for()
    page.locator("#admin-plot img").wait_for()
    audit.get_by_text("build", exact=True).filter(visible=True).first.wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin.png"), full_page=True)
    page.context.close()
