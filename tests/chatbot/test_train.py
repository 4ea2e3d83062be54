import json

import pytest
import torch
from conftest import make_tiny_base, permuted_teacher, tiny_train_args, train_tiny

from chatbot.classifier import load_classifier
from chatbot.data import load_dataset
from chatbot.folder import ModelFolder
from chatbot.train import DistillSettings, FitSettings, TrainArgs, fit, fit_temperature, save, setup, validate

TEXTS = ["cancel commande 1", "where colis status 2", "refund argent 3", "stop order annuler 4"]


def test_training_writes_a_self_contained_folder_that_learns(tiny_model):
    spec = ModelFolder.read(tiny_model)
    assert spec.labels == ["cancel_order", "get_refund", "track_order"]
    assert spec.languages == ["en", "fr"] and spec.lora["r"] == 4
    assert (tiny_model / "adapter" / "adapter_model.safetensors").exists()
    assert spec.metrics["dev_accuracy"] > 0.8  # the toy intents are separable by their words
    assert len(spec.metrics["history"]) >= 1


def test_the_trained_model_in_memory_is_what_loads_from_disk(tiny_base, tiny_data, tmp_path):
    args = tiny_train_args(tiny_base, tiny_data, tmp_path / "m", epochs=2)
    dataset = load_dataset(args.data)
    s = setup(args, dataset)
    save(s, args, fit(s, args), validate(s), dataset)
    model = s.accelerator.unwrap_model(s.model).eval()
    enc = s.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        in_memory = model(**enc).logits
    for merge in (False, True):
        loaded = load_classifier(tmp_path / "m", device="cpu", dtype=torch.float32, merge=merge)
        assert torch.allclose(torch.from_numpy(loaded.logits(TEXTS, batch_size=len(TEXTS))), in_memory, atol=1e-5)


def test_temperature_scaling_lowers_nll_of_overconfident_logits():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (200,))
    logits = torch.randn(200, 4)
    logits[torch.arange(200), labels] += 1.0
    logits *= 8  # overconfident
    t = fit_temperature(logits, labels)
    nll = lambda x: torch.nn.functional.cross_entropy(x, labels).item()  # noqa: E731
    assert t > 1.5 and nll(logits / t) < nll(logits)


def test_temperature_of_underconfident_logits_is_found_not_nan():
    """Dev logits of a barely trained model (12 messages, best T about 0.2): a fixed-step L-BFGS
    overshoots to NaN here, and a NaN temperature cannot be saved."""
    logits = torch.tensor([[0.5604, -0.4511, 0.1351], [0.5561, -0.3268, 0.0713], [0.4302, 0.3887, -0.7234],
                           [0.6528, -0.1704, -0.1417], [0.6101, -0.5217, 0.2716], [-0.4746, -0.3998, 0.5393],
                           [-0.133, -0.827, 0.7721], [-0.1713, -0.7918, 0.8286], [0.2613, 0.6696, -0.7922],
                           [0.2601, 0.6467, -0.7525], [-0.154, 0.8877, -0.6731], [0.1441, 0.8409, -0.8393]])
    labels = torch.tensor([0, 0, 0, 0, 2, 2, 2, 2, 1, 1, 1, 1])
    t = fit_temperature(logits, labels)
    nll = lambda x: torch.nn.functional.cross_entropy(x, labels).item()  # noqa: E731
    grid = min(nll(logits / g) for g in torch.linspace(0.05, 2, 400))
    assert 0.1 < t < 0.4 and nll(logits / t) <= grid + 1e-3
    with pytest.raises(ValueError, match="not finite"):
        fit_temperature(torch.full_like(logits, float("nan")), labels)


def test_args_validation():
    with pytest.raises(ValueError):
        TrainArgs(data=[], out="x")
    with pytest.raises(ValueError):
        TrainArgs(data=["a.csv"], out="x", precision="fp8")
    with pytest.raises(ValueError):
        FitSettings(lr=2.0)
    with pytest.raises(ValueError, match="distill"):
        TrainArgs(data=["a.csv"], out="x", distill=DistillSettings(weight=1.5))


