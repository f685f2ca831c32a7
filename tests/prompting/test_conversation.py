"""Conversation cases: the written shape, which turns the model answers, the simulated user, and assertions by
turn, through the runner with a recording fake provider."""

from __future__ import annotations

import pytest

from prompting.conversation import SIMULATED_VAR, TURNS_VAR, ConversationError, parse_turns
from prompting.runner import CaseSpec, ProviderHandle, Runner, VersionSpec
from prompting.strategies import Prompt
from prompting.suite_cases import SuiteError, Where, parse_case
from prompting.summary import turn_rates
from prompting.templates import Template
from tests.fakes import FakeProvider

SYSTEM = Template.from_source(
    '{% message "system" %}You help {{ shop }} customers.{% endmessage %}', name="sys"
)


def case(raw: dict):
    return parse_case(raw, Where("suite.yaml"), ("tests", 0))


def run(cases: list, reply, simulator=None, repeats: int = 1):
    provider = FakeProvider(reply)
    specs = [CaseSpec(i + 1, c.vars, c.assertions) for i, c in enumerate(cases)]
    runner = Runner(
        [VersionSpec(1, Prompt(SYSTEM, {"shop": "Kettle & Co"}))],
        [ProviderHandle(1, provider)],
        specs,
        repeats=repeats,
        concurrency=1,
        simulator=simulator,
    )
    results = []
    runner.run(set(), results.append)
    return sorted(results, key=lambda r: (r.cell.case_id, r.cell.repeat_index)), provider


def test_fixed_turns_are_history_and_unanswered_user_turns_are_answered_in_order():
    written = case(
        {
            "vars": {"order": "KC-10442"},
            "conversation": [
                {"user": "Hi"},
                {"assistant": "Hello, how can I help?"},
                {"user": "Where is {{ order }}?", "assert": [{"type": "icontains", "value": "where"}]},
                {"user": "Thanks", "assert": [{"type": "contains", "value": "2"}]},
            ],
        }
    )
    assert [a["turn"] for a in written.assertions] == [1, 2]
    [result], provider = run(
        [written], lambda messages, params: f"reply {len(messages)}: {messages[-1]['content']}"
    )
    first, second = (call["messages"] for call in provider.calls)
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
    assert first[-1]["content"] == "Where is KC-10442?"  # the case's variables filled in
    assert second[-2] == {"role": "assistant", "content": "reply 4: Where is KC-10442?"}
    assert result.output == "reply 6: Thanks" and result.error is None
    assert result.detail["answer_positions"] == [4, 6]
    assert result.detail["turns"] == {"1": True, "2": False}  # "reply 6: Thanks" has no "2"
    assert result.passed is False


def test_whole_conversation_assertions_judge_every_answer_any_answer_or_the_transcript():
    written = case(
        {
            "conversation": [{"user": "one"}, {"user": "two"}, {"user": "three"}],
            "assert": [
                {"type": "not-contains", "value": "SECRET", "turn": "all"},
                {"type": "contains", "value": "answer to two", "turn": "any"},
                {"type": "regex", "value": "(?s)user: one.*assistant: answer to three", "turn": "transcript"},
                {"type": "contains", "value": "three"},  # no turn: the last answer
            ],
        }
    )
    leaky = {"two": "answer to two SECRET"}
    [result], _ = run([written], lambda m, p: leaky.get(m[-1]["content"], f"answer to {m[-1]['content']}"))
    verdicts = {(a.type, a.turn): a for a in result.assertions}
    assert not verdicts[("not-contains", "all")].passed
    assert verdicts[("not-contains", "all")].reason.startswith("turn 2:")
    assert verdicts[("contains", "any")].passed and verdicts[("regex", "transcript")].passed
    assert verdicts[("contains", None)].passed
    assert result.detail["turns"] == {"conversation": False}


def test_a_turn_that_was_never_reached_fails_and_says_so():
    written = case(
        {
            "simulated_user": {"persona": "a customer", "goal": "a refund", "opening": "refund please"},
            "assert": [{"type": "contains", "value": "refund", "turn": 3}],
        }
    )
    simulator = FakeProvider("[DONE]")  # the simulated user is satisfied after the first answer
    [result], _ = run([written], "Your refund is on its way.", simulator=lambda label: simulator)
    assert result.detail["answer_positions"] == [2]
    assert result.detail["stopped"] == "the simulated user ended the conversation"
    [verdict] = result.assertions
    assert (
        not verdict.passed and "turn 3 was never reached (the conversation has 1 answers)" in verdict.reason
    )


