"""Vocabulary trimming: exact logits for text in the kept languages, graceful for the rest.

The tiny fixtures mimic Gemma's tokenizer (BPE over the whole text, ' ' → '▁', byte fallback) and
GPT-2's (byte-level BPE), trained in memory on a few sentences in Latin, Cyrillic and CJK script and
emoji, under a tiny random Llama and a tiny Gemma-3 (whose embedding scales by √d).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compression.vocab import (ALPHABET_VERSION, TrimmedEmbedding, _ByteRule, alphabet, apply_trim, check_corpus,
                               is_trimmed, kept_token_ids, load_trim, save_trim, trim_recipe, trim_vocabulary)

CORPUS = [
    "Where is my parcel? Order 4411 has not arrived.",
    "Je voudrais annuler ma commande, s'il vous plaît.",
    "Où est mon colis ? Ça fait déjà dix jours… « urgent »",
    "Ich möchte meine Bestellung stornieren. Größe 42, Preis 19,99 €",
    "Ik wil mijn bestelling annuleren, graag vóór vrijdag.",
    "¿Dónde está mi pedido? Quiero mi reembolso ahora.",
    "Vorrei parlare con un operatore, perché è urgente.",
    "Quero cancelar a minha encomenda e receber o reembolso.",
    "Где мой заказ? Я хочу вернуть деньги.",
    "我的包裹在哪里？我想退款。",
    "Thanks 😀 great service 👍 but late 😡",
] * 3
KEPT_TEXTS = CORPUS[:8] + ["refund  please\tnow!", "Crème brûlée — 3×2 = 6 ‰ ™"]
FOREIGN = ["Где мой заказ?", "我的包裹在哪里", "Order 4411 заказ где?", "ﬆ ǅ ȸ"]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def _gemma_like_tokenizer():
    """BPE over the whole normalised text with byte fallback (Gemma's layout: specials, bytes, pieces)."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.train_from_iterator(CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab, merges = dict(model["vocab"]), [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                            for m in model["merges"]]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    full = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    full.normalizer = normalizers.Replace(" ", "▁")
    full.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=full, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
                                   eos_token="<eos>")


def _byte_level_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|pad|>", "<|end|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>")


@pytest.fixture(scope="module")
def tokenizer():
    return _gemma_like_tokenizer()


