"""Human review: ratings that persist and teach the suite, and how well automatic judges agree with people.

A rating belongs to what it judged — the case (by content), the rendered messages and the output — hashed into a
`subject`, so it reappears wherever the same output appears again (a cache hit, a `--no-cache` re-run producing
the same text, another run) and never attaches to a different output. Promoting a rated output writes a new
suite (suites are immutable) whose case asserts what the person decided.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from prompting.checks import case_label
from prompting.stats import Interval, cohen_kappa, kappa_interval
from services.compare import fingerprint
from settings import get_settings
from store import Store, StoreError

JUDGED = ("llm-rubric", "similar")  # assertion types whose verdict is a model's or an embedding's judgement
MIN_RATED_FOR_AGREEMENT = 15
FILTERS = ("unrated", "failing", "flaky", "disagreeing", "all")


def reviewer() -> str:
    configured = get_settings().reviewer
    if configured:
        return configured
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "anonymous"


def subject(case, messages: list[dict], output: str | None) -> str:
    payload = json.dumps(
        [fingerprint(case.description, case.vars), messages, output or ""],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class Item:
    """One cell to review: the stored result and its scores, its case, its subject and ratings."""

    result: Any
    scores: list
    case: Any
    subject: str
    ratings: list

    @property
    def label(self) -> str:
        return case_label(self.case.description, self.case.vars, self.case.position)

    @property
    def rated(self) -> bool:
        return bool(self.ratings)


def items(store: Store, run_id: str) -> list[Item]:
    run = store.get_run(run_id)
    cases = {c.id: c for c in store.suite_cases(run.suite_id)} if run.suite_id else {}
    stored = [(r, s) for r, s in store.run_results(run_id) if r.error is None and r.case_id in cases]
    subjects = [subject(cases[r.case_id], r.messages, r.output) for r, _ in stored]
    ratings = store.ratings(subjects)
    return [
        Item(r, s, cases[r.case_id], key, ratings.get(key, []))
        for (r, s), key in zip(stored, subjects, strict=True)
    ]


def queue(store: Store, run_id: str, only: str = "unrated") -> list[Item]:
    """The cells to review: unrated ones, failing ones, flaky ones (repeats disagree), or those where a judge's
    verdict and a person's differ."""
    if only not in FILTERS:
        raise StoreError(f"unknown review filter '{only}'; choose one of: {', '.join(FILTERS)}")
    everything = items(store, run_id)
    if only == "unrated":
        return [i for i in everything if not i.rated]
    if only == "failing":
        return [i for i in everything if not i.result.passed]
    if only == "flaky":
        verdicts: dict[tuple, set] = {}
        for i in everything:
            verdicts.setdefault((i.result.case_id, i.result.version_id, i.result.provider_id), set()).add(
                i.result.passed
            )
        return [
            i
            for i in everything
            if len(verdicts[(i.result.case_id, i.result.version_id, i.result.provider_id)]) > 1
        ]
    if only == "disagreeing":
        return [
            i
            for i in everything
            if i.rated and any(s.type in JUDGED and s.passed != i.ratings[0].passed for s in i.scores)
        ]
    return everything


def progress(store: Store, run_id: str) -> tuple[int, int]:
    """(cells reviewed, cells to review) of a run."""
    everything = items(store, run_id)
    return sum(1 for i in everything if i.rated), len(everything)


def rate(
    store: Store,
    result_id: int,
    passed: bool,
    *,
    score: int | None = None,
    tags: list[str] = (),
    comment: str = "",
    who: str | None = None,
):
    """Record a rating of a stored cell (its subject), under the reviewer's name."""
    result = store.get_result(result_id)
    run = store.get_run(result.run_id)
    case = next((c for c in store.suite_cases(run.suite_id) if c.id == result.case_id), None)
    if case is None or result.error is not None:
        raise StoreError(f"result {result_id} has no case or no output to rate")
    return store.rate(
        subject(case, result.messages, result.output),
        who or reviewer(),
        passed,
        score=score,
        tags=tags,
        comment=comment,
        result_id=result_id,
    )


PROMOTIONS = ("equals", "similar", "rubric", "not")


