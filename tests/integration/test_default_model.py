"""The shipped default model, for real (Gemma-3-270M + LoRA from assets/model)."""

from pathlib import Path

import pytest
import torch

from chatbot.classifier import load_classifier
from chatbot.data import load_dataset
from chatbot.settings import DEFAULT_MODEL_DIR, training_files

pytestmark = pytest.mark.integration


def shared_data(relative: str) -> Path:
    """A public dataset file under ../shared/data (beside the project's folder)."""
    path = Path(__file__).resolve().parents[3] / "shared" / "data" / relative
    assert path.exists(), f"{path} is missing: the public datasets are read from ../shared"
    return path


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(DEFAULT_MODEL_DIR)


@pytest.mark.parametrize("text, intent", [
    ("Where is my parcel? Order 55123 still hasn't arrived", "track_order"),
    ("Je voudrais annuler ma commande 4411", "cancel_order"),
    ("Ich habe mein Passwort vergessen", "recover_password"),
    ("Ik wil een klacht indienen over jullie service", "complaint"),
    ("¿Qué métodos de pago aceptan?", "check_payment_methods"),
    ("Vorrei parlare con un operatore umano", "contact_human_agent"),
    ("Quero cancelar a subscrição da newsletter", "newsletter_subscription"),
])
def test_classifies_real_messages(classifier, text, intent):
    prediction = classifier.predict([text])[0]
    assert prediction.intent == intent, prediction


def test_bfloat16_predictions_match_float32(classifier):
    texts = [e.text for e in load_dataset(training_files()).split("test")][::4]
    fp32 = load_classifier(DEFAULT_MODEL_DIR, dtype=torch.float32)
    bf16 = load_classifier(DEFAULT_MODEL_DIR, dtype=torch.bfloat16)
    a = [p.intent for p in fp32.predict(texts)]
    b = [p.intent for p in bf16.predict(texts)]
    agreement = sum(x == y for x, y in zip(a, b)) / len(a)
    assert agreement >= 0.98, agreement


def test_real_conversation_per_language(classifier, tmp_path):
    from chatbot.assistant import Assistant
    from chatbot.replies import Catalogue
    from chatbot.store import Store

    assistant = Assistant(classifier, Store(f"sqlite:///{tmp_path / 'c.db'}"), version="default")
    catalogue = Catalogue.load()
    script = {
        "fr": ("Bonjour, où en est ma commande 48213 ? Elle n'est toujours pas arrivée.", "Je veux parler à un conseiller humain"),
        "de": ("Hallo, wo ist meine Bestellung 48213? Sie ist immer noch nicht da.", "Ich möchte mit einem echten Mitarbeiter sprechen"),
        "es": ("Hola, ¿dónde está mi pedido 48213? Todavía no ha llegado.", "Quiero hablar con un agente humano"),
    }
    for lang, (question, human) in script.items():
        first = assistant.respond(None, question)
        assert (first.lang, first.intent, first.action) == (lang, "track_order", "answer"), first
        assert first.reply == catalogue.reply("track_order", lang, {"order": "48213"}) and "48213" in first.reply
        second = assistant.respond(first.conversation_id, human)
        assert (second.lang, second.action, second.status) == (lang, "handoff", "waiting"), second
        stored = assistant.store.messages(first.conversation_id)
        assert [m["role"] for m in stored] == ["customer", "bot", "customer", "bot"]


def test_generalises_to_real_customer_messages(classifier):
    """Bitext's test split (real English customer messages, never trained on), a stratified sample."""
    from chatbot.data import limit_per_intent

    rows = limit_per_intent(load_dataset(shared_data("bitext-customer-support/bitext_intent_8k.csv"),
                                         min_examples=1).split("test"), 6)
    predictions = classifier.predict([e.text for e in rows])
    accuracy = sum(p.intent == e.intent for p, e in zip(predictions, rows)) / len(rows)
    assert len(rows) == 27 * 6 and accuracy >= 0.8, accuracy


def test_requests_meant_for_a_personal_assistant_are_mostly_out_of_scope(classifier):
    """MASSIVE's dev split (virtual-assistant requests in our 7 languages: alarms, calendar, e-mail, lists,
    music, smart home, takeaway food, travel..., none of them a request to our shop, never trained on),
    every 7th row: what the policy does with them."""
    from chatbot.evaluate import policy_verdicts
    from chatbot.policy import PolicyConfig

    rows = load_dataset(shared_data("massive/massive_7lang_train_dev.csv"), min_examples=1).split("dev")[::7]
    _, shares = policy_verdicts(classifier.predict([e.text for e in rows]), PolicyConfig())
    out_of_scope, handoffs = shares.get("out_of_scope", 0.0), shares.get("handoff", 0.0)
    # the default before the other-services data: 0.775 out of scope, 1.6 % handed off (served, all of dev)
    assert len(rows) > 1900 and out_of_scope >= 0.82 and handoffs <= 0.02, (out_of_scope, handoffs)


