import json
import pytest

from chatbot.bench import BenchArgs, make_splits, run_bench
from chatbot.folder import ModelFolder
from chatbot.policy import OutOfScopeBudget
from chatbot.train import FitSettings


def test_splits_keep_evaluation_unseen(tiny_data):
    splits = make_splits(BenchArgs(data=[str(tiny_data)], report="x", dev_per_language=3, shots=2))
    train, dev, evaluation = ({e.text for e in splits[k]} for k in ("train", "dev", "eval"))
    assert not (train & evaluation) and not (dev & evaluation) and not (train & dev)
    assert len(splits["train"]) == 2 * 3 * 2


def test_bench_writes_json_and_markdown(tiny_data, tiny_base, tmp_path):
    report = run_bench(BenchArgs(data=[str(tiny_data)], report=str(tmp_path), bases=[str(tiny_base)],
                                 fit=FitSettings(epochs=3, batch_size=8), dev_per_language=3, name="toy"))
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert set(saved["results"]) == {"tfidf-svm", str(tiny_base)}
    for result in saved["results"].values():
        assert "error" not in result, result
        for key in ("accuracy", "macro_f1", "train_time_s", "latency_ms", "messages_per_s_batched",
                    "peak_memory_mb", "per_language"):
            assert key in result
    assert saved["results"]["tfidf-svm"]["accuracy"] > 0.8  # separable toy data
    table = (tmp_path / "bench.md").read_text()
    assert "| tfidf-svm |" in table and "acc fr" in table
    assert report["rows"]["eval"] == saved["rows"]["eval"]


def test_the_bench_trains_from_a_teacher(tiny_data, tiny_base, tiny_model, tmp_path):
    """--teacher reaches training: a teacher that says another intent for every message, at full
    weight, makes the benched classifier wrong where the same bench without it is right."""
    from conftest import permuted_teacher

    from chatbot.train import DistillSettings

    teacher = permuted_teacher(tiny_model, tmp_path / "teacher")
    args = dict(data=[str(tiny_data)], bases=[str(tiny_base)], fit=FitSettings(epochs=3, batch_size=8),
                dev_per_language=3)
    plain = run_bench(BenchArgs(report=str(tmp_path / "plain"), **args))
    taught = run_bench(BenchArgs(report=str(tmp_path / "taught"), teacher=[str(teacher)],
                                 distill=DistillSettings(weight=1.0, noisy_copies=1), keep_models=True, **args))
    accuracy = lambda report: report["results"][str(tiny_base)]["accuracy"]  # noqa: E731
    assert accuracy(taught) < 0.3 < 0.8 < accuracy(plain)
    assert taught["args"]["teacher"] == [str(teacher)]
    # what is scored and tuned on is held out of the noisy copies
    held = [json.loads(line)["text"] for line in (tmp_path / "taught" / "bench_held_out.jsonl").open()]
    splits = make_splits(BenchArgs(report="x", **args))
    assert sorted(held) == sorted(e.text for e in splits["eval"] + splits["tune"])
    folder = next((tmp_path / "taught").glob("model-*"))
    assert ModelFolder.read(folder).train_args["held_out"] == [str(tmp_path / "taught" / "bench_held_out.jsonl")]


@pytest.mark.parametrize("budget", [OutOfScopeBudget(), OutOfScopeBudget(max_reject=0.2),
                                    OutOfScopeBudget(max_in_scope_loss=0.1)])
def test_out_of_scope_is_scored_as_clinc150_with_a_tuned_threshold(tiny_base, tmp_path, budget):
    """Data with an out_of_scope class: every system reports in-scope accuracy and out-of-scope
    recall, and the LLM also with a threshold tuned on a split it never trained on (by the default
    objective, to turn away at most a share of its in-scope messages, or to lose at most a share of
    its in-scope accuracy)."""
    import csv
    import random

    from conftest import WORDS

    rng = random.Random(0)
    rows = []
    for split, n in (("train", 14), ("dev", 5), ("test", 6)):
        for intent, words in WORDS.items():
            rows += [{"text": " ".join(rng.choice(words) for _ in range(3)) + f" {split}{i}", "intent": intent,
                      "lang": "en", "split": split} for i in range(n)]
        rows += [{"text": f"{rng.choice(['hello', 'what', 'weather', 'joke'])} {i} {split} zz", "intent": "out_of_scope",
                  "lang": "en", "split": split} for i in range(n)]
    path = tmp_path / "oos.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "intent", "lang", "split"])
        writer.writeheader()
        writer.writerows(rows)
    report = run_bench(BenchArgs(data=[str(path)], report=str(tmp_path / "r"), bases=[str(tiny_base)],
                                 fit=FitSettings(epochs=2, batch_size=8), dev_per_language=6, tune_split="dev",
                                 budget=budget))
    for system, result in report["results"].items():
        assert "error" not in result, result
        assert result["in_scope"]["n"] == 18 and result["out_of_scope"]["n"] == 6
    llm = report["results"][str(tiny_base)]
    assert llm["threshold"]["tune_rows"] == 20 and 0 <= llm["threshold"]["tuned"]["threshold"] < 1
    assert llm["threshold"]["out_of_scope"]["recall"] >= llm["out_of_scope"]["recall"]
    assert llm["threshold"]["tuned"].get("max_reject") == budget.max_reject
    assert llm["threshold"]["tuned"].get("max_in_scope_loss") == budget.max_in_scope_loss
    saved = json.loads((tmp_path / "r" / "bench.json").read_text())["args"]
    assert (saved["max_reject"], saved["max_in_scope_loss"]) == (budget.max_reject, budget.max_in_scope_loss)
    table = (tmp_path / "r" / "bench.md").read_text()
    assert "out-of-scope recall" in table and "+ threshold" in table


