"""The one Summary of a group of cells: cached cells are counted, and their latency and cost stay out."""

from __future__ import annotations

from dataclasses import dataclass

from prompting.summary import Summary


@dataclass
class Cell:
    passed: bool | None
    score: float | None
    error: str | None
    cached: bool
    latency_ms: float
    tokens_in: int = 10
    tokens_out: int = 20
    cost: float = 0.5


def test_cached_cells_are_counted_and_left_out_of_latency_and_cost():
    cells = [
        Cell(True, 1.0, None, False, 100.0),
        Cell(False, 0.0, None, False, 300.0),
        Cell(True, 1.0, None, True, 17_453.0),  # an answer from an earlier run: its latency was measured then
        Cell(None, None, "timeout", False, 9_000.0),
    ]
    s = Summary.of(cells)
    assert (s.cells, s.errors, s.cached, s.scored, s.passed) == (4, 1, 1, 3, 2)
    assert s.mean_latency_ms == 200.0 and s.timed == 2
    assert s.tokens_per_s == 40 / 0.4
    assert s.cost == 1.5  # the cached cell was not paid for again
    assert s.to_dict()["cached"] == 1


def test_a_group_answered_wholly_from_the_cache_has_no_latency():
    s = Summary.of([Cell(True, 1.0, None, True, 50.0)])
    assert s.mean_latency_ms is None and s.tokens_per_s is None and s.pass_rate == 1.0
