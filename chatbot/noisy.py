"""Noisy copies of training messages: a transfer set for distillation.

An ensemble of classifiers beats its members on messages they never saw, where they disagree; on
their own training messages they all agree with the label, so distilling there passes on little
more than the labels. Copies of the training messages written the way customers slip (a word left
out, two words swapped, a letter dropped, doubled, swapped or hit next to the right key) lie just
off the training data, where the teachers' soft targets say more. A copy learns from the teachers
alone (``chatbot.train``: weight 1 on its soft targets, none on the label, which a dropped word may
have made wrong).

Each copy applies one or two of these edits, drawn by a seeded ``random.Random``; a message with no
word long enough to edit comes back unchanged. The edits work on any script that separates words
with spaces; they do not know the language.
"""

from __future__ import annotations

import random

from chatbot.data import Example

NOISY = "noisy"
"""The split name of a noisy copy (:class:`chatbot.data.Example`): it learns from the teachers alone."""

KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm"
"""Rows of a QWERTY keyboard: a typo hits a letter beside the right one."""


def _beside(letter: str, rng: random.Random) -> str:
    for row in KEYBOARD.split():
        if letter.lower() in row:
            i = row.index(letter.lower())
            return rng.choice([row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)])
    return letter


def typo(word: str, rng: random.Random) -> str:
    """``word`` with one letter dropped, doubled, swapped with the next or replaced by a neighbour key."""
    i = rng.randrange(1, len(word) - 1)  # never the first letter: people rarely miss it
    kind = rng.choice(("drop", "double", "swap", "key"))
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + _beside(word[i], rng) + word[i + 1:]


def noisy_copy(text: str, rng: random.Random) -> str:
    """``text`` with one or two edits: a typo in a word of four letters or more, a word of three or
    more left out (messages of four words or more), or two neighbouring words swapped."""
    words = text.split()
    for _ in range(rng.choice((1, 2))):
        long_ = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        edits = ["typo"] * bool(long_) + ["drop"] * (len(words) >= 4) + ["swap"] * (len(words) >= 2)
        if not edits:
            break
        edit = rng.choice(edits)
        if edit == "typo":
            i = rng.choice(long_)
            words[i] = typo(words[i], rng)
        elif edit == "drop":
            del words[rng.choice([i for i, w in enumerate(words) if len(w) >= 3] or [0])]
        else:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def noisy_copies(examples: list[Example], copies: int, seed: int = 0) -> list[Example]:
    """``copies`` noisy copies of each example (split :data:`NOISY`, same intent and language),
    leaving out any that came back unchanged or that equal a message of ``examples``."""
    rng = random.Random(seed)
    seen = {e.text for e in examples}
    out = []
    for e in examples:
        for _ in range(copies):
            text = noisy_copy(e.text, rng)
            if text not in seen:
                seen.add(text)
                out.append(Example(text, e.intent, e.lang, NOISY))
    return out
