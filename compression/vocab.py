"""Vocabulary trimming: keep only the embedding rows that the languages we serve can reach.

The input embedding E ∈ ℝ^{V×d} is a lookup table: for token i the model reads row E[i] and nothing
else (with tied weights E is also the LM head, which a classifier does not have). Gemma-3-270M has
V = 262,144 and d = 640, so E is 167.8 M of its 268.1 M parameters; most rows belong to scripts and
languages we never serve.

Keep a set K of ids, |K| = N, sorted, and a lookup m: {0..V−1} → {0..N−1} with m(K[j]) = j. Then

    E_K[m(i)] = E[i]   for every i ∈ K,

so for any input whose ids all lie in K the model receives bit-identical embeddings and returns
bit-identical logits. Ids outside K map to one fallback row (``<unk>`` by default): the message still
runs, each dropped piece reads as "unknown", the rest of it is untouched.

Which ids can a text produce? A subword tokenizer (BPE, Unigram, WordPiece, with byte fallback) cuts
the *normalised* text into pieces; each piece is a substring of it, or a byte token ``<0xNN>`` for a
character that has no piece of its own, or an added/special token matched literally. Hence, if every
character of a text lies in an alphabet A, every token it produces is either

* a string over A' (A closed under the tokenizer's normaliser, e.g. ' ' → '▁'),
* a byte-fallback token, or
* an added or special token,

and K = {tokens over A'} ∪ {byte tokens} ∪ {added and special tokens} keeps *every* such text exact,
whatever the merges are. For byte-level BPE (GPT-2, Llama 3, SmolLM2: token strings are bytes shown as
printable characters) a token is kept when its bytes can occur inside the UTF-8 encoding of a text over
A: complete characters in A, and at either end at most a partial character that completes to one in A.

A is built per language (:data:`LANGUAGE_LETTERS`) on a common Latin base: ASCII, Latin-1 (letters à–ÿ,
« » ¿ ¡ £ ° …), the Latin Extended-A letters of European names (:data:`NAMES`), General Punctuation
(dashes, typographic quotes, …, narrow no-break space), currency (€), a few symbols, the combining marks
that decompose these letters (text arriving in NFD) and, optionally, emoji. The alphabet is versioned (:data:`ALPHABET_VERSION`): a recorded trim is only
re-applied when the tokenizer and the alphabet give the same ids (a fingerprint of the kept tokens).

The surgery (:func:`trim_vocabulary`) keeps the model's own embedding module (so Gemma's √d scaling in
``Gemma3TextScaledWordEmbedding`` stays exactly as it was) with its weight cut to the kept rows, and
wraps it in :class:`TrimmedEmbedding`, which applies the lookup to ``input_ids``. Tokenizer, callers
and every id the model compares against (``pad_token_id`` for the classification head's last-token
pick, bos, eos) stay in the tokenizer's id space; ``config.vocab_size`` stays the size of that space.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

ALPHABET_VERSION = 1
"""Bumped whenever the alphabet below changes (a recorded trim then no longer re-applies)."""
LANGUAGES = ("en", "fr", "de", "nl", "es", "it", "pt")
TRIM_FILE = "vocab_trim.json"


def _chars(*ranges: tuple[int, int]) -> set[str]:
    return {chr(c) for lo, hi in ranges for c in range(lo, hi + 1)}


COMMON = (
    _chars((0x20, 0x7E)) | {"\t", "\n", "\r"}  # ASCII
    | _chars((0xA0, 0xFF))  # Latin-1: à–ÿ, ß, ç, ñ, ã, õ, « » ¿ ¡ £ ¥ § ° ± µ × ÷, no-break space
    | _chars((0x2000, 0x206F))  # General Punctuation: spaces, – —, ‘ ’ ‚ “ ” „, • … ‰ ‹ ›, U+202F
    | _chars((0x20A0, 0x20C0))  # Currency symbols: € and the rest of the block
    | set("™№−≈≠≤≥←↑→↓")  # a few symbols customers type
)
"""Characters shared by all seven languages."""

LANGUAGE_LETTERS = {
    "en": "",
    "fr": "ŒœŸ",  # ÿ, «», à â ç é è ê ë î ï ô ù û ü are Latin-1
    "de": "ẞ",  # capital sharp s; ä ö ü ß are Latin-1
    "nl": "Ĳĳ",  # the ij ligature (rare); ë ï é are Latin-1
    "es": "",  # á é í ó ú ñ ü ¿ ¡ are Latin-1
    "it": "",
    "pt": "",  # ã õ ç â ê ô á é í ó ú à ª º are Latin-1
}
"""Letters a language needs beyond :data:`COMMON`."""

NAMES = _chars((0x100, 0x17F), (0x218, 0x21B))
"""Latin Extended-A and Romanian ș ț: the letters of European names and addresses (Łukasz Wiśniewski,
Dvořák, Erdős, Ștefan, Yılmaz) that customers of all seven languages write. Kept for every language:
3,001 more Gemma rows (1.9 M parameters); without them, appending a Polish name to each message of our
test split changed the top-1 intent of 4.2 % of them (each dropped piece reads as <unk>)."""

EMOJI = _chars((0x1F000, 0x1FAFF), (0x2190, 0x21FF), (0x2300, 0x23FF), (0x25A0, 0x27BF), (0x2B00, 0x2BFF),
               (0xFE0E, 0xFE0F), (0x20E3, 0x20E3), (0xE0020, 0xE007F), (0x3030, 0x3030), (0x303D, 0x303D),
               (0x3297, 0x3297), (0x3299, 0x3299))
"""Emoji and pictographs, with their variation selectors, keycap and tag characters (ZWJ is in COMMON)."""

SPACE_MARK = "▁"
"""SentencePiece's space marker (U+2581): a token's '▁' stands for a space."""

_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def alphabet(languages: Iterable[str] = LANGUAGES, emoji: bool = True) -> frozenset[str]:
    """The characters text in ``languages`` is written with, plus the combining marks their letters
    decompose into (NFD input) and, when ``emoji``, emoji."""
    languages = list(languages)
    unknown = [lang for lang in languages if lang not in LANGUAGE_LETTERS]
    if unknown or not languages:
        raise ValueError(f"unsupported language(s) {unknown}; supported: {', '.join(LANGUAGE_LETTERS)}")
    chars = set(COMMON) | NAMES | {c for lang in languages for c in LANGUAGE_LETTERS[lang]} | {SPACE_MARK}
    chars |= {m for c in list(chars) for m in unicodedata.normalize("NFD", c) if unicodedata.combining(m)}
    if emoji:
        chars |= EMOJI
    return frozenset(chars)


# --- which ids to keep ------------------------------------------------------------------------------

def _tokenizer_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError("vocabulary trimming needs a fast (tokenizers-backed) tokenizer")
    return json.loads(backend.to_str())


def _has_type(node, name: str) -> bool:
    """True when a tokenizer.json component (possibly a Sequence) contains a step of type ``name``."""
    if isinstance(node, dict):
        return node.get("type") == name or any(_has_type(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_has_type(v, name) for v in node)
    return False


def _closed_under_normaliser(tokenizer, chars: frozenset[str]) -> frozenset[str]:
    """A ∪ {characters the tokenizer's normaliser turns each character of A into} (' ' → '▁', NFKC …)."""
    normaliser = tokenizer.backend_tokenizer.normalizer
    if normaliser is None:
        return chars
    return frozenset(chars | {n for c in chars for n in normaliser.normalize_str(c)})


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes → printable characters table (byte-level BPE token strings)."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    codes, extra = list(visible), 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(visible, codes)}


class _ByteRule:
    """Can a byte string occur inside the UTF-8 encoding of a text over an alphabet?"""

    def __init__(self, chars: frozenset[str]):
        self.chars = chars
        encodings = [c.encode() for c in chars]
        self.heads = {e[:k] for e in encodings for k in range(1, len(e))}  # a character's first bytes
        self.tails = {e[k:] for e in encodings for k in range(1, len(e))}  # its last bytes
        self.inner = {e[i:j] for e in encodings for i in range(len(e)) for j in range(i + 1, len(e) + 1)}

    def __call__(self, data: bytes) -> bool:
        if data in self.inner:
            return True
        for k in range(0, min(3, len(data)) + 1):  # bytes ending a character that began before
            if k and data[:k] not in self.tails:
                continue
            for j in range(0, min(3, len(data) - k) + 1):  # bytes starting a character cut off after
                if j and data[len(data) - j:] not in self.heads:
                    continue
                try:
                    middle = data[k:len(data) - j].decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if all(c in self.chars for c in middle):
                    return True
        return False


def kept_token_ids(tokenizer, languages: Iterable[str] = LANGUAGES, emoji: bool = True,
                   drop_pattern: str | None = None) -> list[int]:
    """Sorted ids every text in ``languages`` can produce: tokens over their alphabet, byte tokens,
    added and special tokens. ``drop_pattern`` (a regex on token strings, e.g. ``<unused\\d+>``) drops
    matching added tokens anyway; a text that spells one out then reads it as the fallback."""
    info = _tokenizer_json(tokenizer)
    chars = _closed_under_normaliser(tokenizer, alphabet(languages, emoji))
    byte_level = _has_type(info.get("pre_tokenizer"), "ByteLevel") or _has_type(info.get("decoder"), "ByteLevel")
    byte_rule, byte_of = (_ByteRule(chars), _byte_decoder()) if byte_level else (None, None)
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    drop = re.compile(drop_pattern) if drop_pattern else None
    kept = []
    for token, i in tokenizer.get_vocab().items():
        if i in special:
            keep = not (drop and drop.fullmatch(token)) or i in tokenizer.all_special_ids
        elif _BYTE_TOKEN.match(token):
            keep = True
        elif byte_level:
            data = bytes(byte_of[c] for c in token) if all(c in byte_of for c in token) else None
            keep = data is not None and (len(data) == 1 or byte_rule(data))
        else:
            keep = all(c in chars for c in token)
        if keep:
            kept.append(i)
    kept.sort()
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"):
        i = getattr(tokenizer, name, None)
        assert i is None or i in set(kept), f"{name} {i} must be kept"
    return kept


def check_corpus(tokenizer, kept: Iterable[int], texts: Iterable[str], max_examples: int = 10) -> dict:
    """Tokenise ``texts`` and count the ids that fall outside ``kept`` (with examples)."""
    kept = set(kept)
    n_texts = n_tokens = outside = 0
    examples = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        n_texts += 1
        n_tokens += len(ids)
        missing = [i for i in ids if i not in kept]
        outside += len(missing)
        if missing and len(examples) < max_examples:
            examples.append({"text": text, "tokens": tokenizer.convert_ids_to_tokens(missing)})
    return {"texts": n_texts, "tokens": n_tokens, "outside": outside, "examples": examples}


# --- the surgery --------------------------------------------------------------------------------------

class TrimmedEmbedding(nn.Module):
    """An input embedding cut to the kept rows, addressed in the original id space:
    ``forward(ids) = embedding(lookup[ids])``; ``embedding`` is the model's own module (same class,
    same scaling), its weight holding the kept rows in id order."""

    def __init__(self, embedding: nn.Embedding, lookup: torch.Tensor):
        super().__init__()
        assert lookup.dtype == torch.long and lookup.dim() == 1
        assert int(lookup.min()) >= 0 and int(lookup.max()) < embedding.num_embeddings
        self.embedding = embedding
        self.register_buffer("lookup", lookup)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.lookup[input_ids])

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    @property
    def num_embeddings(self) -> int:
        """Size of the id space accepted (the tokenizer's), not of the table."""
        return self.lookup.numel()

    @property
    def embedding_dim(self) -> int:
        return self.embedding.embedding_dim

    def extra_repr(self) -> str:
        return f"ids={self.lookup.numel()}, rows={self.embedding.num_embeddings}"


