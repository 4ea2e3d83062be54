"""The classifier service without Ray: the replica's logic (batches, following the live version) and
the client the app uses. tests/test_scale.py runs the real Ray Serve deployment."""

import json
import shutil
import threading

import httpx
import pytest

from chatbot.assistant import Assistant
from chatbot.predictor import Prediction
from chatbot.runtime import load_serving
from chatbot.serving import (Replica, ServeArgs, ServedClassifier, ServedPrediction, classifier_opener, encode,
                             parse_request)
from chatbot.store import Store
from chatbot.versions import Registry


class Fake:
    """A classifier that names its folder in every prediction."""

    def __init__(self, folder):
        self.folder, self.labels = str(folder), ["a", "b", "c"]

    def predict(self, texts, k=3):
        return [Prediction("a", 0.9, [("a", 0.9), ("b", 0.05), ("c", 0.05)][:k]) for _ in texts]

    def threads(self):
        return 1


@pytest.fixture()
def versions(tmp_path, tiny_model):
    home = tmp_path / "home"
    Registry(home, tiny_model)
    shutil.copytree(tiny_model, home / "versions" / "v2")
    return home, tiny_model


def test_a_replica_follows_promotion_and_answers_meanwhile(versions):
    home, default = versions
    release, loading = threading.Event(), threading.Event()

    def slow_loader(folder, device=None):
        if folder.name == "v2":
            loading.set()
            assert release.wait(30)
        return Fake(folder)

    replica = Replica(home, default, loader=slow_loader, name="r1")
    assert replica.classify(["x"])[0] == "default" and not replica.follow()  # nothing promoted: nothing loaded
    Registry(home, default).set_live("v2")
    swapping = threading.Thread(target=replica.follow)
    swapping.start()
    assert loading.wait(30)
    version, predictions = replica.classify(["x", "y"], k=2)  # the old model answers while the new one loads
    assert version == "default" and len(predictions) == 2 and len(predictions[0].top) == 2
    release.set()
    swapping.join(30)
    assert replica.classify(["x"])[0] == "v2" and replica.info()["version"] == "v2"
    assert replica.current[1].folder.endswith("v2")
    assert replica.info()["batches"] == {"batches": 3, "messages": 4, "largest": 2}


def test_a_version_that_fails_to_load_leaves_the_replica_serving(versions):
    home, default = versions

    def loader(folder, device=None):
        if folder.name == "v2":
            raise RuntimeError("broken folder")
        return Fake(folder)

    replica = Replica(home, default, loader=loader)
    Registry(home, default).set_live("v2")
    assert not replica.follow() and replica.classify(["x"])[0] == "default"
    restarted = Replica(home, default, loader=loader)  # a new replica, with the broken version live
    assert restarted.classify(["x"])[0] == "default"


def test_a_replica_tries_a_broken_version_again_only_after_a_wait_and_keeps_serving_through_a_damaged_pointer(
        versions, monkeypatch):
    home, default = versions
    shutil.copytree(default, home / "versions" / "v3")
    attempts, clock = [], [1000.0]
    monkeypatch.setattr("chatbot.serving.time.monotonic", lambda: clock[0])

    def loader(folder, device=None):
        attempts.append("default" if folder == default else folder.name)
        if folder.name == "v2":
            raise RuntimeError("broken folder")
        return Fake(folder)

    replica = Replica(home, default, loader=loader)
    registry = Registry(home, default)
    registry.set_live("v2")
    for _ in range(5):  # five reload checks: one load
        assert not replica.follow()
    clock[0] += 31
    for _ in range(3):  # then once more after 30 s, and the next wait is longer
        assert not replica.follow()
    clock[0] += 31
    assert not replica.follow() and attempts == ["default", "v2", "v2"]
    clock[0] += 30
    assert not replica.follow() and attempts == ["default", "v2", "v2", "v2"]
    restarted = Replica(home, default, loader=loader)  # starts on the default: v2 is tried after 30 s, not at once
    assert restarted.version == "default" and not restarted.follow() and attempts.count("v2") == 4
    clock[0] += 31
    assert not restarted.follow() and attempts.count("v2") == 5
    registry.set_live("v3")  # a new promotion is loaded at once
    assert replica.follow() and replica.version == "v3"
    good = registry.pointer.read_text()
    registry.pointer.write_text(good[:10])  # damaged, or read while an NFS server hiccups
    assert not replica.follow() and replica.version == "v3" and attempts[-1] == "v3"
    registry.pointer.write_text(good)
    assert not replica.follow() and replica.version == "v3" and attempts.count("v3") == 1


