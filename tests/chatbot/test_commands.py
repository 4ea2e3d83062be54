"""The command line as users call it: ``python -m chatbot …`` (in-process through ``main``, or a subprocess)."""

import json
import subprocess
import sys

import pytest

from chatbot.__main__ import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True, timeout=300)


def test_classify_prints_json_lines(tiny_model):
    result = run_cli("classify", "--model", str(tiny_model), "cancel order stop 1", "refund money back 3")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["intent"] for line in lines] == ["cancel_order", "get_refund"]
    assert len(lines[0]["top"]) == 3 and 0 < lines[0]["confidence"] <= 1


def test_evaluate_writes_the_report_contract(tiny_model, tiny_data, tmp_path):
    report_path = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(tiny_data), "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    for key in ("accuracy", "macro_f1", "n", "per_language", "per_intent", "confusion", "latency_ms", "parameters"):
        assert key in report
    assert set(report["per_language"]) == {"en", "fr"}
    assert {"p50", "p95"} <= set(report["latency_ms"])
    assert report["accuracy"] > 0.8


def test_evaluate_counts_the_policy_with_the_out_of_scope_threshold_given(tiny_model, tiny_data, tmp_path):
    report_path = tmp_path / "r.json"
    common = ["evaluate", "--model", str(tiny_model), "--data", str(tiny_data), "--latency-sample", "2",
              "--report", str(report_path)]
    assert main(common) == 0
    assert "out_of_scope" not in json.loads(report_path.read_text())["policy"]
    # at threshold 1 no intent is ever confident enough: every message is counted out of scope
    assert main([*common, "--out-of-scope-threshold", "1"]) == 0
    report = json.loads(report_path.read_text())
    assert report["policy"] == {"out_of_scope": 1.0} and report["out_of_scope_threshold"] == 1.0
    assert main([*common, "--out-of-scope-threshold", "1.5"]) != 0


def test_evaluate_all_out_of_scope_counts_every_row_as_out_of_scope(tiny_model, tiny_data, tmp_path, monkeypatch):
    import chatbot.classifier
    from chatbot.predictor import Prediction
    from conftest import WORDS

    class Knows:
        """Says cancel_order for messages with its words, out_of_scope for the rest."""
        labels = ["cancel_order", "out_of_scope"]

        def predict(self, texts, k=3, batch_size=32):
            return [Prediction("cancel_order", 0.9, [("cancel_order", 0.9), ("out_of_scope", 0.1)])
                    if set(t.split()) & set(WORDS["cancel_order"]) else
                    Prediction("out_of_scope", 0.9, [("out_of_scope", 0.9), ("cancel_order", 0.1)]) for t in texts]

        def latency_ms(self, texts):
            return [1.0] * len(texts)

        def parameter_count(self):
            return 1

    report_path = tmp_path / "r.json"
    common = ["evaluate", "--data", str(tiny_data), "--split", "all", "--latency-sample", "2", "--report", str(report_path)]
    # the tiny model has no out_of_scope label: a clear error, not a score of nothing
    assert main([*common, "--model", str(tiny_model), "--all-out-of-scope"]) != 0
    monkeypatch.setattr(chatbot.classifier, "load_classifier", lambda folder: Knows())
    assert main([*common, "--model", "any"]) == 0
    assert json.loads(report_path.read_text())["n"] == 24  # only the cancel_order rows are known
    assert main([*common, "--model", "any", "--all-out-of-scope"]) == 0
    report = json.loads(report_path.read_text())
    # every row (12 per intent and language) counts; 2 of 3 intents' words are called out of scope
    assert report["n"] == 72 and report["all_out_of_scope"] is True
    assert report["out_of_scope"]["recall"] == pytest.approx(2 / 3)
    assert report["out_of_scope"]["per_language"]["fr"]["n"] == 36
    assert report["policy"]["out_of_scope"] == pytest.approx(2 / 3)


def test_evaluate_scores_the_served_export_when_asked(tiny_model, tiny_data, tmp_path, monkeypatch):
    from chatbot.runtime import artefact_dir

    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    common = ["evaluate", "--model", str(tiny_model), "--data", str(tiny_data), "--latency-sample", "2"]
    assert main([*common, "--report", str(tmp_path / "torch.json")]) == 0
    assert not artefact_dir(tiny_model).exists()  # PyTorch by default: nothing exported
    assert main([*common, "--runtime", "openvino", "--report", str(tmp_path / "served.json")]) == 0
    torch_report, served = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("torch", "served"))
    assert artefact_dir(tiny_model).exists()  # the int8 export was built and scored
    assert (torch_report["runtime"], served["runtime"]) == ("torch", "openvino")
    # int8 against float32 on a tiny random model: a near-tie may flip one of the 12 rows (1 run in 3 on an AMX
    # Xeon); a served path that scored something else agrees on about a third
    same = [a == b for a, b in zip(served["predicted"], torch_report["predicted"], strict=True)]
    assert len(same) >= 10 and sum(same) >= len(same) - 1
    assert main([*common, "--runtime", "onnx"]) != 0

    monkeypatch.setenv("CHATBOT_RUNTIME", "torch")  # auto is what the app would serve with: here PyTorch
    assert main([*common, "--runtime", "auto", "--report", str(tmp_path / "auto.json")]) == 0
    assert json.loads((tmp_path / "auto.json").read_text())["runtime"] == "torch"
    monkeypatch.setitem(sys.modules, "openvino", None)  # and PyTorch needs no OpenVINO
    assert main([*common, "--runtime", "torch"]) == 0


