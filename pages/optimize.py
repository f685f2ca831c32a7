"""Optimize: search for a better version of a prompt on a suite, and see whether the gain holds on held-out cases
the search never saw. The search is a job for the worker: leaving the page or closing the browser loses nothing."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from prompting.numbers import DASH, percent, points
from prompting.optimize import PARTS
from services import optimize as service
from services import suites as suites_service
from services import versions as versions_service
from ui.common import form_and_picker, provider_specs, refreshing, store, version_labels

PART_TEXT = {
    "instruction": "instruction rewrites (proposed from failing train cases)",
    "demos": "demonstrations (train cases answered right)",
    "technique": "technique (zero-shot, chain-of-thought, self-consistency)",
    "delimiter": "delimiter style",
    "sections": "dropping a section or the guardrails",
}

st.title(":material/auto_fix_high: Optimize")
st.caption(
    "The suite is split into train, validation and held-out thirds. Candidates are built from train only and "
    "chosen on validation; the held-out third is evaluated once, at the end, for the starting version and the "
    "winner. The verdict is their paired difference on those unseen cases, with its 95 % interval."
)
db = store()


def start_form() -> None:
    suites, versions, specs = suites_service.names(db), version_labels(), provider_specs()
    if not suites or not versions:
        st.info("An optimisation needs a suite (Test cases page) and a saved version (Build page).")
        return
    with (
        st.expander("Start an optimisation", expanded=not service.listing(db), icon=":material/add_circle:"),
        st.form("start_optimize", enter_to_submit=False),
    ):
        left, right = st.columns(2)
        suite = left.selectbox("Suite", list(suites), key="opt_suite")
        newest = versions_service.newest_label(db)
        names = list(versions)
        version = right.selectbox(
            "Starting version", names, index=names.index(newest) if newest in names else 0, key="opt_version"
        )
        labels = [s.label for s in specs]
        target = left.selectbox("Target model", labels, key="opt_provider")
        proposer = right.selectbox(
            "Proposer (writes instruction rewrites)",
            labels,
            key="opt_proposer",
            help="Sees train cases only.",
        )
        parts = st.multiselect(
            "What the search may change",
            list(PARTS),
            default=list(PARTS),
            format_func=PART_TEXT.get,
            key="opt_parts",
        )
        budget, seed, keep, label = budget_fields()
        start = st.form_submit_button("Start optimisation", type="primary")
    if not start:
        return
    chosen = {s.label: s for s in specs}
    request = service.Request(
        suite,
        versions[version],
        chosen[target],
        chosen[proposer],
        budget,
        int(seed),
        tuple(parts),
        int(keep),
        label,
    )
    optimization_id = service.submit_optimization(db, request)
    st.session_state["opt_view"] = optimization_id
    st.toast(f"Queued {optimization_id}", icon=":material/schedule:")


def budget_fields() -> tuple:
    """The form's last row: the budget (kind and amount), the seed, how many versions to save and the label."""
    b1, b2, b3, b4, b5 = st.columns(5)
    kind = b1.selectbox(
        "Budget", ["default (15 candidates)", "cells", "minutes", "cost (USD)"], key="opt_budget_kind"
    )
    amount = b2.number_input("Amount", min_value=0.0, value=400.0, key="opt_budget")
    seed = b3.number_input("Seed", min_value=0, value=0, step=1, key="opt_seed")
    keep = b4.number_input(
        "Versions to save", min_value=1, value=1, key="opt_keep", help="The winner and the next best."
    )
    label = b5.text_input("Label for the winner", "optimized", key="opt_label")
    budget = service.Budget(
        cells=int(amount) if kind == "cells" else None,
        minutes=float(amount) if kind == "minutes" else None,
        cost=float(amount) if kind.startswith("cost") else None,
    )
    return budget, seed, keep, label


def live(optimization_id: str) -> None:
    """Where it stands, refreshed every second while it runs; it redraws the report once it ends."""
    state = service.progress(db, optimization_id)
    active = state["status"] in service.ACTIVE
    if active:
        run = state["run"]
        fraction = run["done"] / run["total"] if run and run["total"] else 0.0
        cells = f" — cells {run['done']}/{run['total']}" if run else ""
        st.progress(fraction, text=f"{state['phase_text']}{cells}")
        st.caption(
            f"{state['candidates']} candidates evaluated · best on validation {percent(state['best'])} "
            f"(starting version {percent(state['baseline'])}) · {state['spent']['cells']} cells, "
            f"{state['spent']['minutes']:.1f} minutes so far"
        )
        if st.button("Cancel", icon=":material/stop_circle:", key="do_opt_cancel"):
            service.cancel(db, optimization_id)
            st.rerun()
    elif state["status"] == "failed":
        st.error(f"The optimisation failed: {state['error']}")
    elif state["status"] == "cancelled":
        st.warning("Cancelled: nothing was saved as a version.")
    if active and st.session_state.get("opt_seen_active") != optimization_id:
        st.session_state["opt_seen_active"] = optimization_id
    elif not active and st.session_state.get("opt_seen_active") == optimization_id:
        st.session_state["opt_seen_active"] = None
        st.rerun()  # it just ended: draw the report


