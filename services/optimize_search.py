"""The search step of an optimisation: Optuna's TPE sampler proposes the next candidate from the validation scores
so far, and the budget says when to stop. The study is rebuilt from the stored trials at every step (seeded by
the trial count), so a resumed optimisation proposes what the uninterrupted one would have."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import CategoricalDistribution

from prompting.errors import PromptingError
from prompting.optimize import Candidate, Space, build, opening_candidates, shows_demos
from prompting.summary import Summary
from services.specs import prompt_of

if TYPE_CHECKING:
    from services.optimize import Job

STARTUP_TRIALS = 5  # random candidates before TPE models the scores
PRUNE_AFTER = 4  # fully scored candidates (the start included) before new ones meet the rung first
MIN_RUNG = 5  # cases in the rung, at least
# successive halving's decision: a candidate whose rung score falls below the median of the fully scored ones
PRUNER = optuna.pruners.PercentilePruner(50.0, n_startup_trials=PRUNE_AFTER, n_warmup_steps=0)
MAX_REPEATS_IN_A_ROW = (
    25  # the sampler proposing only evaluated candidates this often: the space is exhausted
)


def distributions(space: Space) -> dict[str, CategoricalDistribution]:
    return {
        "instruction": CategoricalDistribution(list(range(len(space.instructions)))),
        "technique": CategoricalDistribution(space.techniques),
        "demos": CategoricalDistribution(space.demo_counts),
        "delimiter": CategoricalDistribution(space.delimiters),
        "drop": CategoricalDistribution(space.drops),
    }


def study_for(trials: list[dict[str, Any]], space: Space, seed: int) -> optuna.Study:
    """A study holding every stored trial (a fully scored one with its validation score, a pruned one with its
    rung score), its sampler seeded by where the search stands."""
    sampler = optuna.samplers.TPESampler(seed=seed * 1000 + len(trials), n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = distributions(space)
    for trial in trials:
        if "repeat_of" in trial or trial.get(
            "invalid"
        ):  # counted once; a candidate that never ran says nothing
            continue
        rung = {0: trial.get("rung_score", trial["score"])}
        if trial.get("pruned"):
            state, value = optuna.trial.TrialState.PRUNED, None
        else:
            state, value = optuna.trial.TrialState.COMPLETE, trial["score"]
        study.add_trial(
            optuna.trial.create_trial(
                params=dict(trial["candidate"]),
                distributions=dists,
                value=value,
                state=state,
                intermediate_values=rung,
            )
        )
    return study


def content_key(built) -> str:
    payload = [built.source, built.variables, built.delimiter, built.guardrails, built.drop_sections]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def next_candidate(job: Job) -> Candidate | None:
    """Queue the next candidate's first validation run (or record a repeat of one already evaluated, at no cost);
    None when the search should stop (the reason is kept in the state)."""
    trials, space = job.state["trials"], job.space()
    reason = stop_reason(job, space)
    if reason:
        job.state["stopped"] = reason
        return None
    opening = opening_candidates(space, shows_demos(prompt_of(job.base).template))
    if not trials:
        candidate = Candidate(delimiter=space.delimiters[0], drop=space.drops[0])
    elif len(trials) <= len(opening):
        candidate = opening[len(trials) - 1]
    else:
        asked = study_for(trials, space, int(job.row.settings["seed"])).ask(distributions(space))
        candidate = Candidate.from_dict(asked.params)
    index = len(trials)
    built = build(prompt_of(job.base), job.base.name, candidate, space, job.state["demos"], job.input_vars())
    key = content_key(built)
    seen = next((t for t in trials if t["key"] == key), None)
    if seen is not None:
        repeat = {**seen, "index": index, "candidate": candidate.to_dict(), "repeat_of": seen["index"]}
        trials.append(repeat)
        job.state["repeats_in_a_row"] = job.state.get("repeats_in_a_row", 0) + 1
        return candidate
    job.state["repeats_in_a_row"] = 0
    version_id = job.base.id if index == 0 else job.candidate_version(built, index)
    # successive halving: once enough candidates are fully scored, a new one first meets the rung's cases
    scored = sum(1 for t in trials if not t.get("pruned") and not t.get("invalid") and "repeat_of" not in t)
    staged = scored >= PRUNE_AFTER and len(rung_cases(job)) < len(job.split["validation"])
    cases = rung_cases(job) if staged else job.split["validation"]
    try:
        run_id = job.evaluate(
            [version_id], "validation", f"candidate {index}" + (" rung" if staged else ""), cases
        )
    except (
        PromptingError
    ) as exc:  # the candidate cannot render with the cases: it scores nothing, the search goes on
        trials.append(invalid_trial(index, candidate, key, version_id, str(exc)))
        return candidate
    job.state["pending"] = {
        "index": index,
        "candidate": candidate.to_dict(),
        "key": key,
        "version_id": version_id,
        "run_ids": [run_id],
        "stage": "rung" if staged else "full",
    }
    return candidate


def invalid_trial(index: int, candidate: Candidate, key: str, version_id: int, reason: str) -> dict[str, Any]:
    return {
        "index": index,
        "candidate": candidate.to_dict(),
        "key": key,
        "version_id": version_id,
        "run_ids": [],
        "invalid": reason[:300],
        "score": 0.0,
        **dict.fromkeys(("passed", "cells", "errors", "cost", "tokens", "rung_score"), 0),
    }


def rung_cases(job: Job) -> list[int]:
    """The validation cases every candidate meets first: a third of them (the split is stratified and dealt in
    turn, so its first third mixes the strata)."""
    validation = job.split["validation"]
    return validation[: max(MIN_RUNG, len(validation) // 3)]


def record_pending(job: Job) -> None:
    """A finished validation run: after the rung, prune the candidate (Optuna's percentile pruner against the
    fully scored candidates on the same cases) or queue the rest of validation; after the rest, it becomes a
    trial scored on the whole validation split. An errored cell counts as a failure, so a candidate cannot win by
    erroring on its hard cases."""
    pending = job.state["pending"]
    rung = rung_cases(job)
    numbers = outcome(job.store, pending["run_ids"], set(rung))
    if pending["stage"] == "rung":
        if pruned(job, numbers["rung_score"]):
            job.state.pop("pending")
            job.state["trials"].append({**pending, **numbers, "pruned": True, "score": numbers["rung_score"]})
            return
        rest = [c for c in job.split["validation"] if c not in set(rung)]
        pending["run_ids"].append(
            job.evaluate([pending["version_id"]], "validation", f"candidate {pending['index']} rest", rest)
        )
        pending["stage"] = "full"
        return
    job.state.pop("pending")
    job.state["trials"].append({**pending, **numbers, "score": numbers["passed"] / max(numbers["cells"], 1)})


def outcome(store, run_ids: list[str], rung: set[int]) -> dict[str, Any]:
    """A candidate's validation numbers over its runs, and its pass share on the rung's cases."""
    results = [r for run_id in run_ids for r, _ in store.run_results(run_id)]
    on_rung = [r for r in results if r.case_id in rung]
    total = Summary.of(results)  # the runs' results read once: the summary and the rung share them
    return {
        "passed": total.passed,
        "cells": total.cells,
        "errors": total.errors,
        "cost": total.cost,
        "tokens": total.tokens_in + total.tokens_out,
        "rung_score": sum(1 for r in on_rung if r.error is None and r.passed) / max(len(on_rung), 1),
    }


def pruned(job: Job, rung_score: float) -> bool:
    """Whether a candidate's rung score is below the median of the fully scored candidates' on the same cases."""
    space = job.space()
    study = study_for(job.state["trials"], space, int(job.row.settings["seed"]))
    frozen = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING,
        params={},
        distributions={},
        intermediate_values={0: rung_score},
    )
    return PRUNER.prune(study, frozen)


def stop_reason(job: Job, space: Space) -> str | None:
    """Why the search stops now, or None: the budget (keeping what the held-out evaluation needs), the trial
    limit, or a space with nothing left to try."""
    from services.optimize import DEFAULT_CANDIDATES, MAX_TRIALS

    trials = job.state["trials"]
    if not trials:
        return None
    distinct = len({t["key"] for t in trials})
    if len(trials) >= MAX_TRIALS:
        return f"reached the limit of {MAX_TRIALS} candidates"
    if distinct >= space.size:
        return f"evaluated every candidate of the search space ({space.size})"
    if job.state.get("repeats_in_a_row", 0) >= MAX_REPEATS_IN_A_ROW:
        return f"the sampler proposed only evaluated candidates {MAX_REPEATS_IN_A_ROW} times in a row"
    budget = job.row.settings["budget"]
    if not any(budget.get(k) is not None for k in ("cells", "minutes", "cost")):
        if distinct > DEFAULT_CANDIDATES:
            return f"default budget: the baseline and {DEFAULT_CANDIDATES} candidates"
        return None
    return budget_reason(job, budget)


def budget_reason(job: Job, budget: dict[str, Any]) -> str | None:
    """Whether one more candidate on validation, and then the held-out evaluation, would exceed a budget; the
    minutes and cost of what is left are estimated per cell from what was spent so far."""
    from services.optimize import spent

    used = spent(job.store, job.row)
    ahead = len(job.split["validation"]) + 2 * len(job.split["heldout"])
    cells = used["cells"] or 1
    if budget.get("cells") is None and budget.get("minutes") is None and not used["cost"] and used["cells"]:
        from services.optimize import DEFAULT_CANDIDATES

        if len({t["key"] for t in job.state["trials"]}) > DEFAULT_CANDIDATES:  # a cost budget on a free model
            return f"the model costs nothing: the default of {DEFAULT_CANDIDATES} candidates applies"
    if budget.get("cells") is not None and used["cells"] + ahead > budget["cells"]:
        return f"budget of {budget['cells']} cells reached ({used['cells']} used; held-out needs its own)"
    if budget.get("minutes") is not None and used["minutes"] * (1 + ahead / cells) > budget["minutes"]:
        return f"budget of {budget['minutes']:g} minutes reached ({used['minutes']:.1f} used; time kept for held-out)"
    if budget.get("cost") is not None and used["cost"] * (1 + ahead / cells) > budget["cost"]:
        return f"budget of ${budget['cost']:g} reached (${used['cost']:.4f} used; cost kept for held-out)"
    return None
