import json
import shutil

import numpy as np
import pytest
import torch

from chatbot.build import BuildPolicy, HealArgs, build_version, pick_source
from chatbot.classifier import load_classifier
from chatbot.folder import SOURCE_ADAPTER, ModelFolder
from chatbot.lora import LoraSettings
from chatbot.train import DistillSettings, FitSettings


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))


def quick_heal(**kw) -> HealArgs:
    return HealArgs(fit=FitSettings(epochs=1, lr=1e-4), lora=LoraSettings(r=2), **kw)


def test_version_built_from_a_tuned_source_starts_from_its_accuracy(tiny_base, tiny_data, tiny_model, tmp_path):
    dense = build_version([str(tiny_data)], tmp_path / "dense", ratio=1.0, source=tiny_model)
    assert dense["method"] == "none" and (tmp_path / "dense" / "adapter").is_dir()
    built = build_version([str(tiny_data)], tmp_path / "v", method="whitened", compress_targets="attn+mlp",
                          ratio=0.25, heal=quick_heal(), source=tiny_model)
    folder = tmp_path / "v"
    assert (folder / SOURCE_ADAPTER / "adapter_model.safetensors").exists()
    spec = ModelFolder.read(folder)
    assert spec.source["adapter"] == SOURCE_ADAPTER and spec.compression["source"] == spec.source["fingerprint"]
    assert built["parameters"] < dense["parameters"]
    assert ModelFolder.read_evaluation(folder)["summary"]["accuracy"] == built["accuracy"]
    # compressing the tuned model keeps most of what it learnt; from the raw base the head is random
    from_base = build_version([str(tiny_data)], tmp_path / "raw", base=str(tiny_base), method="whitened",
                              compress_targets="attn+mlp", ratio=0.25, heal=quick_heal())
    assert built["accuracy"] > from_base["accuracy"]
    # the folder is self-contained: with the source moved away and no cached factors, it reloads
    # (recompressing) to the same predictions
    texts = ["hello there", "where is my order", "cancel it please"]
    before = load_classifier(folder, device="cpu", dtype=torch.float32).probabilities(texts)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_model, moved)
    shutil.rmtree(tiny_model / "adapter")
    try:
        shutil.rmtree(tmp_path / "cache" / "compressed")
        after = load_classifier(folder, device="cpu", dtype=torch.float32).probabilities(texts)
    finally:
        shutil.copytree(moved / "adapter", tiny_model / "adapter")
    assert np.allclose(before, after, atol=1e-4)


def test_source_must_be_uncompressed_and_know_the_same_intents(tiny_data, tiny_model, tmp_path):
    settings = json.loads((tiny_model / "model.json").read_text())
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    (other / "model.json").write_text(json.dumps({**settings, "labels": settings["labels"][::-1]}))
    with pytest.raises(ValueError, match="other intents"):
        build_version([str(tiny_data)], tmp_path / "x", ratio=0.5, source=other)
    assert pick_source([other, tiny_model], settings["labels"]) == tiny_model
    (other / "model.json").write_text(json.dumps({**settings, "compression": {"ranks": {}}}))
    with pytest.raises(ValueError, match="itself compressed"):
        build_version([str(tiny_data)], tmp_path / "y", ratio=0.5, source=other)
    assert pick_source([other], settings["labels"]) is None


def test_healing_distils_from_the_source(tiny_data, tiny_model, tmp_path):
    build_version([str(tiny_data)], tmp_path / "v", method="whitened", compress_targets="attn", ratio=0.5,
                  heal=quick_heal(distill=DistillSettings(weight=0.5, teacher_errors=False)), source=tiny_model)
    train_args = ModelFolder.read(tmp_path / "v").train_args
    assert train_args["teacher"] == [str(tiny_model)]
    assert train_args["distill"] == {"weight": 0.5, "temperature": 2.0, "teacher_errors": False, "noisy_copies": 0}
    assert train_args["fit"]["lr"] == 1e-4


