"""``python -m compression``: factorise a Llama-architecture model and print the accounting table."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from chatbot.model import DEFAULT_BASE
from compression.compress import CompressArgs, compress_model, format_accounting, save_compressed, store_in_cache


@dataclass
class CompressCommand(CompressArgs):
    base: str = DEFAULT_BASE
    """Model to compress: smollm2-135m, gemma3-270m, a model folder or a hub id."""
    out: str | None = None
    """Write the compressed model folder here (factorised layers, tokenizer, compression.json)."""
    report: str | None = None
    """Write the accounting as JSON here."""


def main(argv: list[str] | None = None) -> int:
    from chatbot import cli
    from chatbot.model import ModelLoadError, cache_dir, load_base  # the CLI reuses the chatbot's loader

    parser = argparse.ArgumentParser(prog="python -m compression", description=__doc__)
    cli.add_arguments(parser, CompressCommand)
    try:
        args = cli.build(CompressCommand, parser.parse_args(argv))
        model, tokenizer = load_base(args.base, num_labels=2)
        result = compress_model(model, tokenizer, args)
    except (ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_accounting(result["report"]))
    store_in_cache(model, cache_dir() / "compressed", args.base, result["recipe"])
    if args.out:
        save_compressed(model, tokenizer, args.out, args.base, result)
        print(f"compressed model written to {args.out}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
