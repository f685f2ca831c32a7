"""OpenAI-compatible HTTP server over our engine: /v1/models, /v1/chat/completions, /v1/completions (and
the tokenizer's routes, engine/tokenizer_api.py).

Routes are short: they validate (FastAPI, with the pydantic bodies of engine/openai_format.py, which is also
what `/openapi.json` publishes), turn the body into token ids and sampling parameters, submit to the scheduler
and shape the result. The model loads in a background thread after the socket opens: until it is ready every
model endpoint answers 503. Every error, including FastAPI's own (404 route, 405, 400 validation), uses OpenAI's
`{"error": {"message", "type", "param", "code"}}` with 400/401/404/429/503. State lives in `app.state`.
"""

from __future__ import annotations

import gc
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine import responses, tokenizer_api
from engine.generate import Engine
from engine.openai_format import (
    ApiError,
    AssistantMessage,
    ChatBody,
    ChatChoice,
    ChatCompletion,
    Completion,
    CompletionBody,
    ModelCard,
    ModelList,
    chat_logprobs,
    completion_choice,
    prompt_logprobs_vllm,
    usage,
)
from engine.request import Choice
from engine.responses import ResponseStore
from engine.sampling import SamplingParams
from engine.scheduler import DEFAULT_MAX_QUEUE, Scheduler
from engine.streaming import ChatChunks, chat_stream, completion_stream, sse
from engine.submission import (
    WireResponse,
    clamp_header,
    compile_constraint,
    normalise_prompts,
    start_chat,
    submit,
    wait_done,
)
from engine.tools import ToolPlan

# What /v1/models advertises beyond OpenAI's fields, so a client can tell what this server can do.
CAPABILITIES = {
    "structured_output": True,
    "response_format": ["text", "json_object", "json_schema"],
    "guided_decoding": ["guided_json", "guided_regex", "guided_choice", "guided_grammar"],
    "grammar_syntax": ["lark", "gbnf"],
    "tools": True,
    "tool_choice": ["none", "auto", "required", "function"],
    "parallel_tool_calls": False,
    "logprobs": True,
    "beam_search": True,
}
log = logging.getLogger(__name__)


class EngineState:
    """What the routes need: the scheduler once loaded, or the reason it is not."""

    def __init__(self, model_name: str, method: str, api_key: str | None = None):
        self.model_id = f"{model_name}@{method}"
        self.model_name, self.method = model_name, method
        self.api_key = api_key
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

    def load(self, loader: Callable[[], Engine], max_queue: int) -> None:
        try:
            engine = loader()
            self.info = engine.info()
            # The model, tokenizer and app live as long as the server: frozen, no collection walks them again
            # (the engine loop's garbage made the collector ~3 % of a 16-row decode step).
            gc.freeze()
            self.scheduler = Scheduler(engine, max_queue=max_queue)
        except Exception as exc:  # reported on every request and by /health
            self.load_error = f"{type(exc).__name__}: {exc}"

    def ready(self, model: str | None = None) -> Scheduler:
        """The scheduler, or 503 while loading / after a failed load; 404 for another model's name."""
        if self.load_error:
            raise ApiError(
                503, f"the model failed to load: {self.load_error}", "server_error", None, "load_failed"
            )
        if self.scheduler is None:
            raise ApiError(
                503,
                "the model is still loading; retry in a few seconds",
                "server_error",
                None,
                "model_loading",
            )
        if model is not None and not self.accepts(model):
            raise ApiError(
                404,
                f"the model '{model}' does not exist; this server runs '{self.model_id}'",
                "invalid_request_error",
                "model",
                "model_not_found",
            )
        return self.scheduler


