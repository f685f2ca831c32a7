"""Runs as people handle them: plan and validate, create and queue, resume, cancel, retry errored cells; where a
run stands and its per-group summaries; how runs are named and read.

Executing a run is the worker's (services/worker.py), which imports this module and never the reverse; sweeps
and ablations, which are several runs or variants at once, are in services/sweeps.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prompting.providers import ProviderSpec
from prompting.runner import CACHE_POLICIES, Progress
from prompting.summary import Summary, TurnRate, summarize, turn_rates
from services.specs import prompt_of, save_provider
from store import Store, StoreError
from store.models import ACTIVE_STATUSES, Run

ACTIVE = ACTIVE_STATUSES  # the statuses of a run a worker will (still) execute


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
    return store.create_run(
        suite_id=plan.suite_id,
        version_ids=plan.version_ids,
        provider_ids=plan.provider_ids,
        repeats=plan.repeats,
        strategy=plan.strategy,
        params=plan.params,
        description=plan.description,
        run_id=plan.run_id,
        options=options,
    )


def start(
    store: Store,
    suite: str,
    version_ids: list[int],
    providers: list[ProviderSpec],
    *,
    repeats: int = 1,
    strategy: str | None = None,
    params: dict[str, Any] | None = None,
    **options: Any,
) -> Run:
    """The Runs page's "Start run": the suite by name, the providers saved as configurations, a strategy name
    (None: as each template declares), queued for the worker."""
    configs = [save_provider(store, spec) for spec in providers]
    plan = RunPlan(
        store.get_suite(suite).id,
        version_ids,
        [c.id for c in configs],
        repeats,
        {"name": strategy} if strategy else {},
        dict(params or {}),
        f"UI: {suite}",
    )
    return submit(store, plan, **options)


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


def run_cases(store: Store, run) -> list:
    """The cases a run covers: its suite's, or the subset its options name (`case_ids`: an optimisation's
    evaluation on one split)."""
    cases = store.suite_cases(run.suite_id)
    subset = (run.options or {}).get("case_ids")
    if subset is None:
        return cases
    wanted = set(subset)
    return [c for c in cases if c.id in wanted]


def planned_cells(store: Store, run) -> list[tuple[int, int, int, int]]:
    cases = [c.id for c in run_cases(store, run)]
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
    if store.get_run(run_id).status in ACTIVE:
        store.set_run_status(run_id, "cancelled")


def retry_errored(store: Store, run_id: str) -> int:
    """Forget a run's errored cells and queue exactly those again; returns how many."""
    count = store.reset_errored(run_id)
    if count:
        store.enqueue(store.get_run(run_id).id, [])
    return count


def progress(store: Store, run_id: str) -> Progress:
    """Where a run stands, read from the database (for views that watch a worker)."""
    counts = store.cell_counts(run_id)
    stored, errors, passed = store.result_counts(run_id)
    total = sum(counts.values()) or stored
    return Progress(
        done=stored, total=total, passed=passed, failed=stored - errors - passed, errors=errors, elapsed_s=0.0
    )


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
    return [
        GroupSummary(vid, pid, versions.get(vid, str(vid)), providers.get(pid, str(pid)), s)
        for (vid, pid), s in groups.items()
    ]


def turn_summary(store: Store, run_id: str) -> list[tuple[str, str, list[TurnRate]]]:
    """Per version × provider with conversation cases, named: the pass rate of each turn
    (prompting.summary.turn_rates), read from the per-turn verdicts alone; groups without judged turns are left
    out."""
    groups: dict[tuple[int, int], list[tuple[dict[str, bool], bool]]] = {}
    for _, vid, pid, _, verdicts, errored in store.result_turns(run_id):
        groups.setdefault((vid, pid), []).append((verdicts, errored))
    if not any(verdicts for cells in groups.values() for verdicts, _ in cells):
        return []
    versions, providers = labels(store)
    named = [
        (versions.get(vid, str(vid)), providers.get(pid, str(pid)), turn_rates(cells))
        for (vid, pid), cells in groups.items()
    ]
    return [group for group in named if group[2]]


def overall(store: Store, run_id: str) -> Summary:
    return Summary.of(r for r, _ in store.run_results(run_id))


def describe(
    store: Store,
    run,
    versions: dict[int, str] | None = None,
    providers: dict[int, str] | None = None,
    status: bool = True,
) -> str:
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


# --- reading runs -----------------------------------------------------------------------------------------------


def get(store: Store, run_id: str) -> Run:
    return store.get_run(run_id)


def exists(store: Store, run_id: str) -> bool:
    return store.has_run(run_id)


def listing(store: Store, kind: str | None = None) -> list[Run]:
    """Every run, newest first; `kind` keeps those of one kind (ablation, sweep)."""
    return [r for r in store.list_runs() if kind is None or (r.options or {}).get("kind") == kind]


def active(store: Store) -> list[Run]:
    """Runs a worker will (still) execute, oldest first."""
    return store.active_runs()


def is_active(run: Run) -> bool:
    return run.status in ACTIVE


def stored_cells(store: Store, run_id: str) -> int:
    return store.count_results(run_id)


def strategies_of(run: Run) -> dict[str, dict]:
    """Version label -> the strategy it ran with, as recorded on the run."""
    return (run.options or {}).get("strategies") or {}