def test_the_policy_heals_a_source_gently_and_a_base_from_scratch():
    policy = BuildPolicy()
    from_source, from_base = policy.heal(True), policy.heal(False, epochs=5, max_per_intent=3)
    assert (from_source.fit.lr, from_source.distill.weight) == (policy.source_lr, policy.source_distill)
    assert (from_base.fit.lr, from_base.distill.weight) == (policy.base_lr, 0.0)
    assert (from_source.fit.epochs, from_source.max_per_intent) == (policy.epochs, policy.max_per_intent)
    assert (from_base.fit.epochs, from_base.max_per_intent) == (5, 3)


def test_a_budget_with_per_matrix_ranks_and_a_trimmed_vocabulary_build_and_reload(tiny_data, tiny_model, tmp_path):
    built = build_version([str(tiny_data)], tmp_path / "v", method="whitened", compress_targets="attn+mlp",
                          heal=quick_heal(), source=tiny_model, params_keep=0.5, trim_vocab=True)
    spec = ModelFolder.read(tmp_path / "v")
    assert spec.compression["params_keep"] == 0.5 and spec.vocab["kept"] > 0
    assert (built["params_keep"], built["vocab"]) == (0.5, "trimmed")
    ranks = built["compression"]["ranks"]
    assert len(set(ranks.values())) > 1  # ranks chosen per matrix, not one for all
    texts = ["cancel order stop 1", "where parcel 2"]
    first = load_classifier(tmp_path / "v", device="cpu", dtype=torch.float32)
    again = load_classifier(tmp_path / "v", device="cpu", dtype=torch.float32)
    assert np.array_equal(first.logits(texts), again.logits(texts))
    from compression.vocab import is_trimmed

    assert is_trimmed(first.model)


def test_builds_that_share_a_calibration_seed_can_be_averaged(tiny_model, tiny_data, tmp_path):
    """--seed also seeds the calibration sample, so two builds with other seeds start from other
    factors and a soup refuses them; with the same --calib-seed they share the factors and average."""
    from chatbot.soup import SoupArgs, soup

    def build(name, seed, calib_seed=None):
        heal = HealArgs(fit=FitSettings(epochs=1, lr=1e-4, seed=seed), lora=LoraSettings(r=2))
        build_version([str(tiny_data)], tmp_path / name, method="whitened", compress_targets="attn", ratio=0.5,
                      heal=heal, source=tiny_model, calib_seed=calib_seed)
        return str(tmp_path / name)

    first, other, shared = build("a", 0), build("b", 1), build("c", 1, calib_seed=0)
    compression = lambda folder: ModelFolder.read(folder).compression  # noqa: E731
    assert compression(other)["seed"] == 1 and compression(shared) == compression(first)
    assert ModelFolder.read(shared).train_args["fit"]["seed"] == 1
    with pytest.raises(ValueError, match="compression"):
        soup(SoupArgs(model=[first, other], out=str(tmp_path / "s1"), data=[str(tiny_data)]))
    soup(SoupArgs(model=[first, shared], out=str(tmp_path / "s2"), data=[str(tiny_data)]))
    assert ModelFolder.read(tmp_path / "s2").compression == compression(first)


def test_the_build_command_passes_its_calibration_seed_on(tmp_path, monkeypatch):
    import argparse

    import chatbot.build as build_module
    from chatbot import cli
    from chatbot.build import BuildArgs

    def parse(cls, argv):
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser, cls)
        return cli.build(cls, parser.parse_args(argv))

    seen = {}
    monkeypatch.setattr(build_module, "build_version", lambda *args, **kw: seen.update(kw) or {})
    build_module.run_build(parse(BuildArgs, ["--data", "a.csv", "--out", str(tmp_path / "v"), "--seed", "1",
                                             "--calib-seed", "0"]))
    assert seen["calib_seed"] == 0
    build_module.run_build(parse(BuildArgs, ["--data", "a.csv", "--out", str(tmp_path / "w")]))
    assert seen["calib_seed"] is None  # the training seed, as before