def create_app(
    loader: Callable[[], Engine],
    model_name: str,
    method: str,
    max_queue: int = DEFAULT_MAX_QUEUE,
    api_key: str | None = None,
    on_ready: Callable[[EngineState], None] | None = None,
) -> FastAPI:
    """The app; `loader` builds the engine in a background thread once the socket is open (503 until then)."""
    state = EngineState(model_name, method, api_key)

    def load() -> None:
        state.load(loader, max_queue)
        if on_ready:
            on_ready(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        threading.Thread(target=load, name="model-loader", daemon=True).start()
        yield
        if state.scheduler:
            state.scheduler.close()

    app = FastAPI(title="workbench engine", lifespan=lifespan)
    app.state.engine_state = state
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_middleware(V1Guard, state=state)
    app.state.responses = ResponseStore()
    app.include_router(router)
    app.include_router(tokenizer_api.router)
    app.include_router(responses.router)
    return app


# --- the edge: key, body, errors -------------------------------------------------------------------------


class V1Guard:
    """Before any /v1 route: the API key (401), and a POST body always read as JSON, whatever its content type.

    A middleware rather than a dependency so the key is checked before the body is even parsed.
    """

    def __init__(self, app: Any, state: EngineState):
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = dict(scope["headers"])
            if self.state.api_key and not _key_ok(headers.get(b"authorization", b""), self.state.api_key):
                error = ApiError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    "authentication_error",
                    None,
                    "invalid_api_key",
                )
                await (await api_error(None, error))(scope, receive, send)
                return
            if scope["method"] == "POST":  # curl -d sends a form content type; OpenAI reads JSON regardless
                rest = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                scope = {**scope, "headers": [*rest, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def _key_ok(header: bytes, api_key: str) -> bool:
    text = header.decode("latin-1")
    given = text[7:] if text.lower().startswith("bearer ") else ""
    return bool(given) and secrets.compare_digest(given.encode(), api_key.encode())


async def api_error(_: HttpRequest | None, exc: ApiError) -> JSONResponse:
    return WireResponse(exc.body(), status_code=exc.status)


async def unexpected(_: HttpRequest, exc: Exception) -> JSONResponse:
    """A bug: still a 500 in OpenAI's shape, and logged with its traceback."""
    log.error("unhandled error", exc_info=exc)
    return await api_error(
        None, ApiError(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")
    )


async def invalid_request(_: HttpRequest, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's validation errors as OpenAI's 400, naming the first parameter at fault."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return await api_error(
            None, ApiError(400, f"the request body is not valid JSON: {detail}", code="invalid_json")
        )
    loc = [str(p) for p in first.get("loc", []) if p != "body"]
    if not loc:  # the body itself: missing, or not an object
        return await api_error(
            None, ApiError(400, "the request body must be a JSON object", code="invalid_json")
        )
    param = ".".join(loc)
    message = f"invalid parameter {param}: {first.get('msg', 'invalid value')}"
    return await api_error(None, ApiError(400, message, param=param, code="invalid_parameter"))


async def http_error(_: HttpRequest, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own HTTP errors (unknown route, wrong method, unreadable body) in OpenAI's shape."""
    codes = {404: "not_found", 405: "method_not_allowed"}
    error = ApiError(
        exc.status_code, str(exc.detail), "invalid_request_error", None, codes.get(exc.status_code)
    )
    return WireResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))


# --- routes ----------------------------------------------------------------------------------------------

router = APIRouter()


def engine_state(http: HttpRequest) -> EngineState:
    return http.app.state.engine_state


@router.get("/health")
async def health(http: HttpRequest):
    state = engine_state(http)
    if state.scheduler is not None:
        return {"status": "ok", "model": state.model_id}
    status = "error" if state.load_error else "loading"
    return JSONResponse(
        {"status": status, "model": state.model_id, "error": state.load_error}, status_code=503
    )


@router.get("/metrics")
async def metrics(http: HttpRequest):
    state = engine_state(http)
    return {"model": state.model_id, **state.ready().snapshot()}


@router.get("/v1/models")
async def list_models(http: HttpRequest):
    state = engine_state(http)
    engine = state.ready().engine
    card = ModelCard(
        id=state.model_id,
        created=state.created,
        root=state.model_name,
        quant=state.method,
        max_model_len=engine.window,
        capabilities=CAPABILITIES,
        **state.info,
    )
    return ModelList(data=[card]).wire()


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatBody, http: HttpRequest):
    state = engine_state(http)
    started = await start_chat(state, body)
    request, queue, plan = started.request, started.queue, started.plan
    tokenizer = started.tokenizer
    last = body.messages[-1]
    prefix = last.text() if body.echo and last.role == "assistant" else ""
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChatChunks(completion_id, state.model_id, request, include_usage, tokenizer)
        return sse(chat_stream(chunks, queue, prefix, plan), request)
    await wait_done(http, request, queue)
    response = ChatCompletion(
        id=completion_id,
        created=int(request.created),
        model=state.model_id,
        choices=[chat_choice(tokenizer, c, prefix, plan) for c in request.choices],
        usage=usage(request),
        system_fingerprint=f"workbench-{state.method}",
    )
    if request.params.prompt_logprobs is not None:
        response.prompt_logprobs = prompt_logprobs_vllm(tokenizer, request)
    return WireResponse(response.wire(), headers=clamp_header(request))


def chat_choice(tokenizer: Any, choice: Choice, prefix: str, plan: ToolPlan | None) -> ChatChoice:
    logprobs = chat_logprobs(tokenizer, choice.logprobs)
    content, calls = plan.parse(choice.text) if plan is not None else (choice.text, [])
    if calls:
        message = AssistantMessage(content=content, tool_calls=calls)
        return ChatChoice(index=choice.index, message=message, logprobs=logprobs, finish_reason="tool_calls")
    message = AssistantMessage(content=prefix + (content or ""))
    return ChatChoice(
        index=choice.index, message=message, logprobs=logprobs, finish_reason=choice.finish_reason
    )


@router.post("/v1/completions")
async def completions(body: CompletionBody, http: HttpRequest):
    state = engine_state(http)
    scheduler = state.ready(body.model)
    tokenizer = scheduler.engine.tokenizer
    prompts = normalise_prompts(body.prompt, tokenizer)
    params = body.completion_sampling()
    if body.stream and len(prompts) > 1:
        raise ApiError(400, "streaming supports a single prompt", param="prompt")
    grammar = await compile_constraint(scheduler.engine, body.constraint_spec())
    submitted = [submit(scheduler, ids, SamplingParams(**vars(params)), "prompt", grammar) for ids in prompts]
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    if body.stream:
        request, queue = submitted[0]
        return sse(completion_stream(completion_id, state.model_id, request, queue, body, tokenizer), request)
    for request, queue in submitted:
        await wait_done(http, request, queue)
    choices = [
        completion_choice(tokenizer, request, c, p_index * params.n + c.index, body)
        for p_index, (request, _) in enumerate(submitted)
        for c in request.choices
    ]
    prompt_tokens = sum(len(r.prompt_ids) for r, _ in submitted)
    completion_tokens = sum(len(c.token_ids) for r, _ in submitted for c in r.choices)
    total = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    response = Completion(
        id=completion_id,
        created=int(time.time()),
        model=state.model_id,
        choices=choices,
        usage={**total, "total_tokens": prompt_tokens + completion_tokens},
    )
    return WireResponse(response.wire(), headers=clamp_header(submitted[0][0]))
