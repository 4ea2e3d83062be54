"""Our own language identifier: character n-grams and words of our customer messages, fitted once with
scikit-learn, scored with NumPy.

The model (one of the three the language detector mixes, :mod:`chatbot.language`): the lower-cased
text's character 1–5-grams inside word boundaries (each word padded with a space, scikit-learn's
``char_wb``) and its words (``\\b\\w\\w+\\b``), each bag weighted by TF-IDF with sublinear term
frequency, ``tf·idf = (1 + ln count) · (ln((1 + n) / (1 + df)) + 1)``, and L2-normalised on its own;
the two vectors side by side feed a multinomial logistic regression (C = 30), ``p = softmax(W x + b)``.

Fitting needs scikit-learn, which with SciPy costs a process about 120 MB, and the fitted vectorisers
about 60 MB more, so the serving process does not fit: :func:`load_or_fit` runs the fit once in a new
interpreter and caches the arrays (``$CHATBOT_CACHE/language/ngram-<fingerprint>.npz``, the fingerprint
covering the training messages, their languages, the fit's settings and scikit-learn's version; where
no other interpreter can fit and cache it, the fit runs in the process after all);
:class:`NgramModel` scores with NumPy and reproduces scikit-learn's analysers and arithmetic (a test
compares the probabilities with scikit-learn's).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatbot.settings import cache_dir, child_env

log = logging.getLogger(__name__)

FIT_VERSION = 2
"""Bumped when the model or its fit changes in a way :data:`FIT` does not say (older caches are refitted)."""
FIT = {"char_ngrams": (1, 5), "C": 30.0, "max_iter": 3000}
"""The fit's settings; the cache's fingerprint covers them, with the messages and scikit-learn's version."""
FIT_TIMEOUT_S = 600
"""A fit in another interpreter that takes longer is given up (and done in this process)."""
_SPACES = re.compile(r"\s\s+")
_WORD = re.compile(r"(?u)\b\w\w+\b")


def char_ngrams(text: str, low: int = 1, high: int = 5) -> list[str]:
    """The character n-grams of every word padded with spaces (scikit-learn's ``char_wb`` analyser)."""
    grams = []
    for word in _SPACES.sub(" ", text).split():
        word = f" {word} "
        for n in range(low, high + 1):
            if len(word) <= n:  # a short word counts once, whole
                grams.append(word)
                break
            grams += [word[i:i + n] for i in range(len(word) - n + 1)]
    return grams


def words(text: str) -> list[str]:
    """The words of two or more word characters (scikit-learn's default ``word`` analyser)."""
    return _WORD.findall(text)


