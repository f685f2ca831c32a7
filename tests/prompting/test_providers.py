"""The HTTP provider against the stand-in remote API on loopback: usage, logprobs, streaming, retries, keys."""

from __future__ import annotations

import pytest

from prompting.http_provider import HttpProvider
from prompting.providers import (
    CannotScore,
    Capabilities,
    Provider,
    ProviderError,
    ProviderSpec,
    Usage,
)
from tests.fakes import FakeProvider


def remote(fake_api, **config) -> HttpProvider:
    spec = ProviderSpec.parse(
        "openai:chat:fake-model", {"apiBaseUrl": f"{fake_api.url}/v1", "apiKeyEnvar": "FAKE_KEY", **config}
    )
    return HttpProvider(spec, max_retries=3)


def test_both_the_http_provider_and_the_fake_implement_the_protocol(fake_api):
    assert isinstance(remote(fake_api), Provider)
    assert isinstance(FakeProvider(), Provider)
    assert not issubclass(FakeProvider, HttpProvider)


def test_chat_reports_one_usage_value(fake_api):
    completion = remote(fake_api).chat([{"role": "user", "content": "hello"}], temperature=0)
    assert completion.text == "echo: hello" and completion.finish_reasons == ["stop"]
    usage = completion.usage
    assert (usage.tokens_in, usage.tokens_out, usage.calls, usage.cost) == (10, 3, 1, 0.0)
    assert usage.latency_ms > 0
    assert fake_api.script.keys == ["Bearer sk-test-123"]


def test_usage_adds_up():
    total = Usage(1, 2, 3.0, 0.5, 1) + Usage(10, 20, 30.0, 1.5, 2)
    assert total == Usage(11, 22, 33.0, 2.0, 3)


def test_logprobs_come_back_per_token_with_bytes(fake_api):
    completion = remote(fake_api).chat([{"role": "user", "content": "a b"}], logprobs=True, top_logprobs=2)
    [tokens] = completion.logprobs
    assert [t["token"] for t in tokens] == ["echo:", "a", "b"]
    assert tokens[1]["bytes"] == [97] and tokens[1]["logprob"] == -0.5


def test_streaming_yields_the_text_then_the_finish_reason_and_usage(fake_api):
    chunks = list(remote(fake_api).stream([{"role": "user", "content": "one two"}]))
    assert "".join(c.text for c in chunks) == "echo: one two"
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.usage.tokens_out == 3 and last.usage.calls == 1
    assert fake_api.script.requests[-1]["stream"] is True


def test_extras_travel_only_where_capabilities_allow(fake_api):
    provider = remote(fake_api)
    body = provider.request_body(
        [{"role": "user", "content": "x"}], {"temperature": 0.5, "top_k": 5, "seed": 1}
    )
    assert body["temperature"] == 0.5 and body["seed"] == 1 and "extra_body" not in body  # top_k dropped
    with pytest.raises(ProviderError, match="does not support beam search"):
        provider.request_body([], {"use_beam_search": True})
    local = HttpProvider(ProviderSpec.parse("local:m@int4"), "http://127.0.0.1:1/v1")
    assert local.request_body([], {"top_k": 5})["extra_body"] == {"top_k": 5}


def test_no_system_role_folds_the_system_message(fake_api):
    provider = remote(fake_api)
    provider.capabilities = Capabilities(system_role=False)
    provider.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert fake_api.script.requests[-1]["messages"] == [{"role": "user", "content": "Be brief.\n\nhi"}]


def test_retries_429_then_succeeds_and_gives_up_on_400(fake_api):
    fake_api.script.fail_first = 2
    assert remote(fake_api).chat([{"role": "user", "content": "x"}]).text == "echo: x"
    assert len(fake_api.script.requests) == 3
    fake_api.script.reject = lambda body: True
    with pytest.raises(ProviderError, match="HTTP 400: rejected by the test"):
        remote(fake_api).chat([{"role": "user", "content": "x"}])


def test_a_missing_key_names_its_variable(fake_api, monkeypatch):
    monkeypatch.delenv("FAKE_KEY")
    with pytest.raises(ProviderError, match="the environment variable FAKE_KEY is not set"):
        remote(fake_api).chat([{"role": "user", "content": "x"}])


def test_scoring_needs_the_capability(fake_api):
    with pytest.raises(CannotScore, match="cannot score a given continuation"):
        remote(fake_api).score([{"role": "user", "content": "x"}], "yes")
    provider = remote(fake_api)
    provider.capabilities = Capabilities(continuation_scoring=True)
    with pytest.raises(CannotScore, match="returned no prompt log-probabilities"):
        provider.score([{"role": "user", "content": "x"}], "yes")


def test_the_base_url_may_be_resolved_lazily(fake_api):
    calls = []

    def where() -> str:
        calls.append(1)
        return f"{fake_api.url}/v1"

    provider = HttpProvider(ProviderSpec.parse("local:fake-model@int4"), where)
    assert calls == []
    provider.client()
    assert calls == [1]
