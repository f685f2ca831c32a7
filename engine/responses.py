"""`/v1/responses`: OpenAI's Responses API over the chat path, with a bounded store for `previous_response_id`.

The body is read into a chat body (engine/responses_format.py) and submitted by `server.start_chat`, so a
Responses request is rendered, constrained and tool-planned exactly like a chat completion. A streamed response
sends the documented event sequence: `response.created`, `response.in_progress`, then per output item
`response.output_item.added`, its content (`response.content_part.added`, `response.output_text.delta`...
`response.output_text.done`, `response.content_part.done`) or its call's `response.function_call_arguments.delta`
... `.done`, `response.output_item.done`, and last `response.completed` (or `response.incomplete` when
max_output_tokens cut it). Stored responses (`store`, on by default) keep their conversation in memory, the newest
MAX_STORED_RESPONSES of them; an unknown or forgotten id is a 404 naming `previous_response_id`.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse

from engine.openai_format import ApiError
from engine.request import Request
from engine.responses_format import (
    ResponsesBody,
    call_item,
    chat_body,
    conversation_after,
    finished,
    message_item,
    output_logprobs,
    response_object,
)
from engine.streaming import event_stream, events, json_text
from engine.submission import WireResponse, start_chat, wait_done
from engine.tool_stream import CallStream

MAX_STORED_RESPONSES = 1_000  # the oldest stored response is forgotten beyond this many
router = APIRouter()


@dataclass
class Stored:
    response: dict[str, Any]
    conversation: list[dict[str, Any]]  # chat messages, this response's output included


class ResponseStore:
    """The newest `limit` stored responses, by id (thread-safe: the routes run on one loop, tests call it too)."""

    def __init__(self, limit: int = MAX_STORED_RESPONSES):
        self.limit = limit
        self._items: OrderedDict[str, Stored] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, response_id: str, stored: Stored) -> None:
        with self._lock:
            self._items[response_id] = stored
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def get(self, response_id: str, param: str | None = None) -> Stored:
        with self._lock:
            stored = self._items.get(response_id)
        if stored is None:
            message = (
                f"no stored response has id {response_id!r} (unknown, stored with store=false, or one of more "
                f"than {self.limit} stored since: the oldest are forgotten)"
            )
            raise ApiError(404, message, param=param, code="response_not_found")
        return stored

    def delete(self, response_id: str) -> None:
        self.get(response_id)
        with self._lock:
            self._items.pop(response_id, None)


def store_of(http: HttpRequest) -> ResponseStore:
    return http.app.state.responses


@router.post("/v1/responses")
async def create_response(body: ResponsesBody, http: HttpRequest):
    state, store = http.app.state.engine_state, store_of(http)
    state.ready(body.model)
    history = (
        store.get(body.previous_response_id, "previous_response_id").conversation
        if body.previous_response_id
        else []
    )
    chat, conversation = chat_body(body, history)
    started = await start_chat(state, chat)
    response = response_object(body, f"resp_{uuid.uuid4().hex}", state.model_id, started.request.created)
    turn = Turn(body, started.plan, started.tokenizer, started.request)
    if body.stream:
        log_ = EventLog()

        def failure(exc: Exception) -> str:
            message = f"generation failed: {exc}"
            return log_.event("error", code="server_error", message=message, param=None)

        lines = stream_events(turn, response, started.queue, store, conversation, log_)
        return event_stream(lines, started.request, failure)
    await wait_done(http, started.request, started.queue)
    done = finished(response, started.request, turn.output())
    if body.store:
        store.put(done["id"], Stored(done, conversation_after(conversation, done["output"])))
    return WireResponse(done)


@router.get("/v1/responses/{response_id}")
async def retrieve_response(response_id: str, http: HttpRequest):
    return JSONResponse(store_of(http).get(response_id).response)


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, http: HttpRequest):
    store_of(http).delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


class Turn:
    """One response's output items, built whole (non-streaming) or piece by piece (streaming) with one set of ids."""

    def __init__(self, body: ResponsesBody, plan: Any, tokenizer: Any, request: Request):
        self.body, self.plan, self.tokenizer, self.request = body, plan, tokenizer, request
        self.message_id = f"msg_{uuid.uuid4().hex}"

    def logprobs(self) -> list[dict] | None:
        if not self.body.wants_logprobs:
            return None
        choice = self.request.choices[0] if self.request.choices else None
        return output_logprobs(self.tokenizer, choice.logprobs if choice else None) or []

    def output(self) -> list[dict[str, Any]]:
        choice = self.request.choices[0]
        content, calls = self.plan.parse(choice.text) if self.plan is not None else (choice.text, [])
        items = []
        if content or not calls:
            items.append(message_item(self.message_id, content or "", "completed", self.logprobs()))
        for call in calls:
            items.append(call_item(call.id, call.function.name, call.function.arguments, "completed"))
        return items


