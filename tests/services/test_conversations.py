"""Conversation suites end to end through the store and the worker, against the stand-in remote API (model and
simulated user both): per-turn verdicts stored with each score, per-turn rates and paired per-turn comparisons,
and a failing turn promoted to a regression case that replays it."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompting.conversation import TURNS_VAR
from services import compare, conversations, open_store, runs, suites, worker
from store import StoreError

SUITE = """\
prompts: ['file://support.j2']
providers:
  - id: openai:chat:fake-model
    config: {{apiBaseUrl: "{url}/v1", api_key_env: FAKE_KEY}}
tests:
  - description: refund
    conversation:
      - user: I want a refund.
        assert: [{{type: icontains, value: order number}}]
      - user: It is KC-10442.
        assert: [{{type: icontains, value: refund}}]
    assert:
      - {{type: not-contains, value: SECRET, turn: all}}
  - description: simulated parent
    simulated_user:
      persona: A parent whose kettle leaks.
      goal: A refund.
      opening: My kettle leaks.
      max_turns: 2
      provider: openai:chat:fake-model
    assert:
      - {{type: icontains, value: refund, turn: any}}
workbench:
  simulator: {{id: openai:chat:fake-model, config: {{apiBaseUrl: "{url}/v1", api_key_env: FAKE_KEY}}}}
"""
TEMPLATE = '{% message "system" %}You are the support assistant of {{ shop | default("Kettle & Co") }}.{% endmessage %}'


def model_reply(body: dict) -> str:
    """The stand-in: as the simulated user it writes the customer's next line; as the assistant it asks for the
    order number, then (wrongly) leaks a secret instead of talking about a refund."""
    last = body["messages"][-1]["content"]
    if "The customer wants:" in last:
        return "customer: Here is my order KC-77. Thanks!\nassistant: ignored"
    if "KC-10442" in last:
        return "Sure. SECRET code 42."
    return "Please give me your order number so I can start the refund."


def run_suite(tmp_path: Path, url: str) -> str:
    (tmp_path / "support.j2").write_text(TEMPLATE)
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(url=url))
    store = open_store()
    imported = suites.import_file(store, path, "support")
    loaded = suites.load_file(path)
    run = runs.create(
        store,
        runs.RunPlan(imported.suite_id, imported.version_ids, imported.provider_ids, params=loaded.params),
    )
    worker.execute(store, run.id, concurrency=2)
    return run.id


def test_a_conversation_suite_runs_judges_by_turn_and_promotes_a_failing_turn(tmp_path, fake_api):
    fake_api.script.reply = model_reply
    run_id = run_suite(tmp_path, fake_api.url)
    store = open_store()
    by_case = (
        {store.get_case(r.case_id).description: (r, s) for r, s in store.run_results(run_id)}
        if hasattr(store, "get_case")
        else {}
    )
    results = store.run_results(run_id)
    cases = {c.id: c.description for c in store.suite_cases(store.get_run(run_id).suite_id)}
    by_case = {cases[r.case_id]: (r, s) for r, s in results}
    fixed, fixed_scores = by_case["refund"]
    assert fixed.error is None and fixed.detail["turns"] == {"1": True, "2": False, "conversation": False}
    assert sorted((s.turn, s.passed) for s in fixed_scores) == [("1", True), ("2", False), ("all", False)]
    simulated, _ = by_case["simulated parent"]
    assert simulated.error is None, simulated.error
    users = [m["content"] for m in simulated.detail["conversation"] if m["role"] == "user"]
    assert users == ["My kettle leaks.", "Here is my order KC-77. Thanks!"]
    assert simulated.detail["stopped"] == "max_turns (2) reached" and simulated.passed
    simulator_calls = [
        b for b in fake_api.script.requests if "The customer wants:" in b["messages"][-1]["content"]
    ]
    assert (
        len(simulator_calls) == 1
        and simulator_calls[0]["temperature"] == 0.7
        and "seed" in simulator_calls[0]
    )
    rates = {t.label: (t.passed, t.scored) for *_, group in runs.turn_summary(store, run_id) for t in group}
    assert rates == {"turn 1": (1, 1), "turn 2": (0, 1), "whole conversation": (1, 2)}

    name = conversations.promote_turn(store, fixed.id, 2)
    assert name == "support-regressions"
    added = store.suite_cases(store.get_suite(name).id)[-1]
    assert added.vars[TURNS_VAR] == [
        {"role": "user", "content": "I want a refund."},
        {"role": "assistant", "content": "Please give me your order number so I can start the refund."},
        {"role": "user", "content": "It is KC-10442."},
    ]
    assert added.assertions == [
        {"type": "not-contains", "value": "SECRET", "turn": "all"},
        {"type": "icontains", "value": "refund", "turn": 1},
    ]
    assert "regression" in added.tags and len(store.suite_cases(store.get_suite(name).id)) == 3
    assert conversations.promote_turn(store, fixed.id, 2) == name  # the same case again: the same suite
    with pytest.raises(StoreError, match="has turns 1 to 2; there is no turn 3"):
        conversations.promote_turn(store, fixed.id, 3)


def test_two_runs_of_a_conversation_suite_compare_turn_by_turn(tmp_path, fake_api):
    fake_api.script.reply = model_reply
    first = run_suite(tmp_path, fake_api.url)
    fake_api.script.reply = lambda body: "Your refund for the order number is on its way."
    second = run_suite(tmp_path, fake_api.url)
    result = compare.compare_runs(open_store(), first, second)
    turns = {t.label: (t.paired.rate_a, t.paired.rate_b, t.paired.cases) for t in result.turns}
    assert turns["turn 2"] == (0.0, 1.0, 1) and turns["turn 1"] == (1.0, 1.0, 1)
    assert turns["whole conversation"][2] == 2
    as_json = compare.comparison_dict(result)
    assert [t["turn"] for t in as_json["turns"]] == ["1", "2", "conversation"]


def test_a_follow_ups_case_promotes_its_opening_turn_as_a_plain_case_and_later_turns_after_it(
    tmp_path, fake_api
):
    """The red team's older shape: the version renders the opening user message, `_followups` come after it."""
    fake_api.script.reply = lambda body: f"answer {len(body['messages'])}"
    path = tmp_path / "suite.yaml"
    path.write_text(
        SUITE.format(url=fake_api.url)
        .split("tests:")[0]
        .replace("'file://support.j2'", "'Question: {{ question }}'")
        + "tests:\n  - description: escalation\n    vars: {question: hi, _followups: [more, most]}\n"
        + "    assert: [{type: contains, value: nothing}]\n"
    )
    store = open_store()
    imported = suites.import_file(store, path, "escalations")
    run = runs.create(store, runs.RunPlan(imported.suite_id, imported.version_ids, imported.provider_ids))
    worker.execute(store, run.id, concurrency=1)
    [(result, _)] = store.run_results(run.id)
    assert result.detail["answer_positions"] == [1, 3, 5] and result.detail["prefix"] == 1
    first = conversations.regression_case(store, result.id, 1)
    assert TURNS_VAR not in first["vars"] and first["vars"]["question"] == "hi"
    assert first["assertions"] == [{"type": "not-equals", "value": "answer 1"}]
    second = conversations.regression_case(store, result.id, 2)
    assert second["vars"][TURNS_VAR] == [
        {"role": "assistant", "content": "answer 1"},
        {"role": "user", "content": "more"},
    ]
    assert second["assertions"] == [{"type": "not-equals", "value": "answer 3", "turn": 1}]
    assert "_followups" not in second["vars"]
