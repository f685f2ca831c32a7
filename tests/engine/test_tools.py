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
    assert plan.mode == "auto" and plan.spec is None
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
