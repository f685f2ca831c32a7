"""Strategies against a recording fake provider: votes, trees, knowledge, verbalizer, APE."""

from __future__ import annotations

import pytest

from prompting.providers import CannotScore
from prompting.strategies import (
    Prompt,
    ape,
    generate_knowledge,
    run_strategy,
    self_consistency,
    verbalizer,
    vote,
)
from prompting.templates import load
from prompting.tree import tree_of_thoughts
from tests.fakes import FakeProvider


def direct(provider):
    return lambda messages, params: provider.chat(messages, **params)


def test_vote_majority_agreement_and_ties():
    assert vote(["3", "4", "3", None, "3"]) == ("3", 0.6, {"3": 3, "4": 1})
    assert vote(["a", "b"])[0] == "a"  # a tie goes to the first seen
    assert vote([None, None]) == (None, 0.0, {})


def test_self_consistency_votes_over_extracted_answers():
    texts = [
        "6/2=3, 70-3 = 67.\nFinal answer: 67",
        "70/2 = 35\nFinal answer: 35",
        "Final answer: 67.",
        "no idea",
        "Final answer: $67",
    ]
    fake = FakeProvider(texts)
    out = self_consistency(Prompt(load("self_consistency")), {"question": "q"}, direct(fake), {}, {})
    assert out.answer == "67"
    assert out.detail["votes"] == {"67": 3, "35": 1}
    assert out.detail["agreement"] == 0.6
    assert [s["answer"] for s in out.detail["samples"]] == ["67", "35", "67", None, "67"]
    assert fake.calls[0]["params"]["n"] == 5 and fake.calls[0]["params"]["temperature"] == 0.7
    assert out.output == texts[0]


def test_generate_knowledge_answers_with_each_fact_then_votes():
    def reply(messages, params):
        text = messages[-1]["content"]
        if "Facts:" in text:
            return ["Golf: fewest strokes win.", "Lower score is better.", "Par is a target."]
        return "Answer: no" if "fewest" in text or "Lower" in text else "Answer: yes"

    fake = FakeProvider(reply)
    out = generate_knowledge(
        Prompt(load("generate_knowledge")), {"question": "higher points win?"}, direct(fake), {}, {}
    )
    assert out.answer == "no" and out.detail["votes"] == {"no": 2, "yes": 1}
    assert len(fake.calls) == 4  # one knowledge call with n=3, then one answer per fact
    assert "Golf: fewest strokes win." in fake.calls[1]["messages"][-1]["content"]


def test_tree_of_thoughts_keeps_the_best_states():
    def reply(messages, params):
        text = messages[-1]["content"]
        if "Candidate" in text:
            return "impossible" if "bad" in text else ("sure" if "good" in text else "likely")
        state = text.split("### Steps so far ###")[1] if "### Steps so far ###" in text else ""
        if state.count("good") >= 2:
            return "Answer: 24"
        return "- good step\n- bad step\n- ok step"

    fake = FakeProvider(reply)
    out = tree_of_thoughts(
        Prompt(load("tree_of_thoughts")), {"problem": "make 24"}, direct(fake), {}, {"breadth": 2, "depth": 3}
    )
    assert out.answer == "24"
    tree = out.detail["tree"]
    level1 = [n for n in tree if n["depth"] == 1]
    assert [(n["step"], n["value"], n["kept"]) for n in level1] == [
        ("good step", 1.0, True),
        ("bad step", 0.0, False),
        ("ok step", 0.5, True),
    ]
    assert all(n["parent"] is not None for n in tree[1:])


