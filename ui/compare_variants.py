"""The Compare page's sweep and ablation tabs: queue one for the worker, then each variant against its reference
with an interval and a Holm-adjusted p-value ("not significant" marks those whose interval contains 0)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import quant_methods
from prompting import numbers
from prompting.stats import Interval
from services import compare, runs, sweeps
from services import suites as suites_service
from services import versions as versions_service
from services.errors import PromptingError, StoreError
from settings import get_settings
from ui.charts import draw, forest
from ui.common import provider_specs, refreshing, run_label, version_labels


def suite_and_version(db, prefix: str) -> tuple[str, str] | None:
    suites, versions = list(suites_service.names(db)), version_labels()
    if not suites or not versions:
        st.info("Needs a suite and a saved version.")
        return None
    recent, newest = suites_service.recent_suite(db), versions_service.newest_label(db)
    suite = st.selectbox(
        "Suite", suites, index=suites.index(recent) if recent in suites else 0, key=f"{prefix}_suite"
    )
    labels = list(versions)
    version = st.selectbox(
        "Version", labels, index=labels.index(newest) if newest in labels else 0, key=f"{prefix}_version"
    )
    return suite, version


def effects_view(rows: list[dict], title: str, empty: str) -> None:
    if not rows:
        st.caption(empty)
        return
    frame = pd.DataFrame(rows)
    shown_rows = frame.dropna(subset=["delta", "low", "high"])
    draw(forest(shown_rows, title), len(shown_rows))
    table = [
        {
            "variant": r["variant"],
            "change (points)": numbers.points(r["delta"]),
            "95 % interval": numbers.points_interval(
                Interval(r["low"], r["high"]) if r["low"] is not None else None
            ),
            "p": "–" if r["p"] is None else f"{r['p']:.3g}",
            "p (Holm)": f"{r['p_holm']:.3g}",
            "verdict": ("better" if r["delta"] > 0 else "worse") if r["significant"] else "not significant",
        }
        for r in rows
    ]
    st.dataframe(pd.DataFrame(table), hide_index=True)


def sweep_view(db, sweep: str) -> None:
    rows = compare.sweep_rows(db, sweep)
    waiting = [r["method"] for r in rows if r["status"] in runs.ACTIVE]
    if waiting:
        st.info(f"Waiting for the worker: {', '.join(waiting)}", icon=":material/hourglass_top:")
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    effects = compare.sweep_effects(db, sweep)
    reference = effects[0]["reference"] if effects else None
    effects_view(
        effects,
        f"Pass rate change against {reference}",
        "Each method is compared with the first once two have completed.",
    )


def sweep_tab(db) -> None:
    st.caption(
        "The same suite on the local model under several quantization methods; each method's engine is "
        "started on demand. Perplexity is measured on the text shipped in engine/data."
    )
    picked = suite_and_version(db, "sweep")
    if picked is None:
        return
    methods = st.multiselect(
        "Methods (the first is the reference)",
        quant_methods.CHOICES,
        default=["int4", "int8"],
        key="sweep_methods",
    )
    if st.button("Queue the sweep", key="do_sweep_run", icon=":material/play_arrow:"):
        try:
            st.session_state["sweep_id"] = sweeps.sweep_submit(
                db,
                picked[0],
                version_labels()[picked[1]],
                get_settings().default_model,
                methods,
                params={"temperature": 0},
            )
        except (PromptingError, StoreError) as exc:
            st.error(str(exc))
    found = sweeps.sweep_ids(db)
    if found:
        sweep = st.selectbox("Sweep", found, key="sweep_id")
        active = any(runs.is_active(r) for r in sweeps.sweep_runs(db, sweep))
        refreshing(sweep_view, active, 2.0, db, sweep)


def ablation_view(db, run_id: str) -> None:
    if runs.is_active(runs.get(db, run_id)):
        state = runs.progress(db, run_id)
        st.progress(
            state.done / state.total if state.total else 0.0, text=f"{state.done}/{state.total} cells"
        )
        return
    effects_view(
        compare.ablation_effects(db, run_id),
        "Pass rate change when a part is dropped (vs the full prompt)",
        "No variant to compare.",
    )


def ablation_tab(db) -> None:
    st.caption(
        "Variants of one version that each drop one section, the guardrail block or one few-shot example, "
        "run as one matrix; each is compared with the full prompt on the same cases."
    )
    picked = suite_and_version(db, "abl")
    if picked is None:
        return
    specs = provider_specs()
    label = st.selectbox("Provider", [s.label for s in specs], key="abl_provider")
    if st.button("Queue the ablation", key="do_abl_run", icon=":material/play_arrow:"):
        spec = next(s for s in specs if s.label == label)
        try:
            st.session_state["abl_run"] = sweeps.ablation_submit(
                db, picked[0], version_labels()[picked[1]], spec, params={"temperature": 0}
            )
        except (PromptingError, StoreError) as exc:
            st.error(str(exc))
    ablations = {r.id: run_label(r) for r in runs.listing(db, kind="ablation")}
    if ablations:
        chosen = st.selectbox("Ablation run", list(ablations), format_func=ablations.get, key="abl_run")
        refreshing(ablation_view, runs.is_active(runs.get(db, chosen)), 2.0, db, chosen)
