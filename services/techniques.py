"""Techniques that are more than one run: automatic prompt engineering (APE) over a suite's cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prompting.runner import CaseSpec, ape_ranking
from services.providers import provider_for
from services.suites import load_file, override


def ape(suite_file: str | Path, count: int, provider_id: str | None = None) -> list[dict[str, Any]]:
    """Instructions proposed from the suite's input/output pairs, ranked by zero-shot pass rate on the suite."""
    suite = load_file(suite_file)
    override(suite, Path(suite_file), providers=(provider_id,) if provider_id else ())
    cases = [CaseSpec(i, c.vars, c.assertions, c.threshold, c.description) for i, c in enumerate(suite.cases)]
    provider = provider_for(suite.providers[0])
    return ape_ranking(cases, provider, count, params={"temperature": 0, **suite.params})
