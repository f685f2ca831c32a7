"""A run as the Runs page shows it: the status line, one row per version × provider (the one Summary, its pass
rate interval over cases) and every cell with its case, version and provider named and its rating."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prompting import numbers
from prompting.checks import case_label
from prompting.stats import GroupStats
from services.compare import run_group_stats
from services.reviews import items
from services.runs import GroupSummary, cache_policy_text, labels, strategies_of, strategy_text, summary
from store import Store


def turn_rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Conversation cases: one row per version × provider × turn, its pass rate with a 95 % Wilson interval (the
    Runs page's table and the CLI's, from runs.turn_summary)."""
    from prompting.stats import wilson
    from services.runs import turn_summary

    return [
        {
            "version": version,
            "provider": provider,
            "turn": rate.label,
            "passed": f"{rate.passed}/{rate.scored}",
            "pass rate": numbers.percent(rate.pass_rate, rate.scored),
            "95 % interval": numbers.percent_interval(wilson(rate.passed, rate.scored), rate.scored),
        }
        for version, provider, rates in turn_summary(store, run_id)
        for rate in rates
    ]


def status_line(store: Store, run_id: str) -> str:
    """ "status completed · strategy zero_shot@v1: single · repeats 1 · cache: … · engine start-up 3.1 s …"."""
    run = store.get_run(run_id)
    used = "; ".join(f"{label}: {strategy_text(s)}" for label, s in strategies_of(run).items())
    startup = (run.options or {}).get("engine_startup_s")
    parts = [
        f"status **{run.status}**",
        f"strategy {used or strategy_text(run.strategy)}",
        f"repeats {run.repeats}",
        cache_policy_text(store, run_id),
    ]
    if startup:
        parts.append(f"engine start-up {startup:.1f} s (not counted in cell latency)")
    return " · ".join(parts)


@dataclass
class GroupRow:
    group: GroupSummary
    stats: GroupStats | None

    def to_row(self) -> dict[str, Any]:
        """The summary table's row: every number formatted as everywhere else (prompting/numbers.py)."""
        s, stats = self.group.summary, self.stats
        interval = "–"
        if stats is not None and stats.pass_ci is not None:
            interval = f"{numbers.percent_interval(stats.pass_ci, stats.cases)} ({stats.cases} cases)"
        return {
            "version": self.group.version,
            "provider": self.group.provider,
            "cells": s.cells,
            "errors": s.errors,
            "cached": s.cached,
            "pass rate": numbers.percent(s.pass_rate, s.scored),
            "95 % interval": interval,
            "mean score": numbers.score(s.mean_score),
            "latency ms": None if s.mean_latency_ms is None else round(s.mean_latency_ms),
            "tokens in": s.tokens_in,
            "tokens out": s.tokens_out,
        }


def group_rows(store: Store, run_id: str) -> list[GroupRow]:
    groups = summary(store, run_id)
    stats = run_group_stats(store, run_id) if groups else {}
    return [GroupRow(g, stats.get((g.version_id, g.provider_id))) for g in groups]


@dataclass
class CellView:
    """One stored cell with what people call its parts."""

    result: Any  # the stored result row
    scores: list[Any]
    case: str
    version: str
    provider: str
    rating: Any | None  # the first rating of the same output, wherever it was given

    @property
    def outcome(self) -> str:
        return "error" if self.result.error else ("pass" if self.result.passed else "fail")

    @property
    def review(self) -> str:
        """A rating in a word (and its 1–5 score)."""
        if self.rating is None:
            return ""
        return ("good" if self.rating.passed else "bad") + (
            f" ({self.rating.score}/5)" if self.rating.score else ""
        )


def cells(store: Store, run_id: str) -> list[CellView]:
    run = store.get_run(run_id)
    cases = {c.id: c for c in store.suite_cases(run.suite_id)} if run.suite_id else {}
    versions, providers = labels(store)
    rated = {item.result.id: item.ratings[0] for item in items(store, run_id) if item.rated}
    out = []
    for result, scores in store.run_results(run_id):
        case = cases.get(result.case_id)
        name = case_label(case.description, case.vars, case.position) if case else str(result.case_id)
        version = versions.get(result.version_id, str(result.version_id))
        provider = providers.get(result.provider_id, str(result.provider_id))
        out.append(CellView(result, scores, name, version, provider, rated.get(result.id)))
    return out
