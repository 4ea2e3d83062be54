"""``python -m compression …``: the same as ``python -m chatbot compress …``.

The command line lives in the chatbot's command table, which knows the embedded bases and our
calibration data; this library stays a leaf that imports nothing of the chatbot, so its entry point
hands the arguments over to that command in a new interpreter.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = [sys.executable, "-m", "chatbot", "compress", *(sys.argv[1:] if argv is None else argv)]
    os.execv(sys.executable, args)  # replaces this process; returns only if exec fails (raises OSError)
    return 1


if __name__ == "__main__":
    sys.exit(main())
