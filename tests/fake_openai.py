"""A stand-in for a remote OpenAI-compatible API (the one thing we mock): echoes, delays and scripted failures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Script:
    delay_s: float = 0.0
    fail_first: int = 0  # answer 429 to this many requests first
    fail_status: int = 429
    requests: list[dict] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    transform: Callable[[str], str] | None = None  # rewrites the echoed text (to make a second run differ)
    reject: Callable[[dict], bool] | None = None  # answer 400 to the requests it picks (not retried)
    reply: Callable[[dict], str] | None = None  # the answer to a request (instead of the echo)


def fake_openai_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "x"}],
        }

    @app.post("/v1/chat/completions")
    def chat(request: Request, body: dict = Body(...)):  # noqa: B008 - sync: each request sleeps in its own worker thread
        script.requests.append(body)
        script.keys.append(request.headers.get("authorization", ""))
        if len(script.requests) <= script.fail_first:
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}},
                status_code=script.fail_status,
            )
        if script.reject and script.reject(body):
            return JSONResponse(
                {
                    "error": {
                        "message": "rejected by the test",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
                status_code=400,
            )
        if script.delay_s:
            time.sleep(script.delay_s)  # blocks this worker thread only: a slow remote model
        text = script.reply(body) if script.reply else "echo: " + body["messages"][-1]["content"]
        if script.transform:
            text = script.transform(text)
        n = body.get("n", 1)
        if body.get("stream"):
            return _stream(body, text)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": _logprobs(text) if body.get("logprobs") else None,
                }
                for i in range(n)
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3 * n, "total_tokens": 10 + 3 * n},
        }

    return app


def _logprobs(text: str) -> dict:
    """One entry per word, as OpenAI shapes them (the fake's "tokens" are words)."""
    return {
        "content": [
            {"token": w, "logprob": -0.5, "bytes": list(w.encode()), "top_logprobs": []}
            for w in text.split(" ")
        ]
    }


def _stream(body: dict, text: str):
    from fastapi.responses import StreamingResponse

    def chunks():
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body["model"],
        }
        words = text.split(" ")
        for i, word in enumerate(words):
            delta = word if i == len(words) - 1 else word + " "
            yield (
                "data: "
                + json.dumps(
                    {**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}
                )
                + "\n\n"
            )
        yield (
            "data: "
            + json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            + "\n\n"
        )
        usage = {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}
        yield "data: " + json.dumps({**base, "choices": [], "usage": usage}) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")
