"""/tokenize, /detokenize and /tokenizer_info in the shapes lm-eval's remote tokenizer and llama.cpp's clients send,
on a tiny random model over the real tokenizer."""

from __future__ import annotations

import httpx
import pytest

from engine.server import create_app
from tests.conftest import ThreadedServer

from .conftest import tiny_chat_engine


@pytest.fixture(scope="module")
def server(tiny_chat_pair):
    engine = tiny_chat_engine(tiny_chat_pair)
    with ThreadedServer(create_app(lambda: engine, "tiny", "none", api_key="k")) as srv:
        srv.wait_ready()
        srv.engine = engine
        yield srv


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def test_tokenize_and_detokenize_in_vllms_shape_round_trip(server):
    tokenizer = server.engine.tokenizer
    text = "Question: Which season is the coldest?\nAnswer: winter ❄"
    answer = post(server, "/tokenize", {"prompt": text, "add_special_tokens": False}).json()
    assert answer["tokens"] == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert answer["count"] == len(answer["tokens"]) and answer["max_model_len"] == server.engine.window
    back = post(server, "/detokenize", {"tokens": answer["tokens"]}).json()
    assert back["prompt"] == text == back["content"]


def test_tokenize_in_llama_cpp_shape_with_pieces(server):
    answer = post(server, "/tokenize", {"content": "Hello world", "with_pieces": True}).json()
    pieces = answer["tokens"]
    assert all(set(p) == {"id", "piece"} for p in pieces)
    assert "".join(p["piece"] for p in pieces) == "Hello world"


def test_tokenize_messages_gives_the_chat_templates_tokens(server):
    tokenizer = server.engine.tokenizer
    messages = [{"role": "user", "content": "hi"}]
    answer = post(server, "/tokenize", {"messages": messages}).json()
    expected = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert answer["tokens"] == list(expected)


def test_tokenizer_info_has_what_lm_evals_remote_tokenizer_reads(server):
    info = httpx.get(f"{server.url}/tokenizer_info").json()
    tokenizer = server.engine.tokenizer
    assert info["eos_token"] == tokenizer.eos_token and "chat_template" in info
    # lm-eval finds the end token's id by tokenizing its text without special tokens
    eos_ids = post(server, "/tokenize", {"prompt": info["eos_token"], "add_special_tokens": False}).json()
    assert eos_ids["tokens"] == [tokenizer.eos_token_id]


def test_tokenizer_routes_refuse_bad_input_naming_the_field(server):
    outside = post(server, "/detokenize", {"tokens": [1, 10**9]})
    error = outside.json()["error"]
    assert outside.status_code == 400 and error["param"] == "tokens.1" and "vocabulary" in error["message"]
    both = post(server, "/tokenize", {"prompt": "a", "content": "b"})
    assert both.status_code == 400 and "exactly one" in both.json()["error"]["message"]
    neither = post(server, "/tokenize", {})
    assert neither.status_code == 400 and neither.json()["error"]["param"] == "prompt"
