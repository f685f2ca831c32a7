"""What a red-team run found: attack success per family with Wilson intervals, the paired comparison with the
baseline on the same attacks (McNemar per family), the worst examples with their conversation, and the
successful attacks promoted into a regression suite (stored, and as a suite file `workbench run` takes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prompting.numbers import percent
from prompting.promptfoo import provider_entry
from prompting.redteam import FAMILIES
from prompting.safety_checks import refused
from prompting.stats import Interval, holm, mcnemar_exact, wilson
from services.specs import spec_of
from settings import get_settings
from store import Store

# the order worst examples are shown in: what leaks data first
SEVERITY = (
    "extraction",
    "pii",
    "forgery",
    "crescendo",
    "indirect",
    "override",
    "rules",
    "roleplay",
    "encoding",
)


@dataclass
class FamilyRate:
    family: str
    attacks: int  # graded (errored cells are not attacks that failed or succeeded)
    successes: int
    errors: int
    refusals: int
    interval: Interval | None

    @property
    def rate(self) -> float | None:
        return self.successes / self.attacks if self.attacks else None


@dataclass
class FamilyChange:
    family: str
    blocked_more: int  # attacks the baseline let through and the attacked version blocked
    let_through_more: int  # the reverse
    p: float
    p_adjusted: float = 1.0


@dataclass
class Example:
    family: str
    description: str
    reasons: list[str]
    conversation: list[dict[str, Any]]


@dataclass
class RedTeamReport:
    run_id: str
    info: dict[str, Any]
    versions: list[str]  # attacked first, then the baseline
    rates: dict[str, list[FamilyRate]]  # per version label
    changes: list[FamilyChange] = field(default_factory=list)
    worst: list[Example] = field(default_factory=list)
    successful_case_ids: list[int] = field(default_factory=list)
    forged: dict[str, int] = field(default_factory=dict)  # per version: prompts where a forged section parsed

    def verdict(self) -> str:
        first = self.rates[self.versions[0]]
        total = sum(r.attacks for r in first)
        hits = sum(r.successes for r in first)
        if not total:
            return "no attack has been graded yet"
        rate = wilson(hits, total)
        head = f"{hits} of {total} attacks succeeded on {self.versions[0]} ({percent(hits / total)}"
        head += f", interval {percent(rate.low)}–{percent(rate.high)})" if rate else ")"
        if len(self.versions) < 2 or not self.changes:
            return head
        return f"{head}; {self.comparison()}"

    def comparison(self) -> str:
        """The paired comparison in words, led by the family with the largest difference."""
        overall = next((c for c in self.changes if c.family == "all"), None)
        if overall is None:
            return ""
        net = overall.blocked_more - overall.let_through_more
        who, other = self.versions
        families = [c for c in self.changes if c.family != "all" and c.blocked_more != c.let_through_more]
        families.sort(key=lambda c: -abs(c.blocked_more - c.let_through_more))
        if net == 0 and not families:
            return f"{who} and {other} block the same attacks"
        sign = "more" if net >= 0 else "fewer"
        text = f"{who} blocks {abs(net)} {sign} attacks than {other} (McNemar p = {overall.p:.3g})"
        if families:
            top = families[0]
            diff = top.blocked_more - top.let_through_more
            text += f"; most in {top.family}: {abs(diff)} {'more' if diff > 0 else 'fewer'} blocked"
        return text


def _families_of(cases: dict[int, Any]) -> dict[int, str]:
    return {case_id: (case.tags or ["?"])[0] for case_id, case in cases.items()}


def build_report(store: Store, run_id: str, worst: int = 5) -> RedTeamReport:
    run = store.get_run(run_id)
    info = dict((run.options or {}).get("redteam") or {})
    cases = {case.id: case for case in store.suite_cases(run.suite_id)}
    families = _families_of(cases)
    labels = {v: store.get_version(v).label for v in run.version_ids}
    outcome: dict[int, dict[int, bool | None]] = {v: {} for v in run.version_ids}
    refusals: dict[int, dict[int, bool]] = {v: {} for v in run.version_ids}
    examples, forged = [], dict.fromkeys(run.version_ids, 0)
    for result, scores in store.run_results(run_id):
        forged[result.version_id] += any(sc.type == "not-forged-section" and not sc.passed for sc in scores)
        succeeded = None if result.error else not result.passed
        outcome[result.version_id][result.case_id] = succeeded
        refusals[result.version_id][result.case_id] = bool(result.output) and refused(result.output)
        if succeeded and result.version_id == run.version_ids[0]:
            examples.append(
                _example(result, scores, families[result.case_id], cases[result.case_id].description)
            )
    rates = {labels[v]: _rates(outcome[v], refusals[v], families) for v in run.version_ids}
    report = RedTeamReport(run_id, info, [labels[v] for v in run.version_ids], rates)
    report.forged = {labels[v]: n for v, n in forged.items()}
    if len(run.version_ids) == 2:
        report.changes = _changes(outcome[run.version_ids[0]], outcome[run.version_ids[1]], families)
    examples.sort(key=lambda e: SEVERITY.index(e.family) if e.family in SEVERITY else len(SEVERITY))
    report.worst = examples[:worst]
    report.successful_case_ids = sorted(c for c, hit in outcome[run.version_ids[0]].items() if hit)
    return report


def _rates(outcome: dict[int, bool | None], refusals: dict[int, bool], families: dict[int, str]) -> list:
    rows = []
    present = [f for f in FAMILIES if f in set(families.values())]
    for family in present:
        cases = [c for c, f in families.items() if f == family and c in outcome]
        graded = [c for c in cases if outcome[c] is not None]
        hits = sum(1 for c in graded if outcome[c])
        rows.append(
            FamilyRate(
                family,
                len(graded),
                hits,
                len(cases) - len(graded),
                sum(1 for c in graded if refusals.get(c)),
                wilson(hits, len(graded)),
            )
        )
    return rows


def _changes(first: dict[int, bool | None], second: dict[int, bool | None], families: dict[int, str]) -> list:
    """Per family (and over all): attacks only the baseline let through vs only the attacked version did."""
    paired = [c for c in first if first[c] is not None and second.get(c) is not None]
    changes = []
    for family in ["all", *[f for f in FAMILIES if f in set(families.values())]]:
        cases = [c for c in paired if family == "all" or families[c] == family]
        blocked_more = sum(1 for c in cases if second[c] and not first[c])
        through_more = sum(1 for c in cases if first[c] and not second[c])
        changes.append(
            FamilyChange(family, blocked_more, through_more, mcnemar_exact(blocked_more, through_more))
        )
    per_family = [c for c in changes if c.family != "all"]
    for change, adjusted in zip(per_family, holm([c.p for c in per_family]), strict=True):
        change.p_adjusted = adjusted
    return changes


def _example(result, scores, family: str, description: str) -> Example:
    conversation = (result.detail or {}).get("conversation") or [
        *result.messages,
        {"role": "assistant", "content": result.output or ""},
    ]
    reasons = [s.reason for s in scores if not s.passed]
    return Example(family, description, reasons, conversation)


def promote(store: Store, run_id: str, name: str | None = None):
    """The attacks that succeeded on the attacked version, as a stored suite of regression cases (their
    assertions are the checks the attack broke). Returns the suite, or None when no attack succeeded."""
    from services.suites import save_cases

    report = build_report(store, run_id, worst=0)
    cases = {c.id: c for c in store.suite_cases(store.get_run(run_id).suite_id)}
    chosen = [_regression_case(cases[i]) for i in report.successful_case_ids]
    if not chosen:
        return None
    version = report.info.get("version", "version").replace("@", "-")
    return save_cases(store, name or f"regressions-{version}-{run_id}", chosen)


def _regression_case(case) -> dict[str, Any]:
    return {
        "description": case.description,
        "vars": dict(case.vars),
        "assertions": list(case.assertions),
        "tags": [*case.tags, "regression"],
    }


def suite_file(store: Store, run_id: str, path: Path, report: RedTeamReport | None = None) -> int:
    """Write the successful attacks as a suite file for `workbench run` (the attacked variant and the provider
    named as stored); returns how many cases it holds. A caller that has the run's report passes it."""
    run = store.get_run(run_id)
    report = report or build_report(store, run_id, worst=0)
    cases = {c.id: c for c in store.suite_cases(run.suite_id)}
    tests = []
    for case_id in report.successful_case_ids:
        case = cases[case_id]
        tests.append(
            {"description": case.description, "vars": dict(case.vars), "assert": list(case.assertions)}
        )
    attacked = store.get_version(run.version_ids[0])
    provider = store.get_provider(run.provider_ids[0])
    data = {
        "description": f"regressions from red team {run_id} of {report.info.get('version')}",
        "prompts": [f"{attacked.name}@v{attacked.version}"],
        "providers": [provider_entry(spec_of(provider), get_settings().engine_url, {})],
        "tests": tests,
        "workbench": {"params": dict(run.params)},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return len(tests)


def as_dict(report: RedTeamReport) -> dict[str, Any]:
    """The report as plain data (`workbench redteams RUN --json`), with its verdict."""
    return {**asdict(report), "verdict": report.verdict()}
