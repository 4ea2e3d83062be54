import json

from chatbot.bench import BenchArgs, make_splits, run_bench
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
