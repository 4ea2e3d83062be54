import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from chatbot.classifier import load_classifier
from chatbot.folder import ModelFolder
from chatbot.model import ModelLoadError
from chatbot.runtime import BATCH_LENGTH_STEP, BATCH_STREAMS, BUCKETS, artefact_dir, export, load_exported, load_serving, pick_runtime, weight_types

TEXTS = ["cancel order stop 1", "where parcel status colis 3 4", "refund money back argent remboursement 9 9 9",
         "x", " ".join(["colis"] * 40), " ".join(["refund"] * 90)]


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_exported_model_gives_the_pytorch_logits_alone_and_in_batches(tiny_model, own_cache):
    served = load_serving(tiny_model, "openvino-fp16")
    reference = load_classifier(tiny_model, device="cpu", dtype=torch.float32)
    shapes, queue = [], served.forward.queue

    class Recorder:  # the shapes the dynamic model is given
        def start_async(self, inputs, slot):
            shapes.append(inputs[0].shape)
            queue.start_async(inputs, slot)

        def wait_all(self):
            queue.wait_all()

    served.forward.queue = Recorder()
    for size in (2, 3, 8):  # the dynamic model, lengths rounded up to BATCH_LENGTH_STEP (max_length at most)
        together = served.logits(TEXTS, batch_size=size)
        assert np.allclose(together, reference.logits(TEXTS, batch_size=size), atol=2e-2)  # bf16 inference
    assert shapes and all(n % BATCH_LENGTH_STEP == 0 or n == served.max_length for _, n in shapes)
    for text in TEXTS:  # single messages: padded to a static bucket, the last one the model's max_length
        assert np.allclose(served.logits([text]), reference.logits([text]), atol=2e-2)
    lengths = [served.tokenizer([t], max_length=served.max_length)["attention_mask"].sum() for t in TEXTS]
    assert served.forward.buckets == (*BUCKETS, served.max_length) and max(lengths) > BUCKETS[-1]
    needed = {next(b for b in served.forward.buckets if b >= n) for n in lengths}
    assert sorted(served.forward.static) == sorted(needed)  # compiled when needed; no single message dynamic
    assert [p.intent for p in served.predict(TEXTS)] == [p.intent for p in reference.predict(TEXTS)]
    assert served.parameter_count() == reference.parameter_count()


def test_a_batch_runs_its_calls_on_two_streams_and_each_gets_its_own_logits(tiny_model, own_cache):
    served = load_serving(tiny_model, "openvino")
    assert served.forward.streams == min(BATCH_STREAMS, len(os.sched_getaffinity(0)))
    enc = served.tokenizer(TEXTS * 3, max_length=served.max_length)
    calls = [(enc["input_ids"][i:i + n], enc["attention_mask"][i:i + n]) for i, n in ((0, 5), (5, 1), (6, 9), (15, 3))]
    alone = [served.forward(*call) for call in calls]
    together = served.forward.many(calls)
    assert [x.shape for x in together] == [(n, len(served.labels)) for n in (5, 1, 9, 3)]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(alone, together))


def test_threads_asked_for_cap_the_exported_model_and_its_streams(tiny_model, own_cache):
    """A Ray Serve replica given one core must not run OpenVINO on every core of its node, nor pin its
    thread to the first core, where every other replica's would be pinned too."""
    assert 1 <= load_serving(tiny_model, "openvino").threads() <= len(os.sched_getaffinity(0))
    one = load_serving(tiny_model, "openvino", threads=1)
    assert one.threads() == 1 and one.forward.streams == 1
    assert one.forward.dynamic.get_property("ENABLE_CPU_PINNING") is False
    one.predict(TEXTS[:1])  # a single message: its static shape is compiled the same way
    assert one.forward.static and all(request.get_compiled_model().get_property("ENABLE_CPU_PINNING") is False
                                      for request in one.forward.static.values())
    # the same model's logits (within bfloat16's error: on a CPU where the two-stream batches fall back
    # to float32, compiles_safely, a random tiny model's near-ties may pick other intents)
    assert np.allclose(one.logits(TEXTS), load_serving(tiny_model, "openvino").logits(TEXTS), atol=2e-2)


