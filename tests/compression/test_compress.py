
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


def test_allocation_spends_the_budget_where_the_error_is():
    from compression.compress import allocate_ranks

    torch.manual_seed(0)
    flat = torch.ones(32)  # every direction matters as much: truncation hurts
    steep = 0.5 ** torch.arange(32, dtype=torch.float64)  # a few directions carry everything
    shapes = {"flat": (32, 32), "steep": (32, 32)}
    ranks = allocate_ranks({"flat": flat, "steep": steep}, shapes, keep=0.4)
    # steep's 2nd and 3rd directions (3/16 and 3/64 of its energy) beat flat's 1/32 each, its 4th (3/256)
    # does not: 12 ranks of 64 parameters fit in 0.4·2048, 3 for steep and 9 for flat
    assert ranks == {"flat": 9, "steep": 3}
    spent = sum(r * 64 for r in ranks.values())
    assert 0.4 * 2048 - 64 < spent <= 0.4 * 2048  # the budget is used, not exceeded
    # a budget that allows it buys a matrix back whole (dense) rather than past its break-even rank
    generous = allocate_ranks({"flat": flat, "steep": steep}, shapes, keep=0.9)
    assert generous["flat"] == 32
    with pytest.raises(ValueError, match="rank 1"):
        allocate_ranks({"flat": flat}, {"flat": (32, 32)}, keep=0.01)


def test_a_minimum_saving_makes_fewer_deeper_cuts_under_the_same_budget():
    from compression.compress import allocate_ranks
    from compression.svd import useful_rank

    assert useful_rank(32, 32) == 15 and useful_rank(32, 32, 0.5) == 8  # 64·r ≤ 1024·(1 − s)
    assert useful_rank(1024, 640, 0.5) == 196 and useful_rank(1024, 640) == 393
    assert useful_rank(12, 30, 0.3) == 6  # 6·42 = 0.7·360 exactly: the boundary rank is allowed
    spectra = {f"m{i}": (0.6 + 0.1 * i) ** torch.arange(32, dtype=torch.float64) for i in range(4)}
    shapes = {name: (32, 32) for name in spectra}
    free = allocate_ranks(spectra, shapes, keep=0.75)
    strict = allocate_ranks(spectra, shapes, keep=0.75, min_saving=0.5)
    factorised = {name for name, r in strict.items() if r < 32}
    # every matrix the strict allocation factorises saves at least half of it; the others are whole
    assert all(strict[name] <= 8 for name in factorised) and all(strict[name] == 32 for name in set(strict) - factorised)
    assert len(factorised) < sum(r < 32 for r in free.values())  # fewer matrices cut
    for ranks in (free, strict):
        assert sum(32 * 32 if r == 32 else r * 64 for r in ranks.values()) <= 0.75 * 4 * 32 * 32
    # a matrix no rank saves 99 % of (32×32: ⌊0.01·16⌋ = 0) stays whole; a larger one is still cut
    mixed = allocate_ranks({"small": spectra["m0"], "big": torch.ones(256, dtype=torch.float64)},
                           {"small": (32, 32), "big": (256, 256)}, keep=0.9, min_saving=0.99)
    assert mixed == {"small": 32, "big": 1}
    with pytest.raises(ValueError, match="rank 1"):
        allocate_ranks(spectra, shapes, keep=0.99, min_saving=0.99)  # all whole: over any budget < 1


def test_params_keep_allocates_per_matrix_and_the_recipe_reapplies_its_ranks(tiny_base, tiny_data, tmp_path):
    model, tokenizer, result = compressed_tiny(tiny_base, tiny_data, method="whitened", targets="attn+mlp",
                                               params_keep=0.5)
    report, ranks = result["report"], result["recipe"]["ranks"]
    kept = sum(r["params_after"] for r in report["layers"]) / sum(r["params_before"] for r in report["layers"])
    assert 0.4 < kept <= 0.5
    assert len({r["rank"] for r in report["layers"] if not r["dense"]}) > 2  # not one rank for every matrix
    uniform = compressed_tiny(tiny_base, tiny_data, method="whitened", targets="attn+mlp", param_share=0.5)[2]
    total = lambda res: sum(r["error"] ** 2 for r in res["report"]["layers"])  # noqa: E731
    assert total(result) < total(uniform)  # the same budget, spent better
    # re-applying uses the recorded ranks as they are
    fresh, _ = load_tiny_hf(tiny_base)
    apply_recipe(fresh, tokenizer, str(tiny_base), result["recipe"], tmp_path / "cache")
    assert {n: m.rank for n, m in fresh.named_modules() if isinstance(m, LowRankLinear)} == ranks
    from compression.compress import format_accounting
    assert "ranks, layer by layer:" in format_accounting(report)


def test_a_minimum_saving_is_recorded_and_reapplied(tiny_base, tiny_data, tmp_path):
    from compression.svd import useful_rank

    model, tokenizer, result = compressed_tiny(tiny_base, tiny_data, method="whitened", targets="attn+mlp",
                                               params_keep=0.7, min_saving=0.5)
    rows = result["report"]["layers"]
    cut = [r for r in rows if not r["dense"]]
    assert cut and all(r["rank"] <= useful_rank(*r["shape"], 0.5) for r in cut)
    assert any(r["dense"] for r in rows) and result["recipe"]["min_saving"] == 0.5
    fresh, _ = load_tiny_hf(tiny_base)
    apply_recipe(fresh, tokenizer, str(tiny_base), result["recipe"], tmp_path / "cache")
    assert {n: m.rank for n, m in fresh.named_modules() if isinstance(m, LowRankLinear)} == result["recipe"]["ranks"]
