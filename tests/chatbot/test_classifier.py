import json
import subprocess
import sys

import torch

from chatbot.classifier import IntentClassifier


def test_predictions_are_calibrated_distributions(tiny_model):
    clf = IntentClassifier.load(tiny_model, device="cpu", dtype=torch.float32)
    probs = clf.probabilities(["cancel order 1", "refund money 2"])
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    preds = clf.predict(["cancel order stop 1", "track parcel where 2", "refund money back 3"], k=3)
    assert [p.intent for p in preds] == ["cancel_order", "track_order", "get_refund"]
    for p in preds:
        confidences = [c for _, c in p.top]
        assert confidences == sorted(confidences, reverse=True) and p.top[0] == (p.intent, p.confidence)


def test_batching_does_not_change_predictions(tiny_model):
    clf = IntentClassifier.load(tiny_model, device="cpu", dtype=torch.float32)
    texts = ["cancel", "where parcel status colis 3 4", "refund money back argent remboursement 9 9 9"]
    together = clf.logits(texts, batch_size=8)
    alone = torch.cat([clf.logits([t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-4)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True, timeout=300)


def test_cli_classify_prints_json_lines(tiny_model):
    result = run_cli("classify", "--model", str(tiny_model), "cancel order stop 1", "refund money back 3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["intent"] for line in lines] == ["cancel_order", "get_refund"]
    assert len(lines[0]["top"]) == 3 and 0 < lines[0]["confidence"] <= 1


def test_cli_evaluate_writes_the_report_contract(tiny_model, tiny_data, tmp_path):
    report_path = tmp_path / "r.json"
    result = run_cli("evaluate", "--model", str(tiny_model), "--data", str(tiny_data), "--report", str(report_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    for key in ("accuracy", "macro_f1", "n", "per_language", "per_intent", "confusion", "latency_ms", "parameters"):
        assert key in report
    assert set(report["per_language"]) == {"en", "fr"}
    assert {"p50", "p95"} <= set(report["latency_ms"])
    assert report["accuracy"] > 0.8


def test_cli_errors_are_one_line(tmp_path):
    result = run_cli("classify", "--model", str(tmp_path / "missing"), "hello")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "Traceback" not in result.stderr
    result = run_cli("train", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "not found" in result.stderr
