"""Production traces read into one shape: the messages a model was sent, what it answered, which model, tags.

Three formats:
- `chat`: OpenAI chat-completions logs as JSONL, one call per line: `{"request": {model, messages, …},
  "response": {choices: [{message}], model, …}}` (the shape most gateways log), or a request body with its
  `response` inline;
- `otel`: OpenTelemetry spans exported as OTLP JSON (one export per file or per line) following the GenAI
  semantic conventions: `gen_ai.input.messages` / `gen_ai.output.messages` / `gen_ai.system_instructions`
  (parts), or the older indexed `gen_ai.prompt.N.*` / `gen_ai.completion.N.*` attributes; the model from
  `gen_ai.request.model`;
- `langfuse`: a Langfuse export (JSON array or JSONL) of traces with their observations, or of observations;
  each GENERATION observation is a call (input: messages, output: a message or text, model, the trace's tags).

A malformed record is reported as `Bad(file, line, reason)`; the caller decides whether to stop (the default) or
skip it. Nothing here touches the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompting.errors import PromptingError

FORMATS = ("chat", "otel", "langfuse")
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Trace:
    messages: list[dict[str, Any]]  # what the model was sent, system messages included
    answer: str | None = None  # what it answered (the first choice's text)
    model: str | None = None
    tags: list[str] = field(default_factory=list)
    where: str = ""  # file and line (or record) it came from

    @property
    def system(self) -> str:
        return "\n\n".join(str(m.get("content") or "") for m in self.messages if m["role"] == "system")

    @property
    def conversation(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["role"] != "system"]


@dataclass(frozen=True)
class Bad:
    file: str
    line: int
    reason: str
    unit: str = "line"  # "record" for the entries of a JSON array

    def __str__(self) -> str:
        return f"{self.file}, {self.unit} {self.line}: {self.reason}"


class TraceError(PromptingError):
    pass


def message(raw: Any) -> dict[str, Any]:
    """An OpenAI chat message, checked: a known role, text content (content parts joined), tool fields kept."""
    if not isinstance(raw, dict) or raw.get("role") not in ROLES:
        raise TraceError(f"a message needs a role ({', '.join(ROLES)}), got {str(raw)[:60]!r}")
    content = raw.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    if content is not None and not isinstance(content, str):
        raise TraceError(f"a {raw['role']} message's content must be text, got {type(content).__name__}")
    out = {"role": raw["role"], "content": content}
    for key in ("name", "tool_calls", "tool_call_id"):
        if raw.get(key):
            out[key] = raw[key]
    return out


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise TraceError("messages must be a non-empty list")
    return [message(m) for m in raw]


# --- chat-completions logs ------------------------------------------------------------------------------------


def chat_record(raw: Any) -> Trace:
    if not isinstance(raw, dict):
        raise TraceError("each line must be a JSON object with request and response")
    request = raw.get("request", raw)
    if not isinstance(request, dict) or "messages" not in request:
        raise TraceError("no request messages (expected {request: {messages}, response} or a request body)")
    response = raw.get("response") or {}
    answer = None
    choices = response.get("choices") if isinstance(response, dict) else None
    if choices:
        answer = (choices[0].get("message") or {}).get("content")
    tags = (request.get("metadata") or {}).get("tags") or raw.get("tags") or []
    model = (response.get("model") if isinstance(response, dict) else None) or request.get("model")
    return Trace(_messages(request["messages"]), answer, model, [str(t) for t in tags])


def read_lines(path: Path) -> Iterator[tuple[int, Any | Bad]]:
    """(line number, parsed JSON or Bad) for each non-blank line."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, Bad(path.name, number, f"invalid JSON: {exc.msg} (column {exc.colno})")


def read_chat(path: Path) -> tuple[list[Trace], list[Bad]]:
    traces, bad = [], []
    for number, raw in read_lines(path):
        if isinstance(raw, Bad):
            bad.append(raw)
            continue
        try:
            trace = chat_record(raw)
        except (TraceError, AttributeError, TypeError, IndexError) as exc:
            bad.append(Bad(path.name, number, str(exc)))
            continue
        trace.where = f"{path.name}, line {number}"
        traces.append(trace)
    return traces, bad


# --- OpenTelemetry GenAI spans ----------------------------------------------------------------------------------


def otlp_value(value: dict[str, Any]) -> Any:
    """An OTLP JSON AnyValue as Python."""
    if "arrayValue" in value:
        return [otlp_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: otlp_value(kv["value"]) for kv in value["kvlistValue"].get("values", [])}
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    return int(value["intValue"]) if "intValue" in value else None


def attributes(span: dict[str, Any]) -> dict[str, Any]:
    raw = span.get("attributes") or {}
    if isinstance(raw, dict):  # some exporters write attributes as a plain object
        return raw
    return {kv["key"]: otlp_value(kv.get("value") or {}) for kv in raw}


def parts_text(parts: list[dict[str, Any]]) -> str:
    return "".join(str(p.get("content", "")) for p in parts if p.get("type", "text") == "text")


def genai_message(raw: dict[str, Any]) -> dict[str, Any]:
    """A GenAI-convention message (role + parts) as an OpenAI message."""
    parts = raw.get("parts") or []
    out: dict[str, Any] = {"role": raw.get("role"), "content": parts_text(parts)}
    calls = [p for p in parts if p.get("type") == "tool_call"]
    if calls:
        out["tool_calls"] = [
            {
                "id": p.get("id"),
                "type": "function",
                "function": {"name": p.get("name"), "arguments": json.dumps(p.get("arguments") or {})},
            }
            for p in calls
        ]
    responses = [p for p in parts if p.get("type") == "tool_call_response"]
    if responses:
        out["tool_call_id"] = str(responses[0].get("id", "")).strip()
        out["content"] = str(responses[0].get("response", responses[0].get("result", "")))
    return message(out)


