"""Language detection for short chat messages: langdetect, made deterministic, restricted and primed.

Chat messages are short ("remboursement?", "order 5512"), where any n-gram detector guesses. The
detector here:

* is deterministic: langdetect's sampling is seeded for every call;
* scores only the supported languages, mixing three detectors restricted to them: langdetect (its
  own prior map), lingua-language-detector (far better on short text) and a character n-gram model
  fitted on our own customer messages;
* strips what carries no language (numbers, e-mail addresses, URLs, order ids, emoji) first, and
  never decides anything from a message that has no words left;
* knows the small talk of each language (:mod:`chatbot.small_talk`: greetings, thanks, yes, no…): a
  message made only of it ("danke", "vielen dank", "merci", "hoi") is in the language its phrases are
  written in, over the default and over a browser language whose speakers do not use them (a Flemish
  browser's "merci" stays Dutch; "hallo", German or Dutch, is in the browser's language if it is one
  of those), never over the conversation's (a Dutch customer's "danke" stays Dutch, and so do "nee"
  and "merci", which Dutch speakers say too); words every language uses ("ok", "hi", "super") keep
  the prior;
* falls back on priors when the text is short or the scores are close: the language already
  established in the conversation, then the browser's Accept-Language, then a configured default
  (also for a short first message the detectors are unsure of, with neither of the others);
* says ``unsupported`` when the text is written mostly in a script none of the supported languages
  uses (Japanese, Chinese, Korean, Cyrillic, Arabic, Hebrew, Greek, Thai, Indic…), however short, or
  when the unrestricted langdetect is confident the text is another language, unless the supported
  detectors too put first, at 0.5 or more, the language the conversation or browser already gave
  (texting-style French is French).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from chatbot.settings import INTENT_DATA, LANGUAGES, absolute
from chatbot.small_talk import recognise

_NO_LANGUAGE = re.compile(
    r"\S+@\S+|https?://\S+|www\.\S+|#?[A-Za-z]{0,3}[-#]?\d[\w\-/#.]*|[^\w\s]|_", re.UNICODE
)
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


@dataclass(frozen=True)
class Detection:
    lang: str
    """The language to answer in (always a supported one)."""
    confidence: float
    """The detector's score of ``lang`` on this text (0 when a prior decided, 1 when the phrases of one
    language did)."""
    source: str
    """detected, phrase (small talk only, :mod:`chatbot.small_talk`), conversation, browser or default:
    what decided ``lang``."""
    unsupported: str | None = None
    """The language code when the text is confidently a language we do not support."""
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"lang": self.lang, "confidence": round(self.confidence, 4), "source": self.source,
                "unsupported": self.unsupported}


def parse_accept_language(header: str | None, supported: tuple[str, ...] = LANGUAGES) -> str | None:
    """The first supported language of an Accept-Language header, by q-value ("fr-CH,fr;q=0.9,en;q=0.8")."""
    if not header:
        return None
    ranked = []
    for i, part in enumerate(header.split(",")):
        pieces = part.strip().split(";")
        code = pieces[0].strip().lower().split("-")[0]
        q = 1.0
        for p in pieces[1:]:
            if p.strip().startswith("q="):
                try:
                    q = float(p.strip()[2:])
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, code))
    for _, _, code in sorted(ranked):
        if code in supported:
            return code
    return None


_SCRIPTS = (("HIRAGANA", "ja"), ("KATAKANA", "ja"), ("HALFWIDTH KATAKANA", "ja"), ("HANGUL", "ko"),
            ("CJK", "zh"), ("CYRILLIC", "ru"), ("ARABIC", "ar"), ("HEBREW", "he"), ("GREEK", "el"),
            ("THAI", "th"), ("DEVANAGARI", "hi"), ("BENGALI", "bn"), ("TAMIL", "ta"), ("ARMENIAN", "hy"),
            ("GEORGIAN", "ka"))
"""Unicode letter-name prefixes of scripts none of the supported languages is written in, and the
language reported for each (Cyrillic is refined by langdetect: ru, uk, bg…)."""


_CYRILLIC = ("ru", "uk", "bg", "mk", "sr")


def foreign_script(text: str) -> str | None:
    """The language code of the non-Latin script most of the letters of ``text`` are written in
    (``ja`` as soon as there is kana among Chinese characters), or None when most letters are Latin."""
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) < 2:
        return None
    found = Counter()
    for ch in letters:
        name = unicodedata.name(ch, "")
        code = next((code for prefix, code in _SCRIPTS if name.startswith(prefix)), None)
        if code is None and not name.startswith(("LATIN", "FULLWIDTH LATIN")) and name:
            code = "other"
        if code:
            found[code] += 1
    if 2 * sum(found.values()) <= len(letters):
        return None
    if found["ja"]:
        return "ja"
    return found.most_common(1)[0][0]


def strip_non_language(text: str) -> str:
    """The text without numbers, ids, e-mail addresses, URLs, punctuation and emoji."""
    return " ".join(_NO_LANGUAGE.sub(" ", text).split())


@dataclass
class LanguageDetector:
    supported: tuple[str, ...] = LANGUAGES
    """Languages we answer in."""
    default: str = "en"
    """Language used when nothing else decides."""
    confident: float = 0.80
    """A detection at least this sure overrides the conversation's language."""
    short_words: int = 3
    """Messages with fewer words than this lean on the priors..."""
    confident_short: float = 0.98
    """...unless the detection is at least this sure."""
    weak_first: float = 0.4
    """A short message with nothing known about the customer (no conversation, no supported browser
    language) detected less sure than this is answered in ``default``: one word ("hello" scores it
    0.39, "agent" fr 0.34) is too little to pick another language from."""
    unsupported_confidence: float = 0.95
    """Unrestricted langdetect must give unsupported languages this much probability to say so."""
    unsupported_min_words: int = 4
    """...and the message must have at least this many words."""
    use_lingua: bool = True
    """Combine with lingua-language-detector when it is installed."""
    seed: int = 0
    """langdetect's seed (it samples n-grams)."""

    def __post_init__(self):
        self.supported = tuple(self.supported)
        if self.default not in self.supported:
            raise ValueError(f"default language {self.default!r} is not among the supported ones")
        if not 0 < self.confident <= 1:
            raise ValueError("confident must be in (0, 1]")

    def warm_up(self) -> "LanguageDetector":
        """Build the detectors now (a few seconds) rather than on a customer's first message."""
        self.scores("warm up")
        return self

    # -- the underlying detectors ---------------------------------------------------------------
    @cached_property
    def _factory(self):
        from langdetect.detector_factory import init_factory

        init_factory()
        from langdetect import detector_factory

        return detector_factory._factory

    def _langdetect(self, text: str, restricted: bool) -> dict[str, float]:
        from langdetect.lang_detect_exception import LangDetectException

        detector = self._factory.create()
        detector.seed = self.seed  # deterministic
        if restricted:
            detector.set_prior_map({lang: (1.0 if lang in self.supported else 0.0)
                                    for lang in self._factory.get_lang_list()})
        detector.append(text)
        try:
            return {p.lang.split("-")[0]: p.prob for p in detector.get_probabilities()}
        except LangDetectException:
            return {}

    @cached_property
    def _lingua(self):
        if not self.use_lingua:
            return None
        try:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
        except ImportError:
            return None
        languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in self.supported]
        return LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()

    def _lingua_scores(self, text: str) -> dict[str, float]:
        if self._lingua is None:
            return {}
        return {c.language.iso_code_639_1.name.lower(): c.value
                for c in self._lingua.compute_language_confidence_values(text)}

    @cached_property
    def _ngram(self):
        """Character 1–5-gram and word model fitted on our own messages in ``assets/data``: it knows how
        customers write in each language (:mod:`chatbot.ngram`; fitted once and cached)."""
        from chatbot.data import load_dataset
        from chatbot.ngram import load_or_fit

        examples = [e for e in load_dataset(sorted(absolute(INTENT_DATA))).examples if e.lang in self.supported]
        if len({e.lang for e in examples}) < 2:
            return None
        return load_or_fit([strip_non_language(e.text) for e in examples], [e.lang for e in examples])

    def _ngram_scores(self, text: str) -> dict[str, float]:
        if self._ngram is None:
            return {}
        return self._ngram.probabilities(text)

    def scores(self, text: str) -> dict[str, float]:
        """Scores over the supported languages (summing to 1) for text already stripped of non-language.

        A log-linear mix: lingua + 0.5 × our n-gram model + 0.1 × langdetect (restricted, smoothed:
        its probabilities are near 0 or 1 on short text). Weights chosen on MASSIVE *train*; see
        docs/benchmarks.md for the dev-split comparison.
        """
        parts = [(self._lingua_scores(text), 1.0, 1e-6), (self._ngram_scores(text), 0.5, 1e-3),
                 (self._langdetect(text, restricted=True), 0.1, 0.2)]
        parts = [(scores, weight, eps) for scores, weight, eps in parts if scores]
        if not parts:
            return {}
        logits = {lang: sum(w * math.log(sc.get(lang, 0.0) + eps) for sc, w, eps in parts) for lang in self.supported}
        top = max(logits.values())
        exp = {lang: math.exp(v - top) for lang, v in logits.items()}
        total = sum(exp.values())
        # Rounded: lingua's multi-threaded sums differ in the last bits from call to call.
        return {lang: round(v / total, 6) for lang, v in exp.items()}

    # -- the decision ---------------------------------------------------------------------------
    def detect(self, text: str, conversation: str | None = None, accept_language: str | None = None) -> Detection:
        """The language to answer ``text`` in, given what is already known about the customer."""
        prior, source = self._prior(conversation, accept_language)
        clean = strip_non_language(text or "")
        words = _WORD.findall(clean)
        if not words:
            return Detection(prior, 0.0, source)
        script = foreign_script(clean)
        if script:  # however short: no supported language is written this way
            if script == "ru" and len(words) >= self.unsupported_min_words:  # which Cyrillic language
                full = {lang: p for lang, p in self._langdetect(clean, restricted=False).items() if lang in _CYRILLIC}
                script = next((lang for lang, p in full.items() if p >= 0.9), script)
            return Detection(prior, 0.0, source, unsupported=script)
        phrase = recognise(clean)
        decided = self._by_phrase(phrase, prior, source) if phrase else None
        if decided:
            return decided
        scores = self.scores(clean)
        if not scores:
            return Detection(prior, 0.0, source)
        best = max(scores, key=scores.get)
        # Slang in the customer's own language ("slt jveu anulé ma cmd": langdetect says Romanian) is
        # theirs when the supported detectors put that language first too.
        theirs = source != "default" and best == prior and scores[best] >= 0.5
        unsupported = None if theirs else self._unsupported(clean, len(words), scores[best])
        if unsupported:
            return Detection(prior, scores[best], source, unsupported=unsupported, scores=scores)
        short = len(words) < self.short_words
        if source == "default":  # nothing known about the customer: the detection decides, if it can
            if short and scores[best] < self.weak_first:
                return Detection(prior, scores[best], source, scores=scores)
            return Detection(best, scores[best], "detected", scores=scores)
        if scores[best] >= (self.confident_short if short else self.confident):
            return Detection(best, scores[best], "detected", scores=scores)
        if not short and scores[best] > 2 * scores.get(prior, 0.0):
            return Detection(best, scores[best], "detected", scores=scores)
        return Detection(prior, scores.get(prior, 0.0), source, scores=scores)

    def _by_phrase(self, phrase, prior: str, source: str) -> Detection | None:
        """A message of small talk only (:class:`chatbot.small_talk.SmallTalk`): the conversation's or the
        browser's language if its speakers use those phrases ("merci" in Flemish, "nee" in Dutch), else,
        over a browser language or the default, the one language they are written in; None when the
        detectors decide, as for any message (a conversation in another language; "hallo", German or
        Dutch, that the browser does not settle). Words every language uses ("ok", "hi") keep the prior."""
        if not phrase.languages or (source in ("conversation", "browser") and prior in phrase.used_in):
            return Detection(prior, 0.0, source)
        languages = [lang for lang in phrase.languages if lang in self.supported]
        if source != "conversation" and len(languages) == 1:
            return Detection(languages[0], 1.0, "phrase")
        return None

    def _prior(self, conversation: str | None, accept_language: str | None) -> tuple[str, str]:
        if conversation in self.supported:
            return conversation, "conversation"
        browser = parse_accept_language(accept_language, self.supported)
        if browser:
            return browser, "browser"
        return self.default, "default"

    def _unsupported(self, clean: str, n_words: int, best_supported: float) -> str | None:
        if n_words < self.unsupported_min_words or best_supported >= 0.9:
            return None
        full = self._langdetect(clean, restricted=False)
        others = {lang: p for lang, p in full.items() if lang not in self.supported}
        if others and sum(others.values()) >= self.unsupported_confidence:
            return max(others, key=others.get)  # e.g. da 0.71 + no 0.29: confidently not ours
        return None


