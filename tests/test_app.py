"""app.py's API endpoints through gradio_client, on a tiny model (no browser)."""

import pytest


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_model):
    from gradio_client import Client

    from app import build_app
    from chatbot.service import Service

    service = Service(home_dir=tmp_path_factory.mktemp("home"), default_model=tiny_model)
    demo = build_app(service)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    yield Client(demo.local_url, verbose=False), service
    demo.close()


def test_chat_endpoint_continues_a_conversation(client):
    api, service = client
    first = api.predict("Bonjour, je voudrais annuler ma commande", "", "fr-FR,fr;q=0.9", api_name="/chat")
    assert first["lang"] == "fr" and first["conversation_id"] and first["reply"]
    second = api.predict("merci", first["conversation_id"], "", api_name="/chat")
    assert second["conversation_id"] == first["conversation_id"] and second["lang"] == "fr"
    assert len(service.store.messages(first["conversation_id"])) == 4


def test_analyse_endpoint_stores_nothing(client):
    api, service = client
    before = service.store.count_messages()
    result = api.predict("Ik wil mijn bestelling annuleren", api_name="/analyse")
    assert result["lang"]["lang"] == "nl" and len(result["top"]) == 3
    assert service.store.count_messages() == before


def test_only_the_two_endpoints_are_public(client):
    api, _ = client
    assert set(api.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/chat", "/analyse"}
