"""The optimiser's pure part: splits (stratified, seeded, refused when too small), the prompt each candidate
becomes (rendered for every technique, with demonstrations), what a right answer looks like, and proposals."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from prompting.guardrails import Guardrails
from prompting.optimize import (
    TECHNIQUES,
    Candidate,
    OptimizeError,
    build,
    expected_output,
    opening_candidates,
    parse_proposals,
    search_space,
    split_cases,
)
from prompting.strategies import Prompt
from prompting.templates import Template, load


def test_splits_are_seeded_disjoint_and_stratified_by_tags():
    cases = [(i, ["neg" if i % 4 == 0 else "pos"], str(i)) for i in range(60)]
    split = split_cases(cases, seed=1)
    parts = [split.train, split.validation, split.heldout]
    assert sorted(sum(parts, [])) == list(range(60)) and [len(p) for p in parts] == [20, 20, 20]
    tags = {i: t for i, t, _ in cases}
    for part in parts:  # 15 "neg" cases dealt in turn: 5 to each split
        assert Counter(tags[i][0] for i in part)["neg"] == 5
    assert split_cases(cases, seed=1) == split and split_cases(cases, seed=2) != split


def test_a_suite_too_small_to_split_is_refused_with_what_it_needs():
    with pytest.raises(OptimizeError, match="has 14 cases; optimizing needs at least 15"):
        split_cases([(i, [], str(i)) for i in range(14)], seed=0, suite="suite 'tiny'")


def test_cases_with_the_same_input_land_in_one_split():
    cases = [(i, [], f"input {i % 20}") for i in range(60)]  # every input three times
    split = split_cases(cases, seed=4)
    for part in (split.train, split.validation, split.heldout):
        others = {i % 20 for p in (split.train, split.validation, split.heldout) if p is not part for i in p}
        assert not {i % 20 for i in part} & others


DEMOS = [
    {"case_id": 1, "vars": {"input": "Broke on day one."}, "output": "negative"},
    {"case_id": 2, "vars": {"input": "Works fine."}, "output": "positive"},
]


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_every_technique_renders_the_instruction_demonstrations_and_input(technique):
    base = Prompt(load("zero_shot"), {"instruction": "Classify the review."})
    space = search_space(
        base, {"instruction", "demos", "technique"}, ["Answer in one word."], 2, ["input"], []
    )
    built = build(base, "zero_shot", Candidate(1, technique, 2), space, DEMOS, ["input"])
    messages = built.prompt("zero_shot").render({"input": "Great value."})
    text = "\n".join(m["content"] for m in messages)
    assert "Answer in one word." in text and "Great value." in text
    if technique == "as_is":  # zero_shot has no examples variable: demonstrations cannot be shown
        assert "Broke on day one." not in text
    else:
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert "Broke on day one." in messages[1]["content"] and "negative" in messages[2]["content"]
    assert built.lineage["instruction_text"] == "Answer in one word."
    assert (built.params.get("max_tokens") == 128) == (technique in ("zero_shot_cot", "self_consistency"))
    if technique == "self_consistency":
        assert Template.from_source(built.source).strategy["name"] == "self_consistency"


def test_an_instruction_in_the_guardrails_is_rewritten_there_and_dropping_guardrails_removes_it():
    guardrails = Guardrails(task="Classify the review.", rules=["Never insult."])
    base = Prompt(load("zero_shot"), {"instruction": ""}, "hash", guardrails)
    space = search_space(
        base, {"instruction", "sections"}, ["Say positive or negative."], 0, ["input"], ["-guardrails"]
    )
    rewritten = build(base, "zero_shot", Candidate(1, "zero_shot"), space, [], ["input"])
    assert rewritten.guardrails["task"] == "Say positive or negative."
    assert "Say positive or negative." in rewritten.prompt("zero_shot").render({"input": "x"})[0]["content"]
    assert build(base, "zero_shot", Candidate(drop="-guardrails"), space, [], ["input"]).guardrails is None


def test_what_a_candidate_changed_names_only_what_its_version_changes():
    instructions = ["Classify.", "Answer in one word."]
    assert Candidate(1, "zero_shot", 4, "xml", "-Input").changes(instructions, "hash") == [
        "instruction #1: Answer in one word.",
        "zero-shot",
        "4 demonstrations",
        "xml delimiters",
    ]  # a generated template has no Input section of the version's to drop
    assert Candidate(drop="-Input").changes(instructions, "hash") == ["without Input"]
    assert (
        Candidate(technique="zero_shot", drop="-guardrails").changes(instructions, "hash")[-1]
        == "without guardrails"
    )


def test_the_right_answer_comes_from_the_case_when_it_says():
    assert expected_output([], "Paris") == "Paris"
    assert expected_output([{"type": "answer-equals", "value": "13"}], None) == "13"
    schema = {"type": "object", "properties": {"name": {"const": "Ada"}, "age": {"enum": [36, "36"]}}}
    assert json.loads(expected_output([{"type": "contains-json", "value": schema}], None)) == {
        "name": "Ada",
        "age": 36,
    }
    assert expected_output([{"type": "contains-json", "value": {"type": "object"}}], None) is None
    assert expected_output([{"type": "similar", "value": "x"}], None) is None


def test_proposals_are_instruction_lines_without_duplicates_or_noise():
    replies = [
        "Sure!\nInstruction: Answer with one word.",
        "Instruction: Answer with one word.",
        "Instruction: ok",
        '"Label the review as positive, negative or neutral."',
        "",
        "Classify the review.",
    ]
    found = parse_proposals(replies, r"(?im)^\s*instruction\s*:\s*(.+?)\s*$", "Classify the review.")
    assert found == ["Answer with one word.", "Label the review as positive, negative or neutral."]


def test_the_opening_moves_change_one_part_each_and_show_demonstrations_where_they_can_be_seen():
    base = Prompt(load("zero_shot"), {"instruction": "Classify the review."})
    parts = {"instruction", "demos", "technique", "delimiter"}
    space = search_space(base, parts, ["Answer in one word."], 4, ["input"], [])
    moves = opening_candidates(space, shows_demos=False)
    assert moves[0] == Candidate(technique="zero_shot", demos=4)  # zero_shot shows no examples: go few-shot
    assert Candidate(instruction=1) in moves and Candidate(delimiter=space.delimiters[1]) in moves
    assert moves[-1] == Candidate(instruction=1, technique="zero_shot", demos=4)
    assert (
        opening_candidates(search_space(load_few_shot(), parts, ["x" * 10], 4, ["input"], []), True)[0].demos
        == 4
    )


def load_few_shot() -> Prompt:
    return Prompt(load("few_shot"), {"instruction": "Label it.", "examples": []})