def test_answers_are_enforced_where_the_provider_constrains_and_found_by_the_fallback_elsewhere():
    fake = FakeProvider(["Half of 6 is 3, so 67.\nFinal answer: 67"] * 5)
    prompt = Prompt(load("self_consistency"))
    out = self_consistency(prompt, {"question": "q"}, direct(fake), {}, {"constrain_answers": True})
    params = fake.calls[0]["params"]
    assert params["max_tokens"] == 256  # the template's, since the request set none
    grammar = params["guided_grammar"]
    assert '"\\nFinal answer: "' in grammar and "thinking[max_tokens=232]" in grammar
    assert "[0-9]" in grammar  # the answer format asks for a number
    assert out.answer == "67" and out.detail["constrained"]
    plain = FakeProvider(["3 years younger, so 67.\nSo, the answer is 67."] * 4 + ["I am not sure"])
    out = self_consistency(prompt, {"question": "q"}, direct(plain), {"max_tokens": 40}, {})
    assert "guided_grammar" not in plain.calls[0]["params"] and plain.calls[0]["params"]["max_tokens"] == 40
    assert out.answer == "67" and out.detail["votes"] == {"67": 4}
    assert out.detail["samples"][0]["source"] == "fallback: the last 'the answer is' phrase"
    assert out.detail["samples"][4]["source"] == "none"


def tree_reply(answer_after: int = 2, steps: str = "- good step\n- bad step\n- ok step"):
    def reply(messages, params):
        text = messages[-1]["content"]
        if "Candidate" in text:
            verdict = "impossible" if "bad" in text else ("sure" if "good" in text else "likely")
            return f"Thinking.\nVerdict: {verdict}"
        if "Finish the solution" in text:
            return "Done.\nAnswer: 24"
        state = text.split("### Steps so far ###")[1] if "### Steps so far ###" in text else ""
        return "Answer: 24" if state.count("good") >= answer_after else steps

    return reply


def test_the_tree_says_why_it_stopped_and_keeps_every_raw_text():
    prompt = Prompt(load("tree_of_thoughts"))
    found = tree_of_thoughts(
        prompt, {"problem": "24"}, direct(FakeProvider(tree_reply())), {}, {"breadth": 1}
    )
    assert found.answer == "24" and found.detail["stopped"] == "answer proposed at level 3"
    root = found.detail["tree"][0]
    assert root["proposal_text"].startswith("- good step")
    assert all(
        "evaluation_text" in n and n["why"] for n in found.detail["tree"][1:] if n["value"] is not None
    )
    deep = tree_of_thoughts(
        prompt, {"problem": "24"}, direct(FakeProvider(tree_reply(9))), {}, {"breadth": 1, "depth": 2}
    )
    assert deep.detail["stopped"] == "depth 2 reached; the best path was asked for its answer"
    assert deep.answer == "24" and deep.detail["answer_source"] == "pattern"
    empty = tree_of_thoughts(
        prompt, {"problem": "24"}, direct(FakeProvider(tree_reply(9, "I do not know"))), {}, {}
    )
    assert empty.detail["stopped"].startswith("no next step proposed at level 1")
    assert empty.answer == "24" and empty.detail["tree"][0]["answer_text"] == "Done.\nAnswer: 24"
    spent = tree_of_thoughts(
        prompt, {"problem": "24"}, direct(FakeProvider(tree_reply(9))), {}, {"depth": 5, "max_calls": 5}
    )
    assert spent.detail["stopped"].startswith("call budget spent (")


def test_ties_at_the_cut_are_kept_and_the_rule_is_stated():
    fake = FakeProvider(tree_reply(9, "- ok one\n- ok two\n- bad three"))
    out = tree_of_thoughts(
        Prompt(load("tree_of_thoughts")), {"problem": "24"}, direct(fake), {}, {"breadth": 1, "depth": 1}
    )
    level1 = [n for n in out.detail["tree"] if n["depth"] == 1]
    assert [(n["value"], n["kept"]) for n in level1] == [(0.5, True), (0.5, True), (0.0, False)]
    assert level1[1]["why"] == "kept: tied with the last kept at score 0.5"
    assert "ties at the cut are kept" in out.detail["ties"]


def test_tree_calls_carry_grammars_where_the_provider_constrains():
    fake = FakeProvider(tree_reply(1))
    tree_of_thoughts(
        Prompt(load("tree_of_thoughts")), {"problem": "24"}, direct(fake), {}, {"constrain_answers": True}
    )
    propose, evaluate = fake.calls[0]["params"], fake.calls[1]["params"]
    assert "step{1,3}" in propose["guided_grammar"] and '"Answer: "' in propose["guided_grammar"]
    assert '"sure" | "likely" | "impossible"' in evaluate["guided_grammar"]


