"""Runs: create, execute or resume, retry errored cells, summaries, comparison, section ablation and the
quantization sweep.

The runner (prompting/runner.py) stays store-free: it gets the cells already stored (skipped) and a sink that
commits each finished cell with its scores, so a killed run resumes with exactly its missing cells.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prompting.providers import Provider, ProviderSpec
from prompting.runner import (
    CACHE_POLICIES,
    CellResult,
    Interrupted,
    Progress,
    ProviderHandle,
    Runner,
    VersionSpec,
    ablation_variants,
)
from prompting.summary import Summary, summarize
from services.providers import judge_for, provider_for
from services.specs import case_of, prompt_of, save_provider, spec_of
from store import Store, StoreError


@dataclass
class RunPlan:
    """What to run: a suite's cases × versions × providers × repeats, with a strategy and parameters."""

    suite_id: int
    version_ids: list[int]
    provider_ids: list[int]
    repeats: int = 1
    strategy: dict[str, Any] = field(default_factory=dict)  # an override; empty: as each template declares
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    run_id: str | None = None


@dataclass
class GroupSummary:
    """One version × provider of a run, labelled for people."""

    version_id: int
    provider_id: int
    version: str
    provider: str
    summary: Summary

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "provider": self.provider, **self.summary.to_dict()}


def create(store: Store, plan: RunPlan, **options: Any):
    """Store a run (status queued) without queueing its cells; `submit` does both. The plan is validated first
    (`validate`): a run that cannot render is refused before anything is stored. The strategy each version will
    run with (override or declared) is recorded on the run."""
    if not plan.version_ids or not plan.provider_ids:
        raise StoreError("a run needs at least one version and one provider")
    validate(store, plan)
    options["cache"] = options.get("cache", "reuse")
    check_options(options)
    options["strategies"] = strategies_used(store, plan.version_ids, plan.strategy)
    return store.create_run(suite_id=plan.suite_id, version_ids=plan.version_ids, provider_ids=plan.provider_ids,
                            repeats=plan.repeats, strategy=plan.strategy, params=plan.params,
                            description=plan.description, run_id=plan.run_id, options=options)  # fmt: skip


def strategies_used(store: Store, version_ids: list[int], override: dict | None) -> dict[str, dict]:
    """Version label -> the strategy (and its parameters) it runs with."""
    from prompting.runner import effective_strategy

    return {
        v.label: effective_strategy(override, prompt_of(v).template)
        for v in map(store.get_version, version_ids)
    }


def strategy_text(strategy: dict) -> str:
    """`self_consistency (n 5, temperature 0.7)`."""
    extra = ", ".join(f"{k} {v}" for k, v in strategy.items() if k != "name")
    return f"{strategy.get('name', 'single')}" + (f" ({extra})" if extra else "")


def build_runner(store: Store, run, *, concurrency: int = 4, providers: dict[int, Provider] | None = None,
                 embed=None, judge=None, stop: threading.Event | None = None) -> Runner:  # fmt: skip
    """The runner for a stored run: its versions, providers (`providers` overrides how a configuration is
    reached) and cases, with the run's cache policy (`cache` in its options: reuse or fresh)."""
    versions = [store.get_version(v) for v in run.version_ids]
    specs = [
        VersionSpec(v.id, prompt_of(v), v.label, dict((v.options or {}).get("params") or {}))
        for v in versions
    ]
    handles = [ProviderHandle(pid, (providers or {}).get(pid) or provider_for(spec_of(store.get_provider(pid))))
               for pid in run.provider_ids]  # fmt: skip
    cases = [case_of(c) for c in store.suite_cases(run.suite_id)]
    if embed is None:
        from prompting.embeddings import embed  # loads its model on first use only
    if judge is None:
        judge = judge_for(store.get_suite(run.suite_id).config.get("judge"))
    return Runner(specs, handles, cases, repeats=run.repeats, strategy=run.strategy, params=run.params,
                  concurrency=concurrency, cache=store.cache(), cache_policy=cache_policy(run), run_id=run.id,
                  embed=embed, judge=judge, stop=stop or threading.Event())  # fmt: skip


def check_options(options: dict[str, Any]) -> None:
    if "cache" in options and options["cache"] not in CACHE_POLICIES:
        raise StoreError(
            f"unknown cache policy '{options['cache']}'; choose one of: {', '.join(CACHE_POLICIES)}"
        )


def cache_policy(run) -> str:
    """The run's recorded cache policy: "reuse" (deterministic answers from earlier runs) or "fresh"."""
    return str((run.options or {}).get("cache", "reuse"))


CACHE_POLICY_TEXT = {
    "reuse": "cache: reuse deterministic answers (temperature 0, beam search or a seed) from earlier runs",
    "fresh": "cache: fresh (no answer from an earlier run)",
}


def cache_policy_text(store: Store, run_id: str) -> str:
    return CACHE_POLICY_TEXT[cache_policy(store.get_run(run_id))]


