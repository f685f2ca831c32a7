"""What every page shares: cached resources (the store, the tokenizer), small widgets that keep their values
across page switches, and the message view. Pages call services/ for every action."""

from __future__ import annotations

from typing import Any

import streamlit as st

from prompting.providers import Provider, ProviderSpec
from services import open_store
from services.engines import configured_status
from services.providers import available_specs, provider_for
from services.versions import version_labels as _version_labels
from settings import get_settings


@st.cache_resource(show_spinner=False)
def _store(url: str):
    return open_store(url)


def store():
    """The Store for the configured URL (cached per URL, so a changed setting takes effect)."""
    return _store(get_settings().database_url)


@st.cache_resource(show_spinner="Loading the local model's tokenizer…")
def local_tokenizer():
    """The default model's tokenizer (with its chat template) for exact token counts; None before `make setup`."""
    from services.engines import local_tokenizer as load

    return load()


def provider(spec: ProviderSpec) -> Provider:
    return provider_for(spec)


def engine_status(timeout: float = 1.5) -> dict[str, Any] | None:
    return configured_status(timeout)


def provider_specs() -> list[ProviderSpec]:
    return available_specs(store())


def state(key: str, default: Any) -> Any:
    """Initialise a session value once; it then survives page switches."""
    if key not in st.session_state:
        st.session_state[key] = default
    return st.session_state[key]


def remembered(
    widget, label: str, key: str, default: Any, options: list | tuple | None = None, **kwargs: Any
):
    """A widget whose value survives page switches. Streamlit drops a widget's state when its page is not shown,
    so the value lives under `key` (plain session state) and the widget under `w_<key>` writes it back."""
    state(key, default)

    def sync() -> None:
        st.session_state[key] = st.session_state[f"w_{key}"]

    if options is not None:
        options = list(options)
        current = st.session_state[key]
        index = options.index(current) if current in options else 0
        return widget(label, options, index=index, key=f"w_{key}", on_change=sync, **kwargs)
    return widget(label, value=st.session_state[key], key=f"w_{key}", on_change=sync, **kwargs)


def version_labels() -> dict[str, int]:
    return _version_labels(store())


def messages_view(messages: list[dict[str, str]]) -> None:
    for message in messages:
        with st.chat_message(
            message["role"], avatar={"system": "⚙️", "user": "🧑", "assistant": "🤖"}[message["role"]]
        ):
            st.text(message["content"])
