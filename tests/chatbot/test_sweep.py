import json
import shutil

import pytest

from chatbot.sweep import SweepArgs, run_sweep


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Compressed factors go to a cache of the test's own (spawned sweep workers inherit it)."""
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))


def test_sweep_runs_dense_first_and_writes_table_and_plot(tiny_base, tiny_data, tmp_path):
    report = run_sweep(SweepArgs(data=[str(tiny_data)], report=str(tmp_path), base=str(tiny_base),
                                 ratios=[1.0, 0.25], methods=["whitened"], targets=["attn+mlp"], epochs=2,
                                 lora_r=2))
    points = report["points"]
    assert [p["method"] for p in points] == ["none", "whitened"]
    assert all("error" not in p for p in points), points
    dense, compressed = points
    assert compressed["parameters"] < dense["parameters"]
    saved = dense["parameters"] - compressed["parameters"]
    assert dense["non_embedding_parameters"] - compressed["non_embedding_parameters"] == saved
    assert dense["non_embedding_parameters"] < dense["parameters"]
    assert compressed["compression"]["model_params_after"] < compressed["compression"]["model_params_before"]
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert "| 0.25 | whitened | attn+mlp |" in (tmp_path / "sweep.md").read_text()
    assert json.loads((tmp_path / "sweep.json").read_text())["points"][0]["ratio"] == 1.0


def test_parallel_sweep_keeps_point_order(tiny_base, tiny_data, tmp_path):
    report = run_sweep(SweepArgs(data=[str(tiny_data)], report=str(tmp_path), base=str(tiny_base),
                                 ratios=[1.0, 0.5, 0.25], methods=["plain"], targets=["attn"], epochs=1,
                                 lora_r=2, lora_targets=["q_proj", "v_proj"], jobs=2))
    points = report["points"]
    assert [(p["ratio"], p["method"]) for p in points] == [(1.0, "none"), (0.5, "plain"), (0.25, "plain")]
    assert all("accuracy" in p for p in points), points
    assert points[2]["parameters"] < points[1]["parameters"] < points[0]["parameters"]
    assert report["args"]["jobs"] == 2


def test_sweep_rejects_zero_jobs(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        SweepArgs(data=[str(tiny_data)], report=str(tmp_path), jobs=0)


def test_version_built_from_a_tuned_source_starts_from_its_accuracy(tiny_base, tiny_data, tiny_model, tmp_path):
    import torch

    from chatbot.classifier import IntentClassifier
    from chatbot.sweep import SOURCE_ADAPTER, HealArgs, build_version

    dense = build_version([str(tiny_data)], tmp_path / "dense", ratio=1.0, source=tiny_model)
    assert dense["method"] == "none" and (tmp_path / "dense" / "adapter").is_dir()
    heal = HealArgs(epochs=1, lr=1e-4, lora_r=2)
    built = build_version([str(tiny_data)], tmp_path / "v", method="whitened", targets="attn+mlp", ratio=0.25,
                          heal=heal, source=tiny_model)
    folder = tmp_path / "v"
    assert (folder / SOURCE_ADAPTER / "adapter_model.safetensors").exists()
    settings = json.loads((folder / "model.json").read_text())
    assert settings["source"]["adapter"] == SOURCE_ADAPTER and settings["compression"]["source"]
    assert built["parameters"] < dense["parameters"]
    # compressing the tuned model keeps most of what it learnt; from the raw base the head is random
    from_base = build_version([str(tiny_data)], tmp_path / "raw", base=str(tiny_base), method="whitened",
                              targets="attn+mlp", ratio=0.25, heal=heal)
    assert built["accuracy"] > from_base["accuracy"]
    # the folder is self-contained: with the source moved away and no cached factors, it reloads
    # (recompressing) to the same predictions
    texts = ["hello there", "where is my order", "cancel it please"]
    before = IntentClassifier.load(folder, device="cpu", dtype=torch.float32).probabilities(texts)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_model, moved)
    shutil.rmtree(tiny_model / "adapter")
    try:
        shutil.rmtree(tmp_path / "cache" / "compressed")
        after = IntentClassifier.load(folder, device="cpu", dtype=torch.float32).probabilities(texts)
    finally:
        shutil.copytree(moved / "adapter", tiny_model / "adapter")
    assert torch.allclose(before, after, atol=1e-4)


def test_source_must_be_uncompressed_and_know_the_same_intents(tiny_data, tiny_model, tmp_path):
    from chatbot.sweep import build_version

    settings = json.loads((tiny_model / "model.json").read_text())
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    (other / "model.json").write_text(json.dumps({**settings, "labels": settings["labels"][::-1]}))
    with pytest.raises(ValueError, match="other intents"):
        build_version([str(tiny_data)], tmp_path / "x", ratio=0.5, source=other)
    (other / "model.json").write_text(json.dumps({**settings, "compression": {"ranks": {}}}))
    with pytest.raises(ValueError, match="itself compressed"):
        build_version([str(tiny_data)], tmp_path / "y", ratio=0.5, source=other)


def test_distillation_needs_a_source(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="--source"):
        SweepArgs(data=[str(tiny_data)], report=str(tmp_path), distill=0.5)


def test_healing_distils_from_the_source(tiny_data, tiny_model, tmp_path):
    from chatbot.sweep import HealArgs, build_version

    build_version([str(tiny_data)], tmp_path / "v", method="whitened", targets="attn", ratio=0.5,
                  heal=HealArgs(epochs=1, lr=1e-4, lora_r=2, distill=0.5), source=tiny_model)
    train_args = json.loads((tmp_path / "v" / "model.json").read_text())["train_args"]
    assert train_args["teacher"] == str(tiny_model) and train_args["distill"] == 0.5