def planned_cells(store: Store, run) -> list[tuple[int, int, int, int]]:
    cases = [c.id for c in store.suite_cases(run.suite_id)]
    return [
        (c, v, p, r)
        for v in run.version_ids
        for p in run.provider_ids
        for c in cases
        for r in range(run.repeats)
    ]


def submit(store: Store, plan: RunPlan, **options: Any):
    """Create a run and queue its cells for a worker. Options: concurrency, cache (reuse | fresh), kind, parent..."""
    run = create(store, plan, **{"concurrency": 4, **options})
    store.enqueue(run.id, planned_cells(store, run))
    return store.get_run(run.id)


def resume(store: Store, run_id: str, **options: Any) -> int:
    """Queue a run's missing cells again (after a cancel, an interruption or a crash); returns how many."""
    run = store.get_run(run_id)
    if options:
        check_options(options)
        store.update_run_options(run_id, **options)
    return store.enqueue(run_id, planned_cells(store, run))


def cancel(store: Store, run_id: str) -> None:
    """Stop a run: no new cell is claimed; cells in flight finish and are kept; Resume continues it."""
    if store.get_run(run_id).status in ("queued", "running"):
        store.set_run_status(run_id, "cancelled")


def retry_errored(store: Store, run_id: str) -> int:
    """Forget a run's errored cells and queue exactly those again; returns how many."""
    count = store.reset_errored(run_id)
    if count:
        store.enqueue(store.get_run(run_id).id, [])
    return count


def execute(store: Store, run_id: str, *, progress: Callable[[Progress], None] | None = None,
            on_result: Callable[[CellResult], None] | None = None, providers: dict[int, Provider] | None = None,
            embed=None, **options: Any) -> Progress | None:  # fmt: skip
    """Queue a run's missing cells and work them off in this process (tests, and `workbench run` when no worker
    is alive). Raises Interrupted (run marked interrupted) when stopped or on Ctrl-C."""
    from services.worker import Worker

    resume(store, run_id, **options)
    state = None
    with Worker(store, only_run=run_id, providers=providers, embed=embed, on_result=on_result) as worker:
        try:
            while store.runnable(run_id):
                state = worker.work_on(run_id, progress)
        except (Interrupted, KeyboardInterrupt):
            store.set_run_status(run_id, "interrupted")
            raise
    return state


def progress(store: Store, run_id: str) -> Progress:
    """Where a run stands, read from the database (for views that watch a worker)."""
    counts = store.cell_counts(run_id)
    stored, errors, passed = store.result_counts(run_id)
    total = sum(counts.values()) or stored
    return Progress(done=stored, total=total, passed=passed, failed=stored - errors - passed, errors=errors,
                    elapsed_s=0.0)  # fmt: skip


def prepare_engines(store: Store, run, providers: dict[int, Provider] | None = None) -> None:
    """Start the local engines a run needs before its first cell, and record their start-up time on the run
    (so it is not charged to the first cells' latency)."""
    from services.engines import engines

    startup = 0.0
    for pid in run.provider_ids:
        if providers and pid in providers:
            continue
        config = store.get_provider(pid)
        if config.kind == "local":
            startup += engines.ensure(config.model, config.quant).startup_s
    if startup:
        store.update_run_options(run.id, engine_startup_s=round(startup, 2))


def after_completion(store: Store, run_id: str) -> None:
    """Work that belongs to a finished run: a quantization sweep's run measures its engine."""
    run = store.get_run(run_id)
    if (run.options or {}).get("kind") == "sweep":
        store.update_run_options(run_id, measures=sweep_measures(store, run))


def labels(store: Store) -> tuple[dict[int, str], dict[int, str]]:
    """Version labels and provider labels by id."""
    versions = {v.id: v.label for v in store.list_versions(include_variants=True)}
    providers = {p.id: p.label for p in store.list_providers()}
    return versions, providers


def summary(store: Store, run_id: str) -> list[GroupSummary]:
    """Per version × provider: the one Summary (pass rate over scored cells, errors apart)."""
    results = [r for r, _ in store.run_results(run_id)]
    versions, providers = labels(store)
    groups = summarize(results, lambda r: (r.version_id, r.provider_id))
    return [GroupSummary(vid, pid, versions.get(vid, str(vid)), providers.get(pid, str(pid)), s)
            for (vid, pid), s in groups.items()]  # fmt: skip


def overall(store: Store, run_id: str) -> Summary:
    return Summary.of(r for r, _ in store.run_results(run_id))


# --- section ablation and the quantization sweep ----------------------------------------------------------


def ablation_submit(store: Store, suite_id: int, version_id: int, spec: ProviderSpec, *,
                    params: dict | None = None) -> str:  # fmt: skip
    """Queue one run over the full version and every variant that drops one part; returns the run id. The
    variants are stored as children of the version (not offered as versions of their own)."""
    base = store.get_version(version_id)
    variant_of: dict[int, str] = {}
    for label, prompt in ablation_variants(prompt_of(base)):
        version = base if label == "full" else store.save_version(
            f"{base.label} {label}", base.source, variables=prompt.variables, delimiter=prompt.delimiter,
            guardrails=prompt.guardrails.to_dict() if prompt.guardrails else None,
            options={"drop_sections": list(prompt.drop_sections)}, note=f"ablation of {base.label}: {label}",
            library_ref=base.library_ref, parent_id=base.id)  # fmt: skip
        variant_of[version.id] = label
    config = save_provider(store, spec)
    plan = RunPlan(suite_id, list(variant_of), [config.id], params=params or {},
                   description=f"ablation of {base.label}")  # fmt: skip
    run = submit(store, plan, kind="ablation", parent=version_id,
                 variants={str(k): v for k, v in variant_of.items()})  # fmt: skip
    return run.id


