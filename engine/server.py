"""OpenAI-compatible HTTP server over our engine: /v1/models, /v1/chat/completions, /v1/completions.

Responses are shaped as OpenAI's; vLLM's extra body fields (top_k, min_p, repetition_penalty, length_penalty,
use_beam_search, min_tokens, ignore_eos, stop_token_ids, skip_special_tokens, echo, prompt_logprobs) are
accepted, so clients written for either work unchanged. The model loads in the background after the socket
opens: until it is ready every model endpoint answers 503. Errors use OpenAI's
`{"error": {"message", "type", "param", "code"}}` with 400/401/404/429/503.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.generate import ContextLengthError, Engine, Event, Request, TokenLogprob
from engine.sampling import SamplingParams
from engine.scheduler import QueueFull, Scheduler
from engine.tokens import token_bytes, token_text

MAX_TOKENS_DEFAULT = 256
MAX_TOP_LOGPROBS = 20
MAX_N = 16
DISCONNECT_POLL_S = 0.25


class ApiError(Exception):
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


def error_response(status: int, message: str, type_: str, param: str | None = None, code: str | None = None):
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


# --- request bodies --------------------------------------------------------------------------------------


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"] = "text"
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


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

    def sampling(self, max_tokens: int | None, logprobs: int | None) -> SamplingParams:
        if self.best_of not in (None, 1, self.n):
            raise ApiError(
                400,
                f"best_of must be absent, 1 or equal to n ({self.n}), got {self.best_of}",
                param="best_of",
            )
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise ApiError(400, "stop may hold at most 4 sequences", param="stop")
        return SamplingParams(
            max_new_tokens=MAX_TOKENS_DEFAULT if max_tokens is None else max_tokens,
            temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
            repetition_penalty=self.repetition_penalty, presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty, n=self.n, seed=self.seed, stop=stops,
            stop_token_ids=list(self.stop_token_ids or []), ignore_eos=self.ignore_eos, min_tokens=self.min_tokens,
            logprobs=logprobs, prompt_logprobs=self.prompt_logprobs, use_beam_search=self.use_beam_search,
            length_penalty=self.length_penalty, early_stopping=self.early_stopping,
            skip_special_tokens=self.skip_special_tokens,
        )  # fmt: skip


class ChatBody(CommonFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # vLLM: score or continue a partial assistant message instead of opening a new one
    add_generation_prompt: bool = True
    continue_final_message: bool = False


class CompletionBody(CommonFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    suffix: str | None = None


# --- the app -------------------------------------------------------------------------------------------


class EngineState:
    """What the routes need: the scheduler once loaded, or the reason it is not."""

    def __init__(self, model_name: str, method: str):
        self.model_id = f"{model_name}@{method}"
        self.model_name, self.method = model_name, method
        self.scheduler: Scheduler | None = None
        self.info: dict = {}
        self.load_error: str | None = None
        self.created = int(time.time())

    @property
    def engine(self) -> Engine:
        assert self.scheduler is not None
        return self.scheduler.engine

    def accepts(self, model: str) -> bool:
        return model in (self.model_id, self.model_name)


def create_app(
    loader: Callable[[], Engine],
    model_name: str,
    method: str,
    max_queue: int = 64,
    api_key: str | None = None,
    on_ready: Callable[[EngineState], None] | None = None,
) -> FastAPI:
    """The app; `loader` builds the engine in a background thread once the socket is open (503 until then)."""
    state = EngineState(model_name, method)

    def load() -> None:
        try:
            engine = loader()
            state.info = engine.info()
            state.scheduler = Scheduler(engine, max_queue=max_queue)
        except Exception as exc:  # reported on every request and by /health
            state.load_error = f"{type(exc).__name__}: {exc}"
        if on_ready:
            on_ready(state)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield
        if state.scheduler:
            state.scheduler.close()

    app = FastAPI(title="workbench engine", lifespan=lifespan)
    app.state.engine_state = state

    @app.exception_handler(ApiError)
    async def api_error(_: HttpRequest, exc: ApiError):
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: HttpRequest, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return error_response(
                400,
                f"the request body is not valid JSON: {first.get('ctx', {}).get('error', '')}",
                "invalid_request_error",
                None,
                "invalid_json",
            )
        loc = [str(p) for p in first.get("loc", []) if p != "body"]
        param = ".".join(loc) or None
        message = (
            f"invalid parameter {param}: {first.get('msg', 'invalid value')}"
            if param
            else first.get("msg", "")
        )
        return error_response(400, message, "invalid_request_error", param, "invalid_parameter")

    def require_key(http: HttpRequest) -> None:
        if not api_key:
            return
        header = http.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not given or not secrets.compare_digest(given, api_key):
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                "authentication_error",
                None,
                "invalid_api_key",
            )

    def require_ready() -> Scheduler:
        if state.load_error:
            raise ApiError(
                503, f"the model failed to load: {state.load_error}", "server_error", None, "load_failed"
            )
        if state.scheduler is None:
            raise ApiError(
                503,
                "the model is still loading; retry in a few seconds",
                "server_error",
                None,
                "model_loading",
            )
        return state.scheduler

    def require_model(name: str) -> None:
        if not state.accepts(name):
            raise ApiError(
                404,
                f"the model '{name}' does not exist; this server runs '{state.model_id}'",
                "invalid_request_error",
                "model",
                "model_not_found",
            )

    async def accept(http: HttpRequest, model: type[BaseModel]) -> tuple[Any, Scheduler, Any]:
        """Checks every generation request passes, in order: key, body, readiness, model name."""
        require_key(http)
        body = await parse_body(http, model)
        scheduler = require_ready()
        require_model(body.model)
        return body, scheduler, scheduler.engine.tokenizer

    @app.get("/health")
    async def health():
        if state.scheduler is not None:
            return {"status": "ok", "model": state.model_id}
        status = "error" if state.load_error else "loading"
        return JSONResponse(
            {"status": status, "model": state.model_id, "error": state.load_error}, status_code=503
        )

    @app.get("/metrics")
    async def metrics():
        scheduler = require_ready()
        return {"model": state.model_id, **scheduler.snapshot()}

    @app.get("/v1/models")
    async def list_models(http: HttpRequest):
        require_key(http)
        require_ready()
        engine_ = state.engine
        card = {
            "id": state.model_id,
            "object": "model",
            "created": state.created,
            "owned_by": "workbench",
            "root": state.model_name,
            "quant": state.method,
            "max_model_len": engine_.window,
            **state.info,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(http: HttpRequest):
        body, scheduler, tokenizer = await accept(http, ChatBody)
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in body.messages
        ]
        try:
            if body.continue_final_message and messages[-1]["role"] != "assistant":
                raise ApiError(
                    400, "continue_final_message needs a final assistant message", param="messages"
                )
            prompt_ids = tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=body.add_generation_prompt and not body.continue_final_message,
                continue_final_message=body.continue_final_message,
                tokenize=True,
                return_dict=False,
            )
        except ApiError:
            raise
        except Exception as exc:  # a template that rejects the roles or their order
            raise ApiError(
                400, f"messages cannot be formatted with the model's chat template: {exc}", param="messages"
            ) from None
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs and not body.logprobs:
            raise ApiError(400, "top_logprobs requires logprobs to be true", param="top_logprobs")
        params = body.sampling(max_tokens, logprobs)
        request, queue = submit(scheduler, prompt_ids, params)
        prefix = messages[-1]["content"] if body.echo and messages[-1]["role"] == "assistant" else ""
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse(
                chat_stream(completion_id, state.model_id, request, queue, include_usage, prefix, tokenizer),
                request,
            )
        await wait_done(http, request, queue)
        choices = [{
            "index": c.index, "message": {"role": "assistant", "content": prefix + c.text},
            "logprobs": {"content": [chat_logprob(tokenizer, lp) for lp in c.logprobs]} if c.logprobs is not None else None,
            "finish_reason": c.finish_reason,
        } for c in request.choices]  # fmt: skip
        response = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(request.created),
            "model": state.model_id,
            "choices": choices,
            "usage": usage(request),
            "system_fingerprint": f"workbench-{state.method}",
        }
        if params.prompt_logprobs is not None:
            response["prompt_logprobs"] = prompt_logprobs_vllm(tokenizer, request)
        return JSONResponse(response, headers=clamp_header(request))

    @app.post("/v1/completions")
    async def completions(http: HttpRequest):
        body, scheduler, tokenizer = await accept(http, CompletionBody)
        prompts = normalise_prompts(body.prompt, tokenizer)
        params = body.sampling(body.max_tokens if body.max_tokens is not None else 16, body.logprobs)
        if body.echo and body.logprobs is not None and params.prompt_logprobs is None:
            params.prompt_logprobs = body.logprobs
        if body.stream and len(prompts) > 1:
            raise ApiError(400, "streaming supports a single prompt", param="prompt")
        submitted = [submit(scheduler, ids, SamplingParams(**vars(params))) for ids in prompts]
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        if body.stream:
            request, queue = submitted[0]
            return sse(
                completion_stream(completion_id, state.model_id, request, queue, body, tokenizer), request
            )
        for request, queue in submitted:
            await wait_done(http, request, queue)
        choices = []
        for p_index, (request, _) in enumerate(submitted):
            for c in request.choices:
                choices.append(completion_choice(tokenizer, request, c, p_index * params.n + c.index, body))
        prompt_tokens = sum(len(r.prompt_ids) for r, _ in submitted)
        completion_tokens = sum(len(c.token_ids) for r, _ in submitted for c in r.choices)
        response = {
            "id": completion_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": state.model_id,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return JSONResponse(response, headers=clamp_header(submitted[0][0]))

    return app


# --- helpers ---------------------------------------------------------------------------------------------


async def parse_body(http: HttpRequest, model: type[BaseModel]) -> Any:
    raw = await http.body()
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(
            400, f"invalid parameter {param}: {first['msg']}", param=param, code="invalid_parameter"
        ) from None


def submit(
    scheduler: Scheduler, prompt_ids: list[int], params: SamplingParams
) -> tuple[Request, asyncio.Queue]:
    try:
        return scheduler.submit(prompt_ids, params)
    except ContextLengthError as exc:
        raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
    except QueueFull as exc:
        raise ApiError(429, str(exc), "rate_limit_error", None, "queue_full") from None
    except ValueError as exc:
        param = str(exc).split(" ", 1)[0]
        raise ApiError(400, str(exc), param=param, code="invalid_parameter") from None


def normalise_prompts(prompt: Any, tokenizer: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        return [tokenizer(prompt)["input_ids"]]
    if prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)]
    if prompt and all(isinstance(p, list) for p in prompt):
        return [list(p) for p in prompt]
    if prompt and all(isinstance(p, str) for p in prompt):
        return [tokenizer(p)["input_ids"] for p in prompt]
    raise ApiError(400, "prompt must be a string, a list of strings or token ids", param="prompt")


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


def sse(chunks: AsyncIterator[dict], request: Request) -> StreamingResponse:
    async def body():
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not request.done:
                request.cancel()  # the client went away mid-stream: free its rows at the next step

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


async def chat_stream(cid, model_id, request, queue, include_usage, prefix, tokenizer) -> AsyncIterator[dict]:
    created = int(request.created)

    def chunk(choices, usage_=None):
        out = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": choices,
        }
        if include_usage:
            out["usage"] = usage_
        return out

    for index in range(request.params.n):
        yield chunk(
            [
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": prefix},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
    async for event in events(request, queue):
        if event.kind == "delta" and (event.text or event.logprobs):
            lp = {"content": [chat_logprob(tokenizer, x) for x in event.logprobs]} if event.logprobs else None
            yield chunk(
                [
                    {
                        "index": event.index,
                        "delta": {"content": event.text},
                        "logprobs": lp,
                        "finish_reason": None,
                    }
                ]
            )
        elif event.kind == "done":
            yield chunk(
                [{"index": event.index, "delta": {}, "logprobs": None, "finish_reason": event.finish_reason}]
            )
    if include_usage:
        yield chunk([], usage(request))


async def completion_stream(cid, model_id, request, queue, body, tokenizer) -> AsyncIterator[dict]:
    created = int(time.time())
    offset = 0

    def chunk(index: int, text: str, logprobs: dict | None, finish: str | None) -> dict:
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model_id,
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        }

    async for event in events(request, queue):
        if event.kind == "delta" and event.text:
            logprobs = None
            if body.logprobs is not None and event.logprobs:
                logprobs = legacy_logprobs(tokenizer, event.logprobs, offset)
            offset += len(event.text)
            yield chunk(event.index, event.text, logprobs, None)
        elif event.kind == "done":
            yield chunk(event.index, "", None, event.finish_reason)
    if body.stream_options and body.stream_options.include_usage:
        yield {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model_id,
            "choices": [],
            "usage": usage(request),
        }


def usage(request: Request) -> dict:
    completion = sum(len(c.token_ids) for c in request.choices)
    return {
        "prompt_tokens": len(request.prompt_ids),
        "completion_tokens": completion,
        "total_tokens": len(request.prompt_ids) + completion,
    }


def clamp_header(request: Request) -> dict[str, str]:
    if request.max_tokens_clamped_to is None:
        return {}
    return {"x-max-tokens-clamped": str(request.max_tokens_clamped_to)}


def chat_logprob(tokenizer: Any, lp: TokenLogprob) -> dict:
    def item(token_id: int, logprob: float) -> dict:
        return {
            "token": token_text(tokenizer, token_id),
            "logprob": logprob,
            "bytes": list(token_bytes(tokenizer, token_id)),
        }

    return {**item(lp.token_id, lp.logprob), "top_logprobs": [item(t, v) for t, v in lp.top]}


def legacy_logprobs(
    tokenizer: Any, entries: list[TokenLogprob | None], start_offset: int, token_ids: list[int] | None = None
) -> dict:
    tokens, token_logprobs, tops, offsets = [], [], [], []
    offset = start_offset
    for i, lp in enumerate(entries):
        token_id = lp.token_id if lp is not None else token_ids[i]
        text = token_text(tokenizer, token_id)
        tokens.append(text)
        token_logprobs.append(lp.logprob if lp is not None else None)
        tops.append({token_text(tokenizer, t): v for t, v in lp.top} if lp is not None and lp.top else None)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}


def completion_choice(tokenizer: Any, request: Request, choice, index: int, body: CompletionBody) -> dict:
    text = choice.text
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
    return {
        "index": index,
        "text": prompt_text + text,
        "logprobs": logprobs,
        "finish_reason": choice.finish_reason,
    }


def prompt_logprobs_vllm(tokenizer: Any, request: Request) -> list[dict | None]:
    out: list[dict | None] = []
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
