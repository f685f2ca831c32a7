"""From one turn of a stored conversation to a regression case: "this answer was bad" in one step.

The new case replays the conversation up to that turn's user message (earlier answers fixed as they were given,
simulated users' turns written out), the model answers that turn again, and the case asserts what failed: the
turn's own assertions and the whole-conversation ones of the original case, renumbered, or, where there were none,
that the bad answer is not given again. The case goes into a new suite version, `<suite>-regressions` (suites are
immutable; a later promotion saves the next version under a content-derived name).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prompting.conversation import RESERVED_VARS, SCOPES, TURNS_VAR, Transcript, answered_positions
from services.case_editor import stored_cases
from services.suites import store_cases
from store import Store, StoreError

REGRESSIONS = "-regressions"


def regression_assertions(
    original: list[dict[str, Any]], turn: int, last: bool, answer: str, new_turn: int
) -> list[dict]:
    """The original case's assertions on `turn` (those naming it, and those without a turn when it was the last
    answer) renumbered to the new case's `new_turn`, with its whole-conversation ones; else not the bad answer."""
    kept = []
    for assertion in original:
        named = assertion.get("turn")
        if named == turn or (named is None and last):
            kept.append({**assertion, "turn": new_turn})
        elif named in SCOPES:
            kept.append(dict(assertion))
    return kept or [{"type": "not-equals", "value": answer, "turn": new_turn}]


def regression_case(store: Store, result_id: int, turn: int) -> dict[str, Any]:
    """The case that replays answered turn `turn` (1-based) of stored result `result_id`."""
    result = store.get_result(result_id)
    transcript = Transcript.from_detail(result.detail or {})
    if not transcript.answer_positions:
        raise StoreError(f"result {result_id} is not a conversation: there is no turn to promote")
    if not 1 <= turn <= len(transcript.answer_positions):
        raise StoreError(
            f"result {result_id} has turns 1 to {len(transcript.answer_positions)}; there is no turn {turn}"
        )
    case = next(c for c in store.suite_cases(store.get_run(result.run_id).suite_id) if c.id == result.case_id)
    history = transcript.turn_request(turn)
    answer = str(transcript.messages[transcript.answer_positions[turn - 1]].get("content") or "")
    new_turn = len(answered_positions(history))
    last = turn == len(transcript.answer_positions)
    variables = {k: v for k, v in case.vars.items() if k not in RESERVED_VARS}
    assertions = regression_assertions(list(case.assertions), turn, last, answer, new_turn)
    if history:
        variables[TURNS_VAR] = history
    else:  # the version's own opening message was that turn (a follow-ups case's first turn): a plain case
        assertions = [{k: v for k, v in a.items() if k != "turn"} for a in assertions]
    return {
        "description": f"{case.description or 'conversation'} · turn {turn} (regression from result {result_id})",
        "vars": variables,
        "assertions": assertions,
        "threshold": case.threshold,
        "tags": [*case.tags, "regression"],
    }


def promote_turn(store: Store, result_id: int, turn: int) -> str:
    """Adds the regression case for that turn to the run's suite, as a new suite version; returns its name."""
    suite = store.get_suite(store.get_run(store.get_result(result_id).run_id).suite_id)
    base = suite.name if suite.name.endswith(REGRESSIONS) else f"{suite.name}{REGRESSIONS}"
    cases = stored_cases(store, suite.name)
    added = regression_case(store, result_id, turn)
    if added not in cases:
        cases.append(added)
    digest = hashlib.sha256(json.dumps(cases, sort_keys=True, default=str).encode()).hexdigest()
    return store_cases(store, base, digest, cases, suite.description, dict(suite.config)).name