def _model(kind: str, tokenizer, seed: int = 0):
    from transformers import AutoModelForSequenceClassification, Gemma3TextConfig, LlamaConfig

    common = dict(vocab_size=len(tokenizer) + 7, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, num_labels=3,
                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    config = (LlamaConfig(**common) if kind == "llama"
              else Gemma3TextConfig(**common, head_dim=8, sliding_window=8, attn_implementation="eager"))
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


def _logits(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


@pytest.fixture(params=["llama", "gemma3"])
def kind(request):
    return request.param


def test_alphabet_holds_the_seven_languages_and_not_other_scripts():
    chars = alphabet()
    for text in KEPT_TEXTS[:8] + ["Œuvre Ÿ ẞ ĳs ¿¡ «» € £ 1 200,50\u202f€"]:
        assert set(text) <= chars, set(text) - chars
    assert "\u0301" in chars and "\u0327" in chars  # NFD text: e + acute, c + cedilla
    assert {"ł", "ő", "ș", "č"} <= chars  # European names: Łukasz, Erdős, Ștefan, Dvořák
    assert not {"ж", "我", "α", "ə", "ạ"} & chars
    assert "😀" in chars and "😀" not in alphabet(emoji=False)
    assert "ẞ" in alphabet(["de"]) and "ẞ" not in alphabet(["en"])
    with pytest.raises(ValueError, match="unsupported"):
        alphabet(["ru"])


def test_kept_ids_cover_every_text_in_the_languages(tokenizer):
    kept = kept_token_ids(tokenizer)
    vocab = tokenizer.get_vocab()
    assert len(kept) < len(vocab)
    assert {vocab[t] for t in SPECIALS} | {vocab[f"<0x{b:02X}>"] for b in range(256)} <= set(kept)
    report = check_corpus(tokenizer, kept, KEPT_TEXTS)
    assert report["outside"] == 0, report["examples"]
    # Cyrillic and CJK pieces are dropped; emoji are kept unless asked otherwise.
    dropped = set(vocab.values()) - set(kept)
    tokens = tokenizer.convert_ids_to_tokens(sorted(dropped))
    assert any("з" in t for t in tokens) and any("包" in t for t in tokens)
    assert check_corpus(tokenizer, kept, FOREIGN[:2])["outside"] > 0
    no_emoji = kept_token_ids(tokenizer, emoji=False)
    assert check_corpus(tokenizer, no_emoji, ["great service 👍"])["outside"] > 0
    assert check_corpus(tokenizer, kept, ["great service 👍"])["outside"] == 0


def test_trimmed_model_gives_identical_logits_on_kept_text(tokenizer, kind):
    model = _model(kind, tokenizer)
    before = _logits(model, tokenizer, KEPT_TEXTS)
    kept = kept_token_ids(tokenizer)
    report = trim_vocabulary(model, kept, tokenizer.unk_token_id)
    assert is_trimmed(model) and isinstance(model.get_input_embeddings(), TrimmedEmbedding)
    emb = model.get_input_embeddings()
    assert emb.weight.shape == (len(kept), 32) and emb.num_embeddings == model.config.vocab_size
    assert report["params_after"] == len(kept) * 32 < report["params_before"]
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in _model(kind, tokenizer).parameters()) - (report["rows_before"] - len(kept)) * 32
    assert torch.equal(_logits(model, tokenizer, KEPT_TEXTS), before)
    # Batched with padding = one at a time: the head still finds the last non-pad token.
    single = torch.cat([_logits(model, tokenizer, [t]) for t in KEPT_TEXTS])
    assert torch.allclose(single, before, atol=1e-5)


def test_embedding_scale_is_kept(tokenizer):
    model = _model("gemma3", tokenizer)
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(["<bos>", "W", "<0x41>"])])
    expected = model.get_input_embeddings()(ids)
    trim_vocabulary(model, kept_token_ids(tokenizer), tokenizer.unk_token_id)
    got = model.get_input_embeddings()(ids)
    assert torch.equal(got, expected)
    assert model.get_input_embeddings().embedding.scalar_embed_scale == pytest.approx(32 ** 0.5)


def test_dropped_tokens_read_as_the_fallback(tokenizer, kind):
    """Text outside the languages runs (no index error, finite logits) and equals the untrimmed model
    reading <unk> wherever a dropped piece stood: the rest of the message is untouched."""
    model = _model(kind, tokenizer)
    kept = kept_token_ids(tokenizer)
    enc = tokenizer(FOREIGN, padding=True, return_tensors="pt")
    ids = enc["input_ids"]
    as_unk = torch.where(torch.isin(ids, torch.tensor(kept)), ids, torch.tensor(tokenizer.unk_token_id))
    assert not torch.equal(as_unk, ids)  # the foreign texts do hit dropped pieces
    with torch.no_grad():
        expected = model(input_ids=as_unk, attention_mask=enc["attention_mask"]).logits
    trim_vocabulary(model, kept, tokenizer.unk_token_id)
    with torch.no_grad():
        got = model(**enc).logits
    assert torch.isfinite(got).all()
    assert torch.equal(got, expected)


def test_guards(tokenizer):
    model = _model("llama", tokenizer)
    kept = kept_token_ids(tokenizer)
    with pytest.raises(AssertionError, match="fallback"):
        trim_vocabulary(model, [i for i in kept if i != tokenizer.unk_token_id], tokenizer.unk_token_id)
    with pytest.raises(AssertionError, match="pad_token_id"):
        trim_vocabulary(model, [i for i in kept if i != tokenizer.pad_token_id], tokenizer.unk_token_id)
    with pytest.raises(AssertionError, match="sorted"):
        trim_vocabulary(model, kept[::-1], tokenizer.unk_token_id)
    trim_vocabulary(model, kept, tokenizer.unk_token_id)
    with pytest.raises(ValueError, match="already trimmed"):
        trim_vocabulary(model, kept, tokenizer.unk_token_id)
    from transformers import LlamaConfig, LlamaForCausalLM
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ValueError, match="LM head"):
        trim_vocabulary(lm, kept, tokenizer.unk_token_id)


