"""Where the store meets the runner: rows become specs, finished cells become rows, runs start and resume.

The CLI and the Runs page both call `import_suite`, `start_run` and `execute_run`; the runner itself stays
store-free and gets `finished_cells` to skip and a sink that commits each cell with its scores.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from prompting.guardrails import Guardrails
from prompting.providers import Provider, ProviderSpec
from prompting.runner import CaseSpec, CellResult, Progress, ProviderHandle, Runner, VersionSpec
from prompting.strategies import Prompt
from prompting.suites import Suite as SuiteFile
from prompting.templates import Template
from store import queries
from store.models import ProviderConfig, Result, Run, TemplateVersion, TestCase


def prompt_of(version: TemplateVersion) -> Prompt:
    template = Template.from_source(version.source, name=version.name)
    guardrails = Guardrails.from_dict(version.guardrails) if version.guardrails else None
    return Prompt(
        template,
        dict(version.variables),
        version.delimiter,
        guardrails,
        tuple(version.options.get("drop_sections", ())),
    )


def spec_of(config: ProviderConfig) -> ProviderSpec:
    return ProviderSpec(
        label=config.label,
        kind=config.kind,
        model=config.model,
        base_url=config.base_url,
        quant=config.quant,
        api_key_env=config.api_key_env,
        params=dict(config.params),
    )


def case_of(case: TestCase) -> CaseSpec:
    return CaseSpec(
        id=case.id,
        vars=dict(case.vars),
        assertions=list(case.assertions),
        threshold=case.threshold,
        description=case.description,
    )


def save_provider(spec: ProviderSpec, engine: Engine | None = None) -> ProviderConfig:
    return queries.upsert_provider(
        spec.label,
        spec.kind,
        spec.model,
        base_url=spec.base_url,
        quant=spec.quant,
        api_key_env=spec.api_key_env,
        params=spec.params,
        engine=engine,
    )


@dataclass
class ImportedSuite:
    suite_id: int
    version_ids: list[int]
    provider_ids: list[int]


def import_suite(suite: SuiteFile, name: str | None = None, engine: Engine | None = None) -> ImportedSuite:
    """Store a validated suite file: its cases, one version per prompt, one configuration per provider.

    Suites are immutable like versions (runs point at their cases): importing identical content again reuses
    the stored suite; changed content under a taken name is stored as `name-<hash>`."""
    cases = [c.to_dict() for c in suite.cases]
    config = {
        "strategy": suite.strategy,
        "delimiter": suite.delimiter,
        "params": suite.params,
        "repeat": suite.repeat,
        "max_concurrency": suite.max_concurrency,
        "judge": suite.judge,
    }
    digest = hashlib.sha256(json.dumps([cases, config, suite.description], sort_keys=True, default=str)
                            .encode()).hexdigest()  # fmt: skip
    base = name or suite.name
    stored = None
    for candidate in (base, f"{base}-{digest[:8]}"):
        try:
            existing = queries.get_suite(candidate, engine)
        except queries.StoreError:
            stored = queries.save_suite(
                candidate,
                cases,
                description=suite.description,
                config={**config, "content_hash": digest},
                engine=engine,
            )
            break
        if existing.config.get("content_hash") == digest:
            stored = existing
            break
    if stored is None:
        raise queries.StoreError(
            f"suite names '{base}' and '{base}-{digest[:8]}' are both taken by other content"
        )
    guardrails = suite.guardrails.to_dict() if suite.guardrails else None
    versions = [queries.save_version(p.label, p.template.source, delimiter=suite.delimiter, guardrails=guardrails,
                                     library_ref=p.library_ref, note=f"from {suite.name}", engine=engine).id
                for p in suite.prompts]  # fmt: skip
    providers = [save_provider(spec, engine).id for spec in suite.providers]
    return ImportedSuite(stored.id, versions, providers)


def to_rows(run_id: str, result: CellResult) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cell = result.cell
    row = {"run_id": run_id, "case_id": cell.case_id, "version_id": cell.version_id, "provider_id": cell.provider_id,
           "repeat_index": cell.repeat_index, "messages": result.messages, "output": result.output,
           "answer": result.answer, "detail": result.detail, "logprobs": result.logprobs,
           "tokens_in": result.tokens_in, "tokens_out": result.tokens_out, "latency_ms": result.latency_ms,
           "cost": result.cost, "cached": result.cached, "error": result.error, "passed": result.passed,
           "score": result.score}  # fmt: skip
    scores = [{"position": i, "type": a.type, "value": a.value, "weight": a.weight, "passed": a.passed,
               "score": a.score, "reason": a.reason} for i, a in enumerate(result.assertions)]  # fmt: skip
    return row, scores


def start_run(
    imported: ImportedSuite,
    *,
    repeats: int = 1,
    strategy: dict | None = None,
    params: dict | None = None,
    run_id: str | None = None,
    description: str = "",
    engine: Engine | None = None,
) -> Run:
    return queries.create_run(
        suite_id=imported.suite_id,
        version_ids=imported.version_ids,
        provider_ids=imported.provider_ids,
        repeats=repeats,
        strategy=strategy,
        params=params,
        run_id=run_id,
        description=description,
        engine=engine,
    )


def execute_run(
    run_id: str,
    *,
    concurrency: int = 4,
    use_cache: bool = True,
    progress: Callable[[Progress], None] | None = None,
    providers: dict[int, Provider] | None = None,
    embed=None,
    judge=None,
    stop: threading.Event | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    engine: Engine | None = None,
) -> Progress:
    """Run (or resume) every missing cell of a stored run. `providers` overrides how a configuration is reached
    (tests use a recording fake); the run's status ends as completed or interrupted."""
    run = queries.get_run(run_id, engine)
    stored = [queries.get_version(v, engine) for v in run.version_ids]
    versions = [VersionSpec(v.id, prompt_of(v), v.label) for v in stored]
    configs = {c.id: c for c in queries.list_providers(engine)}
    handles = [ProviderHandle(pid, (providers or {}).get(pid) or Provider(spec_of(configs[pid])))
               for pid in run.provider_ids]  # fmt: skip
    cases = [case_of(c) for c in queries.suite_cases(run.suite_id, engine)]
    runner = Runner(versions, handles, cases, repeats=run.repeats, strategy=run.strategy, params=run.params,
                    concurrency=concurrency, cache=queries.ResponseCache(engine), use_cache=use_cache, embed=embed,
                    judge=judge, stop=stop or threading.Event())  # fmt: skip

    def sink(result: CellResult) -> None:
        queries.save_result(*to_rows(run_id, result), engine=engine)
        if on_result:
            on_result(result)

    queries.set_run_status(run_id, "running", engine)
    try:
        state = runner.run(queries.finished_cells(run_id, engine), sink, progress)
    except BaseException:
        queries.set_run_status(run_id, "interrupted", engine)
        raise
    queries.set_run_status(run_id, "completed", engine)
    return state


