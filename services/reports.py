"""Result reports of a run: one payload (JSON), and CSV and HTML files written from it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from services.runs import labels, overall, summary
from store import Store

REPORT_SUFFIXES = (".json", ".csv", ".html")
CSV_COLUMNS = [
    "case_id",
    "case",
    "version",
    "provider",
    "repeat",
    "output",
    "answer",
    "pass",
    "score",
    "error",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "cost",
    "cached",
]
HTML_COLUMNS = ("case", "version", "provider", "repeat", "output", "pass", "score", "error")


def payload(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    versions, providers = labels(store)
    cases = {c.id: c for c in store.suite_cases(run.suite_id)} if run.suite_id else {}
    from services.reviews import agreement, items

    rated = {i.result.id: i.ratings[0] for i in items(store, run_id) if i.rated}
    results = []
    for result, scores in store.run_results(run_id):
        case = cases.get(result.case_id)
        results.append(
            {
                "case_id": result.case_id,
                "case": case.description if case else "",
                "vars": case.vars if case else {},
                "version": versions.get(result.version_id),
                "provider": providers.get(result.provider_id),
                "repeat": result.repeat_index,
                "output": result.output,
                "answer": result.answer,
                "pass": result.passed,
                "score": result.score,
                "error": result.error,
                "latency_ms": result.latency_ms,
                "tokens_in": result.tokens_in,
                "tokens_out": result.tokens_out,
                "cost": result.cost,
                "cached": result.cached,
                "messages": result.messages,
                "result_id": result.id,
                "rating": _rating(rated.get(result.id)),
                "assertions": [
                    {"type": s.type, "pass": s.passed, "score": s.score, "reason": s.reason} for s in scores
                ],
            }
        )
    return {
        "id": run.id,
        "status": run.status,
        "created_at": run.created_at.isoformat(),
        "description": run.description,
        "strategy": run.strategy,
        "repeats": run.repeats,
        "strategies": (run.options or {}).get("strategies") or {},
        "agreement": [
            {
                "assertion": a.assertion,
                "cells": a.cells,
                "matrix": a.matrix,
                "kappa": a.kappa,
                "kappa_ci": None if a.interval is None else [a.interval.low, a.interval.high],
                "kappa_undefined": a.undefined,
                "text": a.text,
            }
            for a in agreement(store, run_id)
        ],
        "summary": overall(store, run_id).to_dict(),
        "groups": _groups(store, run_id),
        "results": results,
    }


def _rating(rating) -> dict[str, Any] | None:
    if rating is None:
        return None
    return {
        "passed": rating.passed,
        "score": rating.score,
        "tags": rating.tags,
        "comment": rating.comment,
        "reviewer": rating.reviewer,
    }


def _groups(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Each version × provider's summary with its intervals (cases as the unit), pass@k and flaky cases."""
    from services.compare import run_group_stats, stats_dict

    stats = run_group_stats(store, run_id)
    return [
        {**g.to_dict(), "stats": stats_dict(stats[(g.version_id, g.provider_id)])}
        for g in summary(store, run_id)
    ]


def check_suffix(path: Path) -> None:
    if path.suffix not in REPORT_SUFFIXES:
        raise ValueError("use a .json, .csv or .html file name")


def write(store: Store, run_id: str, path: Path) -> None:
    """The run's results as .json, .csv or .html, chosen by the file's extension."""
    check_suffix(path)
    data = payload(store, run_id)
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(data["results"])
    else:
        path.write_text(html_report(data), encoding="utf-8")


def html_report(data: dict[str, Any]) -> str:
    from services.html_report import render

    return render(data)
