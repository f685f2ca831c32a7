"""Submitting a request from a route: prompt rendering, constraint compiling, the scheduler, waiting, headers.

Shared by the chat and completion routes (engine/server.py) and the Responses API (engine/responses.py), so a
request reaches the engine the same way whichever endpoint it came through.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse

from engine.constraints import ConstraintSpec, Grammar
from engine.errors import EngineError, QueueFull
from engine.generate import Engine
from engine.openai_format import WIRE_PARAMS, ApiError, ChatBody
from engine.request import Request
from engine.sampling import SamplingParams
from engine.scheduler import Scheduler
from engine.streaming import json_text
from engine.tools import ToolPlan, plan_tools, render_messages, template_knows_tools

DISCONNECT_POLL_S = 0.25  # how often a waiting non-streaming request checks that its client is still there


class WireResponse(JSONResponse):
    """JSON as FastAPI sends it, except that text which is not valid Unicode is escaped instead of failing."""

    def render(self, content: Any) -> bytes:
        return json_text(content).encode("utf-8")


def submit(
    scheduler: Scheduler,
    prompt_ids: list[int],
    params: SamplingParams,
    prompt_param: str,
    constraint: Any = None,
) -> tuple[Request, asyncio.Queue]:
    """Hand a request to the scheduler; engine refusals become 400s naming the request field."""
    try:
        return scheduler.submit(prompt_ids, params, constraint)
    except QueueFull as exc:
        raise ApiError(429, str(exc), "rate_limit_error", None, "queue_full") from None
    except EngineError as exc:
        param = prompt_param if exc.param == "prompt" else WIRE_PARAMS.get(exc.param, exc.param)
        raise ApiError(400, str(exc), param=param, code=exc.code) from None


@dataclass
class StartedChat:
    request: Request
    queue: asyncio.Queue
    plan: ToolPlan | None
    tokenizer: Any


async def start_chat(state: Any, body: ChatBody) -> StartedChat:
    """Validate a chat body, render its prompt, compile its output constraint and submit it (chat completions
    and the Responses API both come through here)."""
    scheduler = state.ready(body.model)
    engine = scheduler.engine
    plan = plan_tools(body)
    prompt_ids = chat_prompt(engine.tokenizer, body, plan)
    params = body.chat_sampling()
    spec = body.constraint_spec()
    if plan is not None and plan.spec is not None:
        if spec is not None and plan.mode != "auto":
            raise ApiError(
                400, f"tool_choice {body.tool_choice} cannot be used with {spec.param}", param=spec.param
            )
        spec = spec or plan.spec  # with `auto`, a request's own output format wins over the call grammar
    grammar = await compile_constraint(engine, spec)
    request, queue = submit(scheduler, prompt_ids, params, "messages", grammar)
    return StartedChat(request, queue, plan, engine.tokenizer)


async def compile_constraint(engine: Engine, spec: ConstraintSpec | None) -> Grammar | None:
    """Compile an output constraint off the event loop (a large schema takes a while); 400 if it is bad."""
    if spec is None:
        return None
    try:
        return await asyncio.to_thread(engine.constrain, spec)
    except EngineError as exc:
        raise ApiError(400, str(exc), param=exc.param, code=exc.code) from None


def chat_prompt(tokenizer: Any, body: ChatBody, plan: ToolPlan | None) -> list[int]:
    """The chat template applied to the messages (and tools): token ids, or a 400 naming `messages`."""
    if body.continue_final_message and body.messages[-1].role != "assistant":
        raise ApiError(400, "continue_final_message needs a final assistant message", param="messages")
    native = template_knows_tools(tokenizer)
    messages, tools = render_messages(body, plan, native)
    extra = {"tools": tools} if tools else {}
    try:
        return tokenizer.apply_chat_template(
            messages,
            **extra,
            add_generation_prompt=body.add_generation_prompt and not body.continue_final_message,
            continue_final_message=body.continue_final_message,
            tokenize=True,
            return_dict=False,
        )
    except Exception as exc:  # a template that rejects the roles or their order
        raise ApiError(
            400, f"messages cannot be formatted with the model's chat template: {exc}", param="messages"
        ) from None


def normalise_prompts(prompt: Any, tokenizer: Any) -> list[list[int]]:
    if prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    if prompt and all(isinstance(p, list) for p in prompt):
        return [list(p) for p in prompt]
    texts = [prompt] if isinstance(prompt, str) else prompt
    if not texts or not all(isinstance(p, str) for p in texts):
        raise ApiError(400, "prompt must be a string, a list of strings or token ids", param="prompt")
    try:
        return [tokenizer(text)["input_ids"] for text in texts]
    except Exception as exc:  # e.g. text that is not valid Unicode (a lone surrogate)
        raise ApiError(400, f"prompt cannot be tokenized: {exc}", param="prompt") from None


async def wait_done(http: HttpRequest, request: Request, queue: asyncio.Queue) -> None:
    """Wait for a non-streaming request, cancelling it if the client goes away."""
    while not request.done:
        try:
            await asyncio.wait_for(queue.get(), timeout=DISCONNECT_POLL_S)
        except TimeoutError:
            if await http.is_disconnected():
                request.cancel()
                raise ApiError(499, "client disconnected") from None
    if request.error is not None:
        raise ApiError(500, f"generation failed: {request.error}", "server_error")


def clamp_header(request: Request) -> dict[str, str]:
    if request.max_tokens_clamped_to is None:
        return {}
    return {"x-max-tokens-clamped": str(request.max_tokens_clamped_to)}