def test_few_shot_limit(tiny_data, tmp_path):
    base = make_tiny_base(tmp_path / "b")
    args = tiny_train_args(base, tiny_data, tmp_path / "m", max_per_intent=2)
    dataset = load_dataset(args.data)
    assert len(dataset.split("train")) > 2 * 6
    assert setup(args, dataset).train_n == 2 * 3 * 2  # 2 per intent and language, 3 intents, 2 languages


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
    gap = lambda z: torch.nn.functional.kl_div(z.log_softmax(-1), teacher.log_softmax(-1), log_target=True,  # noqa: E731
                                               reduction="batchmean")
    assert gap(moved) < gap(logits)


def test_distillation_can_leave_the_teachers_errors_to_the_labels():
    from chatbot.train import distillation_loss

    torch.manual_seed(1)
    logits = torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    teacher = torch.full((4, 5), -3.0)
    teacher[[0, 1, 2, 3], [0, 1, 4, 4]] = 3.0  # right on rows 0 and 1, wrong on rows 2 and 3
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    both = [distillation_loss(logits[i:i + 1], labels[i:i + 1], teacher[i:i + 1], 0.5, 2.0) for i in range(4)]
    mixed = distillation_loss(logits, labels, teacher, 0.5, 2.0, teacher_errors=False)
    assert torch.allclose(mixed, (both[0] + both[1] + ce[2] + ce[3]) / 4)  # labels alone where it is wrong
    assert torch.allclose(distillation_loss(logits, labels, teacher, 0.5, 2.0), sum(both) / 4)
    assert not torch.allclose(mixed, distillation_loss(logits, labels, teacher, 0.5, 2.0))
    # where the teacher is right everywhere, nothing changes
    assert torch.allclose(distillation_loss(logits[:2], labels[:2], teacher[:2], 0.5, 2.0, teacher_errors=False),
                          (both[0] + both[1]) / 2)


def test_noisy_copies_learn_from_the_teacher_alone():
    from chatbot.train import distillation_loss

    torch.manual_seed(2)
    logits, teacher = torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    only = torch.tensor([False, True, False, True])
    row = lambda i, w: distillation_loss(logits[i:i + 1], labels[i:i + 1], teacher[i:i + 1], w, 2.0)  # noqa: E731
    mixed = distillation_loss(logits, labels, teacher, 0.5, 2.0, teacher_only=only)
    assert torch.allclose(mixed, (row(0, 0.5) + row(1, 1.0) + row(2, 0.5) + row(3, 1.0)) / 4)
    # even where the teacher's errors are left to the labels: a copy has no label to trust
    wrong = torch.full((4, 5), -3.0)
    wrong[range(4), [4, 4, 4, 4]] = 3.0
    kept = distillation_loss(logits, labels, wrong, 0.5, 2.0, teacher_errors=False, teacher_only=only)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    pure = [distillation_loss(logits[i:i + 1], labels[i:i + 1], wrong[i:i + 1], 1.0, 2.0) for i in (1, 3)]
    assert torch.allclose(kept, (ce[0] + pure[0] + ce[2] + pure[1]) / 4)


def test_noisy_copies_join_the_training_rows_with_the_teachers_targets(tiny_base, tiny_data, tiny_model, tmp_path):
    from chatbot.noisy import NOISY

    dataset = load_dataset([str(tiny_data)])
    n = len(dataset.split("train"))
    args = tiny_train_args(tiny_base, tiny_data, tmp_path / "m", teacher=[str(tiny_model)],
                           distill=DistillSettings(noisy_copies=2))
    s = setup(args, dataset)
    assert 2 * n < s.train_n <= 3 * n  # a copy equal to a message (or to another copy) is left out
    rows = s.train.dataset if hasattr(s.train, "dataset") else s.train.base_dataloader.dataset
    assert sum(e.split == NOISY for e in rows) == s.train_n - n
    batch = next(iter(s.train))
    assert batch["teacher_only"].dtype == torch.bool and batch["teacher_logits"].shape[0] == len(batch["teacher_only"])
    assert sum(b["teacher_only"].sum().item() for b in s.train) == s.train_n - n
    assert setup(tiny_train_args(tiny_base, tiny_data, tmp_path / "p", teacher=[str(tiny_model)]), dataset).train_n == n
    # a held-out file (the evaluation data) is never copied into training
    copy = next(e.text for e in rows if e.split == NOISY)
    (tmp_path / "held.csv").write_text(f"text,intent\n{copy.upper()},x\n")
    held = setup(tiny_train_args(tiny_base, tiny_data, tmp_path / "h", teacher=[str(tiny_model)],
                                 distill=DistillSettings(noisy_copies=2), held_out=[str(tmp_path / "held.csv")]), dataset)
    held_rows = held.train.dataset if hasattr(held.train, "dataset") else held.train.base_dataloader.dataset
    assert copy not in {e.text for e in held_rows} and held.train_n == s.train_n - 1
    with pytest.raises(ValueError, match="teacher"):
        tiny_train_args(tiny_base, tiny_data, tmp_path / "x", distill=DistillSettings(noisy_copies=1))
    with pytest.raises(ValueError, match="noisy"):
        DistillSettings(noisy_copies=-1)