def ablation_result(store: Store, run_id: str) -> dict[str, Any]:
    """The score change per dropped part against the full prompt (negative: that part helped)."""
    variant_of = {int(k): v for k, v in (store.get_run(run_id).options or {}).get("variants", {}).items()}
    by_label = {variant_of[g.version_id]: g.summary for g in summary(store, run_id)}
    full = by_label["full"].mean_score if "full" in by_label else None
    return {"run_id": run_id, "variants": [
        {"variant": label, "score": s.mean_score, "pass_rate": s.pass_rate, "errors": s.errors,
         "delta": None if s.mean_score is None or full is None else s.mean_score - full}
        for label, s in by_label.items()]}  # fmt: skip


def sweep_submit(store: Store, suite_id: int, version_id: int, model: str, methods: list[str], *,
                 params: dict | None = None, concurrency: int = 4) -> str:  # fmt: skip
    """Queue the same suite on the local model under each method (each engine started on demand); returns the
    sweep's id. Each run measures its engine when it completes (perplexity, weights, speed)."""
    sweep = f"sweep-{uuid.uuid4().hex[:8]}"
    for method in methods:
        config = save_provider(store, ProviderSpec.parse(f"local:{model}@{method}"))
        plan = RunPlan(
            suite_id, [version_id], [config.id], params=params or {}, description=f"quant sweep: {method}"
        )
        submit(store, plan, concurrency=concurrency, kind="sweep", sweep=sweep, method=method)
    return sweep


def sweep_runs(store: Store, sweep: str) -> list:
    return [r for r in store.list_runs() if (r.options or {}).get("sweep") == sweep][::-1]


def sweep_measures(store: Store, run) -> dict[str, Any]:
    config = store.get_provider(run.provider_ids[0])
    provider = provider_for(spec_of(config))
    card = provider.model_card()
    total = overall(store, run.id)
    return {"ppl": provider.perplexity(perplexity_text()), "weight_mb": card.get("weight_bytes", 0) / 1e6,
            "bits_per_param": card.get("bits_per_param"), "tokens_per_s": total.tokens_per_s}  # fmt: skip


def sweep_result(store: Store, sweep: str) -> list[dict[str, Any]]:
    """One row per method: its run's score and pass rate, and the engine measures (once the run completed)."""
    rows = []
    for run in sweep_runs(store, sweep):
        total, options = overall(store, run.id), run.options or {}
        rows.append({"method": options.get("method"), "run_id": run.id, "status": run.status,
                     "score": total.mean_score, "pass_rate": total.pass_rate, "errors": total.errors,
                     **(options.get("measures") or {})})  # fmt: skip
    return rows


def perplexity_text() -> str:
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "engine" / "data" / "perplexity.txt"
    return path.read_text(encoding="utf-8")


def describe(store: Store, run, versions: dict[int, str] | None = None, providers: dict[int, str] | None = None,
             status: bool = True) -> str:  # fmt: skip
    """A run as people name it: suite · versions · providers · date (· status)."""
    if versions is None or providers is None:
        versions, providers = labels(store)
    try:
        suite = store.get_suite(run.suite_id).name if run.suite_id else "no suite"
    except StoreError:
        suite = "deleted suite"
    shown_versions = ", ".join(versions.get(v, str(v)) for v in run.version_ids[:2])
    if len(run.version_ids) > 2:
        shown_versions += f" +{len(run.version_ids) - 2}"
    shown_providers = ", ".join(providers.get(p, str(p)).removeprefix("local:") for p in run.provider_ids[:2])
    if len(run.provider_ids) > 2:
        shown_providers += f" +{len(run.provider_ids) - 2}"
    name = f"{suite} · {shown_versions} · {shown_providers} · {run.created_at:%b %d %H:%M:%S}"
    return f"{name} · {run.status}" if status else name


def validate(store: Store, plan: RunPlan) -> None:
    """Before anything is stored: every version must render with every case's variables (plus the version's
    bound values and the template's defaults). Raises PlanError listing every missing variable per case."""
    from prompting.checks import PlanError, render_problems

    cases = store.suite_cases(plan.suite_id)
    if not cases:
        raise StoreError(
            f"suite '{store.get_suite(plan.suite_id).name}' has no cases: add some before running it"
        )
    prompts = [(v.label, prompt_of(v).render) for v in (store.get_version(i) for i in plan.version_ids)]
    problems = render_problems(prompts, [(c.description, c.vars) for c in cases])
    if problems:
        raise PlanError(problems, len(cases))
