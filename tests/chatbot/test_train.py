import json

import pytest
import torch

from chatbot.data import load_dataset
from chatbot.model import load_base
from chatbot.train import TrainArgs, apply_lora, fit_temperature, trainable_parameters


def expected_lora_count(config, r, num_labels):
    """r·(in+out) for each adapted projection, per layer, plus the score head (hidden × labels)."""
    h = config.hidden_size
    head_dim = h // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    per_layer = r * ((h + h) + (h + kv) + (h + kv) + (h + h))
    return per_layer * config.num_hidden_layers + h * num_labels


def test_only_adapters_and_head_train(tiny_base):
    model, _ = load_base(str(tiny_base), num_labels=3)
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0, targets=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert trainable_parameters(peft_model) == expected_lora_count(model.config, 4, 3)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "score" in n for n in names)


def test_a_step_changes_adapters_but_not_frozen_weights(tiny_base):
    model, tokenizer = load_base(str(tiny_base), num_labels=3)
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0, targets=["q_proj", "v_proj"])
    frozen = {n: p.detach().clone() for n, p in peft_model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    batch = tokenizer(["cancel order 3", "where parcel 4"], return_tensors="pt", padding=True)
    loss = peft_model(**batch, labels=torch.tensor([0, 1])).loss
    loss.backward()
    optimizer.step()
    for n, p in peft_model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    changed = [n for n, p in peft_model.named_parameters() if n in trained and not torch.equal(p, trained[n])]
    assert any("lora_B" in n for n in changed) and any("score" in n for n in changed)


def test_training_writes_a_self_contained_folder_that_learns(tiny_model, tiny_data):
    settings = json.loads((tiny_model / "model.json").read_text())
    assert settings["labels"] == ["cancel_order", "get_refund", "track_order"]
    assert settings["languages"] == ["en", "fr"]
    assert (tiny_model / "adapter" / "adapter_model.safetensors").exists()
    assert settings["metrics"]["dev_accuracy"] > 0.8  # the toy intents are separable by their words
    assert settings["metrics"]["history"]


def test_round_trip_gives_identical_logits(tiny_model, tiny_base):
    from chatbot.classifier import IntentClassifier, load_adapter_checked

    texts = ["cancel commande 1", "where colis status 2", "refund argent 3"]
    loaded = IntentClassifier.load(tiny_model, device="cpu", dtype=torch.float32, merge=False)
    merged = IntentClassifier.load(tiny_model, device="cpu", dtype=torch.float32, merge=True)
    assert torch.allclose(loaded.logits(texts), merged.logits(texts), atol=1e-5)
    again = IntentClassifier.load(tiny_model, device="cpu", dtype=torch.float32, merge=False)
    assert torch.equal(loaded.logits(texts), again.logits(texts))
    # A base of another shape must be refused, not half-loaded.
    from conftest import make_tiny_base

    other, _ = load_base(str(make_tiny_base(tiny_base.parent / "wider", hidden=48)), num_labels=3)
    from chatbot.model import ModelLoadError

    with pytest.raises(ModelLoadError, match="does not fit"):
        load_adapter_checked(other, tiny_model / "adapter")


def test_temperature_scaling_lowers_nll_of_overconfident_logits():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (200,))
    logits = torch.randn(200, 4)
    logits[torch.arange(200), labels] += 1.0
    logits *= 8  # overconfident
    t = fit_temperature(logits, labels)
    nll = lambda x: torch.nn.functional.cross_entropy(x, labels).item()  # noqa: E731
    assert t > 1.5 and nll(logits / t) < nll(logits)


def test_args_validation():
    with pytest.raises(ValueError):
        TrainArgs(data=[], out="x")
    with pytest.raises(ValueError):
        TrainArgs(data=["a.csv"], out="x", precision="fp8")


def test_few_shot_limit(tiny_data, tmp_path):
    from chatbot.train import setup

    args = TrainArgs(data=[str(tiny_data)], out=str(tmp_path), base=str(tiny_data.parent.parent / "none"),
                     max_per_intent=2, precision="fp32")
    dataset = load_dataset(args.data)
    assert len(dataset.split("train")) > 2 * 6
    from conftest import make_tiny_base

    base = make_tiny_base(tmp_path / "b")
    args.base = str(base)
    s = setup(args, dataset)
    assert s.train_n == 2 * 3 * 2  # 2 per intent and language, 3 intents, 2 languages


def test_distillation_loss_mixes_labels_and_teacher():
    from chatbot.train import distillation_loss

    torch.manual_seed(0)
    logits, teacher = torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(distillation_loss(logits, labels, teacher, 0.0, 2.0), ce)
    # a student that already matches the teacher pays nothing for the soft targets
    assert float(distillation_loss(teacher, labels, teacher, 1.0, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # its gradient pulls the student's distribution towards the teacher's
    student = logits.clone().requires_grad_(True)
    distillation_loss(student, labels, teacher, 1.0, 2.0).backward()
    moved = student.detach() - 0.5 * student.grad
    gap = lambda z: torch.nn.functional.kl_div(z.log_softmax(-1), teacher.log_softmax(-1), log_target=True,
                                               reduction="batchmean")
    assert gap(moved) < gap(logits)


def test_training_with_a_teacher_learns_from_its_soft_targets(tiny_base, tiny_data, tiny_model, tmp_path):
    from chatbot.train import make_batches, teacher_logits, train

    dataset = load_dataset([str(tiny_data)])
    soft = teacher_logits(str(tiny_model), dataset.split("train"), dataset.intents)
    assert set(soft) == {e.text for e in dataset.split("train")}
    assert all(v.shape == (len(dataset.intents),) for v in soft.values())
    batch = next(iter(make_batches(lambda texts, **kw: {"input_ids": torch.zeros(len(texts), 2)},
                                   dataset.split("train")[:3], {n: i for i, n in enumerate(dataset.intents)},
                                   8, 3, False, soft=soft)))
    assert batch["teacher_logits"].shape == (3, len(dataset.intents))
    out = train(TrainArgs(data=[str(tiny_data)], out=str(tmp_path / "student"), base=str(tiny_base), epochs=8,
                          lr=5e-3, batch_size=8, lora_r=4, precision="fp32", patience=8, teacher=str(tiny_model),
                          distill=0.7))
    settings = json.loads((out / "model.json").read_text())
    assert settings["train_args"]["teacher"] == str(tiny_model)
    assert settings["metrics"]["dev_accuracy"] > 0.8


def test_teacher_must_know_the_same_intents(tiny_data, tiny_model, tmp_path):
    import shutil

    from chatbot.train import teacher_logits

    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    settings = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**settings, "labels": settings["labels"][::-1]}))
    dataset = load_dataset([str(tiny_data)])
    with pytest.raises(ValueError, match="other intents"):
        teacher_logits(str(other), dataset.split("train"), dataset.intents)
    with pytest.raises(ValueError, match="distill"):
        TrainArgs(data=["a.csv"], out="x", distill=1.5)
