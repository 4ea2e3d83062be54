import pytest
import torch

from conftest import load_tiny_hf

from compression.compress import CompressArgs, apply_recipe, compress_model, format_accounting
from compression.depth import keep_layers


def tiny(kind: str, layers: int = 6):
    from transformers import AutoModelForSequenceClassification, Gemma3TextConfig, LlamaConfig

    common = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, num_labels=3, pad_token_id=0)
    config = (LlamaConfig(**common) if kind == "llama"  # Gemma-3: sliding and full attention, one full in every 3
              else Gemma3TextConfig(**common, head_dim=8, sliding_window=4, sliding_window_pattern=3,
                                    attn_implementation="eager"))
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval()


def head_on_layer(model, ids, n):
    """What the full model's head says when it reads layer n's last-token state through the final norm."""
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[n]
        return model.score(model.model.norm(hidden))[:, -1]


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_kept_layers_compute_exactly_what_the_full_model_computes_up_to_them(kind):
    model = tiny(kind)
    ids = torch.randint(1, 50, (3, 11))  # longer than Gemma's sliding window: both attention kinds matter
    expected = head_on_layer(model, ids, 4)
    full = model(input_ids=ids).logits
    types = list(getattr(model.config, "layer_types", None) or [])
    report = keep_layers(model, 4)
    assert len(model.model.layers) == model.config.num_hidden_layers == 4
    if types:
        assert "full_attention" in types[:4] and model.config.layer_types == types[:4]
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
    assert report == {"layers_before": 6, "layers_after": 4, "params_removed": 2 * per_layer}
    with torch.no_grad():
        pruned = model(input_ids=ids).logits
    torch.testing.assert_close(pruned, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(pruned, full, atol=1e-3)  # the top layers did change the answer


def test_out_of_range_is_refused():
    model = tiny("llama", layers=2)
    for keep in (0, 3):
        with pytest.raises(ValueError, match=r"\[1, 2\]"):
            keep_layers(model, keep)
    with pytest.raises(ValueError, match="≥ 1"):
        CompressArgs(keep_layers=0)


def test_a_recipe_with_kept_layers_is_accounted_and_reapplied_from_the_cache(tiny_base, tiny_data, tmp_path):
    model, tokenizer = load_tiny_hf(tiny_base)
    before = sum(p.numel() for p in model.parameters())
    args = CompressArgs(calib=[str(tiny_data)], calib_size=40, targets="attn", rank_ratio=0.25, keep_layers=1)
    result = compress_model(model, tokenizer, args)
    recipe, report = result["recipe"], result["report"]
    assert recipe["keep_layers"] == 1 and all(name.split(".layers.")[1].startswith("0.") for name in recipe["ranks"])
    assert report["depth"]["layers_after"] == 1 and "decoder layers kept: 1 of 2" in format_accounting(report)
    assert report["model_params_before"] == before == report["model_params_after"] + report["depth"]["params_removed"] \
        + sum(t["params_before"] - t["params_after"] for t in report["by_type"].values())
    enc = tokenizer(["cancel my order", "refund please now"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**enc).logits
    for _ in range(2):  # computed, then from the cache
        again, _ = load_tiny_hf(tiny_base)
        again.score.load_state_dict(model.score.state_dict())  # a fresh head is random
        apply_recipe(again, tokenizer, str(tiny_base), recipe, tmp_path / "cache")
        assert len(again.model.layers) == 1
        with torch.no_grad():
            torch.testing.assert_close(again(**enc).logits, expected)