def _json_attr(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def span_trace(attrs: dict[str, Any]) -> Trace | None:
    """A GenAI span's call, or None when the span carries no GenAI messages (a tool or an HTTP span)."""
    model = attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model")
    if "gen_ai.input.messages" in attrs:
        messages = [genai_message(m) for m in _json_attr(attrs["gen_ai.input.messages"])]
        system = _json_attr(attrs.get("gen_ai.system_instructions")) or []
        if system:
            messages.insert(0, {"role": "system", "content": parts_text(system)})
        outputs = _json_attr(attrs.get("gen_ai.output.messages")) or []
        answer = parts_text(outputs[0].get("parts") or []) if outputs else None
        return Trace(_messages(messages), answer, model)
    indexed = sorted(
        {int(k.split(".")[2]) for k in attrs if k.startswith("gen_ai.prompt.") and k.split(".")[2].isdigit()}
    )
    if not indexed:
        return None
    messages = [
        message(
            {"role": attrs.get(f"gen_ai.prompt.{i}.role"), "content": attrs.get(f"gen_ai.prompt.{i}.content")}
        )
        for i in indexed
    ]
    return Trace(_messages(messages), attrs.get("gen_ai.completion.0.content"), model)


def spans_of(document: Any) -> Iterator[dict[str, Any]]:
    """Spans of an OTLP JSON export (resourceSpans → scopeSpans → spans), or of a plain list of spans."""
    if isinstance(document, list):
        yield from (s for s in document if isinstance(s, dict))
        return
    if not isinstance(document, dict) or "resourceSpans" not in document:
        raise TraceError("not an OTLP JSON trace export (no resourceSpans)")
    for resource in document["resourceSpans"]:
        for scope in resource.get("scopeSpans") or resource.get("instrumentationLibrarySpans") or []:
            yield from scope.get("spans") or []


def read_otel(path: Path) -> tuple[list[Trace], list[Bad]]:
    traces, bad = [], []
    for number, document in _documents(path):
        if isinstance(document, Bad):
            bad.append(document)
            continue
        try:
            for index, span in enumerate(spans_of(document)):
                try:
                    trace = span_trace(attributes(span))
                except (TraceError, ValueError, AttributeError, TypeError) as exc:
                    bad.append(Bad(path.name, number, f"span {index} ({span.get('name', '?')}): {exc}"))
                    continue
                if trace is not None:
                    trace.where = f"{path.name}, line {number}, span {span.get('name', index)}"
                    traces.append(trace)
        except TraceError as exc:
            bad.append(Bad(path.name, number, str(exc)))
    return traces, bad


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    """A file holding one JSON document, or JSON Lines (one document per line)."""
    text = path.read_text(encoding="utf-8")
    try:
        yield 1, json.loads(text)
        return
    except json.JSONDecodeError:
        pass
    yield from read_lines(path)


# --- Langfuse exports -------------------------------------------------------------------------------------------


def generation_trace(observation: dict[str, Any], tags: list[str]) -> Trace:
    raw_input = observation.get("input")
    if isinstance(raw_input, dict) and "messages" in raw_input:
        raw_input = raw_input["messages"]
    if isinstance(raw_input, str):
        raw_input = [{"role": "user", "content": raw_input}]
    output = observation.get("output")
    if isinstance(output, dict):
        output = (
            output.get("content")
            if "content" in output
            else (output.get("choices") or [{}])[0].get("message", {}).get("content")
        )
    return Trace(
        _messages(raw_input), output if isinstance(output, str) else None, observation.get("model"), tags
    )


def langfuse_records(record: Any) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """(GENERATION observation, the trace's tags) in a trace with observations, or a bare observation."""
    if not isinstance(record, dict):
        raise TraceError("each record must be a JSON object (a trace or an observation)")
    tags = [str(t) for t in record.get("tags") or []]
    if "observations" in record:
        for observation in record["observations"] or []:
            if isinstance(observation, dict) and observation.get("type") == "GENERATION":
                yield observation, tags
    elif record.get("type") == "GENERATION":
        yield record, tags
    elif "type" not in record:
        raise TraceError("neither a trace (with observations) nor an observation (with a type)")


def read_langfuse(path: Path) -> tuple[list[Trace], list[Bad]]:
    traces, bad = [], []
    for number, document in _documents(path):
        if isinstance(document, Bad):
            bad.append(document)
            continue
        records = document if isinstance(document, list) else [document]
        unit = "record" if isinstance(document, list) else "line"
        for index, record in enumerate(records):
            where = index + 1 if isinstance(document, list) else number
            try:
                for observation, tags in langfuse_records(record):
                    trace = generation_trace(observation, tags)
                    trace.where = f"{path.name}, {unit} {where}"
                    traces.append(trace)
            except (TraceError, AttributeError, TypeError, IndexError) as exc:
                bad.append(Bad(path.name, where, str(exc), unit))
    return traces, bad


READERS = {"chat": read_chat, "otel": read_otel, "langfuse": read_langfuse}


def read(path: Path, fmt: str) -> tuple[list[Trace], list[Bad]]:
    if fmt not in READERS:
        raise TraceError(f"unknown trace format '{fmt}'; known: {', '.join(FORMATS)}")
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    return READERS[fmt](path)
