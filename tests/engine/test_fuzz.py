"""The whole request surface under fuzzing: schemathesis generates requests from the server's own /openapi.json
(valid ones and deliberately invalid ones) against a server whose engine is a tiny random model. Every answer must
come quickly and be a 2xx, or a 4xx in OpenAI's error shape; never a 5xx. Generation is derandomized, so a run is
reproducible and does not depend on timing."""

from __future__ import annotations

import json
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from engine.server import create_app
from tests.conftest import ThreadedServer

from .conftest import tiny_chat_engine, tiny_config, tiny_hf

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
RUNS = [  # endpoint, method, mode, generated requests (bodies only exist on POST: GETs have no invalid input)
    ("/v1/chat/completions", "POST", POSITIVE, 150),
    ("/v1/chat/completions", "POST", NEGATIVE, 100),
    ("/v1/completions", "POST", POSITIVE, 150),
    ("/v1/completions", "POST", NEGATIVE, 100),
    ("/v1/responses", "POST", POSITIVE, 100),
    ("/v1/responses", "POST", NEGATIVE, 60),
    ("/tokenize", "POST", POSITIVE, 40),
    ("/tokenize", "POST", NEGATIVE, 30),
    ("/detokenize", "POST", POSITIVE, 30),
    ("/detokenize", "POST", NEGATIVE, 30),
    ("/tokenizer_info", "GET", POSITIVE, 5),
    ("/v1/models", "GET", POSITIVE, 10),
    ("/health", "GET", POSITIVE, 10),
    ("/metrics", "GET", POSITIVE, 10),
]
REQUEST_TIMEOUT_S = 30  # a hang fails the test instead of stalling it
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def fuzz_server(real_tokenizer):
    # A short context window keeps every generated request short, whatever max_tokens it asks for.
    config = tiny_config(
        vocab_size=len(real_tokenizer), eos_token_id=real_tokenizer.eos_token_id, max_position_embeddings=96
    )
    engine = tiny_chat_engine((tiny_hf(config, seed=2), real_tokenizer), max_batch=8)
    app = create_app(lambda: engine, "tiny", "none", max_queue=64)
    with ThreadedServer(app) as srv:
        srv.wait_ready()
        yield srv


def served_model(case):
    """Name the served model: a random name is only ever a 404, which would hide everything behind it."""
    if isinstance(case.body, dict):
        case.body["model"] = "tiny"
    return case


def check(case, response, elapsed: float) -> None:
    where = f"({elapsed:.1f} s) {case.method} {case.path} {json.dumps(case.body, default=str)[:3000]}"
    assert response.status_code < 500, f"{response.status_code} for {where}: {response.text[:600]}"
    if response.status_code >= 400:
        error = response.json().get("error")
        assert isinstance(error, dict) and set(error) == ERROR_KEYS, f"not OpenAI's error shape for {where}"
        assert isinstance(error["message"], str) and error["message"]
    elif "text/event-stream" in str(response.headers.get("content-type", "")):
        # schemathesis reads at most 20 events of a stream, then hangs up (our server then cancels the request)
        if not response.stream_cut_short:
            assert response.text.rstrip().endswith("data: [DONE]"), (
                f"{where}\nstream ends: {response.text[-400:]}"
            )
        assert '"server_error"' not in response.text, f"{where}\n{response.text[-600:]}"
    else:
        response.json()


@pytest.mark.parametrize(("path", "method", "mode", "examples"), RUNS, ids=lambda v: getattr(v, "value", v))
def test_fuzzed_requests_get_2xx_or_openai_4xx(fuzz_server, path, method, mode, examples):
    import httpx

    statuses: dict[int, int] = {}
    schema = schemathesis.openapi.from_dict(httpx.get(f"{fuzz_server.url}/openapi.json").json())
    operation = schema[path][method]

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as generated
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode).map(served_model))
    def fuzz(case):
        started = time.monotonic()
        response = case.call(base_url=fuzz_server.url, timeout=REQUEST_TIMEOUT_S)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        check(case, response, time.monotonic() - started)

    fuzz()
    print(f"{method} {path} {mode.value}: statuses {dict(sorted(statuses.items()))}")
    if mode is POSITIVE and method == "POST":
        assert statuses.get(200, 0) >= examples // 10, "too few requests got through to the engine"