def trim_vocabulary(model: nn.Module, kept: list[int], fallback_id: int) -> dict:
    """Cut ``model``'s input embedding to the rows ``kept`` (sorted ids) in place; ids not kept read
    the row of ``fallback_id`` (which must be kept). Returns rows and parameters before/after."""
    if getattr(model, "get_output_embeddings", lambda: None)() is not None:
        raise ValueError("this model has an LM head; trimming would also need its output rows mapped back "
                         "(only classifiers and encoders are trimmed)")
    old = model.get_input_embeddings()
    if isinstance(old, TrimmedEmbedding):
        raise ValueError("the vocabulary of this model is already trimmed")
    if not isinstance(old, nn.Embedding):
        raise TypeError(f"input embedding is a {type(old).__name__}, not an nn.Embedding")
    rows = old.num_embeddings
    ids = torch.tensor(kept, dtype=torch.long)
    assert ids.numel() > 0 and bool((ids[1:] > ids[:-1]).all()), "kept ids must be sorted and distinct"
    assert int(ids[0]) >= 0 and int(ids[-1]) < rows, "kept ids out of the embedding's range"
    vocab_size = getattr(model.config, "vocab_size", rows)
    assert vocab_size == rows, f"config.vocab_size {vocab_size} ≠ embedding rows {rows}"
    fallback = int(torch.searchsorted(ids, fallback_id))
    assert fallback < ids.numel() and int(ids[fallback]) == fallback_id, f"fallback id {fallback_id} must be kept"
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        special = getattr(model.config, name, None)
        specials = special if isinstance(special, list) else [special]
        for s in specials:
            assert s is None or bool((ids == s).any()), f"config.{name} {s} must be kept"

    lookup = torch.full((rows,), fallback, dtype=torch.long, device=old.weight.device)
    lookup[ids.to(lookup.device)] = torch.arange(ids.numel(), device=lookup.device)
    with torch.no_grad():
        table = old.weight.detach()[ids.to(old.weight.device)].clone()
    requires_grad = old.weight.requires_grad
    old.weight = nn.Parameter(table, requires_grad=requires_grad)
    old.num_embeddings = ids.numel()
    if old.padding_idx is not None:
        keep_pad = bool((ids == old.padding_idx).any())
        old.padding_idx = int(lookup[old.padding_idx]) if keep_pad else None
    new = TrimmedEmbedding(old, lookup)
    model.set_input_embeddings(new)
    assert model.get_input_embeddings() is new
    d = old.embedding_dim
    return {"rows_before": rows, "rows_after": ids.numel(), "params_before": rows * d,
            "params_after": ids.numel() * d, "lookup_entries": rows}


