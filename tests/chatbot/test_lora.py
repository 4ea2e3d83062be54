import pytest
import torch
from conftest import load_tiny_hf, make_tiny_base

from chatbot import lora
from chatbot.lora import LoraSettings
from chatbot.model import ModelLoadError, load_base

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]


def expected_lora_count(config, r, num_labels):
    """r·(in+out) for each adapted projection, per layer, plus the score head (hidden × labels)."""
    h = config.hidden_size
    head_dim = h // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    per_layer = r * ((h + h) + (h + kv) + (h + kv) + (h + h))
    return per_layer * config.num_hidden_layers + h * num_labels


def test_only_adapters_and_head_train(tiny_base):
    model, _ = load_base(str(tiny_base), num_labels=3)
    peft_model = lora.apply(model, LoraSettings(r=4, alpha=8, dropout=0.0, targets=ATTN))
    assert lora.trainable_parameters(peft_model) == expected_lora_count(model.config, 4, 3)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "score" in n for n in names)


def test_a_step_changes_adapters_but_not_frozen_weights(tiny_base):
    model, tokenizer = load_base(str(tiny_base), num_labels=3)
    peft_model = lora.apply(model, LoraSettings(r=4, alpha=8, dropout=0.0, targets=["q_proj", "v_proj"]))
    frozen = {n: p.detach().clone() for n, p in peft_model.named_parameters() if not p.requires_grad}
    trained = lora.trainable_state(peft_model)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    batch = tokenizer(["cancel order 3", "where parcel 4"], return_tensors="pt", padding=True)
    peft_model(**batch, labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    for n, p in peft_model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    changed = [n for n, p in peft_model.named_parameters() if n in trained and not torch.equal(p, trained[n])]
    assert any("lora_B" in n for n in changed) and any("score" in n for n in changed)


def test_compressed_layers_are_adapted_on_both_factors(tiny_base, tiny_data):
    from compression.compress import CompressArgs, compress_model

    model, tokenizer = load_tiny_hf(tiny_base)
    compress_model(model, tokenizer, CompressArgs(calib=[str(tiny_data)], calib_size=40, targets="attn",
                                                  rank_ratio=0.25))
    names = lora.target_names(model, ATTN)
    assert "model.layers.0.self_attn.q_proj.down" in names and "model.layers.0.self_attn.q_proj.up" in names
    peft_model = lora.apply(model, LoraSettings(r=2, alpha=4, dropout=0.0, targets=ATTN))
    # down n→k and up k→m, each r·(in+out); q/o: k=8, k/v: k=4 (m=16); 2 layers; head 32×3
    per_layer = 2 * ((32 + 8) + (8 + 32)) * 2 + 2 * ((32 + 4) + (4 + 16)) * 2
    assert lora.trainable_parameters(peft_model) == per_layer * 2 + 32 * 3


def test_load_refuses_an_adapter_of_another_base(tiny_model, tiny_base):
    other, _ = load_base(str(make_tiny_base(tiny_base.parent / "wider", hidden=48)), num_labels=3)
    with pytest.raises(ModelLoadError, match="does not fit"):
        lora.load(other, tiny_model / "adapter")
    with pytest.raises(ModelLoadError, match="no adapter_model"):
        lora.load(other, tiny_base)


def test_load_refuses_a_damaged_adapter_in_one_line(tiny_model, tiny_base, tmp_path):
    import shutil

    model, _ = load_base(str(tiny_base), num_labels=3)
    damaged = tmp_path / "adapter"
    shutil.copytree(tiny_model / "adapter", damaged)
    (damaged / "adapter_model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelLoadError, match="not a readable safetensors"):
        lora.load(model, damaged)
    (damaged / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="unreadable adapter config"):
        lora.load(model, damaged)


def test_merge_gives_the_unmerged_logits(tiny_model, tiny_base):
    model, tokenizer = load_base(str(tiny_base), num_labels=3)
    adapted = lora.load(model, tiny_model / "adapter").eval()
    batch = tokenizer(["cancel commande 1", "where colis status 2"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = adapted(**batch).logits
        merged = lora.merge(adapted)
        assert not any("lora_" in n for n, _ in merged.named_parameters())
        assert torch.allclose(merged(**batch).logits, before, atol=1e-5)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="unknown LoRA target"):
        LoraSettings(targets=["q_proj", "lm_head"])
    with pytest.raises(ValueError):
        LoraSettings(r=0)


def test_settings_on_named_layers_and_what_a_row_says():
    both = LoraSettings.on(16, "attn+mlp")
    assert (both.r, both.alpha, len(both.targets)) == (16, 32, 7)
    assert both.describe()["layers"] == "attn+mlp" and LoraSettings.on(4, "mlp").describe()["layers"] == "mlp"
    assert LoraSettings(targets=["q_proj", "v_proj"]).describe()["layers"] == "q_proj,v_proj"  # not a whole group
    for bad in ("attn+lm_head", "attn+attn", None):
        with pytest.raises(ValueError, match="LoRA layers"):
            LoraSettings.on(8, bad)
