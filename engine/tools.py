"""Tool calls on chat completions: which calls are allowed, how tools reach the prompt, how calls are read back.

`plan_tools` reads `tools` and `tool_choice`. With `required` or a named function the output is constrained to
one call, the JSON object `{"name": ..., "arguments": {...}}` whose arguments match that function's `parameters`
schema (an output constraint, like `response_format`), so every call is valid. With `auto` the model decides,
within a grammar too: free text that never contains `<tool_call>`, or exactly one
`<tool_call>{"name": ..., "arguments": ...}</tool_call>` whose JSON is a valid call of a declared function (a
request that brings its own output constraint keeps it, and then a call is only read back if one is written).
Only a call that names a known function and whose arguments validate becomes a tool call. With `none` tools
are only shown. Tools and earlier calls and results reach the model through its chat template when the template
knows about tools, and otherwise through a plain-text fallback: a system note listing the functions and the
answer format, assistant calls written as `<tool_call>` blocks, tool results as `<tool_response>` user messages.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from engine.constraints import JSON_OPTIONS, ConstraintSpec, bounded_numbers
from engine.openai_format import ApiError, ChatBody, FunctionCall, NamedToolChoice, Tool, ToolCall

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_CALL_BLOCK = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.DOTALL)
ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass
class ToolPlan:
    mode: str  # "none" | "auto" | "required" | "named"
    tools: list[Tool]
    allowed: list[Tool] = field(default_factory=list)  # the functions the output may call
    spec: ConstraintSpec | None = None  # required / named: the call's shape as an output constraint

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """The choice's content and tool calls, read from its text (no calls: the text is the content)."""
        if self.mode in ("required", "named"):
            call = self._call(text)
            return (None, [call]) if call else (text, [])
        if self.mode == "auto":
            blocks = _CALL_BLOCK.findall(text)
            calls = [self._call(block) for block in blocks]
            if blocks and all(calls):
                rest = _CALL_BLOCK.sub("", text).strip()
                return (rest or None), calls
        return text, []

    def _call(self, text: str) -> ToolCall | None:
        """One call from its JSON text, if it names an allowed function and its arguments validate."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None  # e.g. cut short by max_tokens
        if not isinstance(data, dict) or not isinstance(data.get("arguments"), dict):
            return None
        function = next((t.function for t in self.allowed if t.function.name == data.get("name")), None)
        if function is None:
            return None
        if not Draft202012Validator(function.parameters or ANY_OBJECT).is_valid(data["arguments"]):
            return None
        arguments = json.dumps(data["arguments"], ensure_ascii=False)
        return ToolCall(
            id=f"call_{uuid.uuid4().hex[:24]}", function=FunctionCall(name=function.name, arguments=arguments)
        )


def plan_tools(body: ChatBody) -> ToolPlan | None:
    """What tools a request allows (None without tools), or a 400 naming `tools` or `tool_choice`."""
    choice = body.tool_choice
    if not body.tools:
        if choice is not None and choice not in ("none", "auto"):
            raise ApiError(400, "tool_choice needs tools", param="tool_choice")
        return None
    tools = body.tools
    for i, tool in enumerate(tools):
        try:
            Draft202012Validator.check_schema(tool.function.parameters or ANY_OBJECT)
        except SchemaError as exc:
            param = f"tools.{i}.function.parameters"
            raise ApiError(400, f"{param} is not a valid JSON schema: {exc.message}", param=param) from None
    if choice in (None, "auto"):
        return ToolPlan("auto", tools, tools, ConstraintSpec("lark", auto_grammar(tools), "tools"))
    if choice == "none":
        return ToolPlan("none", tools)
    allowed = tools
    if isinstance(choice, NamedToolChoice):
        allowed = [t for t in tools if t.function.name == choice.function.name]
        if not allowed:
            names = ", ".join(t.function.name for t in tools)
            message = f"tool_choice names function '{choice.function.name}', which is not in tools ({names})"
            raise ApiError(400, message, param="tool_choice")
    mode = "named" if isinstance(choice, NamedToolChoice) else "required"
    return ToolPlan(mode, tools, allowed, ConstraintSpec("json", call_schema(allowed), "tools"))


def call_schema(allowed: list[Tool]) -> dict[str, Any]:
    """The JSON schema of one call to any of these functions: name first, then its arguments."""
    shapes = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.function.name},
                "arguments": t.function.parameters or ANY_OBJECT,
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in allowed
    ]
    return shapes[0] if len(shapes) == 1 else {"anyOf": shapes}


def auto_grammar(allowed: list[Tool]) -> str:
    """Lark for `auto`: free text without the call marker, or one marked call (llguidance embeds the schema)."""
    schema = {"x-guidance": JSON_OPTIONS, **bounded_numbers(call_schema(allowed))}
    return "\n".join(
        [
            f'start: TEXT | "{CALL_OPEN}" WS? call WS? "{CALL_CLOSE}"',
            f"call: %json {json.dumps(schema)}",
            "WS: /[ \\t\\n]+/",
            f"TEXT: /(?s:.*)/ & ~/(?s:.*{re.escape(CALL_OPEN)}.*)/",
        ]
    )


# --- the prompt ------------------------------------------------------------------------------------------


def template_knows_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return "tools" in template


def render_messages(
    body: ChatBody, plan: ToolPlan | None, native: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages for the chat template, and the tools to hand it (None when it cannot take them)."""
    messages = []
    for m in body.messages:
        role = "system" if m.role == "developer" else m.role
        item: dict[str, Any] = {"role": role, "content": m.text()}
        if native:
            if m.tool_calls:
                item["tool_calls"] = [_native_call(c) for c in m.tool_calls]
            if m.tool_call_id:
                item["tool_call_id"] = m.tool_call_id
        else:
            item = _textual(role, item["content"], m.tool_calls, m.tool_call_id)
        messages.append(item)
    if plan is None:
        return messages, None
    if native:
        return messages, [t.model_dump(exclude_none=True) for t in plan.tools]
    return _with_tool_note(messages, plan), None


def _native_call(call: ToolCall) -> dict[str, Any]:
    try:
        arguments: Any = json.loads(call.function.arguments)
    except json.JSONDecodeError:
        arguments = call.function.arguments
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": arguments},
    }


def _textual(role: str, content: str, calls: list[ToolCall] | None, call_id: str | None) -> dict[str, Any]:
    if role == "tool":
        opening = f'<tool_response id="{call_id}">' if call_id else "<tool_response>"
        return {"role": "user", "content": f"{opening}\n{content}\n</tool_response>"}
    for call in calls or []:
        payload = json.dumps(
            {"name": call.function.name, "arguments": _native_call(call)["function"]["arguments"]}
        )
        content += f"{CALL_OPEN}{payload}{CALL_CLOSE}"
    return {"role": role, "content": content}


def _with_tool_note(messages: list[dict[str, Any]], plan: ToolPlan) -> list[dict[str, Any]]:
    """Add the functions and the answer format to the system message (a new one if there is none)."""
    listing = "\n".join(
        json.dumps(
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "parameters": t.function.parameters or ANY_OBJECT,
            }
        )
        for t in plan.tools
    )
    if plan.mode == "auto":
        how = (
            f'To call a function, answer with {CALL_OPEN}{{"name": ..., "arguments": {{...}}}}{CALL_CLOSE}; '
            "otherwise answer normally."
        )
    elif plan.mode == "none":
        how = "Do not call a function now; answer normally."
    else:
        how = 'Call a function: answer with only a JSON object {"name": ..., "arguments": {...}}.'
    note = f"You can use these functions:\n{listing}\n{how}"
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{note}".strip()}
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]
