"""Runs: pick suite × versions × providers × repeats × strategy and start; watch progress; read the results
grid (green pass, red fail, grey error) and each cell's messages, output, assertion reasons and logprobs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.common import provider_specs, store, version_labels
from prompting.runner import Interrupted
from prompting.strategies import STRATEGIES
from prompting.summary import percent
from services import runs
from services.errors import PromptingError, StoreError
from services.specs import save_provider

st.title("🏃 Runs")

db = store()
suites = db.list_suites()
versions = version_labels()
specs = provider_specs()
if not suites or not versions:
    st.info("A run needs a suite (Test cases page) and at least one saved version (Build page).")
else:
    with st.form("start_run"):
        st.subheader("Start a run")
        suite_name = st.selectbox("Suite", [s.name for s, _ in suites], key="runs_suite")
        chosen_versions = st.multiselect(
            "Versions", list(versions), default=list(versions)[-1:], key="runs_versions"
        )
        chosen_providers = st.multiselect("Providers", [s.label for s in specs], default=[specs[0].label],
                                          key="runs_providers")  # fmt: skip
        c1, c2, c3 = st.columns(3)
        repeats = c1.number_input("Repeats", 1, 100, 1, key="runs_repeats")
        strategy = c2.selectbox("Strategy", STRATEGIES, key="runs_strategy")
        concurrency = c3.number_input("Concurrency", 1, 64, 4, key="runs_concurrency")
        temperature = st.slider("temperature", 0.0, 2.0, 0.0, 0.05, key="runs_temperature")
        max_tokens = st.number_input("max tokens", 1, 4096, 128, key="runs_max_tokens")
        start = st.form_submit_button("Start run", type="primary")
    if start:
        if not chosen_versions or not chosen_providers:
            st.error("Pick at least one version and one provider.")
        else:
            picked = [s for s in specs if s.label in chosen_providers]
            configs = [save_provider(db, s) for s in picked]
            plan = runs.RunPlan(db.get_suite(suite_name).id, [versions[v] for v in chosen_versions],
                                [c.id for c in configs], int(repeats), {"name": strategy},
                                {"temperature": temperature, "max_tokens": int(max_tokens)}, f"UI: {suite_name}")  # fmt: skip
            run = runs.create(db, plan)
            bar = st.progress(0.0, text="starting…")

            def on_progress(state) -> None:
                bar.progress(state.done / state.total if state.total else 1.0,
                             text=f"{state.done}/{state.total} cells — pass {state.passed}, fail {state.failed}, "
                             f"errors {state.errors}")  # fmt: skip

            try:
                runs.execute(db, run.id, concurrency=int(concurrency), progress=on_progress)
            except (PromptingError, Interrupted) as exc:
                st.error(str(exc))
            st.session_state["runs_view"] = run.id

st.divider()
all_runs = db.list_runs()
if not all_runs:
    st.stop()
ids = [r.id for r in all_runs]
if st.session_state.get("runs_view") not in ids:
    st.session_state["runs_view"] = ids[0]
run_id = st.selectbox("Run", ids, key="runs_view")
run_row = db.get_run(run_id)
groups = runs.summary(db, run_id)
st.caption(
    f"status **{run_row.status}** · strategy {run_row.strategy.get('name')} · repeats {run_row.repeats}"
)
if groups:
    st.dataframe(pd.DataFrame([{"version": g.version, "provider": g.provider, "cells": g.summary.cells,
                                "errors": g.summary.errors, "pass rate": percent(g.summary.pass_rate),
                                "mean score": g.summary.mean_score, "latency ms": g.summary.mean_latency_ms,
                                "tokens in": g.summary.tokens_in, "tokens out": g.summary.tokens_out}
                               for g in groups]),
                 hide_index=True)  # fmt: skip

results = db.run_results(run_id)
cases = {c.id: c for c in db.suite_cases(run_row.suite_id)} if run_row.suite_id else {}
labels, providers = runs.labels(db)
grid = pd.DataFrame([{
    "case": cases[r.case_id].description or f"case {r.case_id}" if r.case_id in cases else r.case_id,
    "version": labels.get(r.version_id), "provider": providers.get(r.provider_id), "repeat": r.repeat_index,
    "result": "error" if r.error else ("pass" if r.passed else "fail"), "score": r.score,
    "output": (r.error or r.output or "")[:120], "latency ms": round(r.latency_ms), "cached": r.cached,
} for r, _ in results])  # fmt: skip


def colour(row):
    shade = {"pass": "#e3f6e3", "fail": "#fbe3e3", "error": "#eeeeee"}[row["result"]]
    return [f"background-color: {shade}"] * len(row)


if not grid.empty:
    st.subheader("Results")
    st.dataframe(grid.style.apply(colour, axis=1), hide_index=True, width="stretch")
    errored = sum(1 for r, _ in results if r.error)
    if errored and st.button(f"Retry {errored} errored cell(s)", key="do_runs_retry"):
        runs.retry_errored(db, run_id)
        try:
            runs.execute(db, run_id)
        except (PromptingError, StoreError) as exc:
            st.error(str(exc))
        st.rerun()
    st.subheader("Cell detail")
    for (result, scores), row in zip(results, grid.to_dict("records"), strict=True):
        with st.expander(
            f"{row['result'].upper()} · {row['case']} · {row['version']} · {row['provider']} #{row['repeat']}"
        ):
            st.markdown("**Messages sent**")
            for message in result.messages:
                st.text(f"[{message['role']}]\n{message['content']}")
            st.markdown("**Output**")
            st.text(result.error or result.output or "")
            for score in scores:
                st.markdown(
                    f"{'✅' if score.passed else '❌'} `{score.type}` ({score.score:.2f}): {score.reason}"
                )
            if result.logprobs:
                st.caption(
                    f"logprobs: {result.logprobs['tokens']} tokens, mean {result.logprobs['mean']:.3f}"
                )
            if result.detail:
                st.json(result.detail, expanded=False)
