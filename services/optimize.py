"""Prompt optimisation as a job: submit one, and the steps a worker drives it through.

split -> train (the starting version on the train split: its right answers become demonstrations, its wrong ones
ground the proposer) -> propose (instruction rewrites from the proposer, shown train cases only) -> search (Optuna's
TPE proposes candidates, each evaluated as a run on the validation split, until the budget says stop) -> heldout
(one run: the baseline and the validation winner on the held-out split, the only time it is used) -> report.

Every evaluation is an ordinary run (kind "optimize"), so progress shows wherever runs show, a killed worker's
cells go back to the queue, and a resumed optimisation finds its finished evaluations stored. A step never
blocks on a run: it submits one and returns, and the worker executes the run before it steps again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import optuna

from prompting.optimize import (
    PARTS,
    SPLITS,
    OptimizeError,
    Space,
    demo_input,
    expected_output,
    instruction_of,
    search_space,
    split_cases,
)
from prompting.providers import Provider, ProviderSpec
from prompting.runner import ablation_variants
from services.runs import RunPlan, overall, resume, submit
from services.specs import effective_assertions, prompt_of, save_provider, spec_of
from store import Store, StoreError

MAX_TRIALS = 200  # the search stops after this many candidates (duplicates included) whatever the budget
DEFAULT_CANDIDATES = 15  # without a budget: the baseline and this many candidates on validation
PROPOSALS = 6  # instruction rewrites asked of the proposer
ACTIVE = ("queued", "running")

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Budget:
    cells: int | None = None
    minutes: float | None = None
    cost: float | None = None

    def check(self) -> None:
        for name, value in (
            ("budget-cells", self.cells),
            ("budget-minutes", self.minutes),
            ("budget-cost", self.cost),
        ):
            if value is not None and value <= 0:
                raise OptimizeError(f"--{name} must be above 0 (got {value}); leave it out for the default")


@dataclass
class Request:
    """What a person asks for: `workbench optimize` and the Optimize page both build one."""

    suite: str | int
    version: str | int
    provider: ProviderSpec
    proposer: ProviderSpec | None = None
    budget: Budget = field(default_factory=Budget)
    seed: int = 0
    parts: tuple[str, ...] = PARTS
    keep: int = 1  # child versions saved: the winner (labelled), and the next best
    label: str = "optimized"


def submit_optimization(store: Store, request: Request) -> str:
    """Check the request and queue the optimisation for a worker; returns its id. Nothing is written when the
    request is refused (suite too small to split, budget too small, a version with nothing to change)."""
    check_settings(request.budget, tuple(request.parts), request.keep)
    parts = set(request.parts)
    suite = store.get_suite(request.suite)
    version = store.get_version(request.version)
    cases = store.suite_cases(suite.id)
    keyed = [(c.id, list(c.tags), content_key(c.vars)) for c in cases]
    split = split_cases(keyed, request.seed, f"suite '{suite.name}'")
    prompt = prompt_of(version)
    if "instruction" in parts and not instruction_of(prompt)[0]:
        raise OptimizeError(
            f"version {version.label} has no instruction to rewrite (no bound `instruction` variable and no "
            "guardrails task): bind one, or switch off instruction rewrites"
        )
    minimum = minimum_cells(split)
    if request.budget.cells is not None and request.budget.cells < minimum:
        raise OptimizeError(
            f"--budget-cells {request.budget.cells} is below the {minimum} this suite needs (train "
            f"{len(split.train)} + baseline and one candidate on validation {2 * len(split.validation)} + "
            f"held-out for both {2 * len(split.heldout)}): raise it"
        )
    target = save_provider(store, request.provider)
    proposer = save_provider(store, request.proposer or request.provider)
    settings = {
        "seed": request.seed,
        "parts": [p for p in PARTS if p in parts],
        "budget": request.budget.__dict__,
        "keep": request.keep,
        "label": request.label,
    }
    row = store.create_optimization(
        suite_id=suite.id,
        version_id=version.id,
        provider_id=target.id,
        proposer_id=proposer.id,
        settings=settings,
        state={"split": split.to_dict(), "trials": []},
    )
    return row.id


def content_key(case_vars: dict[str, Any]) -> str:
    """What makes two cases the same input (dealt into one split together)."""
    import json

    return json.dumps(case_vars, sort_keys=True, ensure_ascii=False, default=str)


def minimum_cells(split) -> int:
    return len(split.train) + 2 * len(split.validation) + 2 * len(split.heldout)


def cancel(store: Store, optimization_id: str) -> None:
    """Stop an optimisation: its evaluation in flight is cancelled too; nothing is saved as a version."""
    row = store.get_optimization(optimization_id)
    if row.status not in ACTIVE:
        return
    store.update_optimization(optimization_id, status="cancelled", owner=None)
    from services.runs import cancel as cancel_run

    for run_id in runs_of(row):
        cancel_run(store, run_id)


def runs_of(row) -> list[str]:
    state = row.state or {}
    ids = [state.get("train_run"), state.get("heldout_run")]
    for trial in [*state.get("trials", []), state.get("pending") or {}]:
        ids += trial.get("run_ids", [])
    return [i for i in dict.fromkeys(ids) if i]


# --- the steps ------------------------------------------------------------------------------------------------


def step(store: Store, optimization_id: str, providers: dict[int, Provider] | None = None) -> str:
    """Move an optimisation one step: "advanced" (something was done), "waiting" (its run is not finished) or
    "done". A failure marks it failed with the message; nothing is saved as a version then."""
    row = store.get_optimization(optimization_id)
    if row.status not in ACTIVE:
        return "done"
    if row.status == "queued":
        row = store.update_optimization(optimization_id, status="running")
    job = Job(store, row, providers or {})
    try:
        return getattr(job, f"phase_{row.phase}")()
    except Stopped:
        return "done"
    except (OptimizeError, StoreError) as exc:
        error = str(exc)
    except Exception as exc:  # a bug or a provider failure costs this optimisation, never the worker
        error = f"{type(exc).__name__}: {exc}"
    store.update_optimization(optimization_id, only_if_active=True, status="failed", error=error, owner=None)
    return "done"


class Stopped(Exception):
    """The optimisation was cancelled while a worker stepped it: the step ends without side effects."""


class Job:
    """One optimisation being stepped: its row, and how to reach its providers."""

    def __init__(self, store: Store, row, providers: dict[int, Provider]):
        self.store, self.row, self.providers = store, row, providers
        self.state: dict[str, Any] = dict(row.state or {})
        self.base = store.get_version(row.version_id)
        self.split = {k: list(row.state["split"][k]) for k in SPLITS}

    def save(self, **fields: Any) -> None:
        self.row = self.store.update_optimization(
            self.row.id, only_if_active=True, state=self.state, **fields
        )

    def provider(self, config_id: int) -> Provider:
        if config_id in self.providers:
            return self.providers[config_id]
        from services.providers import provider_for

        return provider_for(spec_of(self.store.get_provider(config_id)))

    def evaluate(self, version_ids: list[int], split: str, what: str, cases: list[int] | None = None) -> str:
        """Queue a run of versions on one split of the suite (or the given cases of it); its id. The id follows
        from the optimisation and what is evaluated, so a step repeated after a crash finds the run it queued
        instead of queueing a second one (the held-out split is evaluated once, whatever happens)."""
        run_id = f"{self.row.id}-{re.sub(r'[^a-z0-9]+', '-', what.lower()).strip('-')}"
        if self.store.get_optimization(self.row.id).status not in ACTIVE:
            raise Stopped
        if self.store.has_run(run_id):
            if not sum(self.store.cell_counts(run_id).values()):  # stored, but its cells never queued
                resume(self.store, run_id)
            return run_id
        plan = RunPlan(
            self.row.suite_id,
            version_ids,
            [self.row.provider_id],
            params=self.params(),
            description=f"{self.row.id}: {what}",
            run_id=run_id,
        )
        submit(
            self.store,
            plan,
            kind="optimize",
            optimization=self.row.id,
            split=split,
            case_ids=cases if cases is not None else self.split[split],
        )
        return run_id

    def params(self) -> dict[str, Any]:
        """The decoding parameters of every evaluation: the suite's own (its `workbench: params`), greedy unless
        it says otherwise, so candidates differ by their prompt and not by the draw (self-consistency still
        samples: its template sets its own temperature)."""
        suite_params = dict(self.store.get_suite(self.row.suite_id).config.get("params") or {})
        return {"temperature": 0, **suite_params}

    def finished(self, run_id: str) -> bool:
        run = self.store.get_run(run_id)
        if run.status in ("cancelled", "failed"):
            raise OptimizeError(f"evaluation run {run_id} was {run.status}: start the optimisation again")
        return run.status == "completed"

    # --- phases -------------------------------------------------------------------------------------

    def phase_split(self) -> str:
        self.state["started"] = time.time()  # the minutes budget counts from here, not from the queue
        self.state["train_run"] = self.evaluate([self.base.id], "train", "train: the starting version")
        self.save(phase="train")
        return "advanced"

    def phase_train(self) -> str:
        if not self.finished(self.state["train_run"]):
            return "waiting"
        passed, failed = train_outcomes(self.store, self.state["train_run"])
        self.state["demos"] = passed
        self.state["failures"] = failed
        self.save(phase="propose")
        return "advanced"

    def phase_propose(self) -> str:
        from prompting.proposer import propose

        prompt = prompt_of(self.base)
        parts = set(self.row.settings["parts"])
        proposals = []
        if "instruction" in parts:
            proposer = self.provider(self.row.proposer_id)
            seed = int(self.row.settings["seed"])
            proposals, usage = propose(
                proposer,
                prompt,
                self.state["failures"],
                [d for d in self.state["demos"] if d["source"] == "bootstrapped"],
                PROPOSALS,
                seed,
            )
            self.state["proposer_cost"] = usage.cost
            self.state["proposer_tokens"] = usage.tokens_in + usage.tokens_out
        ablations = [label for label, _ in ablation_variants(prompt)[1:] if not label.startswith("-example")]
        space = search_space(prompt, parts, proposals, len(self.state["demos"]), self.input_vars(), ablations)
        self.state["space"] = space.to_dict()
        self.save(phase="search")
        return "advanced"

    def input_vars(self) -> list[str]:
        """The variables the suite's cases give (what a generated technique template shows)."""
        names: dict[str, None] = {}
        for case in self.store.suite_cases(self.row.suite_id):
            names.update(dict.fromkeys(case.vars))
        return list(names)

    def phase_search(self) -> str:
        from services.optimize_search import next_candidate, record_pending

        pending = self.state.get("pending")
        if pending:
            if not self.finished(pending["run_ids"][-1]):
                return "waiting"
            record_pending(self)
            self.save()
            return "advanced"
        if next_candidate(self) is None:
            self.save(phase="heldout")
            return "advanced"
        self.save()
        return "advanced"

    def phase_heldout(self) -> str:
        from services.optimize_report import winner

        best = winner(self.state["trials"])
        if "heldout_run" not in self.state:
            versions = [self.base.id] + ([best["version_id"]] if best["version_id"] != self.base.id else [])
            self.state["chosen"] = best["index"]
            self.state["heldout_run"] = self.evaluate(
                versions, "heldout", "held-out: the start and the winner"
            )
            self.save()
            return "advanced"
        if not self.finished(self.state["heldout_run"]):
            return "waiting"
        self.save(phase="report")
        return "advanced"

    def phase_report(self) -> str:
        from services.optimize_report import make_report, save_winners

        if self.store.get_optimization(self.row.id).status not in ACTIVE:
            raise Stopped
        report = make_report(self.store, self.row, self.state)
        if "saved" not in self.state:  # a report step repeated after a crash saves no second copy
            self.state["saved"] = save_winners(self.store, self.row, self.state, report)
            self.save()
        report["saved"] = self.state["saved"]
        self.save(phase="done", status="completed", report=report, owner=None)
        return "done"

    def space(self) -> Space:
        return Space.from_dict(self.state["space"])

    def candidate_version(self, built, index: int) -> int:
        """A candidate stored as a variant of the starting version (hidden from pickers until it wins)."""
        version = self.store.save_version(
            f"{self.base.label} {self.row.id}",
            built.source,
            variables=built.variables,
            delimiter=built.delimiter,
            guardrails=built.guardrails,
            options={
                "drop_sections": built.drop_sections,
                "optimization": self.row.id,
                "lineage": built.lineage,
                **({"params": built.params} if built.params else {}),
            },
            note=f"candidate {index} of {self.row.id}",
            parent_id=self.base.id,
        )
        return version.id