def is_trimmed(model: nn.Module) -> bool:
    return isinstance(model.get_input_embeddings(), TrimmedEmbedding)


# --- recipes: record a trim, re-apply it --------------------------------------------------------------

def fingerprint(tokenizer, kept: list[int]) -> str:
    """SHA-256 (16 hex digits) of the kept ids and their token strings: the same alphabet applied to
    another tokenizer gives another fingerprint."""
    tokens = tokenizer.convert_ids_to_tokens(kept)
    payload = "\n".join(f"{i}\t{t}" for i, t in zip(kept, tokens))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _fallback_id(tokenizer, fallback: str | None) -> int:
    token = fallback or tokenizer.unk_token
    if token is None:
        raise ValueError("the tokenizer has no unk token; name a fallback token")
    i = tokenizer.convert_tokens_to_ids(token)
    if i is None or tokenizer.convert_ids_to_tokens(i) != token:
        raise ValueError(f"fallback token {token!r} is not in the vocabulary")
    return i


def trim_recipe(tokenizer, languages: Iterable[str] = LANGUAGES, emoji: bool = True, drop_pattern: str | None = None,
                fallback: str | None = None) -> tuple[dict, list[int]]:
    """The kept ids for ``languages`` and the recipe that records them."""
    languages = sorted(languages)
    kept = kept_token_ids(tokenizer, languages, emoji, drop_pattern)
    fallback_token = fallback or tokenizer.unk_token
    _fallback_id(tokenizer, fallback_token)
    recipe = {"languages": languages, "emoji": emoji, "drop_pattern": drop_pattern, "fallback": fallback_token,
              "alphabet": ALPHABET_VERSION, "vocab": len(tokenizer.get_vocab()), "kept": len(kept),
              "fingerprint": fingerprint(tokenizer, kept)}
    return recipe, kept