@pytest.mark.parametrize("body", [None, [], {"texts": "hello"}, {"texts": [1]}, {"texts": ["x"], "k": 0},
                                  {"texts": ["x"], "k": True}, {"texts": ["x" * 5000]}, {"texts": ["x"] * 257}])
def test_bad_requests_are_refused_with_a_reason(body):
    with pytest.raises(ValueError):
        parse_request(body)


def test_serve_args_are_checked():
    assert ServeArgs().replicas == 2
    for bad in ({"replicas": 0}, {"cpus_per_replica": 0}, {"batch_wait_ms": -1}, {"port": 0}, {"device": "tpu"}):
        with pytest.raises(ValueError):
            ServeArgs(**bad)


def served(replica: Replica, calls: list) -> httpx.MockTransport:
    """The deployment's HTTP protocol over a replica, without Ray (one batch per request)."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=replica.info())
        try:
            texts, k = parse_request(json.loads(request.content))
        except ValueError as err:
            return httpx.Response(400, json={"error": str(err)})
        calls.append(texts)
        version, predictions = replica.classify(texts, k)
        return httpx.Response(200, json={"replica": replica.name,
                                         "predictions": [encode(version, p) for p in predictions]})

    return httpx.MockTransport(handle)


def test_the_client_is_a_classifier_and_turns_are_stored_with_the_version_that_answered(versions, tmp_path, tiny_model):
    home, default = versions
    replica, calls = Replica(home, default, name="r1"), []
    client = ServedClassifier("http://classifier.test/classifier", transport=served(replica, calls))
    # what the replica serves, read here directly (PyTorch's bfloat16 and OpenVINO's batches may pick
    # other intents at a random tiny model's near-ties: compare the protocol, not two runtimes)
    local = load_serving(tiny_model)
    assert client.labels == local.labels
    remote = client.predict(["where track parcel", "refund money back"], k=2)
    assert [p.intent for p in remote] == [p.intent for p in local.predict(["where track parcel", "refund money back"])]
    assert isinstance(remote[0], ServedPrediction) and remote[0].version == "default" and len(remote[0].top) == 2
    with pytest.raises(ValueError, match="at most"):
        client.predict(["x"] * 300)

    assistant = Assistant(client, Store(f"sqlite:///{tmp_path / 'c.db'}"), version="what-the-app-thinks")
    first = assistant.respond(None, "where track parcel status")
    Registry(home, default).set_live("v2")
    replica.follow()
    second = assistant.respond(first.conversation_id, "refund money back")
    assert (first.model_version, second.model_version) == ("default", "v2")
    stored = assistant.store.messages(first.conversation_id)
    assert [m["model_version"] for m in stored] == ["default", "default", "v2", "v2"]
    assert client.version == "v2"  # the client saw the promotion (and re-read the labels)


def test_the_app_classifies_in_process_unless_a_url_is_set(monkeypatch, tiny_model):
    monkeypatch.delenv("CHATBOT_CLASSIFIER_URL", raising=False)
    assert classifier_opener() is load_serving
    monkeypatch.setenv("CHATBOT_CLASSIFIER_URL", "http://127.0.0.1:1/classifier")
    opener = classifier_opener()
    assert isinstance(opener(tiny_model), ServedClassifier) and opener(tiny_model) is opener("elsewhere")
