"""The OpenAI wire format, in one place: every request body, response, stream chunk, logprob and error shape.

Request bodies are pydantic models that FastAPI validates and publishes in `/openapi.json`; they accept OpenAI's
fields and vLLM's extra body fields (so clients written for either work unchanged) and turn themselves into the
engine's `SamplingParams`. Responses are pydantic models too, serialised by `Wire.wire()`: every field is sent
(`null` included, as OpenAI does), except the few optional ones a model lists in `omit_if_unset` that the caller
did not set (`usage` on chunks without `include_usage`, `prompt_logprobs` unless asked for). The converters at the
bottom turn engine objects (choices, token log-probabilities) into these shapes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from engine.constraints import ConstraintSpec
from engine.request import Choice, Request, TokenLogprob
from engine.sampling import SamplingParams
from engine.tokens import token_bytes, token_text

MAX_TOKENS_DEFAULT = 256  # chat completions without max_tokens
COMPLETION_MAX_TOKENS_DEFAULT = 16  # legacy completions without max_tokens (OpenAI's default)
MAX_TOP_LOGPROBS = 20
MAX_N = 16
MAX_STOP_SEQUENCES = 4
MAX_TOOLS = 128
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for function names

# The engine's parameter names that differ on the wire (EngineError.param -> request field).
WIRE_PARAMS = {"max_new_tokens": "max_tokens"}


# --- errors ----------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return ErrorBody(
            error=ErrorInfo(message=self.message, type=self.type, param=self.param, code=self.code)
        ).wire()


class Wire(BaseModel):
    """A response shape: serialised with every field, except unset ones named in `omit_if_unset`."""

    omit_if_unset: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: Any) -> dict[str, Any]:
        data = handler(self)  # nested shapes pass through their own serializer, so this holds at every level
        for name in self.omit_if_unset:
            if name not in self.model_fields_set:
                data.pop(name, None)
        return data

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- request bodies --------------------------------------------------------------------------------------


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"] = "text"
    text: str


class FunctionCall(Wire):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool message: which call it answers
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None  # our constraint is always strict: the output always matches the schema


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def spec(self) -> ConstraintSpec:
        if self.type == "json_object":
            return ConstraintSpec("json", {"type": "object"}, "response_format")
        if self.json_schema is None:
            raise ApiError(
                400, "response_format of type json_schema needs json_schema", param="response_format"
            )
        schema = self.json_schema.schema_ if self.json_schema.schema_ is not None else {"type": "object"}
        return ConstraintSpec("json", schema, "response_format.json_schema.schema")


class FunctionDef(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionName


class CommonFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_N)
    best_of: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    # vLLM extra body fields
    top_k: int = Field(default=0, ge=-1)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    length_penalty: float = 1.0
    early_stopping: bool = False
    use_beam_search: bool = False
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True
    echo: bool = False
    prompt_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # structured output: OpenAI's response_format, or one of vLLM's guided_* fields
    response_format: ResponseFormat | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None  # Lark, or llama.cpp's GBNF (rules written with ::=)

    def constraint_spec(self) -> ConstraintSpec | None:
        """The one output constraint asked for, if any (two at once is a 400 naming the second)."""
        given = [
            (name, getattr(self, name))
            for name in ("response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar")
            if getattr(self, name) is not None
            and not (name == "response_format" and self.response_format.type == "text")
        ]
        if len(given) > 1:
            raise ApiError(400, f"{given[0][0]} and {given[1][0]} cannot be used together", param=given[1][0])
        if not given:
            return None
        name, value = given[0]
        if name == "response_format":
            return value.spec()
        kind = {"guided_json": "json", "guided_regex": "regex", "guided_choice": "choice"}.get(
            name, "grammar"
        )
        return ConstraintSpec(kind, value, name)

    def sampling(self, max_tokens: int | None, logprobs: int | None) -> SamplingParams:
        if self.best_of not in (None, 1, self.n):
            raise ApiError(
                400,
                f"best_of must be absent, 1 or equal to n ({self.n}), got {self.best_of}",
                param="best_of",
            )
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ApiError(400, f"stop may hold at most {MAX_STOP_SEQUENCES} sequences", param="stop")
        return SamplingParams(
            max_new_tokens=MAX_TOKENS_DEFAULT if max_tokens is None else max_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            n=self.n,
            seed=self.seed,
            stop=stops,
            stop_token_ids=list(self.stop_token_ids or []),
            ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens,
            logprobs=logprobs,
            prompt_logprobs=self.prompt_logprobs,
            use_beam_search=self.use_beam_search,
            length_penalty=self.length_penalty,
            early_stopping=self.early_stopping,
            skip_special_tokens=self.skip_special_tokens,
        )


class ChatBody(CommonFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # vLLM: score or continue a partial assistant message instead of opening a new one
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # accepted; we produce at most one call per choice

    def chat_sampling(self) -> SamplingParams:
        if self.top_logprobs and not self.logprobs:
            raise ApiError(400, "top_logprobs requires logprobs to be true", param="top_logprobs")
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return self.sampling(max_tokens, (self.top_logprobs or 0) if self.logprobs else None)


class CompletionBody(CommonFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    suffix: str | None = None

    def completion_sampling(self) -> SamplingParams:
        max_tokens = self.max_tokens if self.max_tokens is not None else COMPLETION_MAX_TOKENS_DEFAULT
        params = self.sampling(max_tokens, self.logprobs)
        if self.echo and self.logprobs is not None and params.prompt_logprobs is None:
            params.prompt_logprobs = self.logprobs
        return params


# --- responses -------------------------------------------------------------------------------------------


class ErrorInfo(Wire):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(Wire):
    error: ErrorInfo


class Usage(Wire):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(Wire):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(Wire):
    content: list[ChatTokenLogprob]


class AssistantMessage(Wire):
    omit_if_unset: ClassVar[tuple[str, ...]] = ("tool_calls",)
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Wire):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None


class ChatCompletion(Wire):
    omit_if_unset: ClassVar[tuple[str, ...]] = ("prompt_logprobs",)
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str
    prompt_logprobs: list[dict[str, dict[str, Any]] | None] | None = None  # vLLM's extra field


class FunctionDelta(Wire):
    omit_if_unset: ClassVar[tuple[str, ...]] = ("name",)
    name: str | None = None
    arguments: str


class ToolCallDelta(Wire):
    """A streamed call: the first delta has its id, type and name; the next ones only more of its arguments."""

    omit_if_unset: ClassVar[tuple[str, ...]] = ("id", "type")
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta


class ChatDelta(Wire):
    omit_if_unset: ClassVar[tuple[str, ...]] = ("role", "content", "tool_calls")
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(Wire):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(Wire):
    omit_if_unset: ClassVar[tuple[str, ...]] = ("usage",)
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class LegacyLogprobs(Wire):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(Wire):
    index: int
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: str | None


class Completion(Wire):
    """A legacy completion, or one chunk of a streamed one (same object name, as OpenAI does)."""

    omit_if_unset: ClassVar[tuple[str, ...]] = ("usage",)
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(Wire):
    model_config = ConfigDict(extra="allow")  # the engine's sizes (Engine.info()) travel along
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "workbench"
    root: str
    quant: str
    max_model_len: int
    capabilities: dict[str, Any] = Field(default_factory=dict)


class ModelList(Wire):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- engine objects -> wire shapes -----------------------------------------------------------------------


def usage(request: Request) -> Usage:
    completion = sum(len(c.token_ids) for c in request.choices)
    prompt = len(request.prompt_ids)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def chat_logprob(tokenizer: Any, lp: TokenLogprob) -> ChatTokenLogprob:
    def item(token_id: int, logprob: float, end: bool = False) -> dict[str, Any]:
        return {
            "token": "" if end else token_text(tokenizer, token_id),
            "logprob": logprob,
            "bytes": [] if end else list(token_bytes(tokenizer, token_id)),
        }

    return ChatTokenLogprob(
        **item(lp.token_id, lp.logprob, lp.end), top_logprobs=[TopLogprob(**item(t, v)) for t, v in lp.top]
    )


def chat_logprobs(tokenizer: Any, entries: list[TokenLogprob] | None) -> ChatLogprobs | None:
    if entries is None:
        return None
    return ChatLogprobs(content=[chat_logprob(tokenizer, lp) for lp in entries])


def legacy_logprobs(
    tokenizer: Any, entries: list[TokenLogprob | None], start_offset: int, token_ids: list[int] | None = None
) -> LegacyLogprobs:
    tokens, token_logprobs, tops, offsets = [], [], [], []
    offset = start_offset
    for i, lp in enumerate(entries):
        token_id = lp.token_id if lp is not None else token_ids[i]
        text = "" if lp is not None and lp.end else token_text(tokenizer, token_id)
        tokens.append(text)
        token_logprobs.append(lp.logprob if lp is not None else None)
        tops.append({token_text(tokenizer, t): v for t, v in lp.top} if lp is not None and lp.top else None)
        offsets.append(offset)
        offset += len(text)
    return LegacyLogprobs(
        tokens=tokens, token_logprobs=token_logprobs, top_logprobs=tops, text_offset=offsets
    )


def completion_choice(
    tokenizer: Any, request: Request, choice: Choice, index: int, body: CompletionBody
) -> CompletionChoice:
    logprobs = None
    prompt_text = tokenizer.decode(request.prompt_ids) if body.echo else ""
    if body.logprobs is not None:
        entries: list[TokenLogprob | None] = []
        ids: list[int] = []
        if body.echo:
            entries += list(request.prompt_logprobs or [None] * len(request.prompt_ids))
            ids += request.prompt_ids
        entries += list(choice.logprobs or [])
        ids += choice.token_ids
        logprobs = legacy_logprobs(tokenizer, entries, 0, ids)
    return CompletionChoice(
        index=index, text=prompt_text + choice.text, logprobs=logprobs, finish_reason=choice.finish_reason
    )


def prompt_logprobs_vllm(tokenizer: Any, request: Request) -> list[dict[str, dict[str, Any]] | None]:
    out: list[dict[str, dict[str, Any]] | None] = []
    for lp in request.prompt_logprobs or []:
        if lp is None:
            out.append(None)
            continue
        entry = {
            str(lp.token_id): {"logprob": lp.logprob, "decoded_token": token_text(tokenizer, lp.token_id)}
        }
        for t, v in lp.top:
            entry.setdefault(str(t), {"logprob": v, "decoded_token": token_text(tokenizer, t)})
        out.append(entry)
    return out
