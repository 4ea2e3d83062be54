"""``python -m chatbot COMMAND``: train, soup, evaluate, classify, bench, bench-svd, sweep, compress, chat, detect, tune,
users, purge, erase, migrate, serve, loadtest."""

from __future__ import annotations

import argparse
import csv
import sys

from chatbot import cli, commands
from chatbot.bench import BenchArgs, run_bench
from chatbot.build import BuildArgs, run_build
from chatbot.data import DataError
from chatbot.model import ModelLoadError
from chatbot.loadtest import LoadTestArgs, run_loadtest
from chatbot.serving import ServeArgs, run_serve
from chatbot.soup import SoupArgs, run_soup
from chatbot.sweep import SweepArgs, run_sweep
from chatbot.train import TrainArgs


def command_table():
    """name → (argument dataclass, function, positional fields, one-line help)."""
    return {
        "train": (TrainArgs, commands.run_train, (), "LoRA-tune a classifier on intent data"),
        "soup": (SoupArgs, run_soup, (), "average classifiers tuned from the same start into one (a model soup)"),
        "evaluate": (commands.EvaluateArgs, commands.run_evaluate, (), "score a model folder on labelled data"),
        "classify": (commands.ClassifyArgs, commands.run_classify, ("text",), "classify messages (JSON lines)"),
        "bench": (BenchArgs, run_bench, (), "LLM classifiers vs a TF-IDF baseline on the same splits"),
        "bench-svd": (commands.BenchSvdArgs, commands.run_bench_svd, (),
                      "time one SVD factorisation per matrix shape and device"),
        "sweep": (SweepArgs, run_sweep, (), "compress → heal → evaluate over rank ratios, methods and targets"),
        "build": (BuildArgs, run_build, (), "compress → heal → evaluate → export one model version"),
        "compress": (commands.CompressCommand, commands.run_compress, (),
                     "factorise a base by truncated SVD and print the accounting"),
        "vocab": (commands.VocabArgs, commands.run_vocab, (), "learn which tokens a trimmed vocabulary keeps"),
        "detect": (commands.DetectArgs, commands.run_detect, ("text",), "detect the language of messages or score a file"),
        "tune": (commands.TuneArgs, commands.run_tune, (), "tune the dialogue policy's thresholds on dev data"),
        "chat": (commands.ChatArgs, commands.run_chat, (), "chat with the bot in the terminal"),
        "users": (commands.UsersArgs, commands.run_users, ("action", "name"),
                  "staff accounts: add NAME --role agent|admin, list, disable NAME, enable NAME, passwd NAME, hf-release NAME"),
        "purge": (commands.PurgeArgs, commands.run_purge, (), "delete conversations older than --older-than (90d)"),
        "erase": (commands.EraseArgs, commands.run_erase, ("conversation_id",),
                  "delete one conversation and its messages (a customer's request)"),
        "migrate": (commands.MigrateArgs, commands.run_migrate, (), "create or upgrade the database's tables"),
        "serve": (ServeArgs, run_serve, (), "serve the classifier with Ray Serve for several app processes"),
        "loadtest": (LoadTestArgs, run_loadtest, (), "concurrent conversations against running app servers (localhost), "
                     "then stored vs acknowledged turns"),
    }


def main(argv: list[str] | None = None) -> int:
    table = command_table()
    parser = argparse.ArgumentParser(prog="python -m chatbot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (cls, _, positional, help_text) in table.items():
        cli.add_arguments(sub.add_parser(name, help=help_text, description=help_text), cls, positional)
    namespace = parser.parse_args(argv)
    cls, run, _, _ = table[namespace.command]
    try:
        run(cli.build(cls, namespace))
    except (ModelLoadError, DataError, ValueError, OSError, csv.Error) as err:  # a file that cannot be
        print(f"error: {err}", file=sys.stderr)  # read or written is the user's to fix: one line, no traceback
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
