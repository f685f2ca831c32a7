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
from prompting.conversation import is_conversation, turn_label, turn_order
from prompting.stats import CaseOutcomes, GroupStats, Paired, group_stats, holm, paired
from services.runs import ACTIVE, describe, labels
from services.sweeps import sweep_result, sweep_runs
from store import Store, StoreError


def fingerprint(description: str, variables: dict) -> str:
    """A case's identity across copies of a suite: its description and variables."""
    return hashlib.sha256(
        json.dumps([description, variables], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


@dataclass(frozen=True)
class GroupRef:
    """What one side of a comparison is: a run, narrowed to one version and one provider or not (None: all)."""

    run_id: str
    version_id: int | None = None
    provider_id: int | None = None

    @property
    def whole_run(self) -> bool:
        return self.version_id is None and self.provider_id is None


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
        planned = sizes.get(run.suite_id, 0) * run.repeats
        parts = describe(store, run, versions, providers, status=False).split(" · ")
        suite, date = parts[0], parts[-1]
        for vid in run.version_ids:
            for pid in run.provider_ids:
                provider = providers.get(pid, str(pid)).removeprefix("local:")
                label = " · ".join([suite, versions.get(vid, str(vid)), provider, date])
                cells = counts.get((run.id, vid, pid), 0)
                out.append(Group(GroupRef(run.id, vid, pid), label, run.status, cells, planned))
    return out


def whole_run(store: Store, run_id: str) -> Group:
    """A run as one side of a comparison (every version and provider of it)."""
    run = store.get_run(run_id)
    sizes = {s.id: n for s, n in store.list_suites()}
    planned = sizes.get(run.suite_id, 0) * run.repeats * len(run.version_ids) * len(run.provider_ids)
    label = describe(store, run, status=False)
    return Group(GroupRef(run.id), label, run.status, store.count_results(run.id), planned)


@dataclass
class CaseRow:
    """One row of the per-case table, from the same paired data as the headline."""

    key: Hashable
    case: str
    a: float | None  # pass fraction over repeats
    b: float | None
    score_a: float | None
    score_b: float | None
    change: str  # improved | regressed | unchanged | only in A | only in B

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class TurnChange:
    """Conversation cases: one turn's paired comparison ("1", "2", … or "conversation")."""

    turn: str
    paired: Paired

    @property
    def label(self) -> str:
        return turn_label(self.turn)


@dataclass
class Comparison:
    a: Group
    b: Group
    paired: Paired
    rows: list[CaseRow]
    warnings: list[str] = field(default_factory=list)
    matched_on: str = "case"  # what pairs the cells: case, case and version, case and provider...
    turns: list[TurnChange] = field(default_factory=list)  # per turn, where the cases are conversations


@dataclass(frozen=True)
class Keying:
    """What identifies a cell across the two sides: always the case's content; the version and the provider only
    where a side holds several of them (a run of int8 and one of int4 pair on the case alone)."""

    version: bool = False
    provider: bool = False

    @classmethod
    def between(cls, store: Store, a: GroupRef, b: GroupRef) -> Keying:
        def spread(ref: GroupRef) -> tuple[int, int]:
            run = store.get_run(ref.run_id)
            versions = 1 if ref.version_id is not None else len(run.version_ids)
            providers = 1 if ref.provider_id is not None else len(run.provider_ids)
            return versions, providers

        (va, pa), (vb, pb) = spread(a), spread(b)
        return cls(version=max(va, vb) > 1, provider=max(pa, pb) > 1)

    @property
    def text(self) -> str:
        return " and ".join(
            ["case", *(["version"] if self.version else []), *(["provider"] if self.provider else [])]
        )


def outcomes(
    store: Store, ref: GroupRef, keying: Keying = Keying(), rows: list | None = None
) -> tuple[CaseOutcomes, dict[Hashable, str]]:
    """A side's per-case outcomes keyed by case content (plus version / provider labels as `keying` says), and
    the rows' names; `rows` (result_outcomes' shape) replaces the run's own verdicts, e.g. one turn's."""
    run = store.get_run(ref.run_id)
    cases = store.case_contents(run.suite_id) if run.suite_id else []
    fingerprints = {cid: fingerprint(description, variables) for cid, _, description, variables in cases}
    case_names = {
        cid: case_label(description, variables, position) for cid, position, description, variables in cases
    }
    versions, providers = labels(store) if keying.version or keying.provider else ({}, {})
    cells, names = [], {}
    rows = store.result_outcomes(ref.run_id) if rows is None else rows
    for case_id, vid, pid, _, passed, score, errored in rows:
        if ref.version_id not in (None, vid) or ref.provider_id not in (None, pid):
            continue
        parts = [fingerprints.get(case_id, f"case-{case_id}")]
        shown = [case_names.get(case_id, f"case {case_id}")]
        if keying.version:
            parts.append(versions.get(vid, str(vid)))
            shown.append(versions.get(vid, str(vid)))
        if keying.provider:
            parts.append(providers.get(pid, str(pid)))
            shown.append(providers.get(pid, str(pid)).removeprefix("local:"))
        key = parts[0] if len(parts) == 1 else tuple(parts)
        names[key] = " · ".join(shown)
        cells.append((key, passed, score, errored))
    return CaseOutcomes.from_cells(cells), names


def describe_group(store: Store, ref: GroupRef) -> Group:
    if ref.whole_run:
        return whole_run(store, ref.run_id)
    found = next((g for g in groups(store) if g.ref == ref), None)
    if found is None:
        raise StoreError(f"run {ref.run_id} has no version {ref.version_id} with provider {ref.provider_id}")
    return found


def compare(store: Store, a: GroupRef, b: GroupRef, seed: int = 0) -> Comparison:
    """B against A over the cases they share: paired statistics, one row per case from the same paired data,
    and what to be wary of. The one comparison: the Compare page, `runs compare` and the CLI gate call it."""
    keying = Keying.between(store, a, b)
    (oa, names_a), (ob, names_b) = outcomes(store, a, keying), outcomes(store, b, keying)
    result = paired(oa, ob, seed=seed)
    names = {**names_b, **names_a}
    rows = [
        CaseRow(c.key, names[c.key], c.a, c.b, c.score_a, c.score_b, c.direction) for c in result.per_case
    ]
    fraction_a = dict(zip(oa.keys, oa.pass_fraction, strict=True))
    fraction_b = dict(zip(ob.keys, ob.pass_fraction, strict=True))
    rows += [CaseRow(k, names[k], float(fraction_a[k]), None, None, None, "only in A") for k in result.only_a]
    rows += [CaseRow(k, names[k], None, float(fraction_b[k]), None, None, "only in B") for k in result.only_b]
    group_a, group_b = describe_group(store, a), describe_group(store, b)
    warnings = _warnings(group_a, group_b, result)
    return Comparison(
        group_a, group_b, result, rows, warnings, keying.text, turn_changes(store, a, b, keying, seed)
    )


def has_conversations(store: Store, run_id: str) -> bool:
    run = store.get_run(run_id)
    return bool(run.suite_id) and any(is_conversation(v) for *_, v in store.case_contents(run.suite_id))


def turn_changes(store: Store, a: GroupRef, b: GroupRef, keying: Keying, seed: int = 0) -> list[TurnChange]:
    """The same paired comparison for each turn both sides judged (the turns of prompting.summary.turn_rates);
    runs without conversation cases are not read again."""
    if not (has_conversations(store, a.run_id) and has_conversations(store, b.run_id)):
        return []
    turns_a, turns_b = store.result_turns(a.run_id), store.result_turns(b.run_id)
    keys_b = {t for *_, verdicts, _ in turns_b for t in verdicts}
    keys = sorted(
        {t for *_, verdicts, _ in turns_a for t in verdicts} & keys_b,
        key=turn_order,
    )

    def one_turn(rows: list, turn: str) -> list:
        return [(c, v, p, r, bool(d[turn]), float(d[turn]), e) for c, v, p, r, d, e in rows if turn in d]

    return [
        TurnChange(
            t,
            paired(
                outcomes(store, a, keying, one_turn(turns_a, t))[0],
                outcomes(store, b, keying, one_turn(turns_b, t))[0],
                seed=seed,
            ),
        )
        for t in keys
    ]


def compare_runs(store: Store, run_a: str, run_b: str, seed: int = 0) -> Comparison:
    """Run B against run A (every version and provider of each), over the cases they share."""
    result = compare(store, GroupRef(run_a), GroupRef(run_b), seed)
    if result.paired.cases == 0:
        raise StoreError(f"runs {run_a} and {run_b} share no case (different suites?): nothing to compare")
    return result


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
    return {
        (v, p): group_stats(outcomes(store, GroupRef(run_id, v, p))[0], seed)
        for v in run.version_ids
        for p in run.provider_ids
    }


def against_reference(
    store: Store, reference: GroupRef, others: list[tuple[str, GroupRef]], seed: int = 0
) -> list[dict[str, Any]]:
    """Each variant against the reference, p-values Holm-adjusted over the variants; a variant whose interval
    contains 0 is marked not significant."""
    base, _ = outcomes(store, reference)
    results = [(name, paired(base, outcomes(store, ref)[0], seed=seed)) for name, ref in others]
    adjusted = holm([r.p_value if r.p_value is not None else 1.0 for _, r in results])
    return [
        {
            "variant": name,
            "delta": r.delta,
            "low": r.delta_ci.low if r.delta_ci else None,
            "high": r.delta_ci.high if r.delta_ci else None,
            "delta_score": r.delta_score,
            "score_low": r.delta_score_ci.low if r.delta_score_ci else None,
            "score_high": r.delta_score_ci.high if r.delta_score_ci else None,
            "p": r.p_value,
            "p_holm": p,
            "significant": p < 0.05 and r.delta_ci is not None and not r.delta_ci.contains(0.0),
        }
        for (name, r), p in zip(results, adjusted, strict=True)
    ]


def interval_dict(ci) -> list[float] | None:
    return None if ci is None else [ci.low, ci.high]


def paired_dict(result: Paired) -> dict[str, Any]:
    return {
        "cases": result.cases,
        "only_a": len(result.only_a),
        "only_b": len(result.only_b),
        "pass_rate_a": result.rate_a,
        "pass_rate_b": result.rate_b,
        "delta": result.delta,
        "delta_ci": interval_dict(result.delta_ci),
        "delta_score": result.delta_score,
        "delta_score_ci": interval_dict(result.delta_score_ci),
        "p_value": result.p_value,
        "test": result.test,
        "min_detectable": result.mdd,
        "cases_to_settle_10_points": result.settle_cases,
        "significant": result.significant,
        "verdict": result.verdict,
        "improved": len(result.improved),
        "regressed": len(result.regressed),
    }


def comparison_dict(result: Comparison) -> dict[str, Any]:
    """Everything `runs compare --json` prints: the headline, the per-case rows and the warnings."""
    rows = [
        {
            "case": r.case,
            "change": r.change,
            "a": r.a,
            "b": r.b,
            "delta": r.delta,
            "score_a": r.score_a,
            "score_b": r.score_b,
        }
        for r in result.rows
    ]
    return {
        "a": result.a.label,
        "b": result.b.label,
        "matched_on": result.matched_on,
        **paired_dict(result.paired),
        "rows": rows,
        "warnings": result.warnings,
        "turns": [{"turn": t.turn, **paired_dict(t.paired)} for t in result.turns],
    }


def stats_dict(stats: GroupStats) -> dict[str, Any]:
    return {
        "cases": stats.cases,
        "pass_rate": stats.pass_rate,
        "pass_rate_ci": interval_dict(stats.pass_ci),
        "mean_score": stats.mean_score,
        "mean_score_ci": interval_dict(stats.score_ci),
        "pass_at_k": stats.pass_at,
        "pass_hat_k": stats.pass_hat,
        "flaky_cases": len(stats.flaky),
    }


def ablation_effects(store: Store, run_id: str, seed: int = 0) -> list[dict[str, Any]]:
    """The ablation summary: each dropped part against the full prompt, on pass rate and mean score, with
    intervals and Holm-adjusted p-values (negative: the part helped), and each variant's mean score."""
    run = store.get_run(run_id)
    variant_of = {int(k): v for k, v in (run.options or {}).get("variants", {}).items()}
    full = next((vid for vid, name in variant_of.items() if name == "full"), None)
    if full is None:
        return []
    provider = run.provider_ids[0]
    others = [(name, GroupRef(run_id, vid, provider)) for vid, name in variant_of.items() if name != "full"]
    stats = run_group_stats(store, run_id, seed)
    rows = against_reference(store, GroupRef(run_id, full, provider), others, seed)
    score = {name: stats[(vid, provider)].mean_score for vid, name in variant_of.items()}
    return [{**row, "score": score.get(row["variant"])} for row in rows]


def sweep_effects(store: Store, sweep: str, seed: int = 0) -> list[dict[str, Any]]:
    """Each method of a quantization sweep against the first one (the reference), paired by case."""
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


def sweep_rows(store: Store, sweep: str, seed: int = 0) -> list[dict[str, Any]]:
    """A sweep's table: per method its status, pass rate with the 95 % interval over cases, mean score, errors and
    the engine's measures, formatted as every page formats them."""
    from prompting import numbers

    rows = []
    for row in sweep_result(store, sweep):
        run = store.get_run(row["run_id"])
        stats = run_group_stats(store, run.id, seed)[(run.version_ids[0], run.provider_ids[0])]
        measured = {k: row.get(k) for k in ("ppl", "weight_mb", "tokens_per_s")}
        rows.append(
            {
                "method": row["method"],
                "status": row["status"],
                "pass rate": numbers.percent(stats.pass_rate, stats.cases),
                "95 % interval": numbers.percent_interval(stats.pass_ci, stats.cases),
                "mean score": numbers.score(row["score"]),
                "errors": row["errors"],
                "perplexity": "–" if measured["ppl"] is None else f"{measured['ppl']:.2f}",
                "weights (MB)": "–" if measured["weight_mb"] is None else f"{measured['weight_mb']:.1f}",
                "tokens/s": "–" if measured["tokens_per_s"] is None else f"{measured['tokens_per_s']:.1f}",
                "run": row["run_id"],
            }
        )
    return rows
