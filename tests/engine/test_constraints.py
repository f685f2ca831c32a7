"""Output constraints in the decode loop, on a tiny random model and a byte tokenizer: every row obeys its own
grammar, unconstrained rows beside it are untouched, and logprobs are the constrained distribution's."""

from __future__ import annotations

import json
import math
import re

import jsonschema
import pytest

from engine.constraints import ConstraintSpec
from engine.errors import EngineError
from engine.generate import generate
from engine.request import Request
from engine.sampling import SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}, "b": {"enum": ["x", "yy"]}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
REGEX = r"[a-c]{2,4}-\d{2}"


def constrained(engine, kind, value, **params):
    grammar = engine.constrain(ConstraintSpec(kind, value, f"guided_{kind}"))
    request = engine.submit(Request([65, 66, 67], SamplingParams(**params), constraint=grammar))
    engine.run()
    return request


@pytest.mark.parametrize("seed", range(4))
def test_json_schema_holds_for_every_sample(tiny_engine, seed):
    request = constrained(tiny_engine, "json", SCHEMA, max_new_tokens=40, n=3, seed=seed, temperature=1.0)
    for choice in request.choices:
        jsonschema.validate(json.loads(choice.text), SCHEMA)
        assert choice.finish_reason == "stop"  # the grammar ended the row, not the length limit


def test_regex_and_choice_hold_under_sampling(tiny_engine):
    request = constrained(tiny_engine, "regex", REGEX, max_new_tokens=20, n=6, seed=1)
    assert all(re.fullmatch(r"[a-c]{2,4}-[0-9]{2}", c.text) for c in request.choices)
    choices = ["red", "green (dark)", "a+b"]
    request = constrained(tiny_engine, "choice", choices, max_new_tokens=20, n=6, seed=2)
    assert all(c.text in choices for c in request.choices)


def test_logprobs_are_the_constrained_distribution(tiny_engine):
    request = constrained(tiny_engine, "choice", ["ab", "cd"], max_new_tokens=5, temperature=0, logprobs=5)
    first = request.choices[0].logprobs[0]
    assert chr(first.token_id) in "ac"
    allowed = [t for t, _ in first.top]
    assert sorted(chr(t) for t in allowed) == ["a", "c"]  # forbidden tokens are not alternatives
    assert math.isclose(sum(math.exp(v) for _, v in first.top), 1.0, rel_tol=1e-5)


def test_beam_search_with_a_constraint(tiny_engine):
    request = constrained(tiny_engine, "regex", REGEX, max_new_tokens=20, n=3, use_beam_search=True)
    assert len(request.choices) == 3
    assert all(re.fullmatch(r"[a-c]{2,4}-[0-9]{2}", c.text) for c in request.choices)
    assert all(c.finish_reason == "stop" for c in request.choices)


def test_stop_strings_still_cut_constrained_text(tiny_engine):
    free = constrained(tiny_engine, "regex", "abcabcabc", max_new_tokens=20, temperature=0)
    assert free.choices[0].text == "abcabcabc"
    cut = constrained(tiny_engine, "regex", "abcabcabc", max_new_tokens=20, temperature=0, stop=["ca"])
    assert cut.choices[0].text == "ab" and cut.choices[0].finish_reason == "stop"


def test_mixed_batch_keeps_each_rows_behaviour(tiny_engine):
    free_prompt = [70, 71, 72]
    solo = generate(
        tiny_engine, free_prompt, SamplingParams(max_new_tokens=24, temperature=0, ignore_eos=True)
    )
    grammar = tiny_engine.constrain(ConstraintSpec("json", SCHEMA, "guided_json"))
    rows = [
        tiny_engine.submit(
            Request([65 + i], SamplingParams(max_new_tokens=40, temperature=0), constraint=grammar)
        )
        for i in range(3)
    ]
    free = tiny_engine.submit(
        Request(free_prompt, SamplingParams(max_new_tokens=24, temperature=0, ignore_eos=True))
    )
    tiny_engine.run()
    assert free.choices[0].token_ids == solo.choices[0].token_ids
    for request in rows:
        jsonschema.validate(json.loads(request.choices[0].text), SCHEMA)


def test_min_tokens_does_not_break_the_grammar(tiny_engine):
    request = constrained(tiny_engine, "choice", ["ok"], max_new_tokens=10, temperature=0, min_tokens=5)
    assert request.choices[0].text == "ok"


@pytest.mark.parametrize(
    ("kind", "value", "needle"),
    [
        ("regex", "(", "unclosed group"),
        ("json", {"type": "fish"}, "not a valid JSON schema"),
        ("json", "{nope", "not valid JSON"),
        ("choice", [], "non-empty list"),
        ("grammar", "start: missing_rule", "unknown name"),
        ("grammar", "root ::= (", "GBNF"),
    ],
)
def test_bad_constraints_name_their_parameter(tiny_engine, kind, value, needle):
    with pytest.raises(EngineError) as err:
        tiny_engine.constrain(ConstraintSpec(kind, value, f"guided_{kind}"))
    assert err.value.param == f"guided_{kind}" and needle in str(err.value)


def test_lark_and_gbnf_grammars(tiny_engine):
    grammar = 'start: "x" pair pair? "!"\npair: ("y" | "z") ("y" | "z")'
    lark = constrained(tiny_engine, "grammar", grammar, max_new_tokens=12, n=3, seed=4)
    assert all(re.fullmatch(r"x([yz]{2}){1,2}!", c.text) for c in lark.choices)
    gbnf = constrained(tiny_engine, "grammar", 'root ::= "yes" | "no"', max_new_tokens=8, n=3, seed=5)
    assert all(c.text in ("yes", "no") for c in gbnf.choices)