def test_a_failed_batch_call_raises_and_the_next_batch_is_answered(tiny_model, own_cache):
    """A call that fails on a stream is an error for that batch only: OpenVINO's queue would raise the
    failure again at every later call (or abort the process)."""
    served = load_serving(tiny_model, "openvino")
    texts = TEXTS[:3] * 4
    expected = served.logits(texts)

    def inference_fails(request, slot):  # what OpenVINO records of a failed call
        raise ValueError("inference failed")

    served.forward.queue.set_callback(inference_fails)
    with pytest.raises(RuntimeError, match="exported model failed on a batch"):
        served.logits(texts)
    for _ in range(2):
        assert np.allclose(served.logits(texts), expected)


def test_int8_weights_everywhere_but_v_proj_and_the_same_answers(tiny_model, own_cache):
    import openvino as ov

    served = load_serving(tiny_model, "openvino")
    fp16 = load_serving(tiny_model, "openvino-fp16")
    layers = load_classifier(tiny_model, device="cpu").model.config.num_hidden_layers
    types = weight_types(ov.Core().read_model(str(artefact_dir(tiny_model, "int8") / "model.xml")))
    assert types.count("u8") == len(types) - layers and types.count("f16") == layers  # one v_proj a layer
    assert set(weight_types(ov.Core().read_model(str(artefact_dir(tiny_model, "fp16") / "model.xml")))) == {"f16"}
    assert np.allclose(served.logits(TEXTS), fp16.logits(TEXTS), atol=0.1)
    assert [p.intent for p in served.predict(TEXTS)] == [p.intent for p in fp16.predict(TEXTS)]


def test_the_artefact_is_built_once_and_follows_the_folder(tiny_model, own_cache, tmp_path):
    import shutil

    first = export(tiny_model)
    stamp = (first / "model.xml").stat().st_mtime_ns
    assert export(tiny_model) == first and (first / "model.xml").stat().st_mtime_ns == stamp  # cached
    info = json.loads((first / "info.json").read_text())
    assert info["labels"] == ["cancel_order", "get_refund", "track_order"]
    changed = tmp_path / "changed"
    shutil.copytree(tiny_model, changed)
    spec = json.loads((changed / "model.json").read_text())
    (changed / "model.json").write_text(json.dumps({**spec, "temperature": spec["temperature"] * 2}))
    assert artefact_dir(changed) != artefact_dir(tiny_model)  # another folder, another artefact
    base = Path(ModelFolder.read(changed).base)
    moved = tmp_path / "base"
    shutil.copytree(base, moved)
    (changed / "model.json").write_text(json.dumps({**spec, "base": str(moved)}))
    before = artefact_dir(changed)
    weights = next(moved.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b" ")  # the base trained again in place
    assert artefact_dir(changed) != before
    (changed / "model.json").write_text(json.dumps({**spec, "temperature": spec["temperature"] * 2}))
    assert load_exported(export(changed)).temperature == pytest.approx(spec["temperature"] * 2)
    assert not list(own_cache.glob("runtime/*.partial"))


def test_runtime_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("CHATBOT_RUNTIME", raising=False)
    assert pick_runtime("torch") == "torch" and pick_runtime() == "openvino"  # a CPU with OpenVINO installed
    monkeypatch.setenv("CHATBOT_RUNTIME", "torch")
    assert pick_runtime() == "torch"
    monkeypatch.setenv("CHATBOT_RUNTIME", "openvino-fp16")
    assert pick_runtime() == "openvino-fp16"
    with pytest.raises(ValueError, match="runtime"):
        pick_runtime("tensorrt")
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_serving(tmp_path, "openvino")


