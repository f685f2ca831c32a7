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
    tree_of_thoughts,
    verbalizer,
    vote,
)
from prompting.templates import load
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
