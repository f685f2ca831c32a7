"""The Responses API's wire format (`/v1/responses`): its request body, read into a chat body, and its output shapes.

A Responses request is a chat request in other clothes: `instructions` is a system message, `input` a string or
a list of items (messages with `input_text`/`output_text` parts, `function_call` and `function_call_output`),
`text.format` a response format, tools are flat (`{"type": "function", "name", "parameters"}`). `chat_body`
turns it into the `ChatBody` the chat route already validates, renders and constrains, so both endpoints share
one prompt, one constraint engine and one tool planner. What this server cannot do (built-in tools, background
mode, reasoning, images) is refused with a 400 naming the field, never ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.openai_format import (
    FUNCTION_NAME,
    MAX_TOOLS,
    MAX_TOP_LOGPROBS,
    ApiError,
    ChatBody,
    chat_logprobs,
)
from engine.request import Request, TokenLogprob

LOGPROBS_INCLUDE = "message.output_text.logprobs"


class TextFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class FunctionChoice(BaseModel):
    type: Literal["function"]
    name: str


class ResponsesBody(BaseModel):
    """What `client.responses.create` sends; a field we do not know is a 400 naming it (OpenAI does the same)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    include: list[str] | None = None
    text: TextConfig | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    seed: int | None = None  # not OpenAI's: vLLM's extension, for reproducible sampling
    truncation: Literal["disabled", "auto"] | None = None
    background: bool | None = None
    reasoning: dict[str, Any] | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)

    def refuse_unsupported(self) -> None:
        """A 400 naming the first field asking for what this server does not do."""
        unsupported = [
            ("background", self.background, "background mode is not supported: send the request and wait"),
            ("conversation", self.conversation, "conversations are not supported: use previous_response_id"),
            ("prompt", self.prompt, "stored prompt templates are not supported: send input"),
            (
                "truncation",
                self.truncation == "auto",
                'truncation "auto" is not supported: the input must fit',
            ),
            ("reasoning", self.reasoning and any(self.reasoning.values()), "this model does not reason"),
        ]
        for field, asked, message in unsupported:
            if asked:
                raise ApiError(400, message, param=field, code="unsupported_parameter")
        for i, item in enumerate(self.include or []):
            if item != LOGPROBS_INCLUDE:
                message = f"include.{i}: only {LOGPROBS_INCLUDE!r} can be included, not {item!r}"
                raise ApiError(400, message, param=f"include.{i}", code="unsupported_parameter")
        for i, tool in enumerate(self.tools or []):
            if tool.get("type") != "function":
                message = f"tools.{i}: only function tools are supported, not {tool.get('type')!r}"
                raise ApiError(400, message, param=f"tools.{i}.type", code="unsupported_parameter")

    @property
    def wants_logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.include or []) or self.top_logprobs is not None


def chat_body(body: ResponsesBody, history: list[dict[str, Any]]) -> tuple[ChatBody, list[dict[str, Any]]]:
    """The chat body for this request, and the conversation it continues with (for the store): `history` (a
    previous response's conversation) + this input. Instructions are this request's only, as OpenAI's are."""
    body.refuse_unsupported()
    conversation = history + input_messages(body.input)
    system = [{"role": "system", "content": body.instructions}] if body.instructions else []
    if not conversation:
        raise ApiError(400, "input is empty: send a string or at least one message", param="input")
    fields: dict[str, Any] = {
        "model": body.model,
        "messages": system + conversation,
        "max_tokens": body.max_output_tokens,
        "seed": body.seed,
        "logprobs": body.wants_logprobs,
        "top_logprobs": body.top_logprobs if body.wants_logprobs else None,
        "tool_choice": _tool_choice(body.tool_choice),
        "parallel_tool_calls": body.parallel_tool_calls,
    }
    fields.update(
        {k: v for k, v in (("temperature", body.temperature), ("top_p", body.top_p)) if v is not None}
    )
    if body.tools:
        fields["tools"] = [_chat_tool(tool) for tool in body.tools]
    if body.text and body.text.format and body.text.format.type != "text":
        fields["response_format"] = _response_format(body.text.format)
    try:
        return ChatBody.model_validate(fields), conversation
    except ValueError as exc:  # a tool or format that the chat body refuses: name the Responses field
        raise ApiError(400, f"invalid request: {exc}", param="tools" if body.tools else "input") from None


