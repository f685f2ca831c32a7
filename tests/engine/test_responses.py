"""The Responses API (`/v1/responses`) through the official openai client, on a tiny random model over the real
tokenizer: text, the stream's event sequence, json_schema text format, function tools, stored conversations."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from engine.server import create_app
from tests.conftest import ThreadedServer

from .conftest import tiny_chat_engine

KEY = "k"
CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "days": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
FORECAST = {"type": "function", "name": "forecast", "description": "Weather forecast.", "parameters": CITY}


@pytest.fixture(scope="module")
def server(tiny_chat_pair):
    engine = tiny_chat_engine(tiny_chat_pair)
    app = create_app(lambda: engine, "tiny", "none", api_key=KEY)
    with ThreadedServer(app) as srv:
        srv.wait_ready()
        srv.engine, srv.app = engine, app
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


def test_text_response_equals_the_chat_completion_of_the_same_messages(client):
    response = client.responses.create(
        model="tiny", instructions="Be brief.", input="Say hi", max_output_tokens=12, temperature=0
    )
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
        max_tokens=12,
        temperature=0,
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.output_text == chat.choices[0].message.content
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == chat.usage.completion_tokens
    finish = chat.choices[0].finish_reason
    assert response.status == ("incomplete" if finish == "length" else "completed")
    if finish == "length":
        assert response.incomplete_details.reason == "max_output_tokens"


def test_stream_sends_the_documented_events_in_order(client):
    plain = client.responses.create(
        model="tiny", input="Tell me a story", max_output_tokens=10, temperature=0
    )
    events = list(
        client.responses.create(
            model="tiny", input="Tell me a story", max_output_tokens=10, temperature=0, stream=True
        )
    )
    kinds = [e.type for e in events]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        f"response.{plain.status}",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"} and len(deltas) >= 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(deltas) == plain.output_text == events[-1].response.output_text


def test_json_schema_text_format_always_validates(client):
    text = {"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}}
    for seed in range(4):
        response = client.responses.create(
            model="tiny",
            input="Where?",
            text=text,
            max_output_tokens=60,
            temperature=1.0,
            extra_body={"seed": seed},
        )
        jsonschema.validate(json.loads(response.output_text), CITY)


def test_required_function_tool_gives_a_valid_call_and_streams_its_arguments_in_pieces(client):
    response = client.responses.create(
        model="tiny", input="Weather in Oslo?", tools=[FORECAST], tool_choice="required", max_output_tokens=60
    )
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "forecast" and call.call_id.startswith("call_") and response.status == "completed"
    jsonschema.validate(json.loads(call.arguments), CITY)
    events = list(
        client.responses.create(
            model="tiny",
            input="Weather in Oslo?",
            tools=[FORECAST],
            tool_choice={"type": "function", "name": "forecast"},
            max_output_tokens=60,
            stream=True,
        )
    )
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert len(deltas) >= 2 and "".join(deltas) == done.arguments
    jsonschema.validate(json.loads(done.arguments), CITY)
    assert events[-1].response.output[0].arguments == done.arguments


def test_previous_response_id_continues_the_stored_conversation(client, server):
    first = client.responses.create(model="tiny", input="My name is Ada.", max_output_tokens=5, temperature=0)
    second = client.responses.create(
        model="tiny",
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=5,
        temperature=0,
    )
    manual = client.responses.create(
        model="tiny",
        input=[
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": [{"type": "output_text", "text": first.output_text}]},
            {"role": "user", "content": "What is my name?"},
        ],
        max_output_tokens=5,
        temperature=0,
    )
    assert second.usage.input_tokens == manual.usage.input_tokens and second.output_text == manual.output_text
    assert client.responses.retrieve(first.id).output_text == first.output_text
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="tiny", input="x", previous_response_id="resp_nope")
    assert missing.value.body["param"] == "previous_response_id"


def test_the_store_is_bounded_and_store_false_keeps_nothing(client, server):
    unstored = client.responses.create(model="tiny", input="hi", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    store = server.app.state.responses
    limit, store.limit = store.limit, 2
    try:
        ids = [client.responses.create(model="tiny", input="hi", max_output_tokens=1).id for _ in range(3)]
        with pytest.raises(openai.NotFoundError) as forgotten:
            client.responses.retrieve(ids[0])
        assert "forgotten" in forgotten.value.body["message"]
        assert client.responses.retrieve(ids[2]).id == ids[2]
    finally:
        store.limit = limit


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"background": True}, "background"),
        ({"include": ["file_search_call.results"]}, "include.0"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0",
        ),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_unsupported_fields_are_400s_naming_the_field(server, fields, param):
    body = {"model": "tiny", "input": "hi", **fields}
    answer = httpx.post(f"{server.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
