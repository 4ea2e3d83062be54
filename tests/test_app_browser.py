"""The app as people use it: Playwright driving Debian's Chromium against `python app.py` on localhost.

Starts the app on the shipped default model with a fresh home folder (the first admin bootstrapped
from CHATBOT_ADMIN_PASSWORD, agents made with `python -m chatbot users add`), then, as customers,
agents and admins would:

* customers chat in a support widget (their text shown as text, no internal labels, a character
  count, wordless messages not sent, replies that use the order number they gave), also on a
  phone-sized screen; clarification choices are buttons that survive a reload and send the choice;
  Japanese, Chinese and Russian are told the languages we serve; customers see no staff screen;
* staff sign in with the button (a wrong password is refused, repeated failures lock the account);
* an agent's inbox updates live and chimes when a conversation starts waiting; the conversation
  shows who said what with language/intent/confidence; the suggested reply greets in the
  customer's language; take over / send / close keep the queue right; the agent's reply reaches
  the customer as its own bubble with the agent's name; a customer's reply comes back to the
  agent's attention; after close, the customer's next message starts a new conversation;
* the Out of scope tab counts out-of-scope messages per day and lists them;
* admins see builds as jobs with live progress on any page opened later, cancel one job by name,
  and a finished build appears in the table and the plot, with the audit trail; averaging one
  version alone is refused, said so.

Only a few real, clear, in-scope messages go through the model; states the model would have to be
coaxed into (a clarification, out-of-scope messages) are written into the app's database directly.
Screenshots of the three screens and a phone-sized chat go to docs/screenshots/.
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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
AGENT, AGENT_PASSWORD = "marie", "marie's long password"
LOCKED, LATE = "lucas", "paul"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
MODEL_WAIT = 180_000
"""Milliseconds a model answer may take on a busy shared CPU."""


def replies(lang: str) -> dict:
    return json.loads((ROOT / "assets" / "replies" / f"{lang}.json").read_text())


def catalogue(lang: str) -> set[str]:
    data = replies(lang)
    return ({v["reply"] for v in data["intents"].values()} | set(data["bot"].values())
            | {t for v in data["intents"].values() for t in (v.get("given") or {}).values()})


def known(message: str, lang: str, **given) -> bool:
    """The message is one of the catalogue's replies in ``lang`` (variants filled with ``given``)."""
    candidates = set()
    for template in catalogue(lang):
        try:
            candidates.add(template.format(**given))
        except (KeyError, IndexError, ValueError):
            candidates.add(template)
    return message.strip() in {c.strip() for c in candidates}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class App:
    url: str
    home: Path

    def store(self):
        from chatbot.keys import Vault
        from chatbot.store import Store

        return Store(f"sqlite:///{self.home / 'conversations.db'}", vault=Vault(home_dir=self.home))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: .ci/run installs Debian's chromium package")
    home = tmp_path_factory.mktemp("app-home")
    port = free_port()
    env = {**os.environ, "CHATBOT_HOME": str(home), "CHATBOT_ADMIN_PASSWORD": PASSWORD,
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("CHATBOT_DATABASE_URL", None)
    for name in (AGENT, LOCKED, LATE):
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
    yield App(url, home)
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


def customer_page(browser, url, accept_language, phone=False):
    size = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True} if phone else \
        {"viewport": {"width": 1280, "height": 900}}
    context = browser.new_context(locale=accept_language.split(",")[0],
                                  extra_http_headers={"Accept-Language": accept_language}, **size)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator("#customer-input textarea").wait_for()
    page.locator("#customer-chat .cb-bot").first.wait_for()
    return page