def promote(store: Store, result_id: int, how: str = "equals", threshold: float = 0.8) -> str:
    """A new suite in which the rated cell's case asserts what the person decided: a well-rated output becomes the
    expected answer (`equals`, `similar` with a threshold, or an `llm-rubric` reference); a badly rated one a
    `not-equals` (`not`) or a rubric note from the comment. Returns the new suite's name."""
    from services.suites import store_cases

    if how not in PROMOTIONS:
        raise StoreError(f"unknown promotion '{how}'; choose one of: {', '.join(PROMOTIONS)}")
    result = store.get_result(result_id)
    run = store.get_run(result.run_id)
    suite = store.get_suite(run.suite_id)
    cases = store.suite_cases(suite.id)
    target = next((c for c in cases if c.id == result.case_id), None)
    ratings = (
        store.ratings([subject(target, result.messages, result.output)]).get(
            subject(target, result.messages, result.output), []
        )
        if target
        else []
    )
    if not ratings:
        raise StoreError(f"result {result_id} is not rated: rate it before promoting it")
    assertion = _promoted(result.output or "", ratings[0], how, threshold)
    rows = [
        {
            "description": c.description,
            "vars": c.vars,
            "expected": c.expected,
            "threshold": c.threshold,
            "tags": c.tags,
            "assertions": [*c.assertions, assertion] if c.id == result.case_id else list(c.assertions),
        }
        for c in cases
    ]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
    stored = store_cases(
        store,
        f"{suite.name}-reviewed",
        digest,
        rows,
        suite.description,
        {**(suite.config or {}), "promoted_from": suite.name},
    )
    return stored.name


def _promoted(output: str, rating, how: str, threshold: float) -> dict[str, Any]:
    if rating.passed:
        if how == "similar":
            return {"type": "similar", "value": output, "threshold": threshold}
        if how == "rubric":
            return {
                "type": "llm-rubric",
                "value": f"The answer should match this reference answer:\n{output}",
            }
        return {"type": "equals", "value": output}
    if how == "rubric" and rating.comment:
        return {"type": "llm-rubric", "value": f"The answer must not have this problem: {rating.comment}"}
    return {"type": "not-equals", "value": output}


@dataclass
class Agreement:
    """How a judge (an assertion type) agrees with people on the cells both judged."""

    assertion: str
    cells: int
    matrix: dict[str, int]  # judge pass / fail × human pass / fail
    kappa: float | None
    interval: Interval | None
    undefined: str | None = None  # why there is no κ (a constant rater, too few rated cells)

    @property
    def enough(self) -> bool:
        return self.cells >= MIN_RATED_FOR_AGREEMENT

    @property
    def text(self) -> str:
        """ "Cohen's κ 0.62 (0.31 to 0.85) over 20 rated cells", or why there is none."""
        if self.kappa is None:
            return f"Cohen's κ {self.undefined} ({self.cells} rated cells)"
        ci = "" if self.interval is None else f" ({self.interval.low:.2f} to {self.interval.high:.2f})"
        return f"Cohen's κ {self.kappa:.2f}{ci} over {self.cells} rated cells"


def why_undefined(judge: list[bool], human: list[bool]) -> str | None:
    """κ compares two raters' verdicts beyond chance; it means nothing when either gave one verdict throughout
    (κ is then 0 or 0/0 whatever the other did), or with too few rated cells."""
    if len(judge) < MIN_RATED_FOR_AGREEMENT:
        return f"needs at least {MIN_RATED_FOR_AGREEMENT} rated cells"
    for who, verdicts in (("the judge", judge), ("the reviewers", human)):
        if len(set(verdicts)) == 1:
            return f"undefined: {who} {'passed' if verdicts[0] else 'failed'} every cell"
    return None


def agreement(store: Store, run_id: str) -> list[Agreement]:
    """Per judged assertion type: the confusion matrix and Cohen's κ with its interval (once 15 cells are rated)."""
    pairs: dict[str, list[tuple[bool, bool]]] = {}
    for item in items(store, run_id):
        if not item.rated:
            continue
        for score in item.scores:
            if score.type.removeprefix("not-") in JUDGED:
                pairs.setdefault(score.type, []).append((bool(score.passed), item.ratings[0].passed))
    out = []
    for kind, found in pairs.items():
        judge, human = [j for j, _ in found], [h for _, h in found]
        matrix = {
            f"judge {'pass' if j else 'fail'} / human {'pass' if h else 'fail'}": 0
            for j in (True, False)
            for h in (True, False)
        }
        for j, h in found:
            matrix[f"judge {'pass' if j else 'fail'} / human {'pass' if h else 'fail'}"] += 1
        undefined = why_undefined(judge, human)
        if undefined:
            out.append(Agreement(kind, len(found), matrix, None, None, undefined))
        else:
            out.append(
                Agreement(kind, len(found), matrix, cohen_kappa(judge, human), kappa_interval(judge, human))
            )
    return out