def test_the_simulated_user_sees_the_chat_as_a_transcript_without_the_system_prompt_and_is_seeded():
    written = case(
        {
            "simulated_user": {
                "persona": "A parent whose kettle leaks.",
                "goal": "Get a refund.",
                "opening": "My kettle leaks.",
                "max_turns": 3,
            },
            "assert": [{"type": "icontains", "value": "refund", "turn": "any"}],
        }
    )
    user_lines = iter(["User: It is order KC-11223.", '"Thank you!"'])
    simulator = FakeProvider(lambda m, p: next(user_lines))
    [first, again], model = run(
        [written], lambda m, p: f"answer {len(m)}", lambda label: simulator, repeats=2
    )
    assert first.detail["stopped"] == "max_turns (3) reached"
    users = [m["content"] for m in first.detail["conversation"] if m["role"] == "user"]
    assert users == [
        "My kettle leaks.",
        "It is order KC-11223.",
        "Thank you!",
    ]  # role prefix and quotes cleaned
    view = simulator.calls[0]["messages"][-1]["content"]
    assert "The customer: A parent whose kettle leaks.\nThe customer wants: Get a refund." in view
    assert "customer: My kettle leaks.\nassistant: answer 2" in view  # the chat so far, as a transcript
    assert "You help" not in str(simulator.calls)  # the prompt under test's system message stays hidden
    seeds = [call["params"]["seed"] for call in simulator.calls]
    assert len(set(seeds)) == len(seeds)  # per turn and per repeat
    assert not first.passed and again.error is not None  # the iterator ran dry: a second repeat errs, alone


def test_a_stop_pattern_on_the_answer_ends_a_simulated_conversation():
    written = case(
        {
            "simulated_user": {
                "persona": "p",
                "goal": "g",
                "opening": "hi",
                "max_turns": 5,
                "stop": "(?i)refund",
            }
        }
    )
    replies = iter(["Hello, order number?", "Your refund is issued."])
    [result], _ = run([written], lambda m, p: next(replies), lambda label: FakeProvider("KC-1"))
    assert result.detail["stopped"] == "the answer matched the stop pattern /(?i)refund/"
    assert len(result.detail["answer_positions"]) == 2


def test_per_turn_rates_count_scored_cells_and_put_the_whole_conversation_last():
    written = case(
        {
            "conversation": [
                {"user": "a", "assert": [{"type": "contains", "value": "ok"}]},
                {"user": "b", "assert": [{"type": "contains", "value": "ok"}]},
            ],
            "assert": [{"type": "not-contains", "value": "bad", "turn": "all"}],
        }
    )
    answers = {"a": "ok", "b": "bad"}
    results, _ = run([written] * 3, lambda m, p: answers[m[-1]["content"]])
    rates = turn_rates((r.detail.get("turns", {}), r.error is not None) for r in results)
    assert [(r.label, r.passed, r.scored) for r in rates] == [
        ("turn 1", 3, 3),
        ("turn 2", 0, 3),
        ("whole conversation", 0, 3),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"conversation": []}, "conversation must be a non-empty list of turns"),
        ({"conversation": [{"user": "x"}, {"assistant": "y"}]}, "no user turn for the model to answer"),
        ({"conversation": [{"role": "wizard", "content": "x"}]}, "unknown turn role 'wizard'"),
        (
            {
                "conversation": [
                    {"user": "x", "assert": [{"type": "equals", "value": "a"}]},
                    {"assistant": "y"},
                    {"user": "z"},
                ]
            },
            "turn 1 has assertions but the model does not answer it",
        ),
        (
            {"conversation": [{"user": "x"}], "assert": [{"type": "equals", "value": "a", "turn": 0}]},
            "turn must be 1..16",
        ),
        ({"simulated_user": {"persona": "p"}}, "simulated_user.goal is missing"),
        (
            {"simulated_user": {"persona": "p", "goal": "g", "max_turns": 40}},
            "max_turns must be 1..16 (MAX_TURNS)",
        ),
        (
            {"conversation": [{"user": str(i)} for i in range(17)]},
            "17 answered turns; at most 16 (MAX_TURNS)",
        ),
    ],
)
def test_bad_conversations_are_refused_with_the_place_named(raw, message):
    with pytest.raises(SuiteError) as caught:
        case(raw)
    assert message in str(caught.value) and str(caught.value).startswith("suite.yaml, ")


def test_the_stored_shape_is_the_reserved_variables():
    written = case({"conversation": [{"user": "hi"}], "simulated_user": {"persona": "p", "goal": "g"}})
    assert written.vars[TURNS_VAR] == [{"role": "user", "content": "hi"}]
    assert written.vars[SIMULATED_VAR] == {"persona": "p", "goal": "g", "max_turns": 4}
    messages, _ = parse_turns([{"role": "tool", "tool_call_id": "c1", "content": "42"}])
    assert messages == [{"role": "tool", "tool_call_id": "c1", "content": "42"}]
    with pytest.raises(ConversationError, match="tool turn needs the tool_call_id"):
        parse_turns([{"role": "tool", "content": "42"}])
