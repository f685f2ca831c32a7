"""Compare: two runs side by side (pass rate and score per version and provider, latency distributions,
per-case flips); the quantization sweep; the section-ablation chart."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import quant_methods
from services import runs
from services.errors import PromptingError, StoreError
from settings import get_settings
from views.common import provider_specs, refreshing, run_label, store, version_labels

st.title(":material/compare_arrows: Compare")
db = store()
all_runs = db.list_runs()
tab_runs, tab_sweep, tab_ablation = st.tabs(["Two runs", "Quantization sweep", "Section ablation"])


def sweep_view(sweep: str) -> None:
    rows = runs.sweep_result(db, sweep)
    waiting = [r["method"] for r in rows if r["status"] in ("queued", "running")]
    if waiting:
        st.info(f"Waiting for the worker: {', '.join(waiting)}", icon=":material/hourglass_top:")
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    measured = [c for c in ("score", "ppl", "weight_mb", "tokens_per_s") if c in table]
    if len(table) and measured:
        long = table.melt(id_vars="method", value_vars=measured).dropna()
        st.altair_chart(alt.Chart(long).mark_bar().encode(x="method:N", y="value:Q", color="method:N",
                                                          column="variable:N").resolve_scale(y="independent"))  # fmt: skip


def ablation_view(run_id: str) -> None:
    run = db.get_run(run_id)
    if run.status in ("queued", "running"):
        state = runs.progress(db, run_id)
        st.progress(
            state.done / state.total if state.total else 0.0, text=f"{state.done}/{state.total} cells"
        )
    table = pd.DataFrame(runs.ablation_result(db, run_id)["variants"])
    if table.empty:
        return
    st.altair_chart(alt.Chart(table.dropna(subset=["delta"]), title="Score change per dropped part").mark_bar().encode(
        x=alt.X("delta:Q", title="score change vs full"), y=alt.Y("variant:N", sort="x"),
        color=alt.condition("datum.delta < 0", alt.value("#d62728"), alt.value("#2ca02c"))),
        use_container_width=True)  # fmt: skip
    st.dataframe(table, hide_index=True)


with tab_runs:
    if len(all_runs) < 2:
        st.info("Two runs are needed: start them on the Runs page.")
    else:
        ids = [r.id for r in all_runs]
        c1, c2 = st.columns(2)
        run_a = c1.selectbox("Run A", ids, index=1, key="cmp_a")
        run_b = c2.selectbox("Run B", ids, index=0, key="cmp_b")
        frames = []
        for tag, run_id in (("A", run_a), ("B", run_b)):
            rows = [g.to_dict() for g in runs.summary(db, run_id)]
            frames.append(pd.DataFrame([{**r, "run": f"{tag}: {run_id}", "group": f"{r['version']} · {r['provider']}"}
                                        for r in rows]))  # fmt: skip
        summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if not summary.empty:
            for metric, title in (("pass_rate", "Pass rate"), ("score", "Mean score")):
                st.altair_chart(
                    alt.Chart(summary, title=title)
                    .mark_bar()
                    .encode(
                        x=alt.X("run:N", title=None),
                        y=alt.Y(f"{metric}:Q", title=title),
                        color="run:N",
                        column=alt.Column("group:N", title=None),
                    ),
                    use_container_width=False,
                )
        latencies = pd.DataFrame(
            [
                {"run": tag, "latency ms": r.latency_ms}
                for tag, run_id in (("A", run_a), ("B", run_b))
                for r, _ in db.run_results(run_id)
                if r.error is None
            ]
        )
        if not latencies.empty:
            st.altair_chart(
                alt.Chart(latencies, title="Latency distribution")
                .mark_boxplot()
                .encode(x="run:N", y="latency ms:Q", color="run:N"),
                use_container_width=True,
            )
        try:
            result = runs.compare(db, run_a, run_b)
        except StoreError as exc:
            st.warning(str(exc))
        else:
            t = result["totals"]
            rate_a, rate_b = t["a"].pass_rate, t["b"].pass_rate
            delta = None if rate_a is None or rate_b is None else f"{(rate_b - rate_a) * 100:+.0f} pts"
            st.metric("Pass rate B vs A", "–" if rate_b is None else f"{rate_b:.0%}", delta)
            flips = pd.DataFrame([c for c in result["cells"] if c["flip"]])
            st.markdown(f"**Flips**: fixed {result['fixed']}, broke {result['broke']}")
            if not flips.empty:
                st.dataframe(flips, hide_index=True)

suites = db.list_suites()
versions = version_labels()

with tab_sweep:
    st.caption(
        "The same suite on the local model under several quantization methods; each method's engine is "
        "started on demand. Perplexity is measured on the text shipped in engine/data."
    )
    if not suites or not versions:
        st.info("Needs a suite and a saved version.")
    else:
        suite_name = st.selectbox("Suite", [s.name for s, _ in suites], key="sweep_suite")
        version = st.selectbox("Version", list(versions), key="sweep_version")
        methods = st.multiselect(
            "Methods", quant_methods.CHOICES, default=["none", "int8", "int4"], key="sweep_methods"
        )
        if st.button("Queue the sweep", key="do_sweep_run", icon=":material/play_arrow:"):
            try:
                st.session_state["sweep_id"] = runs.sweep_submit(db, db.get_suite(suite_name).id, versions[version],
                                                                 get_settings().default_model, methods,
                                                                 params={"temperature": 0})  # fmt: skip
            except (PromptingError, StoreError) as exc:
                st.error(str(exc))
        sweeps = list(
            dict.fromkeys((r.options or {}).get("sweep") for r in all_runs if (r.options or {}).get("sweep"))
        )
        if sweeps:
            sweep = st.selectbox("Sweep", sweeps, key="sweep_id")
            active = any(r["status"] in ("queued", "running") for r in runs.sweep_result(db, sweep))
            refreshing(sweep_view, active, 2.0, sweep)

with tab_ablation:
    st.caption(
        "Variants of one version that each drop one section, the guardrail block or one few-shot example, "
        "run as one matrix; the chart shows each part's effect on the mean score."
    )
    if not suites or not versions:
        st.info("Needs a suite and a saved version.")
    else:
        specs = provider_specs()
        suite_name = st.selectbox("Suite", [s.name for s, _ in suites], key="abl_suite")
        version = st.selectbox("Version", list(versions), key="abl_version")
        label = st.selectbox("Provider", [s.label for s in specs], key="abl_provider")
        if st.button("Queue the ablation", key="do_abl_run", icon=":material/play_arrow:"):
            spec = next(s for s in specs if s.label == label)
            try:
                st.session_state["abl_run"] = runs.ablation_submit(db, db.get_suite(suite_name).id, versions[version],
                                                                   spec, params={"temperature": 0})  # fmt: skip
            except (PromptingError, StoreError) as exc:
                st.error(str(exc))
        ablations = {r.id: run_label(r) for r in all_runs if (r.options or {}).get("kind") == "ablation"}
        if ablations:
            chosen = st.selectbox("Ablation run", list(ablations), format_func=ablations.get, key="abl_run")
            refreshing(ablation_view, db.get_run(chosen).status in ("queued", "running"), 2.0, chosen)
