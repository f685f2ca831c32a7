"""An optimisation's outcome: the validation winner, the held-out verdict (the paired comparison Compare uses),
the validation-vs-held-out gap, the leaderboard and the budget used; and the winners saved as versions."""

from __future__ import annotations

from typing import Any

from prompting.optimize import Candidate, Space, verdict_text
from prompting.stats import wilson
from services.compare import GroupRef, compare, interval_dict
from store import Store


def changes_count(trial: dict[str, Any]) -> int:
    return sum(
        1 for v in Candidate.from_dict(trial["candidate"]).to_dict().values() if v not in (0, "", "as_is")
    )


def ranked(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct candidates, those scored on all of validation first, best score first; ties go to fewer
    changes, then the earlier. Pruned ones (scored on the rung's cases only) come last."""
    evaluated = [t for t in trials if "repeat_of" not in t]
    return sorted(evaluated, key=lambda t: (partial(t), -t["score"], changes_count(t), t["index"]))


def partial(trial: dict[str, Any]) -> bool:
    """Scored on part of validation only (pruned), or not at all (the candidate could not render)."""
    return bool(trial.get("pruned") or trial.get("invalid"))


def winner(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The best candidate scored on all of validation (the start always is)."""
    return next(t for t in ranked(trials) if not partial(t))


def make_report(store: Store, row, state: dict[str, Any]) -> dict[str, Any]:
    from services.optimize import spent

    trials, space = state["trials"], Space.from_dict(state["space"])
    base_trial = next(t for t in trials if t["index"] == 0)
    best = next(t for t in trials if t["index"] == state["chosen"])
    chosen = best["version_id"] != row.version_id
    heldout = heldout_numbers(store, row, state["heldout_run"], best["version_id"] if chosen else None)
    delta, ci = heldout.get("delta"), heldout.get("delta_ci")
    errors = heldout.get("baseline_errors", 0) + heldout.get("winner_errors", 0)
    validation_gain = best["score"] - base_trial["score"]
    base_version = store.get_version(row.version_id)
    return {
        "verdict": verdict_text(delta, ci[0] if ci else None, ci[1] if ci else None, heldout["cases"], chosen)
        + (f" ({errors} held-out cells errored and are left out of the comparison)" if errors else ""),
        "chosen": chosen,
        "heldout": heldout,
        "validation": {
            "baseline": rate_dict(base_trial),
            "winner": rate_dict(best),
            "gain": validation_gain,
        },
        # how much of the validation gain did not carry over to unseen cases: the winner's curse
        "gap": None if delta is None or not chosen else validation_gain - delta,
        "winner": describe(best, space, base_version.delimiter),
        "leaderboard": [describe(t, space, base_version.delimiter) for t in ranked(trials)],
        "trials": len(trials),
        "stopped": state.get("stopped", ""),
        "split": {k: len(v) for k, v in state["split"].items()},
        "spent": spent(store, store.get_optimization(row.id)),
    }


def heldout_numbers(store: Store, row, run_id: str, winner_id: int | None) -> dict[str, Any]:
    """Baseline vs winner on the held-out split, paired by case (the Compare page's computation)."""
    from services.runs import summary

    rates = {g.version_id: g.summary for g in summary(store, run_id)}
    base = rates[row.version_id]
    out: dict[str, Any] = {
        "run_id": run_id,
        "cases": base.cells,
        "baseline_errors": base.errors,
        "baseline": base.pass_rate,
        "baseline_ci": interval_dict(wilson(base.passed, base.scored)),
    }
    if winner_id is None:
        return out
    result = compare(
        store, GroupRef(run_id, row.version_id, row.provider_id), GroupRef(run_id, winner_id, row.provider_id)
    ).paired
    win = rates[winner_id]
    out.update(
        cases=result.cases,
        winner=win.pass_rate,
        winner_errors=win.errors,
        winner_ci=interval_dict(wilson(win.passed, win.scored)),
        delta=result.delta,
        delta_ci=interval_dict(result.delta_ci),
        p_value=result.p_value,
        test=result.test,
        comparison=result.verdict,
    )
    return out


def rate_dict(trial: dict[str, Any]) -> dict[str, Any]:
    ci = wilson(trial["passed"], trial["cells"])
    return {"rate": trial["score"], "ci": interval_dict(ci), "cases": trial["cells"]}


def describe(trial: dict[str, Any], space: Space, base_delimiter: str) -> dict[str, Any]:
    """A leaderboard row: what changed, the validation rate with its interval, what it cost."""
    candidate = Candidate.from_dict(trial["candidate"])
    changes = candidate.changes(space.instructions, base_delimiter)
    return {
        "index": trial["index"],
        "changes": ("; ".join(changes) or "baseline (the starting version)")
        + (f" — pruned after {trial['cells']} cases" if trial.get("pruned") else "")
        + (f" — could not run: {trial['invalid']}" if trial.get("invalid") else ""),
        "pruned": bool(trial.get("pruned")),
        **rate_dict(trial),
        "errors": trial["errors"],
        "cost": trial["cost"],
        "tokens": trial["tokens"],
        "version_id": trial["version_id"],
        "run_ids": trial["run_ids"],
        "candidate": trial["candidate"],
    }


def save_winners(store: Store, row, state: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """The winner and the next best (up to `keep`) as versions of the starting version's template, children of
    it with their lineage; nothing when the baseline stayed best. The label moves to the winner unless the
    held-out evaluation found it worse (its interval wholly below 0): a label is a promise."""
    from services.labels import move

    base = store.get_version(row.version_id)
    better = [t for t in ranked(state["trials"]) if t["version_id"] != base.id and not partial(t)]
    best_index = state["chosen"]
    if not better or better[0]["index"] != best_index:
        return []
    saved = []
    for rank, trial in enumerate(better[: int(row.settings.get("keep", 1))]):
        variant = store.get_version(trial["version_id"])
        options = dict(variant.options or {})
        options["lineage"] = {**options.get("lineage", {}), "optimization": row.id, "parent": base.label}
        version = store.save_version(
            base.name,
            variant.source,
            variables=variant.variables,
            delimiter=variant.delimiter,
            guardrails=variant.guardrails,
            options=options,
            note=f"{row.id} candidate {trial['index']} (validation rank {rank + 1}) from {base.label}",
            library_ref=base.library_ref if variant.source == base.source else None,
            parent_id=base.id,
            kind="user",
        )
        ci = report["heldout"].get("delta_ci")
        if rank == 0 and row.settings.get("label") and not (ci and ci[1] < 0):
            move(store, version.label, row.settings["label"], who=f"workbench optimize {row.id}")
        saved.append(version.label)
    return saved