def apply_trim(model: nn.Module, tokenizer, recipe: dict) -> dict:
    """Recompute the kept ids from ``tokenizer`` as ``recipe`` says, check that they are the recorded
    ones, and trim ``model``. Returns :func:`trim_vocabulary`'s report."""
    if recipe.get("alphabet") != ALPHABET_VERSION:
        raise ValueError(f"this trim was recorded with alphabet version {recipe.get('alphabet')}, "
                         f"this code has {ALPHABET_VERSION}; re-trim and retrain")
    again, kept = trim_recipe(tokenizer, recipe["languages"], recipe["emoji"], recipe.get("drop_pattern"),
                              recipe.get("fallback"))
    if (again["kept"], again["fingerprint"]) != (recipe["kept"], recipe["fingerprint"]):
        raise ValueError(f"the tokenizer gives other kept ids than recorded ({again['kept']} ids, "
                         f"{again['fingerprint']} against {recipe['kept']}, {recipe['fingerprint']})")
    return trim_vocabulary(model, kept, _fallback_id(tokenizer, recipe.get("fallback")))


# --- a trim learnt from a corpus: exact on it, re-segmenting the rest -----------------------------------

def _bpe(tokenizer) -> tuple[dict, dict[str, int], list[tuple[str, str]]]:
    """(tokenizer.json, vocabulary, merges in rank order); a word-level tokenizer has no merges."""
    data = _tokenizer_json(tokenizer)
    model = data["model"]
    if model.get("type") not in ("BPE", "WordLevel"):
        raise ValueError(f"a corpus trim needs a BPE or word-level tokenizer, not {model.get('type')}")
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model.get("merges", [])]
    return data, model["vocab"], merges


