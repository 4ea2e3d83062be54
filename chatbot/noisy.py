"""Noisy copies of training messages: a transfer set for distillation.

An ensemble of classifiers beats its members on messages they never saw, where they disagree; on
their own training messages they all agree with the label, so distilling there passes on little
more than the labels. Copies of the training messages written the way customers slip (a word left
out, two words swapped, a letter dropped, doubled, swapped or hit next to the right key) lie just
off the training data, where the teachers' soft targets say more. A copy learns from the teachers
alone (``chatbot.train``: weight 1 on its soft targets, none on the label, which a dropped word may
have made wrong).

Each copy applies one or two of these edits, drawn by a seeded ``random.Random``: a typo in a word of
four letters or more (punctuation after it stays), a word of three characters or more left out
(messages of four words or more), two neighbouring words swapped. A one-word message with no word
long enough comes back unchanged, and is left out. The edits work on any script that separates words
with spaces; they do not know the language. A copy that equals a message of the data (any split, case
and spacing aside) or one the caller holds out (the evaluation data) is left out too.
"""

from __future__ import annotations

import random
import re

from chatbot.data import Example

NOISY = "noisy"
"""The split name of a noisy copy (:class:`chatbot.data.Example`): it learns from the teachers alone."""

KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"
"""Rows of a QWERTY keyboard: a typo hits a letter beside the right one."""

_WORD = re.compile(r"^([^\W\d_]+)([^\w]*)$")
"""A word of letters with the punctuation after it ("order?"): the letters get the typo."""


def _beside(letter: str, rng: random.Random) -> str:
    for row in KEYBOARD.split():
        if letter.lower() in row:
            i = row.index(letter.lower())
            return rng.choice([row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)])
    return letter


def typo(word: str, rng: random.Random) -> str:
    """``word`` (three letters or more) with one letter dropped, doubled, swapped with the next or
    replaced by a neighbour key; never the first letter. A swap of two equal letters or a letter with
    no QWERTY neighbour (ä, ñ) drops the letter instead, so the word always changes."""
    assert len(word) >= 3, word
    i = rng.randrange(1, len(word) - 1)  # never the first letter: people rarely miss it
    kind = rng.choice(("drop", "double", "swap", "key"))
    typed = {"double": lambda: word[:i] + word[i] + word[i:],
             "swap": lambda: word[:i] + word[i + 1] + word[i] + word[i + 2:],
             "key": lambda: word[:i] + _beside(word[i], rng) + word[i + 1:]}.get(kind, lambda: word)()
    return typed if typed != word else word[:i] + word[i + 1:]


def noisy_copy(text: str, rng: random.Random) -> str:
    """``text`` with one or two edits: a typo in a word of four letters or more, a word of three or
    more left out (messages of four words or more), or two neighbouring words swapped."""
    words = text.split()
    for _ in range(rng.choice((1, 2))):
        cores = [_WORD.match(w) for w in words]
        long_ = [i for i, m in enumerate(cores) if m and len(m[1]) >= 4]
        droppable = [i for i, w in enumerate(words) if len(w) >= 3] if len(words) >= 4 else []
        edits = ["typo"] * bool(long_) + ["drop"] * bool(droppable) + ["swap"] * (len(words) >= 2)
        if not edits:
            break
        edit = rng.choice(edits)
        if edit == "typo":
            i = rng.choice(long_)
            words[i] = typo(cores[i][1], rng) + cores[i][2]
        elif edit == "drop":
            del words[rng.choice(droppable)]
        else:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def noisy_copies(examples: list[Example], copies: int, seed: int = 0, exclude: set[str] = frozenset()) -> list[Example]:
    """``copies`` noisy copies of each example (split :data:`NOISY`, same intent and language), leaving
    out any that equals (case and spacing aside) a message of ``examples``, of ``exclude`` or an
    earlier copy, and so any that came back unchanged."""
    rng = random.Random(seed)
    seen = {_key(t) for t in exclude} | {_key(e.text) for e in examples}
    out = []
    for e in examples:
        for _ in range(copies):
            text = noisy_copy(e.text, rng)
            if (key := _key(text)) not in seen:
                seen.add(key)
                out.append(Example(text, e.intent, e.lang, NOISY))
    return out