def summary(run_id: str, engine: Engine | None = None) -> list[dict[str, Any]]:
    """Per version x provider: cells, errors, pass rate, mean score, mean latency, tokens."""
    rows = queries.run_results(run_id, engine)
    versions = {v.id: v.label for v in queries.list_versions(engine=engine)}
    providers = {p.id: p.label for p in queries.list_providers(engine)}
    groups: dict[tuple[int, int], list[Result]] = {}
    for result, _ in rows:
        groups.setdefault((result.version_id, result.provider_id), []).append(result)
    out = []
    for (vid, pid), items in groups.items():
        ok = [r for r in items if r.error is None]
        out.append(
            {
                "version": versions.get(vid, vid),
                "provider": providers.get(pid, pid),
                "cells": len(items),
                "errors": len(items) - len(ok),
                "passed": sum(1 for r in ok if r.passed),
                "pass_rate": sum(1 for r in ok if r.passed) / len(ok) if ok else 0.0,
                "score": sum(r.score or 0 for r in ok) / len(ok) if ok else 0.0,
                "latency_ms": sum(r.latency_ms for r in ok) / len(ok) if ok else 0.0,
                "tokens_in": sum(r.tokens_in for r in ok),
                "tokens_out": sum(r.tokens_out for r in ok),
            }
        )
    return out


