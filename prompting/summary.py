"""The one definition of a group of cells' numbers: pass rate, mean score, errors, latency, tokens, cost.

Pass rate = passed cells / scored cells. An errored cell (the provider failed, the prompt did not render, an
assertion could not run) has no verdict: it is counted in `errors` and shown beside the rate, never folded into
it. A cell answered from the response cache is counted in `cached`; its latency and cost were measured by the
call that first produced the answer, so they enter neither the latency figures nor the cost. Every view — the
CLI table and exit code, `runs show`, the Runs and Compare pages, APE's ranking — reads these numbers from here.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prompting.conversation import turn_label, turn_order


class Scorable(Protocol):
    """What a summary reads from a cell: a runner CellResult and a stored result row both qualify."""

    passed: bool | None
    score: float | None
    error: str | None
    cached: bool

    @property
    def latency_ms(self) -> float: ...
    @property
    def tokens_in(self) -> int: ...
    @property
    def tokens_out(self) -> int: ...
    @property
    def cost(self) -> float: ...


@dataclass(frozen=True)
class Summary:
    cells: int = 0
    errors: int = 0
    passed: int = 0
    score_sum: float = 0.0
    cached: int = 0  # cells answered (wholly or partly) from the response cache
    latency_sum_ms: float = 0.0  # over the timed cells: scored and not cached
    timed: int = 0
    timed_tokens_out: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0  # what the calls of this run cost (cached cells cost nothing again)

    @property
    def scored(self) -> int:
        return self.cells - self.errors

    @property
    def failed(self) -> int:
        return self.scored - self.passed

    @property
    def pass_rate(self) -> float | None:
        """Passed over scored cells; None when no cell was scored (there is no rate to show)."""
        return self.passed / self.scored if self.scored else None

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None

    @property
    def mean_latency_ms(self) -> float | None:
        """Over the cells timed in this run (scored, not from the cache); None when there are none."""
        return self.latency_sum_ms / self.timed if self.timed else None

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens per second of the timed cells' own latency."""
        return self.timed_tokens_out / (self.latency_sum_ms / 1000) if self.latency_sum_ms else None

    def meets(self, threshold: float) -> bool:
        """The CLI gate: every cell scored and the pass rate at or above the threshold."""
        return self.errors == 0 and self.pass_rate is not None and self.pass_rate >= threshold - 1e-12

    @classmethod
    def of(cls, cells: Iterable[Scorable]) -> Summary:
        items = list(cells)
        ok = [c for c in items if c.error is None]
        timed = [c for c in ok if not c.cached]
        return cls(
            cells=len(items),
            errors=len(items) - len(ok),
            passed=sum(1 for c in ok if c.passed),
            score_sum=sum(c.score or 0.0 for c in ok),
            cached=sum(1 for c in items if c.cached),
            latency_sum_ms=sum(c.latency_ms for c in timed),
            timed=len(timed),
            timed_tokens_out=sum(c.tokens_out for c in timed),
            tokens_in=sum(c.tokens_in for c in items),
            tokens_out=sum(c.tokens_out for c in items),
            cost=sum(c.cost for c in items if not c.cached),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": self.cells,
            "scored": self.scored,
            "errors": self.errors,
            "passed": self.passed,
            "failed": self.failed,
            "pass_rate": self.pass_rate,
            "score": self.mean_score,
            "cached": self.cached,
            "latency_ms": self.mean_latency_ms,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": self.cost,
        }


def summarize(cells: Iterable[Scorable], key: Callable[[Any], Hashable]) -> dict[Hashable, Summary]:
    """One Summary per group, groups in first-seen order."""
    groups: dict[Hashable, list[Scorable]] = {}
    for cell in cells:
        groups.setdefault(key(cell), []).append(cell)
    return {name: Summary.of(items) for name, items in groups.items()}


@dataclass(frozen=True)
class TurnRate:
    """Conversation cases, one turn: how many scored cells passed that turn's assertions. `turn` is "1", "2", …
    or "conversation" (the assertions over every answer or the whole transcript)."""

    turn: str
    passed: int
    scored: int

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.scored if self.scored else None

    @property
    def label(self) -> str:
        return turn_label(self.turn)

    def to_dict(self) -> dict[str, Any]:
        return {"turn": self.turn, "passed": self.passed, "scored": self.scored, "pass_rate": self.pass_rate}


def turn_rates(cells: Iterable[tuple[dict[str, bool], bool]]) -> list[TurnRate]:
    """Per turn, over the scored cells whose case judges that turn; `cells` gives each cell's verdicts by turn
    (the runner's `detail["turns"]`) and whether it errored. Turns in order, the whole-conversation verdict last;
    empty when no cell is a judged conversation."""
    counts: dict[str, list[int]] = {}
    for verdicts, errored in cells:
        if errored:
            continue
        for turn, ok in verdicts.items():
            tally = counts.setdefault(turn, [0, 0])
            tally[0] += int(bool(ok))
            tally[1] += 1
    order = sorted(counts, key=turn_order)
    return [TurnRate(t, *counts[t]) for t in order]