@pytest.mark.parametrize("limit", [1, 4, 7])
def test_evaluate_limit_scores_that_many_rows(tiny_model, tiny_data, tmp_path, limit):
    report_path = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(tiny_data), "--split", "all",
                 "--limit", str(limit), "--latency-sample", "2", "--report", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["n"] == limit


def test_detect_scores_a_text_lang_file(tmp_path, capsys):
    path = tmp_path / "langs.csv"
    path.write_text("text,lang\nOù est mon colis ?,fr\nWhere is my parcel please?,en\n")
    assert main(["detect", "--data", str(path), "--report", str(tmp_path / "d.json")]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["n"] == 2
    assert "accuracy 1.0000" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path):
    result = run_cli("classify", "--model", str(tmp_path / "missing"), "hello")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "Traceback" not in result.stderr
    result = run_cli("train", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "not found" in result.stderr


def test_compress_writes_a_folder_training_can_start_from(tiny_base, tiny_data, tmp_path, capsys, monkeypatch):
    from chatbot.classifier import build_model
    from compression.svd import LowRankLinear

    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    code = main(["compress", "--base", str(tiny_base), "--calib", str(tiny_data), "--calib-size", "30",
                 "--method", "whitened", "--targets", "attn+mlp", "--rank-ratio", "0.25", "--out", str(tmp_path / "c"),
                 "--report", str(tmp_path / "r.json")])
    assert code == 0
    table = capsys.readouterr().out
    assert "q_proj" in table and "down_proj" in table and "model" in table
    info = json.loads((tmp_path / "c" / "compression.json").read_text())
    assert info["base"] == str(tiny_base) and len(info["recipe"]["ranks"]) == 14
    model, _ = build_model(str(tmp_path / "c"), 3)
    assert sum(isinstance(m, LowRankLinear) for m in model.modules()) == 14
    assert list((tmp_path / "cache" / "compressed").glob("*.safetensors"))
    assert main(["compress", "--base", str(tiny_base), "--targets", "everything"]) == 2


def test_python_m_compression_is_the_same_command(tiny_base, tiny_data, tmp_path):
    result = subprocess.run([sys.executable, "-m", "compression", "--base", str(tiny_base), "--calib", str(tiny_data),
                             "--calib-size", "20", "--targets", "attn", "--out", str(tmp_path / "c")],
                            capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "CHATBOT_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c" / "compression.json").exists() and "q_proj" in result.stdout


def test_bench_svd_writes_json_and_table(tmp_path):
    assert main(["bench-svd", "--report", str(tmp_path), "--shapes", "40x24,24x40", "--devices", "cpu"]) == 0
    report = json.loads((tmp_path / "svd_timing.json").read_text())
    assert {(r["shape"], r["method"]) for r in report["rows"]} == {
        ("40x24", "plain"), ("24x40", "plain"), ("40x24", "whitened"), ("24x40", "whitened")}
    assert "| cpu | whitened | 40x24 | 6 |" in (tmp_path / "svd_timing.md").read_text()
    assert main(["bench-svd", "--report", str(tmp_path), "--shapes", "40by24"]) == 2


def test_old_flags_keep_working():
    """Renamed settings keep their published flags: --targets and --lora-r on train, --targets on sweep."""
    import argparse

    from chatbot import cli
    from chatbot.sweep import SweepArgs
    from chatbot.train import TrainArgs

    for cls, argv, check in [
        (TrainArgs, ["--data", "a.csv", "--out", "o", "--targets", "q_proj,v_proj", "--lora-r", "4", "--epochs", "2"],
         lambda a: a.lora.targets == ["q_proj", "v_proj"] and a.lora.r == 4 and a.fit.epochs == 2),
        (SweepArgs, ["--data", "a.csv", "--report", "r", "--targets", "attn", "--lora-targets", "q_proj",
                     "--epochs", "5", "--max-per-intent", "3"],
         lambda a: a.compress_targets == ["attn"] and a.heal.lora.targets == ["q_proj"] and a.heal.fit.epochs == 5
         and a.heal.max_per_intent == 3),
    ]:
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser, cls)
        assert check(cli.build(cls, parser.parse_args(argv)))


