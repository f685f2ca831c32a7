"""Bounded rendering: templates run in Jinja's immutable sandbox, and here is what keeps one from eating the
machine. Output size, the size of any string or list a template builds, and the work it does (Python line
events while it renders) are capped; a template over a cap fails at once with RenderLimitExceeded naming the
limit and its setting.

The caps come from settings (`WORKBENCH_RENDER_MAX_CHARS`, `WORKBENCH_RENDER_MAX_STEPS`): 1,000,000 characters
is ~250k tokens, far above any context window; 2,000,000 steps is well under a second of rendering.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from prompting.errors import UnsafeTemplate

DEFAULT_MAX_CHARS = 1_000_000
DEFAULT_MAX_STEPS = 2_000_000
_WIDTH = re.compile(r"%[-+ #0]*(\d+)|\{[^{}]*?:[^{}]*?(\d+)[^{}]*?\}")


class RenderLimitExceeded(UnsafeTemplate):
    """A render stopped at a limit: the sandbox refuses it like any other unsafe template."""

    def __init__(self, template: str, what: str, limit: int, setting: str):
        self.limit, self.setting = limit, setting
        super().__init__(
            template, f"render limit exceeded: {what} (limit {limit:,}; set {setting} to change it)"
        )


@dataclass(frozen=True)
class Limits:
    max_chars: int = DEFAULT_MAX_CHARS
    max_steps: int = DEFAULT_MAX_STEPS


def current_limits() -> Limits:
    from settings import get_settings

    settings = get_settings()
    return Limits(settings.render_max_chars, settings.render_max_steps)


class _Exceeded(Exception):
    """Raised inside the render; becomes RenderLimitExceeded with the template's name."""

    def __init__(self, what: str, kind: str):
        self.what, self.kind = what, kind


def _check_size(n: int, limits: Limits, what: str) -> None:
    if n > limits.max_chars:
        raise _Exceeded(f"{what} of {n:,} characters or items", "chars")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus size checks on the operations that can build huge values."""

    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = Limits()
        self.filters = {name: _bounded_filter(self, fn) for name, fn in self.filters.items()}

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        limits = context.environment.limits if hasattr(context, "environment") else self.limits
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    _check_size(len(seq) * max(n, 0), limits, "a repetition")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            _check_size(int(right * max(abs(left), 2).bit_length() / 3.3), limits, "a power")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left, limits)
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, type(left)):
            _check_size(len(left) + len(right), limits, "a concatenation")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool):
                _check_size(value, __self.limits, "a size argument")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any):
        """str.format / format_map: their format string's widths are sizes too."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_widths(value.__self__, self.limits)
        return wrapped


def _check_widths(fmt: str, limits: Limits) -> None:
    for match in _WIDTH.finditer(fmt):
        width = int(match.group(1) or match.group(2))
        _check_size(width, limits, "a format width")


def _bounded_filter(env: BoundedSandbox, fn):
    """A filter whose integer arguments (widths, counts) are checked against the size cap before it runs."""

    skip = (
        2 if hasattr(fn, "jinja_pass_arg") else 1
    )  # the value filtered (and a passed context) are not sizes

    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[skip:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool):
                _check_size(value, env.limits, "a filter argument")
        return fn(*args, **kwargs)

    for attr in ("jinja_pass_arg",):  # keep how Jinja passes context/environment to the filter
        if hasattr(fn, attr):
            setattr(bounded, attr, getattr(fn, attr))
    bounded.__name__ = getattr(fn, "__name__", "filter")
    return bounded


class StepCounter:
    """A trace function that counts line events while a template renders and stops it past the budget."""

    def __init__(self, limits: Limits):
        self.limits, self.steps = limits, 0

    def __call__(self, frame, event, arg):
        if event == "line":
            self.steps += 1
            if self.steps > self.limits.max_steps:
                raise _Exceeded(f"more than {self.limits.max_steps:,} steps (a loop too long)", "steps")
        return self

    def __enter__(self) -> StepCounter:
        self._previous = sys.gettrace()
        sys.settrace(self)
        return self

    def __exit__(self, *exc) -> None:
        sys.settrace(self._previous)


SETTINGS = {"chars": "WORKBENCH_RENDER_MAX_CHARS", "steps": "WORKBENCH_RENDER_MAX_STEPS"}


def exceeded(template: str, error: _Exceeded, limits: Limits) -> RenderLimitExceeded:
    limit = limits.max_steps if error.kind == "steps" else limits.max_chars
    return RenderLimitExceeded(template, error.what, limit, SETTINGS[error.kind])
