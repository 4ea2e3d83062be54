import pytest
import torch
from conftest import load_tiny_hf

from compression.calibration import collect_grams, read_texts
from compression.svd import find_linears


def test_gram_is_x_transpose_x_over_real_tokens_only(tiny_base):
    """XᵀX from the hooks equals the same sum computed by hand from the layer's inputs, padding excluded."""
    model, tokenizer = load_tiny_hf(tiny_base)
    texts = ["cancel order stop", "where parcel status colis 3 4 5 6"]  # different lengths: padding
    layers = find_linears(model, ("q_proj",))[:1]
    name, linear = layers[0]
    grams = collect_grams(model, tokenizer, texts, layers)
    seen = []
    handle = linear.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        model(**enc)
    handle.remove()
    x = seen[0][enc["attention_mask"].bool()].double()
    assert enc["attention_mask"].sum() < enc["attention_mask"].numel()  # there was padding to leave out
    assert torch.allclose(grams[name], x.T @ x, atol=1e-8)


def test_read_texts_keeps_one_split_and_skips_blanks(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("text,intent,split\nhello  there,a,train\n,a,train\nsecret test message,a,test\n")
    assert read_texts(path, "train") == ["hello there"]
    assert read_texts(path) == ["hello there", "secret test message"]
    with pytest.raises(ValueError, match="not found"):
        read_texts(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("message\nhi\n")
    with pytest.raises(ValueError, match="text column"):
        read_texts(tmp_path / "bad.csv")


def test_no_calibration_text_is_an_error(tiny_base):
    model, tokenizer = load_tiny_hf(tiny_base)
    with pytest.raises(ValueError, match="no calibration"):
        collect_grams(model, tokenizer, [], find_linears(model, ("q_proj",)))


@pytest.mark.parametrize("name, content", [("latin.csv", "text\ncaf\xe9\n".encode("latin-1")),
                                           ("rows.jsonl", b'["a", "list"]\n'), ("bad.jsonl", b"{not json\n")])
def test_unreadable_calibration_files_are_one_line_errors(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=name):
        read_texts(tmp_path / name)
    with pytest.raises(ValueError, match="not found"):
        read_texts(tmp_path)  # a folder
