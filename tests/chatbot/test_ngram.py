import json
import subprocess
import sys

import numpy as np
import pytest

from chatbot import ngram
from chatbot.ngram import NgramModel, char_ngrams, load_or_fit, words
from chatbot.settings import ROOT

TEXTS = ["where is my order", "I want my money back", "cancel my order please", "how do I pay",
         "où est ma commande", "je veux être remboursé", "annulez ma commande s'il vous plaît", "comment payer",
         "wo ist meine Bestellung", "ich möchte mein Geld zurück", "bitte stornieren Sie", "wie kann ich zahlen",
         "dónde está mi pedido", "quiero mi dinero", "cancelen mi pedido por favor", "cómo pago"]
LANGS = ["en"] * 4 + ["fr"] * 4 + ["de"] * 4 + ["es"] * 4
TRICKY = ["a", "  several   spaces\there ", "l'été déjà-vu", "Straße  ÄÖÜ", "x", "order #5512 now!!", "",
          "ñandú y pingüino", "emoji 🙂 in text", "a b c d"]


def test_the_analysers_are_scikit_learns():
    from sklearn.feature_extraction.text import TfidfVectorizer

    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), lowercase=False).build_analyzer()
    word = TfidfVectorizer(analyzer="word", lowercase=False).build_analyzer()
    for text in TRICKY + TEXTS:
        assert char_ngrams(text) == char(text), text
        assert words(text) == word(text), text


@pytest.mark.parametrize("languages", [("en", "fr", "de", "es"), ("en", "fr")])
def test_probabilities_are_scikit_learns(languages):
    """The NumPy scoring gives the fitted scikit-learn pipeline's probabilities, unseen words included,
    for two languages (a binary regression: one row of weights) as for more."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    reference = make_pipeline(make_union(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True),
                                         TfidfVectorizer(analyzer="word", sublinear_tf=True)),
                              LogisticRegression(C=30, max_iter=3000))
    texts, langs = zip(*[(t, lang) for t, lang in zip(TEXTS, LANGS) if lang in languages])
    reference.fit([t.lower() for t in texts], langs)
    model = NgramModel.fit(list(texts), list(langs))
    probes = TRICKY + ["Where is my ORDER order order", "mi pedido no llega", "zzzz qqqq", "commande commande"]
    expected = reference.predict_proba([t.lower() for t in probes])
    got = np.array([[model.probabilities(t)[lang] for lang in reference.classes_] for t in probes])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_a_fitted_model_is_cached_as_it_was_fitted(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path))
    fitted = NgramModel.fit(TEXTS, LANGS)
    cached = load_or_fit(TEXTS, LANGS)
    assert cached.classes == fitted.classes and list((tmp_path / "language").glob("ngram-*.npz"))
    for text in ["où est ma commande", "wo ist mein Paket", "qqq", ""]:
        assert cached.probabilities(text) == fitted.probabilities(text)
    assert load_or_fit(TEXTS, LANGS[::-1]).probabilities("ma commande") != fitted.probabilities("ma commande")
    monkeypatch.setattr(ngram, "_fit_elsewhere", lambda *a: pytest.fail("fitted again"))
    assert load_or_fit(TEXTS, LANGS).probabilities("ma commande") == fitted.probabilities("ma commande")


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "shapes"])
def test_a_damaged_cache_is_fitted_again(damage, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path))
    expected = load_or_fit(TEXTS, LANGS).probabilities("ma commande")
    [cached] = (tmp_path / "language").glob("ngram-*.npz")
    good = cached.read_bytes()
    if damage == "shapes":
        NgramModel(["en"], {"a": 0}, {}, np.ones(1), np.ones((2, 1)), np.zeros(1)).save(cached)
    else:
        cached.write_bytes({"empty": b"", "garbage": b"not an npz", "truncated": good[:len(good) // 2]}[damage])
    assert load_or_fit(TEXTS, LANGS).probabilities("ma commande") == expected
    assert cached.read_bytes() == good


def test_without_another_interpreter_or_a_writable_cache_it_fits_in_process(tmp_path, monkeypatch):
    expected = NgramModel.fit(TEXTS, LANGS).probabilities("ma commande")
    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "file"))
    assert load_or_fit(TEXTS, LANGS).probabilities("ma commande") == expected
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))

    def no_python(*args):
        raise RuntimeError("no interpreter")

    monkeypatch.setattr(ngram, "_fit_elsewhere", no_python)
    assert load_or_fit(TEXTS, LANGS).probabilities("ma commande") == expected


def test_the_serving_process_never_imports_scikit_learn(tmp_path):
    """Fitting runs in another interpreter: scikit-learn and SciPy cost a process about 120 MB."""
    script = ("import json, sys; from chatbot.ngram import load_or_fit; m = load_or_fit(*json.load(sys.stdin)); "
              "print(json.dumps([m.probabilities('où est ma commande'), 'sklearn' in sys.modules, 'scipy' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps([TEXTS, LANGS]), capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "CHATBOT_CACHE": str(tmp_path),
                                                    "PATH": "/usr/bin:/bin"}, check=True)
    probabilities, sklearn, scipy = json.loads(done.stdout)
    assert max(probabilities, key=probabilities.get) == "fr"
    assert not sklearn and not scipy
