"""The OpenAI-compatible server, driven by the official `openai` client over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from engine.generate import Engine, score
from engine.model import build_model
from engine.quantize import quantize
from engine.server import create_app
from tests.conftest import ThreadedServer, free_port

pytestmark = pytest.mark.slow
KEY = "test-key"
MODEL = "smollm2-135m-instruct@int4"


def make_engine(default_model, max_batch: int = 16) -> Engine:
    model = quantize(build_model(default_model.config, dict(default_model.state_dict)), "int4")
    return Engine(
        model, default_model.tokenizer, max_batch=max_batch, name="smollm2-135m-instruct", method="int4"
    )


@pytest.fixture(scope="module")
def server(default_model):
    engine = make_engine(default_model)
    app = create_app(lambda: engine, "smollm2-135m-instruct", "int4", api_key=KEY)
    with ThreadedServer(app) as srv:
        srv.wait_ready()
        srv.engine = engine
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


def ask(client, content: str, **kwargs):
    kwargs.setdefault("max_tokens", 16)
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def test_models_lists_the_method(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_completion_shape(client):
    response = ask(client, "Name a colour.")
    assert response.id.startswith("chatcmpl-") and response.object == "chat.completion"
    assert response.model == MODEL
    choice = response.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert (
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens and usage.completion_tokens <= 16
    )


def test_content_as_text_parts_equals_string(client):
    plain = ask(client, "Say hello.")
    parts = client.chat.completions.create(
        model=MODEL,
        max_tokens=16,
        temperature=0,
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello."}],
            }
        ],
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content


def test_completions_and_max_completion_tokens(client):
    response = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert response.object == "text_completion" and response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5
    capped = ask(client, "Tell me a story.", max_tokens=None, max_completion_tokens=3)
    assert capped.usage.completion_tokens == 3 and capped.choices[0].finish_reason == "length"


def test_async_client(server):
    async def go():
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        results = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": f"Count to {i}."}],
                    max_tokens=8,
                    temperature=0,
                )
                for i in range(3)
            ]
        )
        await client.close()
        return results

    results = asyncio.run(go())
    assert all(r.choices[0].message.content for r in results)


def test_streaming_chat(client):
    reference = ask(client, "Describe the sea.", max_tokens=24)
    stream = ask(
        client, "Describe the sea.", max_tokens=24, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reference.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [reference.choices[0].finish_reason]
    assert (
        chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == reference.usage.completion_tokens
    )


def test_sse_wire_format(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_logprobs_shape(client):
    response = ask(client, "Pick a number.", max_tokens=5, logprobs=True, top_logprobs=3)
    content = response.choices[0].logprobs.content
    assert len(content) == response.usage.completion_tokens
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 3
        assert bytes(item.bytes).decode("utf-8", "replace") == item.token
        assert item.top_logprobs[0].logprob >= item.top_logprobs[-1].logprob
    assert "".join(i.token for i in content) == response.choices[0].message.content


def test_n_samples_and_seed(client):
    a = ask(client, "Write a word.", n=3, temperature=1.0, seed=42, max_tokens=8)
    b = ask(client, "Write a word.", n=3, temperature=1.0, seed=42, max_tokens=8)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    c = ask(client, "Write a word.", n=3, temperature=1.0, seed=43, max_tokens=8)
    assert [x.message.content for x in c.choices] != [x.message.content for x in a.choices]


def test_stop_strings(client):
    free = (
        ask(client, "List the numbers from 1 to 10, comma separated.", max_tokens=30)
        .choices[0]
        .message.content
    )
    assert "5" in free
    stopped = ask(client, "List the numbers from 1 to 10, comma separated.", max_tokens=30, stop=["5"])
    assert stopped.choices[0].message.content == free[: free.index("5")]
    assert stopped.choices[0].finish_reason == "stop"


def test_extra_body_top_k_and_beam_search(client):
    greedy = ask(client, "Name a fruit.", max_tokens=10)
    top1 = ask(client, "Name a fruit.", max_tokens=10, temperature=1.0, seed=5, extra_body={"top_k": 1})
    assert top1.choices[0].message.content == greedy.choices[0].message.content
    beams = ask(client, "Name a fruit.", max_tokens=10, n=3, extra_body={"use_beam_search": True})
    assert len(beams.choices) == 3
    assert len({c.message.content for c in beams.choices}) == 3


def test_echo_scoring_with_legacy_logprobs(client, default_model):
    prompt = "The sky is blue."
    response = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=2)
    logprobs = response.choices[0].logprobs
    ids = default_model.tokenizer(prompt)["input_ids"]
    assert response.choices[0].text == prompt
    assert len(logprobs.tokens) == len(ids) and logprobs.token_logprobs[0] is None
    assert "".join(logprobs.tokens) == prompt
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(ids))]
    assert all(len(top) == 2 for top in logprobs.top_logprobs[1:])
    expected = score(make_engine(default_model), ids[:1], ids[1:])  # the same weights, driven directly
    assert logprobs.token_logprobs[1:] == pytest.approx(expected, abs=1e-4)


def test_error_statuses(server, client):
    def error(call):
        with pytest.raises(openai.APIStatusError) as err:
            call()
        return err.value.status_code, err.value.body

    status, body = error(lambda: ask(client, "x", temperature=5))
    assert status == 400 and body["param"] == "temperature" and "temperature" in body["message"]
    status, body = error(lambda: ask(client, "x", n=2, extra_body={"best_of": 3}))
    assert status == 400 and body["param"] == "best_of"
    status, body = error(lambda: ask(client, "x", top_logprobs=21, logprobs=True))
    assert status == 400 and body["param"] == "top_logprobs"
    status, body = error(lambda: ask(client, "hello " * 9000))
    assert status == 400 and body["code"] == "context_length_exceeded"
    assert "8192" in body["message"] and "9" in body["message"].split("has ")[1]
    status, body = error(
        lambda: client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    )
    assert status == 404 and body["code"] == "model_not_found"
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    status, body = error(lambda: ask(wrong, "x"))
    assert status == 401 and body["type"] == "authentication_error"
    raw = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    missing = httpx.post(
        f"{server.url}/v1/chat/completions", json={"model": MODEL}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"


def test_twenty_concurrent_streams_equal_their_sequential_results(client):
    prompts = [f"Write one sentence about the number {i}." for i in range(20)]
    sequential = [ask(client, p, max_tokens=24).choices[0].message.content for p in prompts]
    results: dict[int, str] = {}

    def stream(i: int) -> None:
        chunks = ask(client, prompts[i], max_tokens=24, stream=True)
        results[i] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i] for i in range(20)] == sequential


def test_client_disconnect_frees_its_slot(server):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a long essay."}],
        "max_tokens": 2000,
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
        assert httpx.get(f"{server.url}/metrics").json()["running_sequences"] == 1
    deadline = time.time() + 10
    while time.time() < deadline and httpx.get(f"{server.url}/metrics").json()["running_sequences"]:
        time.sleep(0.05)
    metrics = httpx.get(f"{server.url}/metrics").json()
    assert metrics["running_sequences"] == 0
    assert metrics["completion_tokens_total"] < 2000


def test_503_while_loading_and_429_when_the_queue_is_full(default_model):
    gate = threading.Event()
    engine = make_engine(default_model, max_batch=1)

    def slow_loader():
        gate.wait(30)
        return engine

    app = create_app(slow_loader, "smollm2-135m-instruct", "int4", max_queue=1)
    with ThreadedServer(app) as srv:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            ask(client, "hi")
        assert err.value.status_code == 503 and err.value.body["code"] == "model_loading"
        assert httpx.get(f"{srv.url}/health").status_code == 503
        gate.set()
        srv.wait_ready()
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Go on forever."}],
            "max_tokens": 400,
            "ignore_eos": True,
        }
        running = threading.Thread(
            target=lambda: httpx.post(f"{srv.url}/v1/chat/completions", json=body, timeout=120)
        )
        running.start()
        deadline = time.time() + 10
        while httpx.get(f"{srv.url}/metrics").json()["running_sequences"] == 0 and time.time() < deadline:
            time.sleep(0.02)
        waiting = threading.Thread(
            target=lambda: httpx.post(f"{srv.url}/v1/chat/completions", json=body, timeout=120)
        )
        waiting.start()
        while httpx.get(f"{srv.url}/metrics").json()["queued_requests"] == 0 and time.time() < deadline:
            time.sleep(0.02)
        with pytest.raises(openai.APIStatusError) as err:
            ask(client, "one more")
        assert err.value.status_code == 429 and err.value.body["type"] == "rate_limit_error"
        engine_metrics = httpx.get(f"{srv.url}/metrics").json()
        assert engine_metrics["requests_rejected"] == 1
        running.join(120)
        waiting.join(120)


def test_workbench_serve_prints_a_ready_line_and_serves():
    port = free_port()
    exe = Path(sys.executable).parent / "workbench"
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            "--port",
            str(port),
            "--quant",
            "int8",
            "--max-batch",
            "4",
            "--kv-dtype",
            "int8",
            "--kv-block-size",
            "32",
            "--kv-memory-mb",
            "64",
            "--no-prefix-cache",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert line.startswith(
            f"workbench engine ready: smollm2-135m-instruct@int8 on http://127.0.0.1:{port}/v1"
        )
        card = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]
        assert card["id"] == "smollm2-135m-instruct@int8"
        by_dtype = card["kv_bytes_per_token_by_dtype"]
        assert (card["kv_dtype"], card["kv_block_size"], card["prefix_caching"]) == ("int8", 32, False)
        assert card["kv_bytes_per_token"] == by_dtype["int8"] and by_dtype["fp32"] / by_dtype["int8"] >= 3.5
        assert card["kv_cache_bytes"] <= 64 * 2**20 and card["kv_blocks"] == 64 * 2**20 // (
            32 * by_dtype["int8"]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_workbench_serve_rejects_a_bad_method():
    exe = Path(sys.executable).parent / "workbench"
    done = subprocess.run([str(exe), "serve", "--quant", "int3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown quantization method 'int3'" in done.stderr


def test_logprobs_cover_the_content_and_the_end_token(client):
    # a short answer that ends with the end-of-turn token: that token has an entry of its own, with empty text,
    # so the entries' texts still join to the content
    # (a prompt whose greedy answer has a clear margin at every token: int4's rounded activations make near-ties
    # of other prompts depend on the last bit of any arithmetic change)
    response = ask(client, "What is 2 + 2?", max_tokens=40, logprobs=True, top_logprobs=1)
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert "".join(i.token for i in choice.logprobs.content) == choice.message.content
    end = choice.logprobs.content[-1]
    assert end.token == "" and end.bytes == [] and end.logprob <= 0
    assert len(choice.logprobs.content) == response.usage.completion_tokens


def test_token_count_of_rendered_messages_equals_what_the_engine_is_fed(client, default_model):
    from prompting.templates import load
    from prompting.tokens import count_tokens

    template = load("co_star")
    messages = template.render({v.name: v.example for v in template.variables})
    response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
    assert count_tokens(messages, default_model.tokenizer) == response.usage.prompt_tokens


def test_streaming_completions(client):
    plain = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="Once upon a time",
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].usage.completion_tokens == 12
