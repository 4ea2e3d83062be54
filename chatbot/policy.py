"""The dialogue policy: answer, ask, say it is out of scope, or hand off to a person, from calibrated confidences.

* say what the bot can help with when the message is **out of scope**: the classifier's top label
  is ``out_of_scope``, or no intent reaches ``out_of_scope`` confidence (a threshold; 0 turns it
  off). It counts as a failure but never hands off on its own, and never gets an intent's answer;
* answer when the top intent is confident (≥ ``answer``) and clearly ahead of the second
  (by ≥ ``gap``);
* ask the customer to choose between the two likeliest intents when the top intent is plausible
  (≥ ``fallback``) but not confident, or too close to the second;
* ask to rephrase below ``fallback`` (Rasa's and Dialogflow's usual fallback threshold is ~0.3);
* hand off to a person for intents that need one (contact_human_agent, complaint) when they are
  confident (≥ ``answer``; a weak guess is a clarification, which always offers a person), and
  after ``max_failures`` consecutive turns the bot could not answer.

Defaults were tuned on the dev split of our data (``python -m chatbot tune``; docs/benchmarks.md):
``answer`` is the lowest threshold at which answered turns are at least 95% right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chatbot.settings import OUT_OF_SCOPE


@dataclass
class PolicyConfig:
    answer: float = 0.5
    """Confidence at or above which the bot answers."""
    fallback: float = 0.3
    """Below this the bot asks the customer to rephrase."""
    gap: float = 0.1
    """The top intent must lead the second by this much to be answered without asking."""
    out_of_scope: float = 0.0
    """Below this confidence of the best intent the message counts as out of scope (0: only the label decides)."""
    max_failures: int = 3
    """Consecutive clarifications/fallbacks before a person takes over."""
    handoff_intents: list[str] = field(default_factory=lambda: ["contact_human_agent", "complaint"])
    """Intents that always go to a person."""

    def __post_init__(self):
        if not 0 <= self.fallback <= self.answer <= 1:
            raise ValueError("thresholds must satisfy 0 ≤ fallback ≤ answer ≤ 1")
        if not 0 <= self.gap < 1 or self.max_failures < 1 or not 0 <= self.out_of_scope <= 1:
            raise ValueError("gap and out-of-scope threshold must be in [0, 1), max failures ≥ 1")


@dataclass
class OutOfScopeBudget:
    """How the out-of-scope threshold is chosen on labelled data (``evaluate.tune_out_of_scope``);
    with neither field, the threshold that maximises in-scope accuracy + out-of-scope recall."""
    max_reject: float | None = None
    """Choose the out-of-scope threshold that turns away by confidence at most this share of the split's
    in-scope messages, on top of those the out-of-scope label already takes (how many real requests the
    product may turn away), instead of maximising in-scope accuracy + out-of-scope recall."""
    max_in_scope_loss: float | None = None
    """Choose the highest out-of-scope threshold that lowers the split's in-scope accuracy by at most
    this much (absolute: of the n in-scope messages, at most ⌊loss·n⌋ that the label gets right are
    turned away; turning away a wrong one costs nothing)."""

    def __post_init__(self):
        for name, budget in (("max reject", self.max_reject), ("max in-scope loss", self.max_in_scope_loss)):
            if budget is not None and not 0 <= budget < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.max_reject is not None and self.max_in_scope_loss is not None:
            raise ValueError("choose the threshold by max reject or by max in-scope loss, not both")

    @property
    def chosen(self) -> bool:
        return self.max_reject is not None or self.max_in_scope_loss is not None


def in_scope(top: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The intents among ``top``, best first, without the out-of-scope label."""
    return [(intent, p) for intent, p in top if intent != OUT_OF_SCOPE]


def decide(config: PolicyConfig, top: list[tuple[str, float]], failures: int) -> str:
    """The action for a message whose labels, best first, are ``top``; ``failures`` counts the
    conversation's consecutive unanswered turns before this one."""
    intent, confidence = top[0]
    intents = in_scope(top)
    if intent == OUT_OF_SCOPE or not intents or intents[0][1] < config.out_of_scope:
        return "out_of_scope"
    second = top[1][1] if len(top) > 1 else 0.0
    if intent in config.handoff_intents and confidence >= config.answer:
        return "handoff"
    if confidence >= config.answer and confidence - second >= config.gap:
        return "answer"
    if failures + 1 >= config.max_failures:
        return "handoff"
    return "clarify" if confidence >= config.fallback else "fallback"


def tune_answer_threshold(confidences: np.ndarray, correct: np.ndarray, target: float = 0.95,
                          floor: float = 0.3) -> dict:
    """Lowest threshold ≥ ``floor`` whose answered turns are ≥ ``target`` accurate, with its coverage."""
    order = np.argsort(-confidences)
    conf, ok = confidences[order], correct[order].astype(float)
    precision = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    best = {"threshold": 1.0, "coverage": 0.0, "precision": 1.0}
    for i in range(len(conf)):
        if conf[i] < floor:
            break
        if precision[i] >= target and (i + 1 == len(conf) or conf[i + 1] < conf[i]):
            best = {"threshold": float(conf[i]), "coverage": (i + 1) / len(conf), "precision": float(precision[i])}
    return best
