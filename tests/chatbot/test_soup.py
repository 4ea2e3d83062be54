import json
import shutil

import pytest
import torch
from conftest import tiny_train_args, train_tiny

from chatbot import views
from chatbot.__main__ import main
from chatbot.classifier import load_classifier
from chatbot.data import load_dataset
from chatbot.evaluate import evaluate
from chatbot.folder import ModelFolder
from chatbot.lora import LoraSettings
from chatbot.soup import SoupArgs, check_ingredients, soup
from chatbot.train import FitSettings, train
from chatbot.versions import Registry

TEXTS = ["cancel commande 1", "where colis status 2", "refund argent 3", "stop order annuler 4", "money back 5"]


@pytest.fixture(scope="module")
def ingredients(tmp_path_factory, tiny_base, tiny_data):
    """Two classifiers tuned from the tiny base with other seeds, ranks and scales."""
    root = tmp_path_factory.mktemp("ingredients")
    a = train(tiny_train_args(tiny_base, tiny_data, root / "a", epochs=3))
    args = tiny_train_args(tiny_base, tiny_data, root / "b", epochs=3, lora=LoraSettings(r=2, alpha=8))
    args.fit = FitSettings(epochs=3, lr=5e-3, batch_size=8, seed=1)
    return [a, train(args)]


def merged(folder):
    return load_classifier(folder, device="cpu", dtype=torch.float32)


def test_the_soup_is_the_mean_of_its_ingredients_weights(ingredients, tiny_data, tmp_path):
    """Its logits are those of a model whose every weight is the mean of the ingredients' merged
    weights, though their ranks (4 and 2) and scales (α/r = 2 and 4) differ."""
    out = soup(SoupArgs(model=[str(f) for f in ingredients], out=str(tmp_path / "soup"), data=[str(tiny_data)]))
    models = [merged(f) for f in ingredients]
    states = [m.model.state_dict() for m in models]
    assert not torch.allclose(states[0]["score.weight"], states[1]["score.weight"])
    with torch.no_grad():
        for key, value in models[0].model.state_dict().items():
            value.copy_((states[0][key] + states[1][key]) / 2)
    expected = models[0].logits(TEXTS)
    got = merged(out).logits(TEXTS)
    assert torch.allclose(torch.from_numpy(got), torch.from_numpy(expected), atol=1e-5)
    assert not torch.allclose(torch.from_numpy(got), torch.from_numpy(merged(ingredients[1]).logits(TEXTS)), atol=1e-3)
    spec = ModelFolder.read(out)
    assert spec.lora["r"] == 6 and spec.train_args["soup"] == [str(f) for f in ingredients]
    assert [row["model"] for row in spec.metrics["ingredients"]] == [str(f) for f in ingredients]
    assert spec.temperature == pytest.approx(spec.metrics["temperature"]) and spec.temperature != 1.0


def test_the_soup_is_scored_and_exported_like_a_build(ingredients, tiny_data, tmp_path, monkeypatch):
    """Its evaluation.json holds the test split's scores, how it was made and how it serves, so the
    admin's versions table lists it like any build."""
    folders = [str(f) for f in ingredients]
    out = soup(SoupArgs(model=folders, out=str(tmp_path / "soup"), data=[str(tiny_data)]))
    summary = ModelFolder.read_evaluation(out)["summary"]
    rows = load_dataset([str(tiny_data)]).split("test")
    report = evaluate(load_classifier(out), rows)
    assert summary["accuracy"] == pytest.approx(report["accuracy"]) and summary["n"] == len(rows) > 0
    assert summary["soup"] == folders and summary["base"] == ModelFolder.read(out).base
    assert summary["serving"]["runtime"] == "openvino" and summary["serving"]["messages_per_s"] > 0
    registry = Registry(tmp_path / "home", ingredients[0])
    shutil.copytree(out, registry.folder("soup"))
    row = next(r for r in registry.summaries() if r["name"] == "soup")
    assert row["accuracy"] == summary["accuracy"] and row["soup"] == folders
    assert summary["lora"] == {"r": 6, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"], "layers": "attn"}
    assert "soup of 2 · LoRA r6 on attn" in views.version_rows([row])[0][4]  # its rank and layers, as a build's row

    def broken(*args, **kwargs):
        raise RuntimeError("export failed")
    monkeypatch.setattr("chatbot.soup.score_version", broken)
    with pytest.raises(RuntimeError, match="export failed"):
        soup(SoupArgs(model=folders, out=str(tmp_path / "failed"), data=[str(tiny_data)]))
    assert not (tmp_path / "failed").exists()  # a soup that could not be scored is not left as a version
    with pytest.raises(ValueError, match="eval split"):
        SoupArgs(model=folders, out="x", data=[str(tiny_data)], eval_split="holdout")


def test_only_classifiers_tuned_from_the_same_start_are_averaged(ingredients, tiny_base, tiny_data, tmp_path):
    a, b = (str(f) for f in ingredients)
    other = tmp_path / "other"
    shutil.copytree(b, other)
    settings = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**settings, "labels": settings["labels"][::-1]}))
    with pytest.raises(ValueError, match="labels"):
        soup(SoupArgs(model=[a, str(other)], out=str(tmp_path / "s1"), data=[str(tiny_data)]))
    mlp = train_tiny(tiny_base, tiny_data, tmp_path / "mlp", epochs=1, lora=LoraSettings(r=4, targets=["gate_proj"]))
    with pytest.raises(ValueError, match="other layers"):
        soup(SoupArgs(model=[a, str(mlp)], out=str(tmp_path / "s2"), data=[str(tiny_data)]))
    with pytest.raises(ValueError, match="other layers"):  # from the configs alone: the admin's check before a job
        check_ingredients([a, str(mlp)], [ModelFolder.read(f) for f in (a, mlp)])
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()
    broken = tmp_path / "broken"
    shutil.copytree(b, broken)
    (broken / "adapter" / "adapter_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        soup(SoupArgs(model=[a, str(broken)], out=str(tmp_path / "s3"), data=[str(tiny_data)]))
    assert not (tmp_path / "s3").exists()
    with pytest.raises(ValueError, match="at least two"):
        SoupArgs(model=[a], out="x", data=[str(tiny_data)])
    with pytest.raises(ValueError, match="twice"):
        SoupArgs(model=[a, a + "/"], out="x", data=[str(tiny_data)])


def test_the_soup_command_writes_a_new_folder_only(ingredients, tiny_data, tmp_path, capsys):
    argv = ["soup", "--model", ",".join(str(f) for f in ingredients), "--data", str(tiny_data),
            "--out", str(tmp_path / "soup")]
    assert main(argv) == 0
    assert "soup written to" in capsys.readouterr().err
    assert main(argv) == 2  # not over an existing model
    assert "not empty" in capsys.readouterr().err
    assert main(["soup", "--model", f"{ingredients[0]},{ingredients[1]}", "--data", str(tiny_data),
                 "--out", str(ingredients[0])]) == 2  # nor over an ingredient
