import numpy as np
import pytest
import torch
from conftest import load_tiny_hf, train_tiny

from chatbot.classifier import build_model, describe_base, load_classifier
from chatbot.folder import ModelFolder
from chatbot.model import ModelLoadError
from compression.compress import CompressArgs, compress_model, save_compressed
from compression.svd import LowRankLinear


def test_predictions_are_calibrated_distributions(tiny_model):
    clf = load_classifier(tiny_model, device="cpu", dtype=torch.float32)
    probs = clf.probabilities(["cancel order 1", "refund money 2"])
    assert np.allclose(probs.sum(-1), 1, atol=1e-5)
    preds = clf.predict(["cancel order stop 1", "track parcel where 2", "refund money back 3"], k=3)
    assert [p.intent for p in preds] == ["cancel_order", "track_order", "get_refund"]
    for p in preds:
        confidences = [c for _, c in p.top]
        assert confidences == sorted(confidences, reverse=True) and p.top[0] == (p.intent, p.confidence)
    # the temperature calibrates: probabilities are softmax(logits / T)
    logits = clf.logits(["cancel order 1"])
    assert torch.allclose(torch.from_numpy(clf.probabilities(["cancel order 1"])),
                          torch.softmax(torch.from_numpy(logits) / clf.temperature, -1))


def test_batching_does_not_change_predictions(tiny_model):
    clf = load_classifier(tiny_model, device="cpu", dtype=torch.float32)
    texts = ["cancel", "where parcel status colis 3 4", "refund money back argent remboursement 9 9 9"]
    together = clf.logits(texts, batch_size=8)
    alone = np.concatenate([clf.logits([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)
    assert clf.predict([]) == []


def compressed_base_folder(tiny_base, tiny_data, tmp_path):
    model, tokenizer = load_tiny_hf(tiny_base)
    result = compress_model(model, tokenizer, CompressArgs(calib=[str(tiny_data)], calib_size=40, targets="attn",
                                                           rank_ratio=0.25))
    return save_compressed(model, tokenizer, tmp_path / "c", str(tiny_base), result), result


def test_a_classifier_trained_on_a_compressed_base_folder_records_and_reapplies_the_recipe(
        tiny_base, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    folder, result = compressed_base_folder(tiny_base, tiny_data, tmp_path)
    assert describe_base(str(folder)) == (str(tiny_base), result["recipe"])
    out = train_tiny(folder, tiny_data, tmp_path / "m", epochs=2)
    spec = ModelFolder.read(out)
    assert spec.base == str(tiny_base) and spec.compression["ranks"] == result["recipe"]["ranks"]
    clf = load_classifier(out, device="cpu", dtype=torch.float32)  # no cache: the recipe is recomputed
    assert sum(isinstance(m, LowRankLinear) for m in clf.model.modules()) == 8
    assert clf.predict(["cancel order stop 1"])[0].intent == "cancel_order"


def test_a_compressed_base_folder_takes_no_second_recipe(tiny_base, tiny_data, tmp_path):
    folder, result = compressed_base_folder(tiny_base, tiny_data, tmp_path)
    with pytest.raises(ModelLoadError, match="already compressed"):
        build_model(str(folder), 3, compression=result["recipe"])
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_classifier(tmp_path)