def staff_page(browser, url, name, password, expect_ok=True):
    """The staff console after signing in at /staff/ (Gradio's sign-in form on our accounts)."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url + "staff/")
    sign_in(page, name, password)
    if expect_ok:
        page.locator("#staff-who").get_by_text(name).wait_for()
    return page


def sign_in(page, name, password) -> int:
    """Fill Gradio's sign-in form and press its button; the HTTP status of the sign-in."""
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    with page.expect_response(lambda r: r.url.endswith("/staff/login") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Login").click()
    return answer.value.status


def bubbles(page, role: str) -> list[str]:
    return page.locator(f"#customer-chat .cb-{role} .cb-bubble").all_inner_texts()


def say(page, text: str, answered: bool = True) -> str:
    """Send ``text`` from the customer's widget; the bot's answer (or "" when a person handles it)."""
    page.locator("#customer-input textarea").fill(text)
    page.locator("#customer-send").click()
    page.wait_for_function("""([text, answered]) => {
        const chat = document.querySelector('#customer-chat .cb-chat');
        if (!chat || chat.querySelector('.cb-typing, .cb-pending')) return false;
        const mine = [...chat.querySelectorAll('.cb-customer .cb-bubble')].map((b) => b.innerText.trim());
        if (mine[mine.length - 1] !== text.trim()) return false;
        const rows = [...chat.querySelectorAll('.cb-row')];
        return !answered || rows[rows.length - 1].classList.contains('cb-bot');
    }""", arg=[text, answered], timeout=MODEL_WAIT)
    return bubbles(page, "bot")[-1] if answered else ""


def conversation_of(app: App, text: str) -> str:
    """The id of the conversation whose last customer message is ``text`` (from the app's database)."""
    for _ in range(50):
        found = [c["id"] for c in app.store().recent(50) if c["last_customer_message"] == text]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no conversation ends with {text!r}")


def visible(locator):
    return locator.filter(visible=True).first


# ==================================================================== customers
def test_the_customer_chat_is_a_support_widget(app, browser):
    page = customer_page(browser, app.url, "fr-FR,fr;q=0.9")
    assert known(bubbles(page, "bot")[0], "fr")  # greeted in the browser's language
    words = replies("fr")["ui"]
    assert page.locator("#customer-input textarea").get_attribute("placeholder") == words["placeholder"]
    assert page.locator("#customer-input textarea").get_attribute("maxlength") == "1000"
    page.locator("#customer-input textarea").fill("Bonjour")
    page.locator("#customer-count").get_by_text("7 / 1000").wait_for()  # the limit, visible while typing
    page.locator("#customer-input textarea").fill("📦📦 !!")  # no words: not sent, and told why
    page.locator("#customer-send").click()
    page.locator("#customer-notice").get_by_text(words["no_words"]).wait_for()
    assert bubbles(page, "customer") == []

    text = "Bonjour, où en est ma commande 48213 ? Elle n'est toujours pas arrivée."
    answer = say(page, text)
    assert known(answer, "fr", order="48213") and "48213" in answer, answer  # not asked for the number it got
    chat = page.locator("#customer-chat").inner_text()
    for internal in ("track_order", "%", "answer ·", "clarify", "waiting", "too_long"):
        assert internal not in chat, internal  # no internal labels for customers
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)
    page.reload()  # refreshing the page keeps the conversation
    page.locator("#customer-chat").get_by_text(text[:30]).wait_for()
    page.context.close()


def test_a_phone_sized_chat(app, browser):
    page = customer_page(browser, app.url, "es-ES,es;q=0.9", phone=True)
    answer = say(page, "Hola, ¿dónde está mi pedido 12345? Todavía no ha llegado.")
    assert known(answer, "es", order="12345") and "12345" in answer, answer
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth + 1")  # no sideways scrolling
    send = page.locator("#customer-send").bounding_box()
    assert send and send["x"] + send["width"] <= 390 and send["y"] + send["height"] <= 844  # on screen
    page.locator("#customer-chat .cb-bot").last.wait_for()
    page.wait_for_timeout(500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "chat-phone.png"))
    assert say(page, "¡Muchas gracias!") == replies("es")["bot"]["small_talk_thanks"]  # small talk, in kind
    page.context.close()


def test_clarification_choices_survive_a_reload_and_send_the_choice(app, browser):
    page = customer_page(browser, app.url, "nl-NL,nl;q=0.9")
    text = "Hallo, ik wil graag mijn bestelling 5521 annuleren, ik heb me bedacht."
    assert known(say(page, text), "nl", order="5521")
    cid = conversation_of(app, text)
    nl = replies("nl")
    store = app.store()
    with store.session() as s, s.begin():  # as the bot asks when unsure (the model is not coaxed into it)
        conversation = store.get_or_create(s, cid)
        store.add_message(s, conversation, "customer", "ik heb een vraag over iets", lang="nl", action="clarify")
        store.add_message(s, conversation, "bot", nl["bot"]["clarify"].format(
            first=nl["intents"]["cancel_order"]["label"], second=nl["intents"]["track_order"]["label"]),
            lang="nl", action="clarify", choices=[
                {"intent": "cancel_order", "label": nl["intents"]["cancel_order"]["label"]},
                {"intent": "track_order", "label": nl["intents"]["track_order"]["label"]},
                {"intent": "something_else", "label": nl["ui"]["something_else"]},
                {"intent": "contact_human_agent", "label": nl["intents"]["contact_human_agent"]["label"]}])
    page.reload()  # the choices come back with the conversation
    chips = page.locator("#customer-chat .cb-chip")
    chips.first.wait_for()
    assert chips.all_inner_texts() == [nl["intents"]["cancel_order"]["label"], nl["intents"]["track_order"]["label"],
                                       nl["ui"]["something_else"], nl["intents"]["contact_human_agent"]["label"]]
    chips.first.click()
    page.wait_for_function("() => !document.querySelector('#customer-chat .cb-chip')")
    assert bubbles(page, "customer")[-1] == nl["intents"]["cancel_order"]["label"]  # the choice, not "(empty message)"
    answer = bubbles(page, "bot")[-1]
    assert answer == nl["intents"]["cancel_order"]["given"]["order"].format(order="5521")  # 5521 was given earlier
    page.context.close()


