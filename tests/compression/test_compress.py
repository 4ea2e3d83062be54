
import pytest
import torch

from conftest import load_tiny_hf

from compression.compress import (CompressArgs, apply_recipe, compress_model, load_compressed_weights, read_recipe,
                                  save_compressed)
from compression.svd import LowRankLinear


def compressed_tiny(tiny_base, tiny_data, **kw):
    model, tokenizer = load_tiny_hf(tiny_base)
    args = CompressArgs(calib=[str(tiny_data)], calib_size=40, **kw)
    return model, tokenizer, compress_model(model, tokenizer, args)


def test_accounting_and_ranks(tiny_base, tiny_data):
    model, _, result = compressed_tiny(tiny_base, tiny_data, method="whitened", targets="attn", rank_ratio=0.25)
    report, ranks = result["report"], result["recipe"]["ranks"]
    # hidden 32, 2 KV heads of 8: q/o are 32×32 (rank 8), k/v are 16×32 (rank 4); 2 layers.
    assert len(ranks) == 8 and set(ranks.values()) == {8, 4}
    q = report["by_type"]["q_proj"]
    assert q["params_before"] == 2 * 32 * 32 and q["params_after"] == 2 * 8 * 64
    saved = sum(t["params_before"] - t["params_after"] for t in report["by_type"].values())
    assert report["model_params_before"] - report["model_params_after"] == saved
    assert all(0 <= r["error"] < 1 for r in report["layers"])
    assert sum(isinstance(m, LowRankLinear) for m in model.modules()) == 8


def test_rank_that_saves_nothing_stays_dense(tiny_base, tiny_data):
    model, _, result = compressed_tiny(tiny_base, tiny_data, method="plain", targets="attn", rank_ratio=0.5)
    dense = result["report"]["dense_layers_left"]
    assert any("q_proj" in n for n in dense)  # 16 ≥ 32·32/64: no saving, left dense
    assert not any("k_proj" in n for n in dense)  # 8·48 < 16·32 saves
    assert all(not isinstance(model.get_submodule(n), LowRankLinear) for n in dense)


def test_targets_can_name_single_modules(tiny_base, tiny_data):
    assert CompressArgs(targets="attn+q_proj").layer_names == ("q_proj", "k_proj", "v_proj", "o_proj")
    model, _, result = compressed_tiny(tiny_base, tiny_data, targets="q_proj+o_proj", rank_ratio=0.25)
    assert sorted({n.rsplit(".", 1)[-1] for n in result["recipe"]["ranks"]}) == ["o_proj", "q_proj"]
    kinds = {n.rsplit(".", 1)[-1]: type(m) for n, m in model.named_modules() if n.endswith("_proj")}
    assert kinds["q_proj"] is LowRankLinear and kinds["o_proj"] is LowRankLinear
    assert kinds["k_proj"] is torch.nn.Linear and kinds["v_proj"] is torch.nn.Linear
    with pytest.raises(ValueError, match="module names"):
        CompressArgs(targets="q_proj+lm_head")


def test_whitened_error_is_lower_than_plain(tiny_base, tiny_data):
    _, _, plain = compressed_tiny(tiny_base, tiny_data, method="plain", targets="attn+mlp", rank_ratio=0.25)
    _, _, white = compressed_tiny(tiny_base, tiny_data, method="whitened", targets="attn+mlp", rank_ratio=0.25)
    pairs = list(zip(plain["report"]["layers"], white["report"]["layers"]))
    for p, w in pairs:
        assert w["error"] <= p["error"] + 1e-6, p["name"]
    # and clearly lower overall: a whitened factorisation replaced by a plain one must not pass
    assert sum(w["error"] for _, w in pairs) < 0.95 * sum(p["error"] for p, _ in pairs)


def test_saved_folder_and_recipe_reload_to_identical_logits(tiny_base, tiny_data, tmp_path):
    model, tokenizer, result = compressed_tiny(tiny_base, tiny_data, method="whitened", targets="attn+mlp",
                                               rank_ratio=0.25, skip=["layers.1.mlp"])
    folder = save_compressed(model, tokenizer, tmp_path / "c", str(tiny_base), result)
    info = read_recipe(folder)
    reloaded, _ = load_tiny_hf(tiny_base)
    load_compressed_weights(reloaded, folder, info["recipe"])
    reloaded.score.load_state_dict(model.score.state_dict())
    batch = tokenizer(["cancel order 1", "refund money back 2"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)
    # Re-applying the recipe from scratch (empty cache) gives the same factors.
    fresh, _ = load_tiny_hf(tiny_base)
    apply_recipe(fresh, tokenizer, str(tiny_base), result["recipe"], tmp_path / "cache")
    fresh.score.load_state_dict(model.score.state_dict())
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, fresh(**batch).logits, atol=1e-5)
    assert list((tmp_path / "cache").glob("*.safetensors"))
    assert not isinstance(fresh.get_submodule("model.layers.1.mlp.up_proj"), LowRankLinear)


def test_args_validation():
    with pytest.raises(ValueError):
        CompressArgs(targets="everything")
    with pytest.raises(ValueError):
        CompressArgs(rank_ratio=None)
    assert CompressArgs(param_share=0.5).rank_for(32, 32) == 8
    assert CompressArgs(rank=100).rank_for(16, 32) == 16


def test_recipe_from_an_older_factorisation_is_not_recomputed(tiny_base, tiny_data, tmp_path):
    from compression.compress import FACTORS_VERSION

    model, tokenizer, result = compressed_tiny(tiny_base, tiny_data, method="whitened", targets="attn", rank_ratio=0.25)
    assert result["recipe"]["factors"] == FACTORS_VERSION
    old = {**result["recipe"], "factors": FACTORS_VERSION - 1}
    fresh, _ = load_tiny_hf(tiny_base)
    with pytest.raises(ValueError, match="older version of the factorisation"):
        apply_recipe(fresh, tokenizer, str(tiny_base), old, tmp_path / "empty-cache")


def test_calibration_files_are_required_and_relative_ones_read_from_a_root(tiny_base, tiny_data, tmp_path):
    model, tokenizer = load_tiny_hf(tiny_base)
    with pytest.raises(ValueError, match="calibration files"):
        compress_model(model, tokenizer, CompressArgs(calib=[]))
    relative = CompressArgs(calib=[tiny_data.name], calib_size=20)
    with pytest.raises(ValueError, match="not found"):
        compress_model(model, tokenizer, relative)
    result = compress_model(model, tokenizer, relative, calib_root=tiny_data.parent)
    assert result["recipe"]["calib"] == [tiny_data.name] and result["recipe"]["ranks"]
