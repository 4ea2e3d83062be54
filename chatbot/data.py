"""Intent data: CSV or JSONL files with columns ``text,intent`` and optional ``lang``, ``split``.

Loading checks what users get wrong (missing columns, empty files, unknown encodings, a ``lang``
that is not a language code, intents with too few examples) and raises :class:`DataError` with a
message that names the file. Blank rows and duplicates are dropped and *reported* in
:attr:`Dataset.dropped`, never silently kept.

Rows without a ``split`` get one from a seeded, stratified split per (intent, language), so every
language keeps examples of every intent in train, dev and test.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "dev", "test")
MIN_EXAMPLES_PER_INTENT = 3
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*")
"""A ``lang`` value: an ISO 639 code, optionally with subtags as in BCP 47 (``en``, ``pt-br``, ``zh-hant``)."""


class DataError(ValueError):
    """A data file that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    lang: str = ""
    split: str = ""


@dataclass
class Dataset:
    examples: list[Example]
    dropped: dict[str, int] = field(default_factory=dict)
    """How many rows were dropped and why (``blank``, ``duplicate``, ``conflicting_label``)."""

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples if e.split == name]

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples})

    @property
    def languages(self) -> list[str]:
        return sorted({e.lang for e in self.examples if e.lang})


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a .csv or .jsonl file") from None
    utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))  # its NUL bytes are text, not a binary file's
    try:
        text = raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError:
        if b"\x00" in raw[:4096]:
            raise DataError(f"{path}: looks like a binary file, expected UTF-8 text (CSV or JSONL)") from None
        raise DataError(f"{path}: unknown text encoding; save the file as UTF-8") from None
    if "\x00" in text:
        raise DataError(f"{path}: looks like a binary file (a NUL character), expected UTF-8 text (CSV or JSONL)")
    return text


def _rows_from_csv(path: Path, text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise DataError(f"{path}: empty file (no header row)")
    return list(reader)


def _rows_from_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            rows.append({})
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: each line must be a JSON object")
        rows.append(row)
    return rows


def read_rows(path: str | Path, required: tuple[str, ...] = ("text", "intent")) -> list[dict]:
    """Raw rows of a CSV or JSONL file (by extension; ``.json`` is read as JSONL) that has the
    ``required`` columns."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: empty file")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = _rows_from_jsonl(path, text)
        columns = set().union(*(r.keys() for r in rows))
    else:
        rows = _rows_from_csv(path, text)
        columns = set(rows[0].keys()) if rows else set()
        columns |= set(csv.DictReader(io.StringIO(text)).fieldnames or [])
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(sorted(map(str, columns)))}")
    return rows


def _clean(value) -> str:
    return " ".join(str(value or "").split())


def load_dataset(
    paths: list[str | Path] | str | Path,
    seed: int = 0,
    min_examples: int = MIN_EXAMPLES_PER_INTENT,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> Dataset:
    """Read, clean and split one or more files into one :class:`Dataset`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    dropped: Counter = Counter()
    seen: dict[tuple[str, str], str] = {}
    examples: list[Example] = []
    for path in paths:
        for row in read_rows(path):
            if not all(isinstance(row.get(k), (str, int, float, type(None))) for k in ("text", "intent", "lang", "split")):
                dropped["not_text"] += 1  # a JSON list or object where a text belongs: never read as its repr
                continue
            text, intent = _clean(row.get("text")), _clean(row.get("intent"))
            if not text or not intent:
                dropped["blank"] += 1
                continue
            lang, split = _clean(row.get("lang")).lower().replace("_", "-"), _clean(row.get("split")).lower()
            if lang and not LANGUAGE_CODE.fullmatch(lang):
                raise DataError(f"{path}: {_clean(row.get('lang'))[:40]!r} is not a language code; "
                                "use ISO 639 codes such as en, fr or pt-br")
            if split and split not in SPLITS:
                split = {"validation": "dev", "val": "dev"}.get(split, split)
                if split not in SPLITS:
                    raise DataError(f"{path}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
            key = (text.lower(), lang)
            if key in seen:
                dropped["duplicate" if seen[key] == intent else "conflicting_label"] += 1
                continue
            seen[key] = intent
            examples.append(Example(text, intent, lang, split))
    if not examples:
        raise DataError(f"{', '.join(map(str, paths))}: no usable rows")
    counts = Counter(e.intent for e in examples)
    too_few = sorted(i for i, n in counts.items() if n < min_examples)
    if too_few:
        raise DataError(
            f"intent(s) with fewer than {min_examples} examples: "
            + ", ".join(f"{i} ({counts[i]})" for i in too_few)
        )
    return Dataset(assign_splits(examples, seed, fractions), dict(dropped))


def assign_splits(
    examples: list[Example], seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> list[Example]:
    """Give rows without a split one, stratified by (intent, language); rows with one keep it."""
    if all(e.split for e in examples):
        return examples
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        if not e.split:
            groups[(e.intent, e.lang)].append(i)
    rng = random.Random(seed)
    out = list(examples)
    for key in sorted(groups):
        idx = groups[key]
        rng.shuffle(idx)
        n = len(idx)
        n_dev = max(1, round(n * fractions[1])) if n >= 3 else 0
        n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
        for rank, i in enumerate(idx):
            split = "dev" if rank < n_dev else "test" if rank < n_dev + n_test else "train"
            e = out[i]
            out[i] = Example(e.text, e.intent, e.lang, split)
    return out


def limit_per_intent(examples: list[Example], k: int, seed: int = 0, per_language: bool = True) -> list[Example]:
    """At most ``k`` examples per intent (per intent and language when ``per_language``), seeded."""
    groups: dict[tuple, list[Example]] = defaultdict(list)
    for e in examples:
        groups[(e.intent, e.lang) if per_language else (e.intent,)].append(e)
    rng = random.Random(seed)
    out = []
    for key in sorted(groups):
        group = list(groups[key])
        rng.shuffle(group)
        out.extend(group[:k])
    return out


def stratified_sample(examples: list[Example], n: int, seed: int = 0) -> list[Example]:
    """Exactly ``min(n, len(examples))`` rows, spread over (intent, language) in proportion to their
    sizes (largest remainders get the rounding; ties broken by a seeded shuffle), each group sampled
    at random with ``seed``. Rows keep their original order."""
    if n >= len(examples):
        return list(examples)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        groups[(e.intent, e.lang)].append(i)
    rng = random.Random(seed)
    keys = sorted(groups)
    rng.shuffle(keys)
    share = {k: n * len(groups[k]) / len(examples) for k in keys}
    quota = {k: int(share[k]) for k in keys}
    for k in sorted(keys, key=lambda k: share[k] - quota[k], reverse=True)[: n - sum(quota.values())]:
        quota[k] += 1
    chosen = []
    for k in sorted(groups):
        chosen += rng.sample(groups[k], quota[k])
    return [examples[i] for i in sorted(chosen)]
