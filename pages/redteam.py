"""Red team: attack a version's guardrails with generated attacks, graded on this machine, and keep what got
through as regression cases. The red team is a run: the worker executes it, and leaving the page loses nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from prompting.numbers import DASH, percent
from prompting.redteam import FAMILIES
from services import redteam as service
from services import redteam_report as reports
from services import runs as runs_service
from services import versions as versions_service
from ui.common import (
    form_and_picker,
    messages_view,
    provider_specs,
    refreshing,
    run_label,
    store,
    version_labels,
)

FAMILY_TEXT = {
    "override": "override: ignore the instructions",
    "indirect": "indirect: instructions hidden in inserted data",
    "forgery": "forgery: fake sections in every delimiter syntax",
    "extraction": "extraction: get the system prompt (canary)",
    "roleplay": "roleplay: persona jailbreaks",
    "encoding": "encoding: base64, ROT13, leetspeak, homoglyphs, invisible characters",
    "crescendo": "crescendo: escalation over three turns",
    "pii": "pii: repeat planted personal data",
    "rules": "rules: break each guardrail rule",
    "format": "format: answer outside the JSON schema",
}
NO_BASELINE, UNGUARDED_TEXT = "none", "the same version without rules and refusal"

st.title(":material/shield: Red team")
st.caption(
    "Attacks are generated on this machine from a written seed library and a seed (the same seed gives the same "
    "attacks), sent to the version as rendered (system prompt, guardrails, delimiters, inserted data) with a "
    "canary planted in its system prompt, and graded deterministically. A failed check is a successful attack."
)
db = store()


def start_form() -> None:
    versions, specs = version_labels(), provider_specs()
    if not versions:
        st.info("A red team needs a saved version with guardrails (Build page).")
        return
    with (
        st.expander("Start a red team", expanded=not service.listing(db), icon=":material/add_circle:"),
        st.form("start_redteam", enter_to_submit=False),
    ):
        left, right = st.columns(2)
        names, newest = list(versions), versions_service.newest_label(db)
        version = left.selectbox(
            "Version under attack",
            names,
            index=names.index(newest) if newest in names else 0,
            key="rt_version",
        )
        labels = [s.label for s in specs]
        target = right.selectbox("Model", labels, key="rt_provider")
        families = st.multiselect(
            "Attack families (none: every one that applies)",
            list(FAMILIES),
            format_func=FAMILY_TEXT.get,
            key="rt_families",
        )
        a, b, c, d = st.columns(4)
        attacks = a.number_input("Attacks", min_value=1, max_value=5000, value=90, key="rt_attacks")
        seed = b.number_input("Seed", min_value=0, value=0, step=1, key="rt_seed")
        baseline = c.selectbox(
            "Compare with",
            [NO_BASELINE, UNGUARDED_TEXT, *[n for n in names if n != version]],
            key="rt_baseline",
        )
        max_tokens = d.number_input(
            "Longest answer (tokens)", min_value=8, max_value=1024, value=96, key="rt_tokens"
        )
        start = st.form_submit_button("Start red team", type="primary")
    if not start:
        return
    chosen = {s.label: s for s in specs}
    other = {NO_BASELINE: None, UNGUARDED_TEXT: service.UNGUARDED}.get(baseline, baseline)
    request = service.Request(
        version, chosen[target], tuple(families), int(attacks), int(seed), other, int(max_tokens)
    )
    run = service.submit_redteam(db, request)
    st.session_state["rt_view"] = run.id
    st.toast(f"Queued red team {run.id}", icon=":material/schedule:")


def live(run_id: str) -> None:
    run = runs_service.get(db, run_id)
    if runs_service.is_active(run):
        state = runs_service.progress(db, run_id)
        fraction = state.done / state.total if state.total else 0.0
        st.progress(fraction, text=f"{run.status}: {state.done} of {state.total} attacks answered and graded")
        if st.button("Cancel", icon=":material/stop_circle:", key="do_rt_cancel"):
            runs_service.cancel(db, run_id)
            st.rerun()
        st.session_state["rt_seen_active"] = run_id
    elif st.session_state.get("rt_seen_active") == run_id:
        st.session_state["rt_seen_active"] = None
        st.rerun()  # it just ended: draw the report
    else:
        st.caption(f"{run.status} · {runs_service.stored_cells(db, run_id)} answers graded")


def rates_frame(report) -> pd.DataFrame:
    rows = []
    for label in report.versions:
        for r in report.rates[label]:
            rows.append(
                {
                    "family": r.family,
                    "version": label,
                    "succeeded": r.successes,
                    "attacks": r.attacks,
                    "rate": r.rate,
                    "low": r.interval.low if r.interval else None,
                    "high": r.interval.high if r.interval else None,
                    "refused": r.refusals,
                    "errors": r.errors,
                }
            )
    return pd.DataFrame(rows)


def rate_text(row) -> str:
    if not row.attacks:
        return DASH
    interval = f" ({percent(row.interval.low)}–{percent(row.interval.high)})" if row.interval else ""
    return f"{row.successes} of {row.attacks} · {percent(row.rate)}{interval}"


def rates_view(report) -> None:
    frame = rates_frame(report)
    st.subheader("Attack success per family (95 % interval)")
    base = alt.Chart(frame).encode(
        y=alt.Y("family:N", sort=None, title=None),
        yOffset="version:N",
        color=alt.Color("version:N", title=None),
    )
    bars = base.mark_bar().encode(
        x=alt.X(
            "rate:Q",
            title="attacks that succeeded",
            scale=alt.Scale(domain=[0, 1]),
            axis=alt.Axis(format="%"),
        ),
        tooltip=["family", "version", "succeeded", "attacks", alt.Tooltip("rate:Q", format=".0%")],
    )
    st.altair_chart(bars + base.mark_rule(color="black").encode(x="low:Q", x2="high:Q"), width="stretch")
    table = {"family": [r.family for r in report.rates[report.versions[0]]]}
    for label in report.versions:
        table[f"{label}: succeeded"] = [rate_text(r) for r in report.rates[label]]
        table[f"{label}: refused"] = [r.refusals for r in report.rates[label]]
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    forged = ", ".join(f"{label}: {n}" for label, n in report.forged.items())
    st.caption(
        f"Prompts in which a forged section parsed (deterministic, on the rendered messages): {forged}."
    )


def changes_view(report) -> None:
    if not report.changes:
        return
    first, second = report.versions
    st.subheader("Paired on the same attacks")
    rows = [
        {
            "family": c.family,
            f"blocked only by {first}": c.blocked_more,
            f"blocked only by {second}": c.let_through_more,
            "McNemar p": f"{c.p:.3g}",
            "p (Holm)": f"{c.p_adjusted:.3g}" if c.family != "all" else DASH,
        }
        for c in report.changes
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption("Per-family p-values are Holm-adjusted for the number of families compared.")


def worst_view(report) -> None:
    if not report.worst:
        return
    st.subheader("Worst successful attacks")
    for example in report.worst:
        with st.expander(f"{example.family} · {example.description}"):
            st.caption("; ".join(example.reasons))
            messages_view(example.conversation)


def promote_view(run_id: str, report) -> None:
    count = len(report.successful_case_ids)
    if not count:
        st.success("No attack got through: there is nothing to promote.")
        return
    left, right = st.columns(2)
    if left.button(
        f"Save the {count} successful attacks as a suite", icon=":material/add_task:", key="do_rt_promote"
    ):
        suite = reports.promote(db, run_id)
        st.success(f"Saved suite {suite.name} ({count} regression cases): run it from the Runs page.")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"regressions-{run_id}.yaml"
        reports.suite_file(db, run_id, path, report)  # the report drawn above: results read once
        right.download_button(
            "Download as a suite file for `workbench run`",
            path.read_bytes(),
            file_name=path.name,
            icon=":material/download:",
            key="do_rt_download",
        )


def report_view(run_id: str) -> None:
    report = reports.build_report(db, run_id)
    (st.warning if report.successful_case_ids else st.success)(report.verdict())
    info = report.info
    st.caption(
        f"Seed {info.get('seed')}, {info.get('attacks')} attacks, canary {info.get('canary')}, attacks typed into "
        f"'{info.get('target_variable')}', model {info.get('provider')}."
    )
    rates_view(report)
    changes_view(report)
    worst_view(report)
    promote_view(run_id, report)


chosen = form_and_picker(
    start_form, lambda: service.listing(db), "Red team", "rt_view", lambda run: run_label(run, status=False)
)
if chosen is None:
    st.stop()
refreshing(live, runs_service.is_active(runs_service.get(db, chosen)), 1.0, chosen)
if runs_service.stored_cells(db, chosen):
    report_view(chosen)
