import pytest
import torch

from chatbot.model import EMBEDDED, ModelLoadError, load_base, load_tokenizer, resolve_base


def test_local_folders_and_hub_ids_resolve(tiny_base, tmp_path):
    assert resolve_base(str(tiny_base)) == tiny_base
    assert resolve_base("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"  # loaded from the hub when used
    with pytest.raises(ModelLoadError, match="not a model folder"):
        resolve_base(str(tmp_path))
    with pytest.raises(ModelLoadError, match="unknown base"):
        resolve_base("no-such-model")


def test_embedded_bases_resolve_to_the_dequantised_cache(tmp_path, monkeypatch):
    """An embedded base already dequantised is read from the cache, not from its GGUF."""
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path))
    cached = tmp_path / "bases" / "gemma3-270m"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    assert resolve_base("gemma3-270m") == cached
    assert set(EMBEDDED) == {"gemma3-270m", "smollm2-135m"}


def test_load_base_gives_a_fresh_head_and_a_padding_tokenizer(tiny_base):
    model, tokenizer = load_base(str(tiny_base), num_labels=5)
    assert model.score.out_features == 5 and model.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.padding_side == "right" and tokenizer.pad_token is not None
    assert next(model.parameters()).dtype == torch.float32
    assert load_tokenizer(str(tiny_base)).pad_token == tokenizer.pad_token
