"""Benchmarks: each compares us with a reference in one run and prints ratios. Never run in CI."""

# Every benchmark, in the order `make bench` runs them (each is the module bench/NAME.py).
BENCHES = (
    "engine",
    "speculative",
    "memory",
    "server",
    "runner",
    "structured",
    "stats",
    "idle",
    "techniques",
    "optimize",
    "redteam",
    "traces",
)