def test_recipe_round_trip(tokenizer, tmp_path, kind):
    recipe, kept = trim_recipe(tokenizer, ["fr", "en", "de", "nl", "es", "it", "pt"])
    assert recipe["languages"] == sorted(recipe["languages"]) and recipe["kept"] == len(kept)
    assert recipe["alphabet"] == ALPHABET_VERSION and recipe["fallback"] == "<unk>"
    save_trim(tmp_path, recipe, kept)
    loaded_recipe, loaded_kept = load_trim(tmp_path)
    assert loaded_recipe == recipe and loaded_kept == kept
    assert load_trim(tmp_path / "nowhere") is None

    reference = _model(kind, tokenizer)
    trim_vocabulary(reference, kept, tokenizer.unk_token_id)
    fresh = _model(kind, tokenizer)
    apply_trim(fresh, tokenizer, loaded_recipe)
    texts = KEPT_TEXTS + FOREIGN
    assert torch.equal(_logits(fresh, tokenizer, texts), _logits(reference, tokenizer, texts))

    other = _byte_level_tokenizer()  # another tokenizer: other ids, so the recipe must not apply
    with pytest.raises(ValueError, match="other kept ids"):
        apply_trim(_model(kind, tokenizer), other, {**recipe, "fallback": "<|pad|>"})
    with pytest.raises(ValueError, match="alphabet version"):
        apply_trim(_model(kind, tokenizer), tokenizer, {**recipe, "alphabet": ALPHABET_VERSION + 1})


def test_byte_level_tokenizer():
    tokenizer = _byte_level_tokenizer()
    kept = kept_token_ids(tokenizer)
    assert check_corpus(tokenizer, kept, KEPT_TEXTS)["outside"] == 0
    assert check_corpus(tokenizer, kept, FOREIGN[:2])["outside"] > 0
    vocab = tokenizer.get_vocab()
    assert len(set(vocab.values()) - set(kept)) > 0
    rule = _ByteRule(alphabet())
    assert rule("é".encode()[:1]) and rule("é".encode()[1:]) and rule(" café".encode())
    assert rule("😀".encode()[1:3])  # the middle of an emoji
    assert not rule("ж".encode()) and not rule("我".encode()[:2])
    assert not rule("a".encode() + "ж".encode()[:1])  # Cyrillic's lead byte 0xD0 starts no kept letter


def test_alphabet_is_closed_under_the_normaliser():
    """NFKC turns the micro sign µ (Latin-1, kept) into Greek μ: a token "μ" is then reachable from our text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "<pad>": 1, "μ": 2, "m": 3, "ж": 4}, unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")
    kept = kept_token_ids(tokenizer)
    assert kept == [0, 1, 2, 3]
    assert check_corpus(tokenizer, kept, ["5 µ m"])["outside"] == 0


@pytest.mark.integration
def test_real_gemma_keeps_every_token_of_our_data_and_its_logits():
    """The shipped dense classifier (Gemma-3-270M, full vocabulary): every id our data produces in all 7
    languages is kept, and the trimmed model's logits equal the untrimmed ones (test split sample, float32)."""
    import csv
    from pathlib import Path

    from chatbot.classifier import load_classifier
    from chatbot.settings import DENSE_MODEL_DIR

    data = Path(__file__).resolve().parents[2] / "assets" / "data"
    rows = []
    for lang in ("en", "fr", "de", "nl", "es", "it", "pt"):
        with (data / f"{lang}.csv").open(newline="") as f:
            rows += list(csv.DictReader(f))
    assert {r["lang"] for r in rows} == {"en", "fr", "de", "nl", "es", "it", "pt"}
    clf = load_classifier(DENSE_MODEL_DIR, dtype=torch.float32)
    tokenizer = clf.tokenizer
    recipe, kept = trim_recipe(tokenizer)
    report = check_corpus(tokenizer, kept, [r["text"] for r in rows])
    assert report["outside"] == 0, report["examples"]
    assert 150_000 < recipe["kept"] < 165_000  # 163,945 with alphabet version 1 (of 262,144)

    test = [r for r in rows if r["split"] == "test"]
    sample = [r["text"] for lang in ("en", "fr", "de", "nl", "es", "it", "pt")
              for r in [x for x in test if x["lang"] == lang][::12]]  # 6 per language
    sample += ["Où est ma commande ? 😡", "Cafe\u0301 cre\u0300me — 19,99\u202f€ « vite »"]  # emoji, NFD, narrow nbsp
    sample += ["Zamówienie dla Łukasza Wiśniewskiego, ul. Świętokrzyska 5"]  # Latin Extended-A names
    foreign = ["Где мой заказ 4411?", "我的包裹在哪里"]
    before = clf.logits(sample)
    trim = trim_vocabulary(clf.model, kept, tokenizer.unk_token_id)
    assert trim["rows_after"] == recipe["kept"] and trim["params_before"] == 262_144 * 640
    assert np.array_equal(clf.logits(sample), before)
    assert np.isfinite(clf.logits(foreign)).all()