def compare(run_a: str, run_b: str, engine: Engine | None = None) -> dict[str, Any]:
    """Per-cell pass/fail flips and score changes between two runs, matched on case, version, provider, repeat."""

    def index(run_id: str) -> dict[tuple, Result]:
        return {
            (r.case_id, r.version_id, r.provider_id, r.repeat_index): r
            for r, _ in queries.run_results(run_id, engine)
        }

    a, b = index(run_a), index(run_b)
    if a and b and not set(a) & set(b):
        raise queries.StoreError(
            f"runs {run_a} and {run_b} have no cells in common (different suites, versions or providers)"
        )
    cells = []
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key], b[key]
        cells.append({"case_id": key[0], "version_id": key[1], "provider_id": key[2], "repeat": key[3],
                      "passed_a": ra.passed, "passed_b": rb.passed, "score_a": ra.score, "score_b": rb.score,
                      "flip": "fixed" if (not ra.passed and rb.passed) else "broke" if (ra.passed and not rb.passed)
                      else None})  # fmt: skip

    def totals(rows: dict) -> dict[str, float]:
        ok = [r for r in rows.values() if r.error is None]
        return {
            "cells": len(rows),
            "pass_rate": sum(1 for r in ok if r.passed) / len(ok) if ok else 0.0,
            "score": sum(r.score or 0 for r in ok) / len(ok) if ok else 0.0,
        }

    return {
        "cells": cells,
        "only_a": len(set(a) - set(b)),
        "only_b": len(set(b) - set(a)),
        "totals": {"a": totals(a), "b": totals(b)},
        "fixed": sum(1 for c in cells if c["flip"] == "fixed"),
        "broke": sum(1 for c in cells if c["flip"] == "broke"),
    }


# --- section ablation and the quantization sweep ----------------------------------------------------------


def ablation_run(
    suite_id: int,
    version_id: int,
    spec: ProviderSpec,
    *,
    params: dict | None = None,
    provider: Provider | None = None,
    progress=None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """One run over the full version and every variant that drops one part; returns the run id and the score
    change per dropped part (negative: that part helped)."""
    from prompting.runner import ablation_variants

    base = queries.get_version(version_id, engine)
    variants = ablation_variants(prompt_of(base))
    labels: dict[int, str] = {}
    for label, prompt in variants:
        version = base if label == "full" else queries.save_version(
            base.name, base.source, variables=prompt.variables, delimiter=prompt.delimiter,
            guardrails=prompt.guardrails.to_dict() if prompt.guardrails else None,
            options={"drop_sections": list(prompt.drop_sections)}, note=f"ablation of {base.label}: {label}",
            library_ref=base.library_ref, engine=engine)  # fmt: skip
        labels[version.id] = label
    config = save_provider(spec, engine)
    run = queries.create_run(
        suite_id=suite_id,
        version_ids=list(labels),
        provider_ids=[config.id],
        params=params or {},
        description=f"ablation of {base.label}",
        engine=engine,
    )
    execute_run(
        run.id, progress=progress, providers={config.id: provider} if provider else None, engine=engine
    )
    rows = summary(run.id, engine)
    by_label = {labels[queries.get_version(r["version"], engine).id]: r for r in rows}
    full = by_label.get("full", {}).get("score", 0.0)
    return {
        "run_id": run.id,
        "variants": [
            {"variant": label, "score": r["score"], "delta": r["score"] - full, "pass_rate": r["pass_rate"]}
            for label, r in by_label.items()
        ],
    }


def quant_sweep(
    suite_id: int,
    version_id: int,
    model: str,
    methods: list[str],
    *,
    params: dict | None = None,
    concurrency: int = 4,
    progress=None,
    engine: Engine | None = None,
) -> list[dict[str, Any]]:
    """The same suite on the local model under each method (the provider starts each engine itself): score,
    pass rate, perplexity on the shipped text, weight memory and decode tokens/s per method."""
    rows = []
    for method in methods:
        spec = ProviderSpec.parse(f"local:{model}@{method}")
        config = save_provider(spec, engine)
        run = queries.create_run(
            suite_id=suite_id,
            version_ids=[version_id],
            provider_ids=[config.id],
            params=params or {},
            description=f"quant sweep: {method}",
            engine=engine,
        )
        execute_run(run.id, concurrency=concurrency, progress=progress, engine=engine)
        [row] = summary(run.id, engine)
        provider = Provider(spec)
        info = provider.model_card()
        results = [r for r, _ in queries.run_results(run.id, engine) if r.error is None]
        seconds = sum(r.latency_ms for r in results) / 1000
        rows.append(
            {
                "method": method,
                "run_id": run.id,
                "score": row["score"],
                "pass_rate": row["pass_rate"],
                "ppl": provider.perplexity(_perplexity_text()),
                "weight_mb": info.get("weight_bytes", 0) / 1e6,
                "bits_per_param": info.get("bits_per_param"),
                "tokens_per_s": sum(r.tokens_out for r in results) / seconds if seconds else None,
            }
        )
    return rows


def _perplexity_text() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parent.parent / "engine" / "data" / "perplexity.txt").read_text(
        encoding="utf-8"
    )
