"""Comparisons: any two groups (run × version × provider) over the cases they share, with the paired statistics of
prompting/stats.py; per-group intervals for the views; each variant of a sweep or ablation against its reference.

Cases are matched by content (description and variables), so a run of an edited copy of a suite still pairs with
the cases the two share; cases present on one side only are reported, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from prompting.checks import case_label
from prompting.stats import CaseOutcomes, GroupStats, Paired, group_stats, holm, paired
from services.runs import describe, labels
from store import Store, StoreError

ACTIVE = ("queued", "running")


def fingerprint(description: str, variables: dict) -> str:
    """A case's identity across copies of a suite: its description and variables."""
    return hashlib.sha256(
        json.dumps([description, variables], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


@dataclass(frozen=True)
class GroupRef:
    run_id: str
    version_id: int
    provider_id: int


@dataclass
class Group:
    ref: GroupRef
    label: str  # suite · version · provider · date
    status: str
    cells: int
    planned: int

    @property
    def partial(self) -> bool:
        return self.cells < self.planned


def groups(store: Store) -> list[Group]:
    """Every run × version × provider, newest run first, named as people name them."""
    versions, providers = labels(store)
    counts = store.result_group_counts()
    sizes = {s.id: n for s, n in store.list_suites()}
    out = []
    for run in store.list_runs():
        cases = sizes.get(run.suite_id, 0)
        base = describe(store, run, versions, providers, status=False).split(" · ")
        for vid in run.version_ids:
            for pid in run.provider_ids:
                label = " · ".join(
                    [
                        base[0],
                        versions.get(vid, str(vid)),
                        providers.get(pid, str(pid)).removeprefix("local:"),
                        base[-1],
                    ]
                )
                out.append(Group(GroupRef(run.id, vid, pid), label, run.status, counts.get((run.id, vid, pid), 0),
                                 cases * run.repeats))  # fmt: skip
    return out


@dataclass
class CaseRow:
    key: Hashable
    case: str
    a: float | None  # pass fraction over repeats
    b: float | None
    score_a: float | None
    score_b: float | None
    change: str  # fixed | broke | same | only in A | only in B


@dataclass
class Comparison:
    a: Group
    b: Group
    paired: Paired
    rows: list[CaseRow]
    warnings: list[str] = field(default_factory=list)


def outcomes(store: Store, ref: GroupRef) -> tuple[CaseOutcomes, dict[str, str]]:
    """A group's per-case outcomes keyed by case content, and the case labels."""
    run = store.get_run(ref.run_id)
    cases = store.case_contents(run.suite_id) if run.suite_id else []
    keys = {cid: fingerprint(description, variables) for cid, _, description, variables in cases}
    names = {
        keys[cid]: case_label(description, variables, position)
        for cid, position, description, variables in cases
    }
    cells = [(keys.get(case_id, f"case-{case_id}"), passed, score, errored)
             for case_id, vid, pid, _, passed, score, errored in store.result_outcomes(ref.run_id)
             if (vid, pid) == (ref.version_id, ref.provider_id)]  # fmt: skip
    return CaseOutcomes.from_cells(cells), names


def compare(store: Store, a: GroupRef, b: GroupRef, seed: int = 0) -> Comparison:
    """B against A on the cases they share: paired statistics, one row per case, and what to be wary of."""
    by_ref = {g.ref: g for g in groups(store)}
    if a not in by_ref or b not in by_ref:
        raise StoreError("no such run, version and provider to compare")
    (oa, names_a), (ob, names_b) = outcomes(store, a), outcomes(store, b)
    result = paired(oa, ob, seed=seed)
    names = {**names_b, **names_a}
    fa, fb = (
        dict(zip(oa.keys, oa.pass_fraction, strict=True)),
        dict(zip(ob.keys, ob.pass_fraction, strict=True)),
    )
    sa, sb = dict(zip(oa.keys, oa.score, strict=True)), dict(zip(ob.keys, ob.score, strict=True))
    rows = []
    for key in dict.fromkeys([*oa.keys, *ob.keys]):
        change = ("only in A" if key not in fb else "only in B" if key not in fa else
                  "fixed" if key in result.fixed else "broke" if key in result.broke else "same")  # fmt: skip
        rows.append(
            CaseRow(key, names.get(key, str(key)), fa.get(key), fb.get(key), sa.get(key), sb.get(key), change)
        )
    return Comparison(by_ref[a], by_ref[b], result, rows, _warnings(by_ref[a], by_ref[b], result))


def _warnings(a: Group, b: Group, result: Paired) -> list[str]:
    out = []
    for side, group in (("A", a), ("B", b)):
        if group.status in ACTIVE:
            out.append(f"{side} is still {group.status}: {group.cells} of {group.planned} cells so far")
        elif group.partial:
            out.append(
                f"{side} is {group.status} with {group.cells} of {group.planned} cells: it covers part of its suite"
            )
    if result.only_a or result.only_b:
        out.append(
            f"{len(result.only_a)} case(s) only in A and {len(result.only_b)} only in B are not compared"
        )
    if result.cases == 0:
        out.append("A and B share no case (different suites?): nothing to compare")
    return out


def run_group_stats(store: Store, run_id: str, seed: int = 0) -> dict[tuple[int, int], GroupStats]:
    """Per version × provider of a run: pass rate and score with intervals, pass@k, flaky cases."""
    run = store.get_run(run_id)
    return {(v, p): group_stats(outcomes(store, GroupRef(run_id, v, p))[0], seed)
            for v in run.version_ids for p in run.provider_ids}  # fmt: skip


def against_reference(
    store: Store, reference: GroupRef, others: list[tuple[str, GroupRef]], seed: int = 0
) -> list[dict[str, Any]]:
    """Each variant against the reference, p-values Holm-adjusted over the variants; a variant whose interval
    contains 0 is marked not significant."""
    base, _ = outcomes(store, reference)
    results = [(name, paired(base, outcomes(store, ref)[0], seed=seed)) for name, ref in others]
    adjusted = holm([r.p_value if r.p_value is not None else 1.0 for _, r in results])
    return [{"variant": name, "delta": r.delta, "low": r.delta_ci.low if r.delta_ci else None,
             "high": r.delta_ci.high if r.delta_ci else None, "delta_score": r.delta_score,
             "score_low": r.delta_score_ci.low if r.delta_score_ci else None,
             "score_high": r.delta_score_ci.high if r.delta_score_ci else None, "p": r.p_value, "p_holm": p,
             "significant": p < 0.05 and r.delta_ci is not None and not r.delta_ci.contains(0.0)}
            for (name, r), p in zip(results, adjusted, strict=True)]  # fmt: skip


def run_outcomes(store: Store, run_id: str) -> CaseOutcomes:
    """All cells of a run keyed by (case content, version, provider): how two runs of a suite pair up."""
    run = store.get_run(run_id)
    versions, providers = labels(store)
    contents = store.case_contents(run.suite_id) if run.suite_id else []
    cases = {cid: fingerprint(description, variables) for cid, _, description, variables in contents}
    cells = [((cases.get(case_id, f"case-{case_id}"), versions.get(vid, str(vid)), providers.get(pid, str(pid))),
              passed, score, errored)
             for case_id, vid, pid, _, passed, score, errored in store.result_outcomes(run_id)]  # fmt: skip
    return CaseOutcomes.from_cells(cells)


def compare_runs(store: Store, run_a: str, run_b: str, seed: int = 0) -> Paired:
    """Run B against run A over the cells they share (same case, version and provider)."""
    result = paired(run_outcomes(store, run_a), run_outcomes(store, run_b), seed=seed)
    if result.cases == 0:
        raise StoreError(
            f"runs {run_a} and {run_b} have no cells in common (different suites, versions or providers)"
        )
    return result


def interval_dict(ci) -> list[float] | None:
    return None if ci is None else [ci.low, ci.high]


def paired_dict(result: Paired) -> dict[str, Any]:
    return {"cases": result.cases, "only_a": len(result.only_a), "only_b": len(result.only_b),
            "pass_rate_a": result.rate_a, "pass_rate_b": result.rate_b, "delta": result.delta,
            "delta_ci": interval_dict(result.delta_ci), "delta_score": result.delta_score,
            "delta_score_ci": interval_dict(result.delta_score_ci), "p_value": result.p_value, "test": result.test,
            "min_detectable": result.mdd, "significant": result.significant, "verdict": result.verdict,
            "fixed": len(result.fixed), "broke": len(result.broke)}  # fmt: skip


def stats_dict(stats: GroupStats) -> dict[str, Any]:
    return {"cases": stats.cases, "pass_rate": stats.pass_rate, "pass_rate_ci": interval_dict(stats.pass_ci),
            "mean_score": stats.mean_score, "mean_score_ci": interval_dict(stats.score_ci),
            "pass_at_k": stats.pass_at, "pass_hat_k": stats.pass_hat, "flaky_cases": len(stats.flaky)}  # fmt: skip


def ablation_effects(store: Store, run_id: str, seed: int = 0) -> list[dict[str, Any]]:
    """Each dropped part against the full prompt, on pass rate and mean score, with intervals and Holm-adjusted
    p-values (negative: the part helped)."""
    from services.runs import ablation_result

    run = store.get_run(run_id)
    variant_of = {int(k): v for k, v in (run.options or {}).get("variants", {}).items()}
    full = next((vid for vid, name in variant_of.items() if name == "full"), None)
    if full is None:
        return []
    provider = run.provider_ids[0]
    others = [(name, GroupRef(run_id, vid, provider)) for vid, name in variant_of.items() if name != "full"]
    means = {row["variant"]: row for row in ablation_result(store, run_id)["variants"]}
    rows = against_reference(store, GroupRef(run_id, full, provider), others, seed)
    return [{**row, "score": means.get(row["variant"], {}).get("score")} for row in rows]


def sweep_effects(store: Store, sweep: str, seed: int = 0) -> list[dict[str, Any]]:
    """Each method of a quantization sweep against the first one (the reference), paired by case."""
    from services.runs import sweep_runs

    runs_ = [r for r in sweep_runs(store, sweep) if r.status not in ACTIVE]
    if len(runs_) < 2:
        return []
    ref = runs_[0]
    others = [
        ((r.options or {}).get("method", r.id), GroupRef(r.id, r.version_ids[0], r.provider_ids[0]))
        for r in runs_[1:]
    ]
    rows = against_reference(store, GroupRef(ref.id, ref.version_ids[0], ref.provider_ids[0]), others, seed)
    return [{**row, "reference": (ref.options or {}).get("method", ref.id)} for row in rows]
