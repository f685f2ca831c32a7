"""The HTTP surface on a tiny random model: error shapes and params, the published OpenAPI schema, the edge."""

from __future__ import annotations

import httpx
import openai
import pytest

from engine.errors import EngineError
from engine.request import Request
from engine.sampling import SamplingParams
from engine.server import create_app
from tests.conftest import ThreadedServer

from .conftest import tiny_chat_engine

KEY = "k"


@pytest.fixture(scope="module")
def tiny_server(tiny_chat_pair):
    engine = tiny_chat_engine(tiny_chat_pair)
    app = create_app(lambda: engine, "tiny", "none", api_key=KEY)
    with ThreadedServer(app) as srv:
        srv.wait_ready()
        srv.engine = engine
        yield srv


@pytest.fixture(scope="module")
def client(tiny_server):
    return openai.OpenAI(base_url=f"{tiny_server.url}/v1", api_key=KEY, max_retries=0)


def status_and_error(call) -> tuple[int, dict]:
    with pytest.raises(openai.APIStatusError) as err:
        call()
    return err.value.status_code, err.value.body


def test_engine_errors_name_their_parameter(tiny_engine):
    with pytest.raises(EngineError) as err:
        tiny_engine.submit(Request([], SamplingParams()))
    assert err.value.param == "prompt" and str(err.value) == "the prompt is empty"
    with pytest.raises(EngineError) as err:
        tiny_engine.submit(Request([1], SamplingParams(n=9)))
    assert err.value.param == "n"
    with pytest.raises(EngineError) as err:
        tiny_engine.submit(Request([1], SamplingParams(min_p=2.0)))
    assert err.value.param == "min_p"


def test_empty_prompt_names_prompt_not_the_first_word(client):
    status, body = status_and_error(lambda: client.completions.create(model="tiny", prompt="", max_tokens=2))
    assert status == 400 and body["param"] == "prompt" and body["message"] == "the prompt is empty"
    assert body["code"] == "invalid_parameter" and body["type"] == "invalid_request_error"


def test_unknown_route_and_wrong_method_use_openai_error_shape(tiny_server):
    missing = httpx.get(f"{tiny_server.url}/v1/nothing", headers={"Authorization": f"Bearer {KEY}"})
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}
    wrong = httpx.get(f"{tiny_server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_key_is_checked_before_the_body_is_parsed(tiny_server):
    raw = httpx.post(f"{tiny_server.url}/v1/chat/completions", content=b"{not json")
    assert raw.status_code == 401 and raw.json()["error"]["type"] == "authentication_error"


def test_a_body_is_read_as_json_whatever_its_content_type(tiny_server):
    body = b'{"model": "tiny", "prompt": "hi", "max_tokens": 2, "temperature": 0}'
    for content_type in ("application/x-www-form-urlencoded", None):
        headers = {"Authorization": f"Bearer {KEY}"} | (
            {"content-type": content_type} if content_type else {}
        )
        response = httpx.post(f"{tiny_server.url}/v1/completions", content=body, headers=headers)
        assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] <= 2


def test_body_that_is_not_an_object(tiny_server):
    response = httpx.post(
        f"{tiny_server.url}/v1/completions", json=[1, 2], headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_openapi_publishes_the_request_bodies(tiny_server):
    schema = httpx.get(f"{tiny_server.url}/openapi.json").json()
    for path, model in (("/v1/chat/completions", "ChatBody"), ("/v1/completions", "CompletionBody")):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
    chat = schema["components"]["schemas"]["ChatBody"]
    assert {"messages", "model"} <= set(chat["required"])
    assert {"temperature", "top_k", "use_beam_search", "logprobs"} <= set(chat["properties"])


def test_models_and_metrics_report_the_kv_cache(tiny_server, client):
    card = httpx.get(f"{tiny_server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()[
        "data"
    ][0]
    assert card["kv_dtype"] == "fp32" and card["kv_block_size"] == 16
    assert (
        card["kv_bytes_per_token"] > 0
        and card["kv_blocks"] * 16 * card["kv_bytes_per_token"] == card["kv_cache_bytes"]
    )
    client.completions.create(model="tiny", prompt="hello there", max_tokens=3)
    metrics = httpx.get(f"{tiny_server.url}/metrics").json()
    assert metrics["kv_blocks_used"] == 0  # the request finished: its blocks went back
    assert (
        metrics["kv_blocks_used"] + metrics["kv_blocks_free"] + metrics["kv_blocks_cached"]
        == card["kv_blocks"]
    )


def test_every_generated_token_has_a_logprob_entry_the_end_token_too(tiny_server, client):
    """lm-eval's loglikelihood sends echo + logprobs + max_tokens 1 and drops the last entry as the generated
    token: when that token ends the sequence, its entry must be there (empty text), or the answer's own last
    token is dropped instead."""
    from engine.generate import generate

    engine = tiny_server.engine
    prompts = [f"question {i}: the answer is" for i in range(20)]
    ids = [engine.tokenizer.encode(p) for p in prompts]
    greedy = SamplingParams(max_new_tokens=1, temperature=0, ignore_eos=True)
    firsts = {generate(engine, prompt, greedy).choices[0].token_ids[0] for prompt in ids}
    added = firsts - engine.eos_ids
    engine.eos_ids |= added  # each prompt's greedy next token now ends the sequence
    try:
        for prompt, prompt_ids in zip(prompts, ids, strict=True):
            echoed = client.completions.create(
                model="tiny", prompt=prompt, max_tokens=1, logprobs=1, echo=True, temperature=0
            )
            choice, usage = echoed.choices[0], echoed.usage
            assert choice.finish_reason == "stop" and usage.completion_tokens == 1
            tokens = choice.logprobs.tokens
            assert len(tokens) == len(prompt_ids) + 1 == usage.prompt_tokens + usage.completion_tokens
            assert tokens[-1] == "" and choice.logprobs.token_logprobs[-1] < 0 and choice.text == prompt
            plain = client.completions.create(
                model="tiny", prompt=prompt, max_tokens=1, logprobs=1, temperature=0
            )
            assert plain.choices[0].logprobs.tokens == [""]
        streamed = client.completions.create(
            model="tiny", prompt=prompts[0], max_tokens=5, logprobs=1, temperature=0, stream=True
        )
        tokens = [t for chunk in streamed for c in chunk.choices if c.logprobs for t in c.logprobs.tokens]
        assert tokens == [""]  # streamed too: the end token's entry arrives with the last chunk
    finally:
        engine.eos_ids -= added
