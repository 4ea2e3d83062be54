import random

from chatbot.data import Example
from chatbot.noisy import NOISY, noisy_copies, noisy_copy, typo


def test_a_typo_changes_one_letter_and_never_the_first():
    """A letter dropped or doubled, two neighbours swapped, or one replaced: one edit, never at the start."""
    rng, word = random.Random(0), "delivery"
    kinds = set()
    for _ in range(200):
        typed = typo(word, rng)
        assert typed != word and typed[0] == "d"
        if len(typed) == len(word):
            diff = [i for i, (a, b) in enumerate(zip(typed, word)) if a != b]
            swapped = len(diff) == 2 and diff[1] == diff[0] + 1 and typed[diff[0]] == word[diff[1]]
            assert len(diff) == 1 or swapped
            kinds.add("swap" if swapped else "key")
        else:
            longer, shorter = max(typed, word, key=len), min(typed, word, key=len)
            assert abs(len(typed) - len(word)) == 1
            assert any(longer[:i] + longer[i + 1:] == shorter for i in range(len(longer)))
            kinds.add("drop" if len(typed) < len(word) else "double")
    assert kinds == {"drop", "double", "swap", "key"}
    # letters with no QWERTY neighbour and swaps of equal letters still change the word
    assert all(typo(w, rng) != w for w in ("größe", "letter", "añño") for _ in range(50))


def test_a_noisy_copy_keeps_most_of_the_message():
    rng = random.Random(1)
    text = "where is my parcel I ordered last week"
    copies = [noisy_copy(text, rng) for _ in range(100)]
    assert sum(c != text for c in copies) >= 90  # an edit almost always changes something
    for copy in copies:  # at most two edits: at most two words gone or changed
        assert len(copy.split()) >= len(text.split()) - 2
        assert len(set(copy.split()) & set(text.split())) >= len(text.split()) - 4
    assert noisy_copy("ok", random.Random(0)) == "ok"  # nothing long enough to edit
    typed = {noisy_copy("order?", random.Random(seed)) for seed in range(30)}
    assert all(t.endswith("?") for t in typed) and len(typed) > 3  # the letters get the typo, not the "?"


def test_noisy_copies_are_new_messages_that_keep_the_intent_and_are_marked():
    examples = [Example("where is my parcel I ordered", "track_order", "en", "train"),
                Example("I want my money back please", "get_refund", "en", "train"), Example("ok", "ack", "en", "train")]
    copies = noisy_copies(examples, 3, seed=0)
    assert copies == noisy_copies(examples, 3, seed=0) != noisy_copies(examples, 3, seed=1)  # seeded
    assert 4 <= len(copies) <= 6 and all(c.split == NOISY for c in copies)
    assert not {c.text for c in copies} & {e.text for e in examples} and len({c.text for c in copies}) == len(copies)
    assert all(c.intent in ("track_order", "get_refund") and c.lang == "en" for c in copies)  # "ok" stays as it is
    assert noisy_copies(examples, 0) == []


def test_noisy_copies_never_equal_a_held_out_message():
    examples = [Example("where is my parcel I ordered", "track_order", "en", "train")]
    free = noisy_copies(examples, 8, seed=0)
    held = {free[0].text.upper(), "  ".join(free[1].text.split())}  # case and spacing aside
    kept = noisy_copies(examples, 8, seed=0, exclude=held)
    assert {c.text for c in kept} == {c.text for c in free[2:]}
