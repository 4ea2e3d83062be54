import argparse
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from chatbot import cli


@dataclass
class Inner:
    r: int = 8
    """Rank."""
    names: list[str] = field(default_factory=lambda: ["a", "b"])
    """Names."""

    def __post_init__(self):
        if self.r < 1:
            raise ValueError("r must be ≥ 1")


@dataclass
class Clash:
    one: Inner = field(default_factory=Inner)
    two: Inner = field(default_factory=Inner)


def parse(cls, argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser, cls)
    return cli.build(cls, parser.parse_args(argv))


def test_two_settings_with_one_flag_are_refused():
    with pytest.raises(AssertionError, match="both be --r"):  # two un-prefixed Inner would collide
        parse(Clash, [])


@dataclass
class Composed:
    data: list[str]
    """Files."""
    inner: Inner = field(default_factory=lambda: Inner(r=4), metadata={"prefix": "inner_"})
    flag: bool = False
    """A flag."""
    cli_aliases: ClassVar[dict[str, str]] = {"old_r": "inner_r"}


def test_composed_settings_take_the_composer_defaults_flags_and_aliases():
    args = parse(Composed, ["--data", "x,y"])
    assert args == Composed(data=["x", "y"], inner=Inner(r=4, names=["a", "b"]), flag=False)
    args = parse(Composed, ["--data", "x", "--inner-r", "7", "--inner-names", "c", "--flag"])
    assert args.inner == Inner(r=7, names=["c"]) and args.flag
    assert parse(Composed, ["--data", "x", "--old-r", "9"]).inner.r == 9
    with pytest.raises(ValueError, match="r must be"):  # validation stays in the dataclass
        parse(Composed, ["--data", "x", "--inner-r", "0"])


def test_help_comes_from_attribute_docstrings():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser, Composed)
    text = parser.format_help()
    assert "Rank. (default: 4)" in text and "--old-r" in text and "A flag." in text


def test_distillation_flags_of_train_and_build_stay_as_they_were():
    from chatbot.build import BuildArgs
    from chatbot.train import DistillSettings, TrainArgs

    train = parse(TrainArgs, ["--data", "a.csv", "--out", "m", "--teacher", "t", "--distill", "0.3",
                              "--distill-temperature", "3", "--no-distill-teacher-errors"])
    assert train.distill == DistillSettings(weight=0.3, temperature=3.0, teacher_errors=False)
    assert train.teacher == ["t"]  # one teacher as before; several make an ensemble
    assert parse(TrainArgs, ["--data", "a.csv", "--out", "m", "--teacher", "t,u"]).teacher == ["t", "u"]
    assert parse(TrainArgs, ["--data", "a.csv", "--out", "m"]).distill == DistillSettings()
    build = parse(BuildArgs, ["--data", "a.csv", "--out", "v", "--source", "s", "--distill", "0.5",
                              "--no-distill-teacher-errors"])
    assert build.heal.distill == DistillSettings(weight=0.5, teacher_errors=False)
    assert parse(BuildArgs, ["--data", "a.csv", "--out", "v"]).heal.distill.weight == 0.0
    with pytest.raises(ValueError, match="needs --source"):
        parse(BuildArgs, ["--data", "a.csv", "--out", "v", "--distill", "0.5"])
    # noisy copies learn from a teacher: refused before any work without one
    assert parse(BuildArgs, ["--data", "a.csv", "--out", "v", "--source", "s", "--distill", "0.5",
                             "--distill-noisy-copies", "1"]).heal.distill.noisy_copies == 1
    from chatbot.bench import BenchArgs
    from chatbot.sweep import SweepArgs
    for args, given, needs in ((BuildArgs, ["--out", "v"], "--source"), (SweepArgs, ["--report", "r"], "--source"),
                               (BenchArgs, ["--report", "r"], "--teacher"), (TrainArgs, ["--out", "m"], "--teacher")):
        with pytest.raises(ValueError, match=needs):
            parse(args, ["--data", "a.csv", *given, "--distill-noisy-copies", "1"])


def test_out_of_scope_threshold_flags_of_tune_and_bench_stay_as_they_were():
    from chatbot.bench import BenchArgs
    from chatbot.commands import TuneArgs
    from chatbot.policy import OutOfScopeBudget

    tune = parse(TuneArgs, ["--data", "a.csv", "--max-reject", "0.01"])
    assert tune.budget == OutOfScopeBudget(max_reject=0.01)
    bench = parse(BenchArgs, ["--data", "a.csv", "--report", "r", "--max-in-scope-loss", "0.001"])
    assert bench.budget == OutOfScopeBudget(max_in_scope_loss=0.001)
    assert parse(TuneArgs, ["--data", "a.csv"]).budget == OutOfScopeBudget()
    with pytest.raises(ValueError, match="not both"):
        parse(TuneArgs, ["--data", "a.csv", "--max-reject", "0.01", "--max-in-scope-loss", "0.001"])
