"""Every assertion type, passing and failing; negation, weights and thresholds handled once."""

from __future__ import annotations

import math

import pytest

from prompting.assertions import ASSERTION_TYPES, AssertionConfigError, Context, case_score, evaluate

CTX = Context(
    vars={"city": "Paris"},
    latency_ms=120.0,
    cost=0.002,
    logprobs=[-0.1, -0.3, -0.2],
    answer_pattern=r"(?im)^answer:\s*(.+)$",
)

CASES = [
    ("equals", "Paris", None, "Paris", "Lyon"),
    ("equals", {"a": 1}, None, '{"a": 1}', '{"a": 2}'),
    ("contains", "{{ city }}", None, "I love Paris.", "I love Lyon."),
    ("icontains", "paris", None, "PARIS!", "Lyon"),
    ("contains-any", ["cat", "dog"], None, "a dog", "a bird"),
    ("contains-all", "cat, dog", None, "cat and dog", "cat only"),
    ("icontains-any", ["CAT"], None, "Cat", "bird"),
    ("icontains-all", ["CAT", "dog"], None, "cat DOG", "cat"),
    ("starts-with", "Yes", None, "Yes, sure", "No"),
    ("regex", r"\d{3}-\d{4}", None, "call 555-1234", "call me"),
    ("is-json", None, None, '{"x": 1}', "{x: 1}"),
    ("is-json", {"type": "object", "required": ["x"]}, None, '{"x": 1}', '{"y": 1}'),
    (
        "contains-json",
        {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]},
        None,
        'Sure: {"n": 3} done',
        'Sure: {"n": "three"}',
    ),
    ("levenshtein", "kitten", 3, "sitting", "a completely different string"),
    ("answer-equals", "42", None, "reasoning...\nAnswer: 42.0", "Answer: 41"),
    ("answer-equals", "Paris", None, "Answer: paris", "Answer: Rome"),
    ("latency", None, 500, "x", None),
    ("cost", None, 0.01, "x", None),
    ("perplexity", None, 2.0, "x", None),
]


@pytest.mark.parametrize(
    "kind,value,threshold,good,bad", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_pass_and_fail(kind, value, threshold, good, bad):
    spec = {"type": kind, "value": value, "threshold": threshold}
    ok = evaluate(spec, good, CTX)
    assert ok.passed and ok.score > 0 and ok.reason
    if bad is not None:
        no = evaluate(spec, bad, CTX)
        assert not no.passed and no.reason and no.score < 1
        negated = evaluate({**spec, "type": f"not-{kind}"}, bad, CTX)
        assert negated.passed and negated.reason.startswith("NOT (")


def test_latency_cost_and_perplexity_fail_over_their_thresholds():
    assert not evaluate({"type": "latency", "threshold": 100}, "x", CTX).passed
    assert not evaluate({"type": "cost", "threshold": 0.001}, "x", CTX).passed
    ppl = evaluate({"type": "perplexity", "threshold": 1.1}, "x", CTX)
    assert not ppl.passed and f"{math.exp(0.2):.2f}" in ppl.reason
    assert not evaluate({"type": "perplexity", "threshold": 5}, "x", Context()).passed


def test_similar_uses_the_embedding_function():
    vectors = {"the cat sat": [1.0, 0.0], "a cat sat down": [0.9, 0.1], "stock prices fell": [0.0, 1.0]}
    ctx = Context(embed=lambda texts: [vectors[t] for t in texts])
    assert evaluate({"type": "similar", "value": "a cat sat down"}, "the cat sat", ctx).passed
    result = evaluate({"type": "similar", "value": "stock prices fell", "threshold": 0.5}, "the cat sat", ctx)
    assert not result.passed and "cosine similarity 0.000 < 0.5" == result.reason


def test_llm_rubric_reads_the_judges_json():
    judge_calls = []

    def judge(prompt):
        judge_calls.append(prompt)
        return 'Here you go: {"reason": "mentions Paris", "score": 0.9, "pass": true}'

    result = evaluate({"type": "llm-rubric", "value": "mentions the capital"}, "Paris", Context(judge=judge))
    assert result.passed and result.score == 0.9 and result.reason == "judge: mentions Paris"
    assert "mentions the capital" in judge_calls[0] and "Paris" in judge_calls[0]
    bad = evaluate({"type": "llm-rubric", "value": "x"}, "y", Context(judge=lambda p: "I think it is fine"))
    assert not bad.passed and "did not answer with JSON" in bad.reason


def test_weights_and_case_threshold():
    results = [
        evaluate({"type": "contains", "value": "a", "weight": 3}, "abc", CTX),
        evaluate({"type": "contains", "value": "z", "weight": 1}, "abc", CTX),
    ]
    assert case_score(results) == (False, 0.75)
    assert case_score(results, threshold=0.7) == (True, 0.75)
    assert case_score([]) == (True, 1.0)


def test_bad_configuration_is_an_error():
    with pytest.raises(AssertionConfigError, match="unknown assertion type 'javascript'"):
        evaluate({"type": "javascript", "value": "x"}, "y", CTX)
    with pytest.raises(AssertionConfigError, match="regex"):
        evaluate({"type": "regex", "value": "("}, "y", CTX)


def test_every_documented_type_is_registered():
    documented = {
        "equals",
        "contains",
        "icontains",
        "contains-any",
        "contains-all",
        "icontains-any",
        "icontains-all",
        "starts-with",
        "regex",
        "is-json",
        "contains-json",
        "levenshtein",
        "similar",
        "llm-rubric",
        "answer-equals",
        "latency",
        "cost",
        "perplexity",
    }
    assert documented <= set(ASSERTION_TYPES)
