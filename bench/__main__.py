"""`make bench`: every benchmark in one run, each printing its table of ratios against the reference.

`python -m bench` runs every benchmark below in turn; `python -m bench engine --json` runs one.
"""

from __future__ import annotations

import importlib
import sys

from bench import BENCHES


def main(argv: list[str]) -> int:
    if argv and argv[0] in BENCHES:
        return importlib.import_module(f"bench.{argv[0]}").main(argv[1:])
    status = 0
    for name in BENCHES:
        status |= importlib.import_module(f"bench.{name}").main(argv)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
