"""The tokenizer over HTTP: /tokenize, /detokenize and /tokenizer_info, in the shapes clients already send.

lm-evaluation-harness's remote tokenizer (`tokenizer_backend=remote`, or `auto`, which probes for it) reads
vLLM's shapes: `POST /tokenize {"prompt", "add_special_tokens"}` -> `{"tokens", "count", "max_model_len"}`,
`POST /detokenize {"tokens"}` -> `{"prompt"}`, and `GET /tokenizer_info` with the special tokens and the chat
template. llama.cpp's server sends `{"content", "add_special", "with_pieces"}` and reads `{"content"}` back;
both are accepted and both answers carry both names. Like vLLM's, these routes sit beside /v1 (lm-eval strips
`/v1/completions` from its base URL to find them), so the API key guards generation, not tokenizing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Request as HttpRequest
from pydantic import BaseModel, ConfigDict, Field

from engine.openai_format import ApiError, ChatMessage

MAX_TOKENIZE_CHARS = 1_000_000  # a longer text is refused: tokenizing it would hold the server for seconds
MAX_DETOKENIZE_TOKENS = 262_144

router = APIRouter()


class TokenizeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    prompt: str | None = Field(default=None, max_length=MAX_TOKENIZE_CHARS)  # vLLM
    content: str | None = Field(default=None, max_length=MAX_TOKENIZE_CHARS)  # llama.cpp
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)  # vLLM: the chat template's tokens
    add_special_tokens: bool | None = None  # vLLM's name
    add_special: bool | None = None  # llama.cpp's name
    add_generation_prompt: bool = True
    with_pieces: bool = False  # llama.cpp: each token with its text

    def special(self) -> bool:
        """Whether to add the tokenizer's special tokens (a BOS): vLLM's default is yes, llama.cpp's no."""
        if self.add_special_tokens is not None:
            return self.add_special_tokens
        return bool(self.add_special) if self.add_special is not None else self.content is None


class DetokenizeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    tokens: list[int] = Field(max_length=MAX_DETOKENIZE_TOKENS)


@router.post("/tokenize")
async def tokenize(body: TokenizeBody, http: HttpRequest):
    state = http.app.state.engine_state
    engine = state.ready(body.model).engine
    tokenizer = engine.tokenizer
    given = [name for name in ("prompt", "content", "messages") if getattr(body, name) is not None]
    if len(given) != 1:
        found = " and ".join(given) if given else "none"
        raise ApiError(400, f"send exactly one of prompt, content or messages (got {found})", param="prompt")
    try:
        if body.messages is not None:
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=body.add_generation_prompt, tokenize=True, return_dict=False
            )
        else:
            text = body.prompt if body.prompt is not None else body.content
            ids = tokenizer(text, add_special_tokens=body.special())["input_ids"]
    except Exception as exc:  # text that is not valid Unicode, or messages the chat template rejects
        raise ApiError(400, f"{given[0]} cannot be tokenized: {exc}", param=given[0]) from None
    tokens: list[Any] = list(ids)
    if body.with_pieces:
        tokens = [{"id": i, "piece": tokenizer.decode([i])} for i in ids]
    return {"tokens": tokens, "count": len(ids), "max_model_len": engine.window}


@router.post("/detokenize")
async def detokenize(body: DetokenizeBody, http: HttpRequest):
    state = http.app.state.engine_state
    tokenizer = state.ready(body.model).engine.tokenizer
    vocabulary = len(tokenizer)
    bad = next((i for i, t in enumerate(body.tokens) if not 0 <= t < vocabulary), None)
    if bad is not None:
        message = f"tokens.{bad} is {body.tokens[bad]}, outside the vocabulary (0 to {vocabulary - 1})"
        raise ApiError(400, message, param=f"tokens.{bad}")
    text = tokenizer.decode(body.tokens)
    return {"prompt": text, "content": text}


@router.get("/tokenizer_info")
async def tokenizer_info(http: HttpRequest):
    state = http.app.state.engine_state
    engine = state.ready().engine
    tokenizer = engine.tokenizer
    return {
        "tokenizer_class": type(tokenizer).__name__,
        "eos_token": tokenizer.eos_token,
        "bos_token": tokenizer.bos_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": tokenizer.unk_token,
        "eos_token_ids": sorted(engine.eos_ids),
        "vocab_size": len(tokenizer),
        "model_max_length": engine.window,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "add_bos_token": bool(getattr(tokenizer, "add_bos_token", False)),
    }