def train_outcomes(store: Store, run_id: str) -> tuple[list[dict], list[dict]]:
    """The train split's cases as the starting version did on them: demonstrations ({case_id, vars, output,
    source}) and failures ({case_id, input, expected, output}) to ground the proposer. Demonstrations are the
    model's own right answers first ("bootstrapped"), then failed cases whose assertions say what the right
    answer is ("labelled"), so a model that gets nothing right still has examples of the expected form."""
    bootstrapped, labelled, failed = [], [], []
    cases = {c.id: c for c in store.suite_cases(store.get_run(run_id).suite_id)}
    for result, _ in store.run_results(run_id):
        case = cases[result.case_id]
        if result.error is not None:
            continue
        if result.passed:
            answer = (result.answer or result.output or "").strip()
            bootstrapped.append(
                {"case_id": case.id, "vars": dict(case.vars), "output": answer, "source": "bootstrapped"}
            )
            continue
        expected = expected_output(effective_assertions(case), case.expected)
        if expected is not None:
            labelled.append(
                {"case_id": case.id, "vars": dict(case.vars), "output": expected, "source": "labelled"}
            )
        failed.append(
            {
                "case_id": case.id,
                "input": demo_input(case.vars),
                "expected": expected or "(see the case's assertions)",
                "output": (result.output or "").strip()[:400],
            }
        )
    return bootstrapped + labelled, failed