class EventLog:
    """Server-sent events with their type as the SSE event name and a running sequence number."""

    def __init__(self) -> None:
        self.sequence = 0

    def event(self, kind: str, **data: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return f"event: {kind}\ndata: {json_text(payload)}\n\n"


async def stream_events(
    turn: Turn,
    response: dict[str, Any],
    queue: asyncio.Queue,
    store: ResponseStore,
    conversation: list,
    log_: EventLog,
) -> AsyncIterator[str]:
    yield log_.event("response.created", response=response)
    yield log_.event("response.in_progress", response=response)
    writer = StreamWriter(turn, log_)
    async for event in events(turn.request, queue):
        if event.kind == "delta":
            for line in writer.feed(event.text):
                yield line
    for line in writer.close():
        yield line
    done = finished(response, turn.request, writer.items)
    if turn.body.store:
        store.put(done["id"], Stored(done, conversation_after(conversation, done["output"])))
    yield log_.event(f"response.{done['status']}", response=done)


class StreamWriter:
    """The events of one streamed output: a message's text deltas, or a call's argument deltas."""

    def __init__(self, turn: Turn, log_: EventLog):
        self.turn, self.log = turn, log_
        self.calls = CallStream(turn.plan) if turn.plan is not None and turn.plan.mode != "none" else None
        self.items: list[dict[str, Any]] = []
        self.text = ""
        self.call: dict[str, Any] | None = None

    def feed(self, delta: str) -> list[str]:
        if self.calls is None:
            return self._text(delta) if delta else []
        lines = []
        for piece in self.calls.feed(delta):
            lines += self._piece(piece)
        return lines

    def _piece(self, piece: Any) -> list[str]:
        if piece.kind == "content":
            return self._text(piece.text)
        if piece.kind == "call":
            self.call = call_item(piece.call_id, piece.text, "", "in_progress")
            return [self.log.event("response.output_item.added", output_index=0, item=dict(self.call))]
        self.call["arguments"] += piece.text
        return [self._at("response.function_call_arguments.delta", self.call["id"], delta=piece.text)]

    def _at(self, kind: str, item_id: str, **data: Any) -> str:
        return self.log.event(kind, item_id=item_id, output_index=0, **data)

    def _text(self, delta: str) -> list[str]:
        lines = []
        if not self.text and not self.items:
            lines += self._open_message()
        self.text += delta
        lines.append(
            self._at(
                "response.output_text.delta", self.turn.message_id, content_index=0, delta=delta, logprobs=[]
            )
        )
        return lines

    def _open_message(self) -> list[str]:
        item = message_item(self.turn.message_id, "", "in_progress")
        self.items.append(item)
        part = {"type": "output_text", "text": "", "annotations": []}
        return [
            self.log.event("response.output_item.added", output_index=0, item={**item, "content": []}),
            self._at("response.content_part.added", self.turn.message_id, content_index=0, part=part),
        ]

    def close(self) -> list[str]:
        """The end: flush what the call reader held, then close the open item."""
        lines = []
        if self.calls is not None:
            for piece in self.calls.finish():
                lines += self._piece(piece)
        if self.call is not None:
            status = "completed" if self.calls.called else "incomplete"
            self.call["status"] = status
            self.items = [self.call]
            lines.append(
                self._at(
                    "response.function_call_arguments.done",
                    self.call["id"],
                    name=self.call["name"],
                    arguments=self.call["arguments"],
                )
            )
            lines.append(self.log.event("response.output_item.done", output_index=0, item=self.call))
            return lines
        if not self.items:
            lines += self._open_message()
        item = message_item(self.turn.message_id, self.text, "completed", self.turn.logprobs())
        self.items = [item]
        part = item["content"][0]
        mid = self.turn.message_id
        lines.append(
            self._at(
                "response.output_text.done",
                mid,
                content_index=0,
                text=self.text,
                logprobs=part.get("logprobs", []),
            )
        )
        lines.append(self._at("response.content_part.done", mid, content_index=0, part=part))
        lines.append(self.log.event("response.output_item.done", output_index=0, item=item))
        return lines
