"""Tool plans without a model: which calls are allowed, how tools reach the prompt, how calls are read back."""

from __future__ import annotations

import json

import pytest

from engine.openai_format import ApiError, ChatBody
from engine.tools import plan_tools, render_messages

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def body(**fields) -> ChatBody:
    return ChatBody(model="m", messages=[{"role": "user", "content": "Weather in Oslo?"}], **fields)


def test_auto_reads_a_valid_call_and_leaves_anything_else_as_content():
    plan = plan_tools(body(tools=[WEATHER]))
    assert plan.mode == "auto" and plan.spec.kind == "lark"  # free text or one well-formed call
    content, calls = plan.parse(
        'Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    assert content == "Sure." and [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    for text in (
        '<tool_call>{"name": "get_weather", "arguments": {"town": "Oslo"}}</tool_call>',  # fails the schema
        '<tool_call>{"name": "launch", "arguments": {}}</tool_call>',  # not a listed function
        "It is sunny.",
    ):
        assert plan.parse(text) == (text, [])


def test_required_constrains_to_one_call_of_a_listed_function():
    plan = plan_tools(body(tools=[WEATHER], tool_choice="required"))
    assert plan.spec.kind == "json" and plan.spec.value["properties"]["name"] == {"const": "get_weather"}
    content, (call,) = plan.parse('{"name": "get_weather", "arguments": {"city": "Oslo"}}')
    assert content is None and call.id.startswith("call_")
    assert plan.parse('{"name": "get_weather", "arguments": {"ci')[1] == []  # cut short: no call


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 1}}}]},
            "tools.0.function.parameters",
        ),
    ],
)
def test_bad_tool_requests_name_the_parameter(fields, param):
    with pytest.raises(ApiError) as err:
        plan_tools(body(**fields))
    assert err.value.status == 400 and err.value.param == param


def test_textual_fallback_for_templates_without_tools():
    request = ChatBody(
        model="m",
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
        ],
    )
    messages, tools = render_messages(request, plan_tools(request), native=False)
    assert tools is None and [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "get_weather" in messages[0]["content"] and "<tool_call>" in messages[0]["content"]
    assert (
        messages[2]["content"]
        == '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    assert messages[3]["content"] == '<tool_response id="call_1">\n12 C\n</tool_response>'
    native, tools = render_messages(request, plan_tools(request), native=True)
    assert tools[0]["function"]["name"] == "get_weather" and native[1]["tool_calls"][0]["function"][
        "arguments"
    ] == {"city": "Oslo"}


def streamed(plan, text: str, step: int = 1) -> list:
    from engine.tool_stream import CallStream

    stream = CallStream(plan)
    pieces = [p for i in range(0, len(text), step) for p in stream.feed(text[i : i + step])]
    return pieces + stream.finish(), stream.called


def test_a_streamed_call_sends_its_arguments_in_pieces_that_join_to_its_json():
    plan = plan_tools(body(tools=[WEATHER]))
    arguments = '{"city": "Oslo, Norway"}'
    text = f'<tool_call>{{"name": "get_weather", "arguments": {arguments}}}</tool_call>'
    pieces, called = streamed(plan, text)
    assert called and pieces[0].kind == "call" and pieces[0].text == "get_weather"
    assert all(p.kind == "arguments" for p in pieces[1:]) and len(pieces) > 2
    assert (
        "".join(p.text for p in pieces[1:]) == arguments
    )  # the wrapper's closing brace and tag are not sent
    required = plan_tools(body(tools=[WEATHER], tool_choice="required"))
    pieces, called = streamed(required, f'{{"name": "get_weather", "arguments": {arguments}}}', step=4)
    assert called and "".join(p.text for p in pieces[1:]) == arguments


def test_streamed_text_that_is_no_call_is_content_as_soon_as_it_cannot_be_one():
    plan = plan_tools(body(tools=[WEATHER]))
    pieces, called = streamed(plan, "<tool>s are handy")
    assert not called and [p.kind for p in pieces] == ["content"] * len(pieces)
    assert "".join(p.text for p in pieces) == "<tool>s are handy" and pieces[0].text == "<tool>"
    pieces, called = streamed(plan, "<tool_c")  # ended while it could still have been a call
    assert not called and [(p.kind, p.text) for p in pieces] == [("content", "<tool_c")]
    cut, called = streamed(plan_tools(body(tools=[WEATHER], tool_choice="required")), '{"name": "get_we')
    assert not called and [(p.kind, p.text) for p in cut] == [("content", '{"name": "get_we')]


def test_auto_grammar_lets_any_opened_call_end_only_as_a_valid_call(real_tokenizer):
    """Whatever follows `<tool_call>` under the `auto` grammar is a valid call: a random walk over the tokens
    the grammar allows (no model preference at all) always ends in a call that validates."""
    import random

    import jsonschema

    from engine.constraints import GrammarTokenizer, compile_grammar

    city = {"type": "string", "maxLength": 12}
    tool = {
        **WEATHER,
        "function": {**WEATHER["function"], "parameters": {**WEATHER["function"]["parameters"]}},
    }
    tool["function"]["parameters"]["properties"] = {
        "city": city,
        "days": {"type": "integer", "minimum": 1, "maximum": 9},
    }
    tool["function"]["parameters"]["required"] = ["city", "days"]
    plan = plan_tools(body(tools=[tool]))
    tokens = GrammarTokenizer(real_tokenizer, len(real_tokenizer), {real_tokenizer.eos_token_id})
    grammar = compile_grammar(tokens, plan.spec)
    for seed in range(5):
        pick, matcher = random.Random(seed), grammar.matcher()
        ids = real_tokenizer.encode("<tool_call>", add_special_tokens=False)
        for token in ids:
            matcher.advance(token)
        while not matcher.done and len(ids) < 300:
            allowed = [
                t for t in matcher.allowed().nonzero().flatten().tolist() if t != real_tokenizer.eos_token_id
            ]
            if not allowed:
                break
            ids.append(pick.choice(allowed))
            matcher.advance(ids[-1])
        content, calls = plan.parse(real_tokenizer.decode(ids))
        assert content is None and len(calls) == 1, real_tokenizer.decode(ids)
        jsonschema.validate(json.loads(calls[0].function.arguments), tool["function"]["parameters"])