@dataclass
class NgramModel:
    classes: list[str]
    """The languages, in the order of the rows of ``coef``."""
    char_vocab: dict[str, int]
    """Character n-gram → its column (the first block of features)."""
    word_vocab: dict[str, int]
    """Word → its column in the second block (after the character n-grams)."""
    idf: np.ndarray
    """Inverse document frequency of every column."""
    coef: np.ndarray
    """Logistic regression weights, languages × columns."""
    intercept: np.ndarray
    """Logistic regression bias per language."""

    def _block(self, grams: list[str], vocab: dict[str, int], offset: int) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(vocab[g] for g in grams if g in vocab)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cols = np.fromiter(counts, dtype=np.int64) + offset
        values = np.array([1 + math.log(c) for c in counts.values()]) * self.idf[cols]
        return cols, values / np.linalg.norm(values)

    def probabilities(self, text: str) -> dict[str, float]:
        """Language → probability for one message."""
        text = text.lower()
        char_cols, char_values = self._block(char_ngrams(text), self.char_vocab, 0)
        word_cols, word_values = self._block(words(text), self.word_vocab, len(self.char_vocab))
        cols, values = np.concatenate([char_cols, word_cols]), np.concatenate([char_values, word_values])
        logits = self.coef[:, cols] @ values + self.intercept
        exp = np.exp(logits - logits.max())
        return dict(zip(self.classes, map(float, exp / exp.sum())))

    # -- fit (scikit-learn), save, load --------------------------------------------------------
    @classmethod
    def fit(cls, texts: list[str], langs: list[str]) -> "NgramModel":
        """Fit with scikit-learn (imported here only) and keep its arrays."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        char = TfidfVectorizer(analyzer="char_wb", ngram_range=FIT["char_ngrams"], sublinear_tf=True)
        word = TfidfVectorizer(analyzer="word", sublinear_tf=True)
        model = make_pipeline(make_union(char, word), LogisticRegression(C=FIT["C"], max_iter=FIT["max_iter"]))
        model.fit([t.lower() for t in texts], langs)
        regression = model[-1]
        coef, intercept = regression.coef_, regression.intercept_
        if len(regression.classes_) == 2:  # one row for the second class: σ(z) = softmax([0, z])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        return cls([str(c) for c in regression.classes_], {g: int(i) for g, i in char.vocabulary_.items()},
                   {w: int(i) for w, i in word.vocabulary_.items()}, np.concatenate([char.idf_, word.idf_]),
                   coef, intercept)

    def save(self, path: Path) -> None:
        """Write the arrays and vocabularies to ``path`` (npz), atomically."""
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
        vocab = json.dumps({"classes": self.classes, "char": self.char_vocab, "word": self.word_vocab},
                           ensure_ascii=False)
        np.savez(tmp, vocab=np.frombuffer(vocab.encode(), dtype=np.uint8), idf=self.idf, coef=self.coef,
                 intercept=self.intercept)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "NgramModel":
        """The model saved at ``path``; a ValueError when the arrays do not fit together."""
        with np.load(path) as arrays:
            vocab = json.loads(arrays["vocab"].tobytes().decode())
            model = cls(vocab["classes"], vocab["char"], vocab["word"], arrays["idf"], arrays["coef"],
                        arrays["intercept"])
        columns = len(model.char_vocab) + len(model.word_vocab)
        if (model.coef.shape != (len(model.classes), columns) or model.idf.shape != (columns,)
                or model.intercept.shape != (len(model.classes),)):
            raise ValueError(f"{path}: arrays of mismatched shapes")
        return model


def fingerprint(texts: list[str], langs: list[str]) -> str:
    from importlib.metadata import version

    return hashlib.sha256(json.dumps([FIT_VERSION, FIT, version("scikit-learn"), texts, langs]).encode()).hexdigest()[:16]


def fit_and_save(texts: list[str], langs: list[str], path: str) -> NgramModel:
    model = NgramModel.fit(texts, langs)
    try:
        model.save(Path(path))
    except OSError as err:  # an unwritable cache: the model still serves, it is fitted again next start
        log.warning("n-gram language model not cached: %s", err)
    return model


def _fit_elsewhere(texts: list[str], langs: list[str], path: Path) -> None:
    script = "import json, sys; from chatbot.ngram import fit_and_save; fit_and_save(**json.load(sys.stdin))"
    done = subprocess.run([sys.executable, "-c", script], env=child_env(), capture_output=True, text=True,
                          timeout=FIT_TIMEOUT_S, input=json.dumps({"texts": texts, "langs": langs, "path": str(path)}))
    if done.returncode:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1])


def _load(path: Path) -> NgramModel | None:
    try:
        return NgramModel.load(path)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):  # missing or damaged
        return None


def load_or_fit(texts: list[str], langs: list[str]) -> NgramModel:
    """The model of these messages and their languages, from the cache, or fitted first (a few seconds)
    in a new interpreter, so that scikit-learn never loads in this process; also when the cached file
    is damaged. Where that fails (no writable cache, no Python to start), it is fitted here."""
    path = cache_dir() / "language" / f"ngram-{fingerprint(texts, langs)}.npz"
    if model := _load(path):
        return model
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _fit_elsewhere(texts, langs, path)
        if model := _load(path):
            return model
        raise RuntimeError("the fitted model was not saved")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
        log.warning("fitting the n-gram language model in another process failed (%s): fitting it here", err)
    return fit_and_save(texts, langs, str(path))
