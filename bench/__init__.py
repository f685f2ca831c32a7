"""Benchmarks: each compares us with a reference in one run and prints ratios. Never run in CI."""
