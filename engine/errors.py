"""Why the engine refuses a request: every refusal names the request parameter at fault.

`EngineError.param` is the engine's own parameter name (`prompt`, `max_new_tokens`, `top_p`, `response_format`…);
the HTTP layer maps it to the wire name once (`max_new_tokens` → `max_tokens`, `prompt` → `messages` on chat).
It subclasses ValueError so plain callers can keep catching ValueError.
"""

from __future__ import annotations


class EngineError(ValueError):
    """A request the engine refuses before running it."""

    def __init__(self, message: str, param: str | None, code: str = "invalid_parameter"):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


class ContextLengthError(EngineError):
    def __init__(self, prompt_tokens: int, window: int):
        self.prompt_tokens, self.window = prompt_tokens, window
        super().__init__(
            f"the prompt has {prompt_tokens} tokens but the model's context window is {window} tokens",
            param="prompt",
            code="context_length_exceeded",
        )


class QueueFull(RuntimeError):
    """The bounded request queue is full: the caller should retry later (HTTP 429)."""