def test_a_teacher_pulls_the_student_towards_it(tiny_base, tiny_data, tiny_model, tmp_path):
    """Same seed and data, with and without a teacher that disagrees with the labels: the distilled
    student follows the teacher, the other one the labels (a loss that ignored the teacher would
    train both alike)."""
    from chatbot.train import make_batches, teacher_logits

    teacher = permuted_teacher(tiny_model, tmp_path / "teacher")
    dataset = load_dataset([str(tiny_data)])
    soft = teacher_logits([str(teacher)], dataset.split("train"), dataset.intents)
    assert set(soft) == {e.text for e in dataset.split("train")}
    batch = next(iter(make_batches(lambda texts, **kw: {"input_ids": torch.zeros(len(texts), 2)},
                                   dataset.split("train")[:3], {n: i for i, n in enumerate(dataset.intents)},
                                   8, 3, False, soft=soft)))
    assert batch["teacher_logits"].shape == (3, len(dataset.intents))

    plain = train_tiny(tiny_base, tiny_data, tmp_path / "plain", epochs=3)
    taught = train_tiny(tiny_base, tiny_data, tmp_path / "taught", epochs=3, teacher=[str(teacher)],
                        distill=DistillSettings(weight=1.0))
    assert ModelFolder.read(taught).train_args["teacher"] == [str(teacher)]
    texts = [e.text for e in dataset.split("train")]
    says = lambda folder: load_classifier(folder, device="cpu", dtype=torch.float32).logits(texts).argmax(-1)  # noqa: E731
    agreement = lambda a, b: float((says(a) == says(b)).mean())  # noqa: E731
    assert agreement(taught, teacher) > 0.8 > agreement(plain, teacher)
    # told to leave its errors to the labels, a teacher wrong on every row teaches nothing
    kept = train_tiny(tiny_base, tiny_data, tmp_path / "kept", epochs=3, teacher=[str(teacher)],
                      distill=DistillSettings(weight=1.0, teacher_errors=False))
    assert agreement(kept, teacher) < 0.2 < 0.8 < agreement(kept, plain)


def test_teacher_must_know_the_same_intents(tiny_data, tiny_model, tmp_path):
    import shutil

    from chatbot.train import teacher_logits

    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    settings = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**settings, "labels": settings["labels"][::-1]}))
    dataset = load_dataset([str(tiny_data)])
    with pytest.raises(ValueError, match="other intents"):
        teacher_logits([str(tiny_model), str(other)], dataset.split("train"), dataset.intents)


def test_several_teachers_teach_the_mean_of_their_log_probabilities(tiny_data, tiny_model, tmp_path):
    """An ensemble teacher: its soft targets are the mean of each teacher's log-probabilities (their
    geometric mean), so two teachers that disagree give a target between them; one teacher's target
    is its own distribution."""
    from chatbot.train import teacher_logits

    permuted = permuted_teacher(tiny_model, tmp_path / "teacher")
    train = load_dataset([str(tiny_data)]).split("train")
    intents = load_dataset([str(tiny_data)]).intents
    texts = sorted({e.text for e in train})
    logp = [torch.from_numpy(load_classifier(f).logits(texts, batch_size=64)).float().log_softmax(-1)
            for f in (tiny_model, permuted)]
    alone = teacher_logits([str(tiny_model)], train, intents)
    both = teacher_logits([str(tiny_model), str(permuted)], train, intents)
    assert torch.allclose(torch.stack([alone[t] for t in texts]).softmax(-1), logp[0].exp(), atol=1e-5)
    assert torch.allclose(torch.stack([both[t] for t in texts]), (logp[0] + logp[1]) / 2, atol=1e-5)
