"""Structured outputs and tool calls on the real default model, through the official `openai` client over loopback.

Requests run concurrently (the engine batches them), so the whole module takes about a minute on two cores.
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import jsonschema
import openai
import pytest

from engine.server import create_app
from tests.conftest import ThreadedServer

from .test_server import MODEL, make_engine

pytestmark = pytest.mark.slow

PEOPLE = [
    "Alice Martin is 31, works as a nurse and lives at 4 Rue Verte in Paris.",
    "Bob Stone, 45, a carpenter from 12 Oak Street, Berlin.",
    "Carol Diaz (age 7) is a pupil in Rome, Via Appia 3.",
    "Dan Wu is a 68-year-old retired pilot living at 9 Harbour Road, Sydney.",
    "Eve Adams, software engineer, 29, 221B Baker Street, London.",
    "Farid Haddad is a 52 year old chef at 7 Cedar Lane, Beirut.",
    "Grace Lee, 23, student, 15 Maple Avenue, Toronto.",
    "Hugo Weber, a 40-year-old teacher, 3 Lindenweg, Vienna.",
    "Ines Costa is 36 and a lawyer; she lives at 88 Rua Azul, Lisbon.",
    "Jonas Berg, 61, fisherman, 2 Fjordgata, Bergen.",
]
TEXT = {"type": "string", "maxLength": 40}
SCHEMAS = {
    "nested": {
        "type": "object",
        "properties": {
            "name": TEXT,
            "address": {
                "type": "object",
                "properties": {"street": TEXT, "city": TEXT},
                "required": ["street", "city"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "address"],
        "additionalProperties": False,
    },
    "array": {
        "type": "object",
        "properties": {"keywords": {"type": "array", "items": TEXT, "minItems": 1, "maxItems": 4}},
        "required": ["keywords"],
        "additionalProperties": False,
    },
    "enum": {
        "type": "object",
        "properties": {
            "age_group": {"enum": ["child", "adult", "senior"]},
            "employed": {"type": "boolean"},
        },
        "required": ["age_group", "employed"],
        "additionalProperties": False,
    },
    "bounded_numbers": {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "trust": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["age", "trust"],
        "additionalProperties": False,
    },
    "optional_fields": {
        "type": "object",
        "properties": {"name": TEXT, "job": TEXT, "nickname": TEXT},
        "required": ["name"],
        "additionalProperties": False,
    },
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": TEXT, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_web",
            "description": "Search the web.",
            "parameters": {
                "type": "object",
                "properties": {"query": TEXT, "limit": {"type": "integer", "minimum": 1, "maximum": 10}},
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    },
]
TOOL_PROMPTS = [
    f"{q}"
    for q in (
        "What's the weather in Paris?",
        "Is it raining in Tokyo right now?",
        "Find recent news about volcanoes.",
        "How hot is it in Cairo in fahrenheit?",
        "Search for the best pasta recipes.",
        "Weather for Oslo, please.",
        "Look up the population of Brazil.",
        "Do I need an umbrella in London today?",
        "Who won the 1998 World Cup?",
        "Temperature in Sydney?",
        "Find a tutorial on Python decorators.",
        "Is it snowing in Denver?",
        "Search: cheapest flights to Rome",
        "What is the weather like in Lima?",
        "Find the height of Mount Everest.",
        "Check the weather in Mumbai in celsius.",
        "Search for reviews of the new phone.",
        "How cold is Moscow?",
        "Find out when the Louvre opens.",
        "Weather in Cape Town tomorrow?",
    )
]


@pytest.fixture(scope="module")
def server(default_model):
    engine = make_engine(default_model)
    app = create_app(lambda: engine, "smollm2-135m-instruct", "int4")
    with ThreadedServer(app) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


def gather(server, calls):
    """Run `calls(client)` (a list of coroutines) concurrently, so the engine batches them."""

    async def go():
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)
        try:
            return await asyncio.gather(*calls(client))
        finally:
            await client.close()

    return asyncio.run(go())


def chat(client, content: str, **kwargs):
    kwargs.setdefault("max_tokens", 160)
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def schema_format(name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}}


def test_five_schemas_times_ten_prompts_all_validate(server):
    jobs = [(name, text) for name in SCHEMAS for text in PEOPLE]
    responses = gather(
        server,
        lambda c: [
            chat(c, f"Extract the facts as JSON.\n{text}", response_format=schema_format(name))
            for name, text in jobs
        ],
    )
    for (name, _), response in zip(jobs, responses, strict=True):
        content = response.choices[0].message.content
        jsonschema.validate(json.loads(content), SCHEMAS[name])
        assert response.choices[0].finish_reason == "stop"


def test_json_object_guided_json_and_samples(server):
    responses = gather(
        server,
        lambda c: [
            chat(
                c,
                "Describe a cat as JSON with a name.",
                response_format={"type": "json_object"},
                max_tokens=200,
            ),
            chat(c, "A person.", extra_body={"guided_json": SCHEMAS["enum"]}),
            chat(
                c,
                "A person.",
                n=4,
                temperature=1.0,
                seed=3,
                extra_body={"guided_json": SCHEMAS["bounded_numbers"]},
            ),
        ],
    )
    assert responses[0].choices[0].finish_reason == "length" or isinstance(
        json.loads(responses[0].choices[0].message.content), dict
    )
    jsonschema.validate(json.loads(responses[1].choices[0].message.content), SCHEMAS["enum"])
    assert len(responses[2].choices) == 4
    for choice in responses[2].choices:
        jsonschema.validate(json.loads(choice.message.content), SCHEMAS["bounded_numbers"])


def test_regex_and_choice_hold_on_every_output(server):
    regex, choices = r"[A-Z][a-z]{2,9} [0-9]{1,3}", ["positive", "negative", "neutral"]
    responses = gather(
        server,
        lambda c: (
            [chat(c, f"Name and age: {t}", extra_body={"guided_regex": regex}) for t in PEOPLE]
            + [chat(c, f"Sentiment of: {t}", extra_body={"guided_choice": choices}) for t in PEOPLE]
        ),
    )
    for response in responses[:10]:
        assert re.fullmatch(regex, response.choices[0].message.content)
    for response in responses[10:]:
        assert response.choices[0].message.content in choices


def test_tool_choice_required_gives_a_valid_call_every_time(server):
    responses = gather(
        server, lambda c: [chat(c, p, tools=TOOLS, tool_choice="required") for p in TOOL_PROMPTS]
    )
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for response in responses:
        choice = response.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def test_auto_tool_choice_gives_text_or_a_valid_call(server):
    """`auto` is constrained too: a call names a declared function with arguments that validate, and text never
    imitates one. After an earlier call in the conversation this model is tempted to write tags of its own
    (unconstrained, it opens "<tool_..." blocks); none of them may be a malformed call."""
    earlier = {"name": "get_weather", "arguments": json.dumps({"city": "Madrid", "unit": "celsius"})}
    history = [
        {"role": "user", "content": "What's the weather in Madrid?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": earlier}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"},
        {"role": "assistant", "content": "It is 21 degrees and sunny in Madrid."},
    ]

    def ask(c, prompt):
        messages = [*history, {"role": "user", "content": prompt}]
        return c.chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, max_tokens=60, temperature=0
        )

    responses = gather(server, lambda c: [ask(c, p) for p in TOOL_PROMPTS])
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for response in responses:
        message = response.choices[0].message
        for call in message.tool_calls or []:
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
        assert "<tool_call>" not in (message.content or "")


def test_named_tool_choice_and_the_conversation_continues(client):
    named = {"type": "function", "function": {"name": "search_web"}}
    first = chat(client, "Find the tallest building.", tools=TOOLS, tool_choice=named)
    (call,) = first.choices[0].message.tool_calls
    assert call.function.name == "search_web"
    messages = [
        {"role": "user", "content": "Find the tallest building."},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Burj Khalifa, 828 m"},
    ]
    answer = client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice="none", max_tokens=30, temperature=0
    )
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls


def test_streaming_equals_non_streaming_under_greedy(client):
    fmt = schema_format("nested")
    plain = chat(client, f"Extract as JSON: {PEOPLE[0]}", response_format=fmt)
    chunks = list(chat(client, f"Extract as JSON: {PEOPLE[0]}", response_format=fmt, stream=True))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == plain.choices[0].message.content
    )
    called = chat(client, TOOL_PROMPTS[0], tools=TOOLS, tool_choice="required")
    streamed = list(chat(client, TOOL_PROMPTS[0], tools=TOOLS, tool_choice="required", stream=True))
    deltas = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert deltas[0].function.name == called.choices[0].message.tool_calls[0].function.name
    assert deltas[0].id.startswith("call_") and all(d.id is None for d in deltas[1:])
    assert len(json.loads(arguments)) >= 2 and len(deltas) >= 3  # a multi-field call, its arguments in pieces
    assert arguments == called.choices[0].message.tool_calls[0].function.arguments
    assert [c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]


def test_mixed_batch_keeps_each_rows_behaviour(server, client):
    free_prompt = "Write two sentences about the ocean."
    solo = chat(client, free_prompt, max_tokens=40).choices[0].message.content
    responses = gather(
        server,
        lambda c: (
            [chat(c, f"Extract as JSON: {t}", response_format=schema_format("nested")) for t in PEOPLE[:4]]
            + [chat(c, free_prompt, max_tokens=40)]
        ),
    )
    for response in responses[:4]:
        jsonschema.validate(json.loads(response.choices[0].message.content), SCHEMAS["nested"])
    assert responses[4].choices[0].message.content == solo


def test_constrained_logprobs_and_beams(client):
    response = chat(
        client, "Is water wet?", logprobs=True, top_logprobs=5, extra_body={"guided_choice": ["yes", "no"]}
    )
    first = response.choices[0].logprobs.content[0]
    assert all(alt.token in ("yes", "no", "y", "n", "ye") for alt in first.top_logprobs)
    beams = chat(
        client, "Is water wet?", n=2, extra_body={"use_beam_search": True, "guided_choice": ["yes", "no"]}
    )
    assert sorted(c.message.content for c in beams.choices) == ["no", "yes"]


def test_bad_constraints_are_400s_naming_the_parameter(client, server):
    def error(**kwargs):
        with pytest.raises(openai.BadRequestError) as err:
            chat(client, "x", **kwargs)
        return err.value.body

    bad_schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "fish"}}}
    assert error(response_format=bad_schema)["param"] == "response_format.json_schema.schema"
    assert error(extra_body={"guided_regex": "([a-z"})["param"] == "guided_regex"
    assert error(extra_body={"guided_grammar": "start: nothing_here"})["param"] == "guided_grammar"
    assert error(extra_body={"guided_choice": []})["param"] == "guided_choice"
    assert error(extra_body={"guided_regex": "a", "guided_choice": ["a"]})["param"] == "guided_choice"
    assert (
        error(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})["param"]
        == "tool_choice"
    )
    assert error(tool_choice="required")["param"] == "tool_choice"
    broken = [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]
    assert error(tools=broken, tool_choice="required")["param"] == "tools.0.function.parameters"
    card = httpx.get(f"{server.url}/v1/models").json()["data"][0]
    assert card["capabilities"]["structured_output"] is True and card["capabilities"]["tools"] is True
