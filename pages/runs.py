"""Runs: queue a run (suite × versions × providers × repeats × strategy) for the worker, watch it, cancel, resume
or retry its errored cells; read the results grid (green pass, red fail, grey error) and each cell's detail.
Nothing here executes a run: leaving the page, closing the browser or restarting the UI loses nothing."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from prompting.strategies import STRATEGIES
from services import conversations, run_view, runs
from services import suites as suites_service
from services import versions as versions_service
from ui.common import form_and_picker, provider_specs, refreshing, run_label, store, version_labels

DECLARED = "as each template declares"

st.title(":material/play_circle: Runs")
db = store()


def start_form() -> None:
    suites, versions, specs = suites_service.names(db), version_labels(), provider_specs()
    if not suites or not versions:
        st.info("A run needs a suite (Test cases page) and at least one saved version (Build page).")
        return
    # enter_to_submit=False: pressing Enter in a field never starts a run; only the button does
    with (
        st.expander("Start a run", expanded=not runs.listing(db), icon=":material/add_circle:"),
        st.form("start_run", enter_to_submit=False),
    ):
        names, recent = list(suites), suites_service.recent_suite(db)
        suite_name = st.selectbox(
            "Suite", names, index=names.index(recent) if recent in names else 0, key="runs_suite"
        )
        newest = versions_service.newest_label(db)
        chosen_versions = st.multiselect(
            "Versions", list(versions), default=[newest] if newest else [], key="runs_versions"
        )
        chosen_providers = st.multiselect(
            "Providers", [s.label for s in specs], default=[specs[0].label], key="runs_providers"
        )
        options = run_options()
        start = st.form_submit_button("Start run", type="primary")
    if not start:
        return
    if not chosen_versions or not chosen_providers:
        st.error("Pick at least one version and one provider.")
        return
    chosen = [s for s in specs if s.label in chosen_providers]
    run = runs.start(db, suite_name, [versions[v] for v in chosen_versions], chosen, **options)
    st.session_state["runs_view"] = run.id
    st.toast(f"Queued {run.id}", icon=":material/schedule:")


def run_options() -> dict:
    """Repeats, strategy, concurrency, decoding and the cache policy, as `runs.start` takes them."""
    c1, c2, c3 = st.columns(3)
    repeats = c1.number_input("Repeats", 1, 100, 1, key="runs_repeats")
    strategy = c2.selectbox(
        "Strategy",
        [DECLARED, *STRATEGIES],
        key="runs_strategy",
        help="Each template declares the strategy of its technique (self-consistency votes over "
        "5 samples, the verbalizer scores label words...); pick one to override it.",
    )
    concurrency = c3.number_input("Concurrency", 1, 64, 4, key="runs_concurrency")
    temperature = st.slider("temperature", 0.0, 2.0, 0.0, 0.05, key="runs_temperature")
    max_tokens = st.number_input(
        "max tokens",
        0,
        4096,
        0,
        key="runs_max_tokens",
        help="0: what each technique's template declares (its front matter), else the provider's default",
    )
    cache = st.radio(
        "Cache",
        ["reuse", "fresh"],
        horizontal=True,
        key="runs_cache",
        captions=[
            "deterministic answers (temperature 0) from earlier runs are reused",
            "every request is made again",
        ],
        help="Sampled answers (temperature above 0) are never reused from another run: each run "
        "draws its own, so repeats and re-runs show the real variation.",
    )
    params = {"temperature": temperature, **({"max_tokens": int(max_tokens)} if max_tokens else {})}
    return {
        "repeats": int(repeats),
        "strategy": None if strategy == DECLARED else strategy,
        "params": params,
        "concurrency": int(concurrency),
        "cache": cache,
    }


def actions(run_id: str, status: str, errored: int, missing: int) -> None:
    """Cancel an active run; resume one with missing cells or retry its errored cells once it has stopped."""
    active = status in runs.ACTIVE
    buttons = [
        (active, "Cancel", ":material/stop_circle:", "do_runs_cancel", runs.cancel),
        (
            not active and missing,
            f"Resume ({missing} cells left)",
            ":material/replay:",
            "do_runs_resume",
            runs.resume,
        ),
        (
            not active and errored,
            f"Retry {errored} errored cell(s)",
            ":material/refresh:",
            "do_runs_retry",
            runs.retry_errored,
        ),
    ]
    for column, (shown, label, icon, key, act) in zip(st.columns(3), buttons, strict=True):
        if shown and column.button(label, icon=icon, key=key):
            act(db, run_id)
            st.rerun()


def live_status(run_id: str) -> None:
    """Progress and summary, refreshed every second while the run is active."""
    run = runs.get(db, run_id)
    state = runs.progress(db, run_id)
    if runs.is_active(run):
        fraction = state.done / state.total if state.total else 0.0
        st.progress(
            fraction,
            text=f"{run.status}: {state.done}/{state.total} cells — pass {state.passed}, "
            f"fail {state.failed}, errors {state.errors}",
        )
    st.caption(run_view.status_line(db, run_id))
    rows = run_view.group_rows(db, run_id)
    if rows:
        st.dataframe(pd.DataFrame([row.to_row() for row in rows]), hide_index=True)
    turns = run_view.turn_rows(db, run_id)
    if turns:
        st.markdown("**Conversation cases, per turn**")
        st.dataframe(pd.DataFrame(turns), hide_index=True)
    actions(run_id, run.status, state.errors, state.total - state.done)
    if runs.is_active(run) and st.session_state.get("runs_seen_active") != run_id:
        st.session_state["runs_seen_active"] = run_id
    elif not runs.is_active(run) and st.session_state.get("runs_seen_active") == run_id:
        st.session_state["runs_seen_active"] = None
        st.rerun()  # the run just ended: draw its results grid


def colour(row):
    shade = {"pass": "#e3f6e3", "fail": "#fbe3e3", "error": "#eeeeee"}[row["result"]]
    return [f"background-color: {shade}"] * len(row)


def results(run_id: str) -> None:
    shown = run_view.cells(db, run_id)
    if not shown:
        return
    grid = pd.DataFrame(
        [
            {
                "case": c.case,
                "version": c.version,
                "provider": c.provider,
                "repeat": c.result.repeat_index,
                "result": c.outcome,
                "score": c.result.score,
                "output": (c.result.error or c.result.output or "")[:120],
                "latency ms": round(c.result.latency_ms),
                "cached": c.result.cached,
                "review": c.review,
            }
            for c in shown
        ]
    )
    st.subheader("Results")
    # a Styler shows floats with six decimals unless told; a score reads to two, an absent one as a dash
    styled = grid.style.apply(colour, axis=1).format({"score": "{:.2f}"}, na_rep="–")
    st.dataframe(styled, hide_index=True, width="stretch")
    st.subheader("Cell detail")
    for c in shown:
        with st.expander(
            f"{c.outcome.upper()} · {c.case} · {c.version} · {c.provider} #{c.result.repeat_index}"
        ):
            cell_detail(c.result, c.scores)
            if c.rating is not None:
                st.caption(
                    f"Reviewed by {c.rating.reviewer}: {c.review}"
                    + (f" — {c.rating.comment}" if c.rating.comment else "")
                )


def conversation(result, scores) -> None:
    """The conversation turn by turn: each answer with the verdicts on its turn, and a button that saves a turn
    as a regression case (the conversation up to it, its assertions)."""
    detail = result.detail or {}
    positions = detail.get("answer_positions") or []
    by_turn: dict[str, list] = {}
    for score in scores:
        by_turn.setdefault(score.turn or str(len(positions)), []).append(score)
    st.markdown("**Conversation**" + (f" — {detail['stopped']}" if detail.get("stopped") else ""))
    for index, message in enumerate(detail.get("conversation") or []):
        if index not in positions:
            st.text(f"[{message['role']}]\n{message.get('content') or ''}")
            continue
        turn = positions.index(index) + 1
        verdicts = by_turn.get(str(turn), [])
        failed = any(not v.passed for v in verdicts)
        badge = "" if not verdicts else (" :red[failed]" if failed else " :green[passed]")
        st.markdown(f"**Turn {turn} — the model's answer**{badge}")
        st.text(message.get("content") or "")
        for score in verdicts:
            st.markdown(f"{verdict_mark(score)} `{score.type}`: {score.reason}")
        key = f"promote_{result.id}_{turn}"
        if st.button(f"Save turn {turn} as a regression case", key=key, icon=":material/bug_report:"):
            name = conversations.promote_turn(db, result.id, turn)
            st.success(f"Turn {turn} saved as a regression case in suite {name}.")
    whole = [s for s in scores if s.turn in ("all", "any", "transcript")]
    if whole:
        st.markdown("**Whole conversation**")
        for score in whole:
            st.markdown(f"{verdict_mark(score)} `{score.type}` ({score.turn}): {score.reason}")


def verdict_mark(score) -> str:
    return ":green[:material/check_circle:]" if score.passed else ":red[:material/cancel:]"


def cell_detail(result, scores) -> None:
    if (result.detail or {}).get("answer_positions"):
        conversation(result, scores)
        st.caption(f"{result.tokens_in} tokens in · {result.tokens_out} out · {result.latency_ms:.0f} ms")
        return
    st.markdown("**Messages sent**")
    for message in result.messages:
        st.text(f"[{message['role']}]\n{message['content']}")
    st.markdown("**Output**")
    st.text(result.error or result.output or "")
    for score in scores:
        st.markdown(f"{verdict_mark(score)} `{score.type}` ({score.score:.2f}): {score.reason}")
    st.caption(
        f"{result.tokens_in} tokens in · {result.tokens_out} out · {result.latency_ms:.0f} ms"
        + (" · cached" if result.cached else "")
    )
    samples = result.detail.get("samples") if result.detail else None
    if samples:
        st.markdown(f"**Votes** {result.detail.get('votes')} — answer: {result.answer or 'none found'}")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "answer": s.get("answer") if s.get("answer") is not None else "no answer found",
                        "text": s.get("text", "")[:200],
                    }
                    for s in samples
                ]
            ),
            hide_index=True,
        )
    if result.detail:
        st.json(result.detail, expanded=False)


run_id = form_and_picker(
    start_form, lambda: runs.listing(db), "Run", "runs_view", lambda r: run_label(r, status=False)
)
if run_id is None:
    st.stop()
refreshing(live_status, runs.is_active(runs.get(db, run_id)), 1.0, run_id)
results(run_id)