def test_users_purge_and_erase_commands(tmp_path, monkeypatch, capsys):
    import io
    from datetime import timedelta

    from chatbot.accounts import Accounts
    from chatbot.store import Conversation, Store, now

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["users", "add", "marie", "--role", "agent", "--password-stdin", "--database", url]) == 0
    assert main(["users", "add", "bob", "--role", "owner", "--database", url]) == 2
    assert main(["users", "disable", "marie", "--database", url]) == 0
    assert main(["users", "list", "--database", url]) == 0
    listed = capsys.readouterr().out
    assert "marie" in listed and "disabled" in listed
    store = Store(url)
    accounts = Accounts(store)
    assert accounts.caller("marie").disabled and not accounts.sign_in("marie", "a long enough password")
    assert main(["users", "enable", "marie", "--database", url]) == 0
    assert accounts.sign_in("marie", "a long enough password")
    accounts.hf_sessions.sign_in("alice", "id-1")
    capsys.readouterr()
    assert main(["users", "hf-release", "Alice", "--database", url]) == 0
    assert "released" in capsys.readouterr().out and accounts.hf_sessions.record("alice").sub is None
    assert main(["users", "hf-release", "alice", "--hf-id", "id-7", "--database", url]) == 0
    assert accounts.hf_sessions.record("alice").sub == "id-7"
    assert main(["users", "hf-release", "--database", url]) == 2  # which name?
    assert main(["users", "disable", "marie", "--hf-id", "id-7", "--database", url]) == 2

    old, kept = store.new_conversation(), store.new_conversation()
    with store.session() as s, s.begin():
        s.get(Conversation, old).updated_at = now() - timedelta(days=100)
    assert main(["purge", "--older-than", "90d", "--database", url]) == 0
    assert store.conversation(old) is None and store.conversation(kept)
    assert main(["purge", "--older-than", "ninety days", "--database", url]) == 2
    assert main(["erase", kept, "--database", url]) == 0 and store.conversation(kept) is None
    assert main(["erase", kept, "--database", url]) == 2
    from chatbot.audit import Audit

    actions = [e["action"] for e in Audit(store).entries()]
    assert actions[:2] == ["erase", "purge"] and "user_disable" in actions and "user_enable" in actions


@pytest.mark.parametrize("argv, message", [
    (["classify", "--k", "0", "hello"], "k must be"),
    (["classify", ""], "empty"),
    (["evaluate", "--data", "x.csv", "--latency-sample", "0"], "latency sample"),
    (["evaluate", "--data", "x.csv", "--limit", "-1"], "limit"),
    (["detect", "--data", "x.csv", "--limit", "-1"], "limit"),
    (["purge", "--older-than", "99999999999999d"], "longer than any date"),
    (["purge", "--older-than", "3000000d"], "longer than any date"),
])
def test_out_of_range_arguments_are_refused_before_any_work(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_a_single_intent_is_not_a_classifier(tmp_path, capsys):
    data = tmp_path / "one.csv"
    data.write_text("text,intent,lang,split\n" + "".join(
        f"cancel my order {i},cancel_order,en,{'dev' if i % 4 == 0 else 'train'}\n" for i in range(24)))
    assert main(["train", "--data", str(data), "--base", "smollm2-135m", "--out", str(tmp_path / "m")]) == 2
    assert "at least two intents" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_an_unreadable_output_is_one_line(tiny_model, tiny_data, tmp_path, capsys):
    (tmp_path / "a-folder").mkdir()
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(tiny_data), "--latency-sample", "1",
                 "--report", str(tmp_path / "a-folder")]) == 2
    err = capsys.readouterr().err
    assert "\nerror: [Errno 21] Is a directory" in err and "Traceback" not in err


def test_vocab_and_build_inputs_are_checked_before_work(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "hello", "split": "train"}\n{"intent": "no text here"}\n')
    assert main(["vocab", "--corpus", f"{rows}:nosuchsplit", "--out", str(tmp_path / "v")]) == 2
    assert "no texts in split 'nosuchsplit'" in capsys.readouterr().err
    assert main(["build", "--data", str(rows), "--out", str(tmp_path / "b"), "--eval-split", "foo"]) == 2
    assert "eval split" in capsys.readouterr().err


def test_chat_greets_in_the_browser_language_and_shows_each_turn(monkeypatch, tmp_path, capsys):
    from chatbot.commands import ChatArgs, run_chat
    from chatbot.predictor import Prediction
    from chatbot.replies import Catalogue

    class Scripted:
        labels = ["track_order", "out_of_scope"]

        def predict(self, texts, k=3):
            return [Prediction("track_order", 0.95, [("track_order", 0.95), ("out_of_scope", 0.03)]) for _ in texts]

    monkeypatch.setattr("chatbot.classifier.load_classifier", lambda path: Scripted())
    said = iter(["Wo ist meine Bestellung 4711?", "danke", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(said))
    run_chat(ChatArgs(model=str(tmp_path / "model"), database=f"sqlite:///{tmp_path / 'chat.db'}",
                      accept_language="de-DE,de;q=0.9"))
    out = capsys.readouterr().out
    catalogue = Catalogue.load()
    assert out.startswith(catalogue.line("greeting", "de"))
    assert "[de · answer · track_order 0.95]" in out
    assert catalogue.line("small_talk_thanks", "de") + "\n[de · small_talk]" in out
