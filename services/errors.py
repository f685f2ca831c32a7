"""Every domain error a user can cause, gathered for the edges (the CLI turns them into `error:` lines and exit
code 2, the pages into `st.error`)."""

from __future__ import annotations

from prompting.errors import PromptingError
from quant_methods import UnknownMethod
from store import StoreError


def user_errors() -> tuple[type[Exception], ...]:
    """The error types that mean "bad input", not a bug (engine errors are imported lazily: loading torch is
    slow and most commands never need it)."""
    from engine.loader import ModelError
    from engine.quantize import QuantError

    return (PromptingError, StoreError, UnknownMethod, ModelError, QuantError)


__all__ = ["PromptingError", "StoreError", "UnknownMethod", "user_errors"]