def spent(store: Store, row) -> dict[str, float]:
    """What an optimisation has used so far: cells stored in its runs, their cost, wall-clock minutes."""
    run_ids = runs_of(row)
    totals = [overall(store, r) for r in run_ids]
    state = row.state or {}
    return {
        "cells": sum(t.cells for t in totals),
        "cost": sum(t.cost for t in totals) + float(state.get("proposer_cost", 0.0)),
        "minutes": (time.time() - float(state.get("started", time.time()))) / 60,
    }


# --- reading optimisations --------------------------------------------------------------------------------


def listing(store: Store) -> list:
    """Every optimisation, newest first."""
    return store.list_optimizations()


def get(store: Store, optimization_id: str):
    return store.get_optimization(optimization_id)


def active(store: Store) -> list:
    """Optimisations a worker will (still) step, oldest first."""
    return store.active_optimizations()


PHASE_TEXT = {
    "split": "splitting the suite",
    "train": "the starting version on the train split",
    "propose": "asking the proposer for instructions",
    "search": "searching on the validation split",
    "heldout": "the baseline and the winner on the held-out split",
    "report": "writing the report",
    "done": "done",
}


def progress(store: Store, optimization_id: str) -> dict[str, Any]:
    """Where an optimisation stands, for any view: phase, candidates evaluated, the best validation score so far,
    the run in flight (done/total cells) and what was spent."""
    from services.runs import progress as run_progress

    row = store.get_optimization(optimization_id)
    state = row.state or {}
    trials = [t for t in state.get("trials", []) if "repeat_of" not in t and not t.get("pruned")]
    current = (state.get("pending") or {}).get("run_ids", [None])[-1] or (
        state.get("heldout_run")
        if row.phase == "heldout"
        else state.get("train_run")
        if row.phase == "train"
        else None
    )
    cells = run_progress(store, current) if current else None
    baseline = next((t["score"] for t in trials if t["index"] == 0), None)
    return {
        "id": row.id,
        "status": row.status,
        "phase": row.phase,
        "phase_text": PHASE_TEXT.get(row.phase, row.phase),
        "candidates": len(trials),
        "best": max((t["score"] for t in trials), default=None),
        "baseline": baseline,
        "run": {"id": current, "done": cells.done, "total": cells.total} if cells else None,
        "spent": spent(store, row),
        "error": row.error,
    }


def describe(store: Store, row, status: bool = True) -> str:
    """An optimisation as people name it: id · suite · version · provider · date (· status)."""
    suite = store.get_suite(row.suite_id).name
    version = store.get_version(row.version_id).label
    provider = store.get_provider(row.provider_id).label.removeprefix("local:")
    name = f"{row.id} · {suite} · {version} · {provider} · {row.created_at:%b %d %H:%M}"
    return f"{name} · {row.status}" if status else name


def check_settings(budget: Budget, parts: tuple[str, ...], keep: int) -> None:
    """The checks a request's settings pass before anything is looked up or written."""
    budget.check()
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise OptimizeError(
            f"unknown search part(s) {', '.join(sorted(unknown))}; the parts are: {', '.join(PARTS)}"
        )
    if not parts:
        raise OptimizeError("nothing to search: switch on at least one part (" + ", ".join(PARTS) + ")")
    if keep < 1:
        raise OptimizeError("--keep must be at least 1 (the winner)")


def local_default() -> ProviderSpec:
    from settings import get_settings

    config = get_settings()
    return ProviderSpec.parse(f"local:{config.default_model}@{config.default_quant}")
