"""What every page shares: cached resources (the store, the tokenizer), small widgets that keep their values
across page switches, and the message view. Pages call services/ for every action."""

from __future__ import annotations

from collections.abc import Callable
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


def run_label(run, status: bool = True) -> str:
    from services.runs import describe

    return describe(store(), run, status=status)


def worker_notice() -> None:
    """Say when no worker is alive (queued runs would wait), and offer to start one."""
    from services.worker import live_workers, spawn_worker

    if live_workers(store()):
        return
    left, right = st.columns([4, 1])
    left.warning(
        "No worker is running, so queued runs wait. `make run` starts one; or start one here "
        "(it keeps running when this page is closed).",
        icon=":material/warning:",
    )
    if right.button("Start a worker", icon=":material/engineering:", key="do_start_worker"):
        spawn_worker()
        with st.spinner("Starting the worker…"):
            import time

            for _ in range(60):
                if live_workers(store()):
                    break
                time.sleep(0.25)
        st.rerun()


def form_and_picker(
    start_form: Callable[[], None], rows: Callable[[], list], label: str, key: str, describe
) -> str | None:
    """The layout of the pages that start background jobs (runs, optimisations, red teams): the worker notice
    and the start form (its domain errors shown in place), then a picker of the jobs, newest first, that keeps
    its choice under `key`. `rows` is called after the form, so a job it just started is listed. Returns the
    chosen id, or None when there is none yet. The labels carry no status: they would go stale while a job
    runs; each page shows the status in its refreshing part."""
    from services.errors import PromptingError, StoreError

    try:
        worker_notice()
        start_form()
    except (PromptingError, StoreError) as exc:
        st.error(str(exc))
    st.divider()
    everything = rows()
    if not everything:
        return None
    names = {row.id: describe(row) for row in everything}
    if st.session_state.get(key) not in names:
        st.session_state[key] = everything[0].id
    return st.selectbox(label, list(names), key=key, format_func=names.get)


def refreshing(draw, active: bool, every_s: float, *args) -> None:
    """Draw as a fragment that refreshes itself every `every_s` seconds while `active`, else once. A refreshing
    fragment costs the UI process ~0.2 s of CPU per refresh (10 % of a core at 2 s), so nothing refreshes while
    there is nothing to watch: the UI stays at ~0 % when idle."""
    st.fragment(draw, run_every=every_s if active else None)(*args)


def active_runs_panel() -> None:
    """The sidebar's list of queued and running runs, with progress and a cancel button, on every page."""
    from services import optimize, runs

    if runs.active(store()) or optimize.active(store()):
        refreshing(_active_runs, True, 3.0)


def _active_runs() -> None:
    from services import optimize, runs

    db = store()
    active, optimizing = runs.active(db), optimize.active(db)
    if not active and not optimizing:
        st.rerun()  # the last one ended: redraw the page without a refreshing panel
    for row in optimizing:
        state = optimize.progress(db, row.id)
        st.caption(f"Optimizing {row.id}: {state['phase_text']}, {state['candidates']} candidates")
    if not active:
        return
    st.caption("Active runs")
    for run in active:
        state = runs.progress(db, run.id)
        fraction = state.done / state.total if state.total else 0.0
        st.progress(
            fraction, text=f"{run_label(run, status=False)} — {run.status} {state.done}/{state.total}"
        )
        if st.button("Cancel", key=f"do_cancel_{run.id}", icon=":material/stop_circle:"):
            runs.cancel(db, run.id)
            st.rerun()


def messages_view(messages: list[dict[str, str]]) -> None:
    for message in messages:
        with st.chat_message(
            message["role"],
            avatar={
                "system": ":material/settings:",
                "user": ":material/person:",
                "assistant": ":material/smart_toy:",
            }[message["role"]],
        ):
            st.text(message["content"])