def test_verbalizer_normalises_label_probabilities():
    scores = {"positive": -0.2, "great": -2.0, "negative": -3.0, "terrible": -4.0, "neutral": -2.5}
    fake = FakeProvider(scores=scores)
    out = verbalizer(Prompt(load("verbalizer")), {"text": "Loved it"}, fake, {}, {"calibrate": False})
    probs = out.detail["probabilities"]
    assert out.answer == "positive" and abs(sum(probs.values()) - 1) < 1e-9
    assert probs["positive"] > probs["neutral"] > probs["negative"]
    # every label word scored whole, with its usual variants
    assert {c for _, c in fake.score_calls} == {
        f for w in scores for f in (w, f" {w}", w.capitalize(), f" {w.capitalize()}")
    }
    assert out.usage.calls == len(fake.score_calls) == 20


def test_calibration_divides_out_the_label_prior():
    """The fake model says "positive" whatever the text (a label prior), and a little less so for negative
    texts: uncalibrated, every case is positive; calibrated against content-free inputs, the negative text is
    negative."""

    def score(messages, continuation):
        text = messages[-1]["content"]
        word = continuation.strip().lower()
        base = {"positive": -0.1, "negative": -2.0}[word]
        return base + (1.0 if "awful" in text and word == "negative" else 0.0)

    fake = FakeProvider(scores=score)
    prompt, labels = (
        Prompt(load("verbalizer")),
        {"labels": {"positive": ["positive"], "negative": ["negative"]}},
    )
    raw = verbalizer(prompt, {"text": "awful service"}, fake, {}, {**labels, "calibrate": False})
    calibrated = verbalizer(prompt, {"text": "awful service"}, fake, {}, labels)
    happy = verbalizer(prompt, {"text": "lovely"}, fake, {}, labels)
    assert raw.answer == "positive" and calibrated.answer == "negative" and happy.answer == "positive"
    prior = calibrated.detail["prior"]
    assert prior["positive"] > 0.8 and abs(sum(prior.values()) - 1) < 1e-9
    assert (
        calibrated.detail["uncalibrated"]["positive"] > 0.5 > calibrated.detail["probabilities"]["positive"]
    )
    # the prior (3 content-free inputs x 2 labels x 4 forms) was computed once, by the first cell that needed it
    assert calibrated.usage.calls == 8 + 24 and happy.usage.calls == 8


def test_verbalizer_needs_a_provider_that_scores():
    with pytest.raises(CannotScore, match="cannot score a given continuation"):
        verbalizer(Prompt(load("verbalizer")), {"text": "x"}, FakeProvider(), {}, {})


def test_ape_ranks_proposed_instructions():
    ranking = ape(
        lambda m: ["Give the opposite.", "Repeat the word.", "Give the opposite."],
        lambda instruction: 1.0 if "opposite" in instruction else 0.2,
        m=3,
    )
    assert ranking == [
        {"instruction": "Give the opposite.", "score": 1.0},
        {"instruction": "Repeat the word.", "score": 0.2},
    ]


def test_unknown_strategy():
    from prompting.strategies import StrategyError

    with pytest.raises(StrategyError, match="unknown strategy 'beam'"):
        run_strategy("beam", Prompt(load("zero_shot")), {}, FakeProvider(), None, {}, {})


def test_a_request_with_its_own_constraint_gets_no_answer_grammar():
    fake = FakeProvider(tree_reply(1))
    schema = {"response_format": {"type": "json_object"}}
    tree_of_thoughts(
        Prompt(load("tree_of_thoughts")), {"problem": "24"}, direct(fake), schema, {"constrain_answers": True}
    )
    assert all("guided_grammar" not in call["params"] for call in fake.calls)
    plain = FakeProvider(["Final answer: 3"] * 5)
    self_consistency(
        Prompt(load("self_consistency")),
        {"question": "q"},
        direct(plain),
        schema,
        {"constrain_answers": True},
    )
    assert "guided_grammar" not in plain.calls[0]["params"]