def test_threads_sharing_the_served_classifier_all_get_answers(tiny_model, own_cache):
    """The app's request threads share one classifier; an OpenVINO infer request used by two of them
    at once fails ("Infer Request is busy"), which customers saw as error replies under load."""
    import threading

    served = load_serving(tiny_model, "openvino")
    expected = [p.intent for p in served.predict(TEXTS[:3])]
    failures, wrong = [], []

    def customer():
        for _ in range(15):
            try:
                for text, intent in zip(TEXTS[:3], expected):  # single messages share the static buckets
                    if served.predict([text])[0].intent != intent:
                        wrong.append(text)
                served.predict(TEXTS[:3])  # and batches the dynamic model
            except Exception as err:  # noqa: BLE001 - counted, the assertion says which
                failures.append(repr(err))

    threads = [threading.Thread(target=customer) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert failures == [] and wrong == []


def test_serving_an_exported_model_imports_neither_pytorch_nor_transformers(tiny_model, own_cache):
    """A process that serves the exported model (an app or Ray Serve replica) stays free of PyTorch and
    transformers, about 250 MB of memory; the tokenizer is read by the ``tokenizers`` library."""
    import subprocess
    import sys

    export(tiny_model)
    script = ("import sys; from chatbot.runtime import load_serving; "
              f"c = load_serving({str(tiny_model)!r}, 'openvino'); print(c.predict(['cancel order stop 1'])[0].intent); "
              "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["cancel_order", "[]"], out


@pytest.mark.parametrize("damage", ["info.json", "model.bin", "tokenizer", "leftover"])
def test_a_damaged_cache_entry_is_built_again(tiny_model, own_cache, damage):
    import shutil

    from chatbot.runtime import load_serving

    path = artefact_dir(tiny_model)
    if damage == "leftover":  # a folder a crash left where the artefact goes, without model.xml
        (path / "tokenizer").mkdir(parents=True)
    else:
        export(tiny_model)
        target = path / damage
        shutil.rmtree(target) if target.is_dir() else target.write_bytes(b"")
    served = load_serving(tiny_model, runtime="openvino")
    assert served.predict(["where is my parcel"])[0].intent in ("cancel_order", "get_refund", "track_order")
    assert (path / "info.json").exists() and (path / "model.xml").exists()


def test_batches_fall_back_to_float32_where_bfloat16_streams_go_wrong(tiny_model, own_cache, monkeypatch, capsys):
    """On a Xeon with AMX, OpenVINO 2026.4 kills the process compiling some small models for several
    bfloat16 streams and gives logits in the thousands for others: a child process tries it once per
    model and configuration (the verdict is kept beside the model), and batches run in float32 where
    it went wrong, whatever the machine this test runs on."""
    import subprocess

    import chatbot.runtime as runtime

    path = export(tiny_model)
    config = {"INFERENCE_PRECISION_HINT": "bf16", "NUM_STREAMS": 2}
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: True)
    children = []

    def child(said: str, code: int):
        def run(args, **kwargs):
            children.append(args)
            return subprocess.CompletedProcess(args, code, stdout=said, stderr="")
        return run

    for said, code, sound, kept in (("", -8, False, True), ("off by 4895.41\n", 0, False, True),
                                    ("sound\n", 0, True, True), ("", 1, True, False)):
        for old in path.glob("bf16-streams-*.json"):
            old.unlink()
        monkeypatch.setattr(runtime.subprocess, "run", child(said, code))
        assert runtime.bf16_streams_sound(path, config) is sound, (said, code)
        assert bool(list(path.glob("bf16-streams-*.json"))) is kept  # an error (not a signal) is not remembered
    monkeypatch.setattr(runtime.subprocess, "run", child("sound\n", 0))
    runtime.bf16_streams_sound(path, config)
    asked = len(children)
    assert runtime.bf16_streams_sound(path, config) and len(children) == asked  # remembered: no second child
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: False)
    assert runtime.bf16_streams_sound(path, {**config, "NUM_STREAMS": 3}) and len(children) == asked  # no AMX: no child

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(runtime, "bf16_streams_sound", lambda path, config: False)
    served = load_serving(tiny_model, "openvino", threads=2)
    assert served.forward.streams == 2 and str(served.forward.dynamic.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    reference = load_classifier(tiny_model, device="cpu", dtype=torch.float32)
    assert np.allclose(served.logits(TEXTS), reference.logits(TEXTS), atol=2e-2)

    # the child's comparison itself, here in float32 against float32: sound
    capsys.readouterr()
    runtime._compare_bf16_streams(str(path / "model.xml"), json.dumps({"INFERENCE_PRECISION_HINT": "f32"}))
    assert capsys.readouterr().out.strip() == "sound"