def rate(value, ci) -> str:
    return f"{percent(value)} ({percent(ci[0])} to {percent(ci[1])})" if ci else percent(value)


def report_view(row) -> None:
    report = row.report
    held, val = report["heldout"], report["validation"]
    gained = report["chosen"] and held.get("delta_ci") and held["delta_ci"][0] > 0
    (st.success if gained else st.info)(report["verdict"], icon=":material/verified:" if gained else None)
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Starting version, {held['cases']} held-out cases", percent(held["baseline"]))
    c2.metric("Winner, same cases", percent(held.get("winner")) if report["chosen"] else DASH)
    change = DASH
    if held.get("delta") is not None:
        change = f"{points(held['delta'], held['cases'])} points"
    c3.metric("Change", change)
    if held.get("delta_ci"):
        low, high = held["delta_ci"]
        st.caption(
            f"95 % interval of the change {points(low, held['cases'])} to {points(high, held['cases'])} points, "
            f"p = {held['p_value']:.3g} "
            f"({held['test']}, the Compare page's paired comparison)."
        )
    gap = DASH if report["gap"] is None else f"{points(report['gap'], held['cases'])} points"
    st.caption(
        f"Validation: starting version {rate(val['baseline']['rate'], val['baseline']['ci'])}, winner "
        f"{rate(val['winner']['rate'], val['winner']['ci'])}. Validation gain minus held-out gain (the winner's "
        f"curse: how much of the gain came from choosing on the same cases): {gap}."
    )
    winner = report["winner"]
    st.markdown(f"**Winner:** candidate #{winner['index']} — {winner['changes']}")
    leaderboard(report)
    spent = report["spent"]
    st.caption(
        f"Spent {spent['cells']} cells, ${spent['cost']:.4f}, {spent['minutes']:.1f} minutes; "
        f"{report['trials']} candidates tried ({report['stopped']}). Split: train {report['split']['train']}, "
        f"validation {report['split']['validation']}, held-out {report['split']['heldout']}."
    )
    if report.get("saved"):
        st.markdown(
            f"Saved as **{', '.join(report['saved'])}** (the first labelled `{row.settings.get('label')}`): "
            "compare it with the starting version on the Build page, or export it like any version."
        )


def leaderboard(report) -> None:
    rows = [
        {
            "#": e["index"],
            "what changed": e["changes"],
            "validation": e["rate"],
            "low": e["ci"][0] if e["ci"] else None,
            "high": e["ci"][1] if e["ci"] else None,
            "errors": e["errors"],
            "tokens": e["tokens"],
            "cost": e["cost"],
        }
        for e in report["leaderboard"]
    ]
    frame = pd.DataFrame(rows)
    frame["candidate"] = frame["#"].map(lambda i: "#0 (start)" if i == 0 else f"#{i}")
    st.subheader("Candidates on validation")
    bars = alt.Chart(frame).encode(y=alt.Y("candidate:N", sort=None, title=None))
    st.altair_chart(
        bars.mark_bar().encode(
            x=alt.X(
                "validation:Q",
                title="validation pass rate",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            tooltip=["what changed", alt.Tooltip("validation:Q", format=".0%")],
        )
        + bars.mark_rule(color="black").encode(x="low:Q", x2="high:Q"),
        width="stretch",
    )
    shown = frame.drop(columns=["candidate"])
    st.dataframe(
        shown.style.format(
            {"validation": "{:.0%}", "low": "{:.0%}", "high": "{:.0%}", "cost": "${:.4f}"}, na_rep=DASH
        ),
        hide_index=True,
        width="stretch",
    )


chosen_id = form_and_picker(
    start_form,
    lambda: service.listing(db),
    "Optimisation",
    "opt_view",
    lambda row: service.describe(db, row, status=False),  # the status shows below
)
if chosen_id is None:
    st.stop()
refreshing(live, service.get(db, chosen_id).status in service.ACTIVE, 1.0, chosen_id)
row = service.get(db, chosen_id)
if row.report:
    report_view(row)
