import json

import pytest

from chatbot.folder import ModelFolder
from chatbot.model import ModelLoadError


def test_write_then_read_gives_the_same_folder(tmp_path):
    folder = ModelFolder(base="gemma3-270m", labels=["a", "b"], temperature=1.5, lora={"r": 8},
                         compression={"method": "whitened", "ranks": {"x": 3}},
                         source={"adapter": "source_adapter", "from": "s", "fingerprint": "f"})
    folder.write(tmp_path)
    again = ModelFolder.read(tmp_path)
    assert again == folder and again.is_compressed
    assert again.source_adapter_dir(tmp_path) == tmp_path / "source_adapter"


def test_the_shipped_models_read():
    from chatbot.settings import DEFAULT_MODEL_DIR, DENSE_MODEL_DIR

    default, dense = ModelFolder.read(DEFAULT_MODEL_DIR), ModelFolder.read(DENSE_MODEL_DIR)
    assert default.base == dense.base == "gemma3-270m" and default.labels == dense.labels
    assert len(dense.labels) == 28 and "out_of_scope" in dense.labels
    assert default.is_compressed and default.vocab and default.source_adapter_dir(DEFAULT_MODEL_DIR).is_dir()
    assert not dense.is_compressed and dense.source_adapter_dir(DENSE_MODEL_DIR) is None


@pytest.mark.parametrize("content, message", [
    (None, "not a model folder"),
    ("{not json", "damaged"),
    ("[1, 2]", "damaged"),
    (json.dumps({"base": "b", "labels": ["a"]}), "lacks 'temperature'"),
    (json.dumps({"base": "b", "labels": ["a", "a"], "temperature": 1}), "distinct labels"),
    (json.dumps({"base": "b", "labels": ["a", "b"], "temperature": 0}), "temperature"),
    (json.dumps({"base": 123, "labels": ["a", "b"], "temperature": 1}), "base"),
    (json.dumps({"base": "b", "labels": "abc", "temperature": 1}), "labels"),
    (json.dumps({"base": "b", "labels": [1, 2], "temperature": 1}), "labels"),
    (json.dumps({"base": "b", "labels": ["a"], "temperature": 1}), "at least two"),
    ('{"base": "b", "labels": ["a", "b"], "temperature": Infinity}', "finite"),
    (json.dumps({"base": "b", "labels": ["a", "b"], "temperature": 1, "max_length": 1e30}), "max_length"),
    (json.dumps({"base": "b", "labels": ["a", "b"], "temperature": 1, "source": "adapter"}), "source"),
    (json.dumps({"base": "b", "labels": ["a", "b"], "temperature": 1, "compression": "x"}), "compression"),
])
def test_unusable_folders_are_one_line_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "model.json").write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        ModelFolder.read(tmp_path)


def test_evaluation_round_trip(tmp_path):
    assert ModelFolder.read_evaluation(tmp_path) == {}
    ModelFolder.write_evaluation(tmp_path, {"accuracy": 0.5}, {"n": 2})
    assert ModelFolder.read_evaluation(tmp_path) == {"summary": {"accuracy": 0.5}, "report": {"n": 2}}


def test_a_model_is_written_only_to_a_new_or_empty_folder(tmp_path, capsys):
    from chatbot.__main__ import main

    ModelFolder.check_new(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    ModelFolder.check_new(tmp_path / "empty")
    old = tmp_path / "old"
    old.mkdir()
    (old / "evaluation.json").write_text("{}")
    (tmp_path / "a-file").write_text("x")
    for out, keep, message in ((old, (), "not empty"), (tmp_path / "a-file", (), "is a file"),
                               (tmp_path / "empty", (tmp_path / "empty",), "reads")):
        with pytest.raises(ValueError, match=message):
            ModelFolder.check_new(out, *keep)
    # the command line refuses before any work, in one line
    assert main(["train", "--data", str(tmp_path / "missing.csv"), "--out", str(old)]) == 2
    assert "not empty" in capsys.readouterr().err and sorted(p.name for p in old.iterdir()) == ["evaluation.json"]


@pytest.mark.parametrize("adapter", ["../elsewhere/adapter", "/etc", 5])
def test_a_source_adapter_outside_the_folder_is_refused(tmp_path, adapter):
    (tmp_path / "model.json").write_text(json.dumps({"base": "b", "labels": ["a", "b"], "temperature": 1,
                                                     "source": {"adapter": adapter}}))
    with pytest.raises(ModelLoadError, match="inside the model folder"):
        ModelFolder.read(tmp_path).source_adapter_dir(tmp_path)