# --- the trim learnt from a corpus ----------------------------------------------------------------------

def test_corpus_trim_tokenises_its_corpus_exactly_and_re_segments_other_text(tokenizer):
    from compression.vocab import corpus_kept_ids, prune_tokenizer

    corpus = CORPUS[:4]  # en, fr, fr, de; the other languages' sentences are held out
    kept = corpus_kept_ids(tokenizer, corpus)
    assert len(kept) < len(tokenizer)  # something was dropped
    pruned = prune_tokenizer(tokenizer, kept)
    for text in corpus:
        assert pruned(text)["input_ids"] == tokenizer(text)["input_ids"], text
    kept_set = set(kept)
    others = [*CORPUS[4:11], "unseen wording: refundable parcels tracked", "Crème brûlée — 3×2", *FOREIGN]
    for text in others:
        ids = pruned(text)["input_ids"]
        assert set(ids) <= kept_set, text
        # a dropped piece is cut into smaller kept pieces and bytes, never the unknown token
        assert tokenizer.unk_token_id not in ids or tokenizer.unk_token_id in tokenizer(text)["input_ids"]
    assert any(pruned(t)["input_ids"] != tokenizer(t)["input_ids"] for t in others)  # re-segmented, not copied


def test_corpus_trim_keeps_the_logits_of_its_corpus(tokenizer, kind):
    from compression.vocab import apply_corpus_trim, corpus_kept_ids, corpus_recipe

    corpus = CORPUS[:4]
    model = _model(kind, tokenizer)
    before = _logits(model, tokenizer, corpus)
    kept = corpus_kept_ids(tokenizer, corpus)
    recipe = corpus_recipe(tokenizer, kept, ["corpus.csv"])
    pruned, report = apply_corpus_trim(model, tokenizer, recipe, kept)
    assert report["rows_after"] == len(kept) < report["rows_before"]
    assert torch.equal(_logits(model, pruned, corpus), before)
    with pytest.raises(ValueError, match="do not match"):
        apply_corpus_trim(_model(kind, tokenizer), tokenizer, {**recipe, "fingerprint": "0" * 16}, kept)


@pytest.mark.integration
def test_the_shipped_gemma_vocabulary_keeps_the_logits_of_our_data_in_every_language():
    import random

    from chatbot.classifier import load_classifier
    from chatbot.data import load_dataset
    from chatbot.settings import DENSE_MODEL_DIR, LANGUAGES, training_files, vocab_dir
    from compression.vocab import apply_corpus_trim, load_trim

    rows = load_dataset(training_files()).examples
    sample = [e for lang in LANGUAGES for e in random.Random(0).sample([e for e in rows if e.lang == lang], 40)]
    classifier = load_classifier(DENSE_MODEL_DIR, device="cpu", dtype=torch.float32)  # full vocabulary
    assert classifier.model.get_input_embeddings().weight.shape[0] == len(classifier.tokenizer)
    before = classifier.logits([e.text for e in sample])
    classifier.tokenizer, _ = apply_corpus_trim(classifier.model, classifier.tokenizer,
                                                *load_trim(vocab_dir("gemma3-270m")))
    assert np.array_equal(classifier.logits([e.text for e in sample]), before)