def test_out_of_scope_says_so_and_a_yes_takes_the_offer_of_a_person(app, browser):
    page = customer_page(browser, app.url, "it-IT,it;q=0.9")
    it = replies("it")
    assert say(page, "Mi può consigliare una buona pizzeria qui vicino?") == it["bot"]["out_of_scope"]
    assert say(page, "sì, grazie") == it["intents"]["contact_human_agent"]["reply"]
    page.locator("#customer-chat [data-banner=waiting]").wait_for()  # in the queue for a person
    page.context.close()


@pytest.mark.parametrize("text", ["注文はどこですか", "我的订单在哪里？", "Где мой заказ?"])
def test_other_scripts_are_told_which_languages_we_serve(app, browser, text):
    page = customer_page(browser, app.url, "en-GB,en;q=0.9")
    assert say(page, text) == replies("en")["bot"]["unsupported_language"]
    page.context.close()


def test_a_customer_sees_no_staff_screen(app, browser):
    page = customer_page(browser, app.url, "en-GB,en;q=0.9")
    assert page.get_by_role("tab", name="Agent assist").count() == 0
    assert page.get_by_role("tab", name="Admin").count() == 0
    assert page.locator("#agent-inbox, #agent-thread, #admin-versions, #admin-audit, #admin-jobs").count() == 0
    page.goto(app.url + "staff/")  # the console asks for a staff sign-in first
    page.get_by_role("button", name="Login").wait_for()
    assert page.locator("#agent-inbox").count() == 0 and page.get_by_role("tab", name="Agent assist").count() == 0
    page.context.close()


# ==================================================================== staff sign-in
def test_a_wrong_password_is_refused_and_repeated_failures_lock_the_account(app, browser):
    page = staff_page(browser, app.url, LOCKED, "not the password", expect_ok=False)
    page.get_by_text("Incorrect Credentials").wait_for()
    assert [sign_in(page, LOCKED, "still not the password") for _ in range(4)] == [400] * 4  # five failures
    assert sign_in(page, LOCKED, AGENT_PASSWORD) == 400  # the right password, on a locked account
    page.wait_for_timeout(1000)
    assert page.locator("#staff-who").count() == 0 and page.get_by_role("button", name="Login").is_visible()
    page.context.close()


def test_a_wrong_then_right_password_signs_in_with_the_button(app, browser):
    page = staff_page(browser, app.url, LATE, "not the password", expect_ok=False)
    page.get_by_text("Incorrect Credentials").wait_for()
    assert sign_in(page, LATE, AGENT_PASSWORD) == 200
    page.locator("#staff-who").get_by_text(LATE).wait_for()
    assert page.get_by_role("tab", name="Admin").count() == 0  # agents have no admin screen
    page.context.close()