def input_messages(given: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages from `input`: a string is one user message; items are read one by one."""
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(given):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, f"input.{i}"))
        elif kind == "function_call":
            call = _call(item, f"input.{i}")
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and not last.get("content"):
                last.setdefault("tool_calls", []).append(call)  # consecutive calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _parts_text(output, f"input.{i}.output")
            messages.append(
                {"role": "tool", "tool_call_id": _text(item, "call_id", f"input.{i}"), "content": text}
            )
        else:
            raise ApiError(
                400, f"input.{i}: items of type {kind!r} are not supported", param=f"input.{i}.type"
            )
    return messages


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise ApiError(
            400, f"{where}.role must be user, assistant, system or developer", param=f"{where}.role"
        )
    content = item.get("content")
    text = content if isinstance(content, str) else _parts_text(content, f"{where}.content")
    return {"role": role, "content": text}


def _parts_text(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise ApiError(400, f"{where} must be a string or a list of content parts", param=where)
    texts = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            message = f"{where}.{j}: content of type {kind!r} is not supported (this model reads text only)"
            raise ApiError(400, message, param=f"{where}.{j}")
    return "".join(texts)


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ApiError(400, f"{where}.{key} must be a string", param=f"{where}.{key}")
    return value


def _call(item: dict[str, Any], where: str) -> dict[str, Any]:
    function = {"name": _text(item, "name", where), "arguments": _text(item, "arguments", where)}
    return {"id": _text(item, "call_id", where), "type": "function", "function": function}


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "description", "parameters", "strict")
    return {"type": "function", "function": {k: tool[k] for k in keys if tool.get(k) is not None}}


def _tool_choice(choice: str | FunctionChoice | None) -> Any:
    if isinstance(choice, FunctionChoice):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def _response_format(fmt: TextFormat) -> dict[str, Any]:
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.name is None:
        raise ApiError(400, "text.format of type json_schema needs a name", param="text.format.name")
    schema = {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict, "description": fmt.description}
    return {"type": "json_schema", "json_schema": schema}


# --- output shapes ---------------------------------------------------------------------------------------


def message_item(item_id: str, text: str, status: str, logprobs: list[dict] | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part]}


def call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    """A function_call output item; its item id follows from its call id (one item per call, streamed or not)."""
    return {
        "type": "function_call",
        "id": f"fc_{call_id.removeprefix('call_')}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_logprobs(tokenizer: Any, entries: list[TokenLogprob] | None) -> list[dict] | None:
    """Token log-probabilities as output_text carries them (the chat shape, which is the same)."""
    shaped = chat_logprobs(tokenizer, entries)
    return [entry.wire() for entry in shaped.content] if shaped is not None else None


def response_usage(request: Request) -> dict[str, Any]:
    output = sum(len(c.token_ids) for c in request.choices)
    prompt = len(request.prompt_ids)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": request.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }


def response_object(body: ResponsesBody, response_id: str, model: str, created: float) -> dict[str, Any]:
    """The response's fields that echo the request (status, output and usage are set by the caller)."""
    text_format = (
        body.text.format.model_dump(by_alias=True, exclude_none=True)
        if body.text and body.text.format
        else None
    )
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(created),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": model,
        "output": [],
        "parallel_tool_calls": bool(body.parallel_tool_calls),
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": body.store,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "text": {"format": text_format or {"type": "text"}},
        "tool_choice": _tool_choice_echo(body.tool_choice, bool(body.tools)),
        "tools": body.tools or [],
        "top_logprobs": body.top_logprobs,
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": body.user,
        "metadata": body.metadata or {},
    }


def _tool_choice_echo(choice: str | FunctionChoice | None, has_tools: bool) -> Any:
    if isinstance(choice, FunctionChoice):
        return choice.model_dump()
    return choice or ("auto" if has_tools else "none")


def finished(response: dict[str, Any], request: Request, output: list[dict[str, Any]]) -> dict[str, Any]:
    """Complete a response: its output, usage and status ("incomplete" when max_output_tokens cut it)."""
    cut = any(c.finish_reason == "length" for c in request.choices)
    return {
        **response,
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "output": output,
        "usage": response_usage(request),
    }


def conversation_after(
    conversation: list[dict[str, Any]], output: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The stored conversation: what was said, then this response's output as chat messages."""
    turn: dict[str, Any] = {"role": "assistant", "content": None}
    for item in output:
        if item["type"] == "message":
            turn["content"] = (turn["content"] or "") + "".join(p["text"] for p in item["content"])
        else:
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            turn.setdefault("tool_calls", []).append(call)
    return [*conversation, turn]
