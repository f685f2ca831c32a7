"""What every page shares: cached resources (database, tokenizer, providers), engine status, small widgets.

Pages call these and stay thin. Heavy objects live in `st.cache_resource`; widget state in `st.session_state`.
Tests swap a provider for a recording fake through `st.session_state["provider_overrides"]`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import streamlit as st

from prompting.providers import Provider, ProviderSpec
from settings import get_settings

LOCAL_METHODS = ("int4", "int8", "bf16", "none", "int4-g64", "int4-g128", "nf4", "llm_int8", "smoothquant")


@st.cache_resource(show_spinner=False)
def _db(url: str):
    from store.db import get_engine

    return get_engine(url)


def db():
    """The database engine for the configured URL (cached per URL, so a changed setting takes effect)."""
    return _db(get_settings().database_url)


@st.cache_resource(show_spinner="Loading the local model's tokenizer…")
def local_tokenizer():
    """The default model's tokenizer (with its chat template) for exact token counts; None before `make setup`."""
    from engine.loader import converted_dir, is_converted

    name = get_settings().default_model
    if not is_converted(name):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted_dir(name))


@st.cache_resource(show_spinner=False)
def _provider(label: str, spec_json: str) -> Provider:
    return Provider(ProviderSpec(**json.loads(spec_json)))


def provider(spec: ProviderSpec) -> Provider:
    overrides = st.session_state.get("provider_overrides") or {}
    if spec.label in overrides:
        return overrides[spec.label]
    return _provider(spec.label, json.dumps(spec.__dict__, sort_keys=True))


def engine_status(timeout: float = 1.5) -> dict[str, Any] | None:
    """The local engine's model card and metrics, or None when nothing answers at WORKBENCH_ENGINE_URL."""
    url = get_settings().engine_url.rstrip("/")
    try:
        models = httpx.get(f"{url}/models", timeout=timeout)
        if models.status_code != 200:
            return None
        card = models.json()["data"][0]
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=timeout)
        return {"url": url, "card": card, "metrics": metrics.json() if metrics.status_code == 200 else {}}
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return None


def provider_specs() -> list[ProviderSpec]:
    """The local engine (its running method first, then the others) and every stored remote configuration."""
    from store import queries
    from store.runs import spec_of

    settings = get_settings()
    status = engine_status()
    running = status["card"]["quant"] if status else settings.default_quant
    methods = [running] + [m for m in LOCAL_METHODS if m != running]
    specs = [ProviderSpec.parse(f"local:{settings.default_model}@{m}") for m in methods]
    for config in queries.list_providers(db()):
        if config.kind == "remote" and config.label not in {s.label for s in specs}:
            specs.append(spec_of(config))
    fakes = st.session_state.get("provider_overrides") or {}
    specs += [p.spec for label, p in fakes.items() if label not in {s.label for s in specs}]
    return specs


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
    from store import queries

    return {v.label: v.id for v in queries.list_versions(engine=db())}


def messages_view(messages: list[dict[str, str]]) -> None:
    for message in messages:
        with st.chat_message(
            message["role"], avatar={"system": "⚙️", "user": "🧑", "assistant": "🤖"}[message["role"]]
        ):
            st.text(message["content"])