def test_serving_paths_are_compared_in_one_run(tiny_model, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    report = run_bench(BenchArgs(data=[str(tiny_data)], report=str(tmp_path / "s"), serve=[str(tiny_model)],
                                 rounds=1, latency_messages=5, eval_split="test", name="tiny"))
    results = report["results"]
    assert [r["runtime"] for r in results.values()] == ["torch", "openvino-fp16", "openvino"]
    torch_path, fp16, int8 = results.values()
    assert torch_path["speedup_p50"] == 1.0 and fp16["agreement"] > 0.9 and int8["agreement"] > 0.9
    for r in results.values():
        assert r["latency_ms"]["n"] == 5 and r["messages_per_s"] > 0 and r["peak_memory_mb"] > 50
        assert r["messages_per_s_random"] > 0
        assert r["parameters"] == torch_path["parameters"] and r["accuracy"] > 0.8
    assert "| tiny_model0 · openvino |" in (tmp_path / "s" / "speed.md").read_text()
    assert (tmp_path / "s" / "speed.png").stat().st_size > 10_000


def test_a_folder_can_be_served_by_one_runtime_only(tiny_model, tiny_data, tmp_path, monkeypatch):
    """A dense PyTorch reference beside exported builds: FOLDER@RUNTIME, the others by --runtimes."""
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    report = run_bench(BenchArgs(data=[str(tiny_data)], report=str(tmp_path / "s"), runtimes=["openvino"],
                                 serve=[f"{tiny_model}@torch", str(tiny_model)], rounds=1, latency_messages=3))
    assert [(r["folder"], r["runtime"]) for r in report["results"].values()] == [
        (str(tiny_model), "torch"), (str(tiny_model), "openvino")]
    assert report["reference"] == f"{tiny_model.name} · torch"


def test_an_unknown_runtime_after_the_folder_is_refused(tiny_model, tiny_data, tmp_path):
    with pytest.raises(ValueError, match="FOLDER@RUNTIME"):
        BenchArgs(data=[str(tiny_data)], report=str(tmp_path / "s"), serve=[f"{tiny_model}@onnx"])
    with pytest.raises(ValueError, match="FOLDER@RUNTIME"):
        BenchArgs(data=[str(tiny_data)], report=str(tmp_path / "s"), serve=["@torch"])


def test_a_rejection_budget_must_be_a_share():
    with pytest.raises(ValueError, match="max reject"):
        BenchArgs(data=["x.csv"], report="r", budget=OutOfScopeBudget(max_reject=1.0))
    with pytest.raises(ValueError, match="max in-scope loss"):
        BenchArgs(data=["x.csv"], report="r", budget=OutOfScopeBudget(max_in_scope_loss=-0.1))
    with pytest.raises(ValueError, match="not both"):
        OutOfScopeBudget(max_reject=0.01, max_in_scope_loss=0.001)


def test_a_system_served_twice_is_refused(tiny_model, tiny_data, tmp_path):
    """One name per row: the same folder and runtime twice would merge their timings into one row."""
    with pytest.raises(ValueError, match="served twice"):
        BenchArgs(data=[str(tiny_data)], report=str(tmp_path / "s"), serve=[f"{tiny_model}@torch", str(tiny_model)])


def test_a_folder_whose_name_has_an_at_sign_is_a_folder(tmp_path):
    from chatbot.speed import serve_entry

    (tmp_path / "model@torch").mkdir()
    assert serve_entry(str(tmp_path / "model@torch"), ["openvino"]) == (str(tmp_path / "model@torch"), ["openvino"])
    assert serve_entry(str(tmp_path / "model@torch") + "@torch", ["openvino"]) == (str(tmp_path / "model@torch"), ["torch"])


def test_random_batches_mix_every_message_once_in_sizes_a_replica_takes():
    from chatbot.speed import RANDOM_BATCHES, random_batches

    texts = [f"message {i}" for i in range(500)]
    batches = random_batches(texts)
    assert sorted(t for b in batches for t in b) == sorted(texts) and batches == random_batches(texts)
    assert all(RANDOM_BATCHES[0] <= len(b) <= RANDOM_BATCHES[1] for b in batches[:-1])
    assert len({len(b) for b in batches}) > 10 and [t for b in batches for t in b] != texts
