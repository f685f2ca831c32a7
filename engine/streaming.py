"""Server-sent events: a request's engine events turned into OpenAI's stream chunks, ending with `[DONE]`.

Text deltas are sent as the engine releases them (whole UTF-8 characters, stop strings held back until they
cannot match). A chat request that may call tools is read by engine/tool_stream.py as it grows: content deltas,
or a `tool_calls` delta with the call's id and name followed by deltas of its arguments, as OpenAI sends them.
A client that goes away mid-stream cancels its request, which frees its rows at the next step.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi.responses import StreamingResponse

from engine.openai_format import (
    ApiError,
    ChatCompletionChunk,
    ChatDelta,
    ChunkChoice,
    Completion,
    CompletionBody,
    CompletionChoice,
    FunctionDelta,
    ToolCallDelta,
    chat_logprobs,
    legacy_logprobs,
    usage,
)
from engine.request import Event, Request, TokenLogprob
from engine.tool_stream import CallStream, Piece
from engine.tools import ToolPlan

log = logging.getLogger(__name__)


def json_text(data: Any) -> str:
    """JSON with non-ASCII text as is; escaped only when the text is not valid Unicode (a lone surrogate)."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data)
    return text


def sse(chunks: AsyncIterator[dict], request: Request) -> StreamingResponse:
    """Chat and completion chunks as `data:` events, ending with `[DONE]`."""

    async def lines() -> AsyncIterator[str]:
        async for chunk in chunks:
            yield f"data: {json_text(chunk)}\n\n"

    def failure(exc: Exception) -> str:
        return f"data: {json_text(ApiError(500, f'generation failed: {exc}', 'server_error').body())}\n\n"

    return event_stream(lines(), request, failure, closing="data: [DONE]\n\n")


def event_stream(
    lines: AsyncIterator[str], request: Request, failure: Callable[[Exception], str], closing: str = ""
) -> StreamingResponse:
    """A server-sent event stream of `lines`. Headers are sent with the first line, so a failure after that is
    reported in the stream (`failure` writes it), as OpenAI does, not by cutting it; a client that goes away
    mid-stream cancels the request, which frees its rows at the next step."""

    async def body():
        try:
            async for line in lines:
                yield line
        except Exception as exc:
            log.exception("stream failed")
            yield failure(exc)
        finally:
            if not request.done:
                request.cancel()
        if closing:
            yield closing

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def events(request: Request, queue: asyncio.Queue) -> AsyncIterator[Event]:
    open_choices = set(range(request.params.n))
    while open_choices and not (request.done and queue.empty() and request.error):
        event: Event = await queue.get()
        if event.finish_reason == "error":
            raise RuntimeError(event.text)
        yield event
        if event.kind == "done":
            open_choices.discard(event.index)
            if request.params.max_new_tokens == 0:
                open_choices.clear()


class ChatChunks:
    """The chunks of one streamed chat completion."""

    def __init__(self, cid: str, model_id: str, request: Request, include_usage: bool, tokenizer: Any):
        self.cid, self.model_id, self.request = cid, model_id, request
        self.include_usage, self.tokenizer = include_usage, tokenizer
        self.created = int(request.created)

    def chunk(self, choice: ChunkChoice | None, final_usage: Any = None) -> dict:
        out = ChatCompletionChunk(
            id=self.cid, created=self.created, model=self.model_id, choices=[choice] if choice else []
        )
        if self.include_usage:
            out.usage = final_usage
        return out.wire()

    def content(self, index: int, text: str, logprobs: list[TokenLogprob] | None) -> dict:
        lp = chat_logprobs(self.tokenizer, logprobs) if logprobs else None
        return self.chunk(ChunkChoice(index=index, delta=ChatDelta(content=text), logprobs=lp))

    def finish(self, index: int, reason: str | None) -> dict:
        return self.chunk(ChunkChoice(index=index, delta=ChatDelta(), finish_reason=reason))

    def tool_pieces(self, index: int, pieces: list[Piece], logprobs: list[TokenLogprob]) -> Iterator[dict]:
        """A tool-enabled choice's pieces: content (with the log-probabilities so far), a call, its arguments."""
        for piece in pieces:
            if piece.kind == "content":
                yield self.content(index, piece.text, logprobs)
                logprobs = []
            elif piece.kind == "call":
                function = FunctionDelta(name=piece.text, arguments="")
                call = ToolCallDelta(index=0, id=piece.call_id, type="function", function=function)
                yield self.chunk(ChunkChoice(index=index, delta=ChatDelta(tool_calls=[call])))
            else:
                call = ToolCallDelta(index=0, function=FunctionDelta(arguments=piece.text))
                yield self.chunk(ChunkChoice(index=index, delta=ChatDelta(tool_calls=[call])))


async def chat_stream(
    chunks: ChatChunks, queue: asyncio.Queue, prefix: str, plan: ToolPlan | None
) -> AsyncIterator[dict]:
    request = chunks.request
    held = plan is not None and plan.mode != "none"
    calls = {index: CallStream(plan) for index in range(request.params.n)} if held else {}
    pending: dict[int, list[TokenLogprob]] = {}  # log-probabilities of text not sent yet (a call undecided)
    for index in range(request.params.n):
        yield chunks.chunk(ChunkChoice(index=index, delta=ChatDelta(role="assistant", content=prefix)))
    async for event in events(request, queue):
        if event.kind == "delta" and held:
            lps = pending.setdefault(event.index, [])
            lps.extend(event.logprobs)
            pieces = calls[event.index].feed(event.text)
            if pieces:
                for chunk in chunks.tool_pieces(event.index, pieces, lps):
                    yield chunk
                pending[event.index] = []
        elif event.kind == "delta" and (event.text or event.logprobs):
            yield chunks.content(event.index, event.text, event.logprobs)
        elif event.kind == "done" and held:
            stream = calls[event.index]
            for chunk in chunks.tool_pieces(event.index, stream.finish(), pending.get(event.index, [])):
                yield chunk
            yield chunks.finish(event.index, "tool_calls" if stream.called else event.finish_reason)
        elif event.kind == "done":
            yield chunks.finish(event.index, event.finish_reason)
    if chunks.include_usage:
        yield chunks.chunk(None, usage(request))


async def completion_stream(
    cid: str, model_id: str, request: Request, queue: asyncio.Queue, body: CompletionBody, tokenizer: Any
) -> AsyncIterator[dict]:
    created = int(time.time())
    offset = 0

    def chunk(index: int, text: str, logprobs: Any, finish: str | None) -> dict:
        choice = CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish)
        return Completion(id=cid, created=created, model=model_id, choices=[choice]).wire()

    async for event in events(request, queue):
        if event.kind == "delta" and (event.text or (body.logprobs is not None and event.logprobs)):
            logprobs = None
            if body.logprobs is not None and event.logprobs:
                logprobs = legacy_logprobs(tokenizer, event.logprobs, offset)
            offset += len(event.text)
            yield chunk(event.index, event.text, logprobs, None)
        elif event.kind == "done":
            yield chunk(event.index, "", None, event.finish_reason)
    if body.stream_options and body.stream_options.include_usage:
        yield Completion(id=cid, created=created, model=model_id, choices=[], usage=usage(request)).wire()
