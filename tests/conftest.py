"""Shared fixtures: a tiny random Llama (with its own word-level tokenizer) saved as a model folder."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

WORDS = {
    "cancel_order": ["cancel", "order", "stop", "annuler", "commande"],
    "track_order": ["where", "track", "parcel", "status", "colis"],
    "get_refund": ["refund", "money", "back", "remboursement", "argent"],
}


def make_tiny_base(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random LlamaForCausalLM with 4 heads (2 KV heads) and a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for words in WORDS.values():
        for w in words:
            vocab.setdefault(w, len(vocab))
    for i in range(10):
        vocab.setdefault(str(i), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_data(path: Path, per_intent_lang: int = 12, seed: int = 0) -> Path:
    """A separable toy data set: each intent's messages use its own words, in en and fr."""
    rng = random.Random(seed)
    rows = []
    for intent, words in WORDS.items():
        for lang in ("en", "fr"):
            seen = set()
            while len(seen) < per_intent_lang:
                seen.add(" ".join(rng.choice(words) for _ in range(rng.randint(2, 5))) + f" {rng.randint(0, 9)}")
            rows += [{"text": t, "intent": intent, "lang": lang} for t in sorted(seen)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "intent", "lang"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory):
    """Installation secrets (encryption key, browser secret) made by the tests go to a temporary home,
    never to the developer's own."""
    import os

    saved = {k: os.environ.get(k) for k in ("CHATBOT_HOME", "CHATBOT_SECRET_KEY", "CHATBOT_BROWSER_SECRET",
                                            "CHATBOT_ADMIN_PASSWORD")}
    os.environ["CHATBOT_HOME"] = str(tmp_path_factory.mktemp("chatbot-home"))
    for k in ("CHATBOT_SECRET_KEY", "CHATBOT_BROWSER_SECRET", "CHATBOT_ADMIN_PASSWORD"):
        os.environ.pop(k, None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("data") / "toy.csv")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_base, tiny_data) -> Path:
    """A model folder LoRA-tuned on the toy data (a few seconds on a CPU)."""
    out = tmp_path_factory.mktemp("tiny_model")
    train_tiny(tiny_base, tiny_data, out)
    return out


def tiny_train_args(base: Path, data: Path, out: Path, epochs: int = 8, **kw):
    """The recipe the tiny fixtures train with (fp32, so results are exact on any CPU)."""
    from chatbot.lora import LoraSettings
    from chatbot.train import FitSettings, TrainArgs

    lora = kw.pop("lora", LoraSettings(r=4))
    return TrainArgs(data=[str(data)], out=str(out), base=str(base), fit=FitSettings(epochs=epochs, lr=5e-3, batch_size=8),
                     lora=lora, precision="fp32", patience=epochs, **kw)


def train_tiny(base: Path, data: Path, out: Path, epochs: int = 8, **kw) -> Path:
    from chatbot.train import train

    return train(tiny_train_args(base, data, out, epochs, **kw))


def load_tiny_hf(folder: Path, num_labels: int = 3):
    """The tiny base straight from transformers (for the compression library's own tests)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# --- databases: every store test runs on SQLite and on a real PostgreSQL server ---------------------
@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1 for the whole session (see tests/postgres.py), started
    by the first test that needs it; its ``new_database()`` gives each test an empty database."""
    from postgres import ThrowawayPostgres

    try:
        server = ThrowawayPostgres().start()
    except RuntimeError as err:  # no server binaries: a failure, never a silent skip
        pytest.fail(f"{err} (bash .ci/run installs it)")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    """An empty database: a SQLite file, then a database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture()
def postgres_url(postgres) -> str:
    """An empty database on the session's PostgreSQL server (what several app processes share)."""
    return postgres.new_database()


def permuted_teacher(tiny_model, folder):
    """A copy of the tiny classifier whose head outputs are rotated: it confidently says
    get_refund for cancel_order messages, and so on, disagreeing with every label."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model, folder)
    weights = folder / "adapter" / "adapter_model.safetensors"
    state = load_file(str(weights))
    state["base_model.model.score.weight"] = state["base_model.model.score.weight"][[2, 0, 1]].contiguous()
    save_file(state, str(weights))
    return folder