def score_detection(detector: LanguageDetector, path: str, split: str | None = None, limit: int | None = None,
                    compare: bool = False) -> dict:
    """Accuracy (overall and per language) of ``detector`` on a file with text,lang columns; with
    ``compare``, of raw langdetect, restricted langdetect and restricted lingua on the same rows."""
    import random
    import time

    from chatbot.data import read_rows

    rows = [r for r in read_rows(path, required=("text", "lang"))
            if r.get("lang") and (not split or r.get("split") == split)]
    if not rows:
        raise ValueError(f"{path}: no rows with a lang column" + (f" in split {split}" if split else ""))
    if limit and limit < len(rows):
        rows = random.Random(0).sample(rows, limit)
    systems = {"ours": lambda t: detector.detect(t).lang}
    if compare:
        top = lambda scores: max(scores, key=scores.get) if scores else detector.default  # noqa: E731
        systems["langdetect"] = lambda t: top(detector._langdetect(t, restricted=False))
        systems["langdetect_restricted"] = lambda t: top(detector._langdetect(t, restricted=True))
        systems["lingua_restricted"] = lambda t: top(detector._lingua_scores(t))
    results = {}
    for name, fn in systems.items():
        started = time.perf_counter()
        preds = [fn(r["text"]) for r in rows]
        per = {}
        for lang in sorted({r["lang"] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
            per[lang] = {"accuracy": sum(preds[i] == lang for i in idx) / len(idx), "n": len(idx)}
        results[name] = {"accuracy": sum(p == r["lang"] for p, r in zip(preds, rows)) / len(rows), "n": len(rows),
                         "per_language": per, "ms_per_message": 1000 * (time.perf_counter() - started) / len(rows)}
    report = dict(results.pop("ours"))
    report.update({"data": str(path), "split": split, "supported": list(detector.supported)})
    if results:
        report["baselines"] = results
    return report