def _merge_pieces(token: str, rank: dict[tuple[str, str], int], vocab: dict[str, int]) -> set[str]:
    """Every piece BPE forms on its way from ``token``'s characters to ``token`` (itself included).

    Inside any text, a token of the final segmentation is built only by merges within its own span
    (a merge across its boundary would have made a token across it), and those merges run in rank
    order, as they do on the token's string alone: these are the pieces it passes through."""
    pieces = list(token)
    formed = {p for p in pieces if p in vocab} | {token}
    while len(pieces) > 1:
        best, j = min((rank.get((pieces[k], pieces[k + 1]), len(rank)), k) for k in range(len(pieces) - 1))
        if best == len(rank):
            break
        pieces[j:j + 2] = [pieces[j] + pieces[j + 1]]
        formed.add(pieces[j])
    return formed


def corpus_kept_ids(tokenizer, texts: Iterable[str], languages: Iterable[str] = LANGUAGES,
                    emoji: bool = True) -> list[int]:
    """Ids to keep so that every text of the corpus tokenises exactly as before and any other text
    still tokenises to kept ids (with :func:`prune_tokenizer`): the ids the corpus uses, every piece
    BPE builds them from, the single characters of the languages' alphabet, the byte-fallback tokens
    and the special tokens.

    With the merges cut to the kept pieces, BPE on a corpus text makes the same choices as before:
    at every step the merge it chose is still there and no better one was added. Other text ends in
    smaller kept pieces, down to characters and bytes, instead of reading as unknown."""
    _, vocab, merges = _bpe(tokenizer)
    rank = {m: i for i, m in enumerate(merges)}
    id_to_token = {i: s for s, i in vocab.items()}
    used: set[int] = set()
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        used.update(ids)
    keep: set[str] = set()
    for i in used:
        if (token := id_to_token.get(i)) is not None:
            keep |= _merge_pieces(token, rank, vocab)
    chars = _closed_under_normaliser(tokenizer, alphabet(languages, emoji))
    keep |= {s for s in vocab if (len(s) == 1 and s in chars) or _BYTE_TOKEN.match(s)}
    special = set(tokenizer.all_special_ids) | {i for i in used if i not in id_to_token}
    return sorted({vocab[s] for s in keep} | special)