OUT_OF_SCOPE_SCRIPT = {
    "en": ("Can you recommend a good Italian restaurant near the station?", "Where is my order 48213? It still hasn't arrived."),
    "fr": ("Tu connais une bonne recette de crêpes ?", "Où en est ma commande 48213 ? Elle n'est toujours pas arrivée."),
    "de": ("Wie wird das Wetter morgen in Hamburg?", "Wo bleibt meine Bestellung 48213? Sie ist immer noch nicht da."),
    "nl": ("Wie heeft de Tour de France vorig jaar gewonnen?", "Waar blijft mijn bestelling 48213? Die is nog steeds niet binnen."),
    "es": ("¿Me puedes escribir un poema sobre el mar?", "¿Dónde está mi pedido 48213? Todavía no ha llegado."),
    "it": ("Qual è la capitale dell'Australia?", "Dov'è il mio ordine 48213? Non è ancora arrivato."),
    "pt": ("Sabes qual é a melhor praia do Algarve?", "Onde está a minha encomenda 48213? Ainda não chegou."),
}


@pytest.mark.parametrize("lang", sorted(OUT_OF_SCOPE_SCRIPT))
def test_an_out_of_scope_message_is_answered_with_what_the_bot_does_in_the_language(classifier, tmp_path, lang):
    from chatbot.assistant import Assistant
    from chatbot.replies import Catalogue
    from chatbot.store import Store

    assistant = Assistant(classifier, Store(f"sqlite:///{tmp_path / 'c.db'}"), version="default")
    catalogue = Catalogue.load()
    other, question = OUT_OF_SCOPE_SCRIPT[lang]
    first = assistant.respond(None, other)
    assert (first.lang, first.action, first.status) == (lang, "out_of_scope", "bot"), first
    assert first.reply == catalogue.line("out_of_scope", lang)
    second = assistant.respond(first.conversation_id, question)  # the bot still helps with what it does
    assert (second.action, second.intent) == ("answer", "track_order"), second


def test_the_served_runtime_gives_the_pytorch_intent(classifier):
    """The model customers talk to is the exported one (OpenVINO on a CPU, int8 weights): on our whole
    test split it gives PyTorch's top intent for ≥ 99.5 % of messages (issue #12's bar; measured on the
    development box: 0.9960, 7 of 1,757 differ), alone and in batches."""
    from chatbot.runtime import export, load_exported

    served = load_exported(export(DEFAULT_MODEL_DIR))
    texts = [e.text for e in load_dataset(training_files()).split("test")]
    reference = [p.intent for p in classifier.predict(texts)]
    batched = [p.intent for p in served.predict(texts)]
    agreement = sum(a == b for a, b in zip(reference, batched)) / len(texts)
    assert len(texts) > 1500 and agreement >= 0.995, agreement
    single = [served.predict([t])[0].intent for t in texts[::10]]  # the static single-message models
    assert sum(a == b for a, b in zip(reference[::10], single)) / len(single) >= 0.98
    assert served.parameter_count() == classifier.parameter_count()


def test_the_served_tokenizer_encodes_as_transformers_does(classifier):
    """The served model is tokenized without transformers (no PyTorch in a serving process): the same
    ids and masks as the transformers tokenizer on every test message in the 7 languages, on emoji,
    other scripts and a message past ``max_length``."""
    from chatbot.runtime import ServedTokenizer, export

    served = ServedTokenizer(export(DEFAULT_MODEL_DIR) / "tokenizer", classifier.tokenizer.pad_token_id)
    texts = [e.text for e in load_dataset(training_files()).split("test")]
    texts += ["Où est ma commande ? 😡🙏", "Где мой заказ 4411?", "我的包裹在哪里", "", "colis " * 300]
    for start in range(0, len(texts), 64):
        batch = texts[start:start + 64]
        ours = served(batch, max_length=classifier.max_length)
        theirs = classifier.tokenizer(batch, padding=True, truncation=True, max_length=classifier.max_length,
                                      return_tensors="np")
        assert (ours["input_ids"] == theirs["input_ids"]).all() and (ours["attention_mask"] == theirs["attention_mask"]).all()
    assert ours["input_ids"].shape[1] == classifier.max_length  # the long message was truncated
