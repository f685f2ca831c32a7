"""`make bench`: every benchmark in one run, each printing its table of ratios against the reference."""

from __future__ import annotations

import sys

from bench import engine


def main() -> int:
    return engine.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