def prune_tokenizer(tokenizer, kept: list[int]):
    """A copy of a BPE tokenizer that only ever produces ``kept`` ids: its vocabulary, merges and
    added tokens cut to them (ids keep their numbers; the model maps them through its lookup)."""
    import copy

    from tokenizers import Tokenizer

    data, vocab, merges = _bpe(tokenizer)
    keep = set(kept)
    names = {s: i for s, i in vocab.items() if i in keep}
    data["model"]["vocab"] = names
    if "merges" in data["model"]:
        data["model"]["merges"] = [[a, b] for a, b in merges if a in names and b in names and a + b in names]
    data["added_tokens"] = [t for t in data.get("added_tokens", []) if t["id"] in keep]
    pruned = copy.deepcopy(tokenizer)
    pruned._tokenizer = Tokenizer.from_str(json.dumps(data))
    return pruned


def corpus_recipe(tokenizer, kept: list[int], corpora: list[str], languages: Iterable[str] = LANGUAGES,
                  fallback: str | None = None) -> dict:
    """What records a corpus trim: the corpora it was learnt from and the kept ids' fingerprint."""
    fallback_token = fallback or tokenizer.unk_token
    _fallback_id(tokenizer, fallback_token)
    return {"kind": "corpus", "languages": sorted(languages), "corpora": list(corpora), "fallback": fallback_token,
            "vocab": len(tokenizer.get_vocab()), "kept": len(kept), "fingerprint": fingerprint(tokenizer, kept)}


def apply_corpus_trim(model: nn.Module, tokenizer, recipe: dict, kept: list[int]):
    """Trim ``model``'s embedding to ``kept`` (checked against the recipe's fingerprint) and return
    the pruned tokenizer that goes with it, and :func:`trim_vocabulary`'s report."""
    if (len(kept), fingerprint(tokenizer, kept)) != (recipe["kept"], recipe["fingerprint"]):
        raise ValueError("the kept ids do not match this tokenizer as recorded (another base or tokenizer?)")
    report = trim_vocabulary(model, kept, _fallback_id(tokenizer, recipe.get("fallback")))
    return prune_tokenizer(tokenizer, kept), report


def _pack(kept: list[int], size: int) -> str:
    bits = bytearray((size + 7) // 8)
    for i in kept:
        bits[i >> 3] |= 1 << (i & 7)
    return base64.b64encode(bytes(bits)).decode()


def _unpack(data: str, size: int) -> list[int]:
    bits = base64.b64decode(data)
    return [i for i in range(size) if bits[i >> 3] >> (i & 7) & 1]


def save_trim(folder: str | Path, recipe: dict, kept: list[int]) -> Path:
    """``vocab_trim.json`` in ``folder``: the recipe and the kept ids as a bitmap (base64, 44 KB for
    Gemma's 262k ids)."""
    assert len(kept) == recipe["kept"]
    path = Path(folder) / TRIM_FILE
    path.write_text(json.dumps({"recipe": recipe, "kept_bitmap": _pack(kept, recipe["vocab"])}, indent=1))
    return path


def load_trim(folder: str | Path) -> tuple[dict, list[int]] | None:
    """(recipe, kept ids) recorded in ``folder``, or None when it records no trim."""
    path = Path(folder) / TRIM_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        recipe = info["recipe"]
        kept = _unpack(info["kept_bitmap"], recipe["vocab"])
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{path} is damaged ({err})") from None
    if len(kept) != recipe["kept"]:
        raise ValueError(f"{path} is damaged (bitmap holds {len(kept)} ids, recipe says {recipe['kept']})")
    return recipe, kept