# ==================================================================== the agent console
def test_handoff_live_inbox_take_over_reply_and_close(app, browser):
    agent = staff_page(browser, app.url, AGENT, AGENT_PASSWORD)
    inbox = agent.locator("#agent-inbox")
    inbox.locator(".ib").wait_for()
    waiting_before = int(inbox.locator("[data-waiting]").get_attribute("data-waiting"))
    chimes_before = agent.evaluate("window.chatbotChimes || 0")

    customer = customer_page(browser, app.url, "fr-FR,fr;q=0.9")
    text = "Je veux parler à un vrai conseiller humain tout de suite, s'il vous plaît."
    assert known(say(customer, text), "fr")
    customer.locator("#customer-chat [data-banner=waiting]").wait_for()  # told they are in the queue
    cid = conversation_of(app, text)

    # the inbox follows without a click: badge, title and chime
    row = inbox.locator(f'[data-section="waiting"] [data-id="{cid}"]')
    row.wait_for(timeout=30_000)
    assert int(inbox.locator("[data-waiting]").get_attribute("data-waiting")) == waiting_before + 1
    agent.wait_for_function("n => (window.chatbotChimes || 0) > n", arg=chimes_before, timeout=10_000)
    assert re.match(r"^\(\d+\) ", agent.title())
    assert "Asked for a person" in row.inner_text() and "FR" in row.inner_text() and "waiting" in row.inner_text()

    row.click()  # the conversation as a chat, the top intents of the latest customer message, a suggestion
    thread = agent.locator("#agent-thread")
    thread.locator('[data-role="customer"]').get_by_text("vrai conseiller").wait_for()
    customer_meta = thread.locator('[data-role="customer"] .cv-meta').first.inner_text()
    assert "FR" in customer_meta and "contact_human_agent" in customer_meta and re.search(r"\d\.\d\d", customer_meta)
    visible(agent.locator("#agent-top").get_by_text("contact_human_agent")).wait_for()
    fr = replies("fr")["bot"]
    reply_box = agent.locator("#agent-reply textarea")
    assert reply_box.input_value() == fr["agent_greeting"].format(agent="Marie") + "\n\n" + fr["agent_help"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    agent.screenshot(path=str(SHOTS / "agent.png"), full_page=True)

    agent.locator("#agent-take-over").click()  # out of the waiting queue, into "with an agent"
    inbox.locator(f'[data-section="agent"] [data-id="{cid}"]').wait_for()
    assert inbox.locator(f'[data-section="waiting"] [data-id="{cid}"]').count() == 0
    agent.locator("#agent-head").get_by_text("with an agent").wait_for()
    customer.locator("#customer-chat .cb-note").get_by_text(fr["agent_joined"]).wait_for(timeout=30_000)

    reply_box.fill("Bonjour, je m'appelle Marie. <b>Promis</b>, je regarde : [votre suivi](http://example.com)")
    agent.locator("#agent-send").click()
    thread.get_by_text("je m'appelle Marie").wait_for()
    draft_is = "v => document.querySelector('#agent-reply textarea').value === v"
    agent.wait_for_function(draft_is, arg="")  # sent: the box is emptied

    # the customer sees the agent's own bubble, signed, as text
    agent_bubble = customer.locator("#customer-chat .cb-agent").last
    agent_bubble.get_by_text("je m'appelle Marie").wait_for(timeout=30_000)
    assert agent_bubble.locator(".cb-who").inner_text() == f"Marie · {replies('fr')['ui']['agent']}"
    assert "<b>Promis</b>" in agent_bubble.inner_text() and "[votre suivi](http://example.com)" in agent_bubble.inner_text()
    assert customer.locator("#customer-chat a, #customer-chat b, #customer-chat img").count() == 0

    # a customer's reply shows in the open conversation without a click...
    say(customer, "Merci beaucoup ! Où en est la commande 48213 ?", answered=False)  # a request, not only thanks
    thread.get_by_text("commande 48213").wait_for(timeout=30_000)
    # a new suggestion, the box being empty: it follows what the customer writes now (the order number)
    agent.wait_for_function("() => document.querySelector('#agent-reply textarea').value.includes('48213')")
    # ...and brings the conversation back to the agent's attention when it is not open
    agent.context.close()
    say(customer, "Vous êtes toujours là ?", answered=False)
    agent = staff_page(browser, app.url, AGENT, AGENT_PASSWORD)
    inbox = agent.locator("#agent-inbox")
    back = inbox.locator(f'[data-section="agent"] [data-id="{cid}"]')
    back.wait_for()
    assert "1 new" in back.inner_text() and "ib-unread" in back.get_attribute("class")
    back.click()
    agent.locator("#agent-thread").get_by_text("toujours là").wait_for()
    assert agent.locator("#agent-reply textarea").input_value() == fr["agent_help"]  # Marie greeted already
    inbox.locator(f'[data-section="agent"] [data-id="{cid}"].ib-unread').wait_for(state="detached")  # seen now

    agent.locator("#agent-close").click()  # closed: out of the agent's sections, the customer is told
    inbox.locator(f'[data-section="recent"] [data-id="{cid}"]').wait_for()
    customer.locator("#customer-chat [data-banner=closed]").wait_for(timeout=30_000)
    answer = say(customer, "Quels sont les délais de livraison pour la France ?")  # a new conversation starts
    assert known(answer, "fr")
    assert "vrai conseiller" not in customer.locator("#customer-chat").inner_text()
    assert conversation_of(app, "Quels sont les délais de livraison pour la France ?") != cid
    assert app.store().conversation(cid)["status"] == "closed"
    customer.context.close()
    agent.context.close()


def test_the_out_of_scope_view_counts_per_day_and_lists_the_messages(app, browser):
    from chatbot.store import now

    store = app.store()
    cid = store.new_conversation("en")
    with store.session() as s, s.begin():
        conversation = store.get_or_create(s, cid)
        for text, days_ago in (("Tell me a joke about parcels", 0), ("Is the blue sweater available in size M?", 0),
                               ("What is the capital of France?", 2)):
            message = store.add_message(s, conversation, "customer", text, lang="en", intent="out_of_scope",
                                        confidence=0.9, action="out_of_scope")
            message.created_at = now() - timedelta(days=days_ago)
    agent = staff_page(browser, app.url, AGENT, AGENT_PASSWORD)
    agent.get_by_role("tab", name="Out of scope").click()
    report = agent.locator("#oos-report")
    report.get_by_text("Tell me a joke about parcels").wait_for()
    today = now().date().isoformat()
    two_days_ago = (now() - timedelta(days=2)).date().isoformat()
    assert int(report.locator(f'[data-day="{today}"]').get_attribute("data-count")) >= 2
    assert int(report.locator(f'[data-day="{two_days_ago}"]').get_attribute("data-count")) >= 1
    report.get_by_text("What is the capital of France?").click()  # opens its conversation
    thread = agent.locator("#agent-thread")
    thread.get_by_text("What is the capital of France?").wait_for()
    assert thread.locator(".cv-oos").count() == 3
    agent.context.close()


# ==================================================================== admins
def test_builds_are_jobs_with_live_progress_one_can_be_cancelled_and_a_version_is_plotted(app, browser):
    page = staff_page(browser, app.url, "admin", PASSWORD)
    page.get_by_role("tab", name="Admin").click()
    page.locator("#admin-note").get_by_text("Live version").wait_for()
    audit = page.locator("#admin-audit")
    visible(audit.get_by_text("sign_in_failed")).wait_for()  # the locked account's tries
    visible(audit.get_by_text("account locked")).wait_for()
    table = page.locator("#admin-versions")
    visible(table.get_by_text("default", exact=True)).wait_for()

    def build(ratio: str):
        page.locator("#admin-ratio input[type=number]").fill(ratio)
        page.locator("#admin-ratio input[type=number]").press("Enter")
        page.locator("#admin-epochs input").fill("1")
        page.locator("#admin-per-intent input").fill("1")
        page.locator("#admin-build").click()

    build("0.75")
    first = page.locator('#admin-jobs [data-job-row*="-r0.75"]')
    first.wait_for()
    name = first.get_attribute("data-job-row")
    build("0.5")  # a second build while one runs: refused, said so
    page.get_by_text("a build is already running").first.wait_for()

    later = staff_page(browser, app.url, "admin", PASSWORD)  # opened after the build started
    later.get_by_role("tab", name="Admin").click()
    row = later.locator(f'#admin-jobs [data-job-row="{name}"]')
    row.locator(".jb-progress").wait_for()
    assert row.get_attribute("data-state") == "running" and "by admin" in row.inner_text()
    row.locator(".jb-cancel").click()  # aimed at this build alone
    later.locator(f'#admin-jobs [data-job-row="{name}"][data-state="cancelled"]').wait_for(timeout=600_000)
    page.locator(f'#admin-jobs [data-job-row="{name}"][data-state="cancelled"]').wait_for(timeout=30_000)
    later.context.close()

    build("0.5")
    second = page.locator('#admin-jobs [data-job-row*="-r0.5"]')
    second.wait_for()
    seen = set()
    deadline = time.time() + 1500
    while second.get_attribute("data-state") == "running" and time.time() < deadline:
        seen.add(second.locator(".jb-percent").inner_text())
        page.wait_for_timeout(2000)
    assert second.get_attribute("data-state") == "done", second.inner_text()
    assert len(seen) >= 2, seen  # the progress moved while the page watched
    built = second.get_attribute("data-job-row")
    visible(table.get_by_text(built)).wait_for()
    assert not table.get_by_text(name).count()  # the cancelled build left no version
    page.locator("#admin-plot img").wait_for()
    visible(audit.get_by_text("cancel", exact=True)).wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin.png"), full_page=True)
    choose = page.locator("#admin-soup-versions input")  # averaging needs two versions of one start
    choose.click()
    choose.fill(built)
    choose.press("Enter")
    page.locator("#admin-soup-versions .token").get_by_text(built).wait_for()  # chosen, so the refusal is about one
    page.locator("#admin-soup").click()
    page.get_by_text("choose at least two different versions").first.wait_for()
    page.context.close()
