"""Compare: any two groups (run × version × provider) over the cases they share — a verdict in words, rates with
their intervals, the change with its interval, and per-case flips — plus the quantization sweep and the section
ablation, each variant against its reference. Sweeps and ablations are queued for the worker."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from services import compare, reviews
from services.errors import PromptingError, StoreError
from views.charts import draw, forest, rates
from views.common import store
from views.compare_variants import ablation_tab, sweep_tab

st.title(":material/compare_arrows: Compare")
db = store()


def pickers(groups: list[compare.Group]) -> tuple[compare.Group, compare.Group]:
    by_key = {f"{g.ref.run_id}|{g.ref.version_id}|{g.ref.provider_id}": g for g in groups}

    def name(key: str) -> str:
        g = by_key[key]
        mark = " (partial)" if g.partial else ""
        return f"{g.label} · {g.status}{mark}"

    keys = list(by_key)
    c1, c2 = st.columns(2)
    a = c1.selectbox("A (reference)", keys, index=min(1, len(keys) - 1), format_func=name, key="cmp_a")
    b = c2.selectbox("B (candidate)", keys, index=0, format_func=name, key="cmp_b")
    return by_key[a], by_key[b]


def banner(result: compare.Comparison) -> None:
    for warning in result.warnings:
        st.warning(warning, icon=":material/warning:")
    p = result.paired
    if p.cases == 0:
        return
    text = f"**{p.verdict}** — {p.test} over {p.cases} shared cases"
    if p.significant and p.delta > 0:
        st.success(text, icon=":material/trending_up:")
    elif p.significant:
        st.error(text, icon=":material/trending_down:")
    else:
        st.info(text, icon=":material/balance:")


def figures(result: compare.Comparison) -> None:
    a_stats, b_stats = (compare.run_group_stats(db, g.ref.run_id)[(g.ref.version_id, g.ref.provider_id)]
                        for g in (result.a, result.b))  # fmt: skip
    frame = pd.DataFrame([
        {"group": side, "name": g.label, "rate": s.pass_rate, "low": s.pass_ci.low if s.pass_ci else None,
         "high": s.pass_ci.high if s.pass_ci else None}
        for side, g, s in (("A", result.a, a_stats), ("B", result.b, b_stats)) if s.pass_rate is not None])  # fmt: skip
    p = result.paired
    delta = None if p.delta is None else f"{p.delta * 100:+.0f} pts"
    st.metric("Pass rate B vs A", "–" if p.rate_b is None else f"{p.rate_b:.0%}", delta,
              delta_color="normal" if p.delta else "off")  # fmt: skip
    left, right = st.columns(2)
    if not frame.empty:
        with left:
            draw(
                rates(frame, "rate", "low", "high", "Pass rate (95 % interval, cases as the unit)"),
                len(frame),
            )
    if p.delta_ci is not None:
        deltas = pd.DataFrame([
            {"variant": "pass rate", "delta": p.delta, "low": p.delta_ci.low, "high": p.delta_ci.high,
             "significant": p.significant}])  # fmt: skip
        with right:
            draw(forest(deltas, "B − A"), len(deltas))
        right.caption(f"p = {p.p_value:.3g} ({p.test}); this suite detects ≥ {p.mdd * 100:.0f} points at 80 % power"
                      if p.mdd is not None else "")  # fmt: skip


def flips(result: compare.Comparison) -> None:
    order = {"broke": 0, "fixed": 1, "only in A": 2, "only in B": 3, "same": 4}
    rows = sorted(result.rows, key=lambda r: order[r.change])
    frame = pd.DataFrame([{"case": r.case, "change": r.change, "A passed": r.a, "B passed": r.b,
                           "A score": r.score_a, "B score": r.score_b} for r in rows])  # fmt: skip
    changed = int((frame["change"].isin(["broke", "fixed"])).sum()) if not frame.empty else 0
    st.markdown(f"**Per case** — fixed {len(result.paired.fixed)}, broke {len(result.paired.broke)}, "
                f"unchanged {result.paired.cases - changed}")  # fmt: skip
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"A passed": st.column_config.NumberColumn(format="percent"),
                                "B passed": st.column_config.NumberColumn(format="percent")})  # fmt: skip


def judge_agreement(result: compare.Comparison) -> None:
    """Model-graded and similarity assertions checked against the reviewers' ratings on the same cells."""
    run_ids = list(dict.fromkeys([result.a.ref.run_id, result.b.ref.run_id]))
    found = [(run_id, judge) for run_id in run_ids for judge in reviews.agreement(db, run_id)]
    with st.expander(f"Judges vs reviewers ({len(found)})", icon=":material/rate_review:"):
        if not found:
            st.caption("No rated cells with a model-graded or similarity assertion yet (Review page).")
        for run_id, judge in found:
            head = f"**{judge.assertion}** in run `{run_id[:8]}` — {judge.cells} rated cells"
            if judge.kappa is None:
                st.markdown(f"{head}: Cohen's κ needs at least {reviews.MIN_RATED_FOR_AGREEMENT} rated cells")
            else:
                ci = f" [{judge.interval.low:.2f}, {judge.interval.high:.2f}]" if judge.interval else ""
                st.markdown(f"{head}: Cohen's κ **{judge.kappa:.2f}**{ci}")
            matrix = pd.DataFrame(
                [[judge.matrix[f"judge {j} / human {h}"] for h in ("pass", "fail")] for j in ("pass", "fail")],
                index=["judge pass", "judge fail"], columns=["human pass", "human fail"])  # fmt: skip
            st.dataframe(matrix)


tab_groups, tab_sweep, tab_ablation = st.tabs(["Two groups", "Quantization sweep", "Section ablation"])
with tab_groups:
    groups = compare.groups(db)
    if len(groups) < 2:
        st.info("Two groups are needed: a run of two versions or two providers, or two runs (Runs page).")
    else:
        group_a, group_b = pickers(groups)
        try:
            with st.spinner("Comparing…"):
                result = compare.compare(db, group_a.ref, group_b.ref)
            banner(result)
            if result.paired.cases:
                figures(result)
            flips(result)
            judge_agreement(result)
        except (PromptingError, StoreError) as exc:
            st.error(str(exc))
with tab_sweep:
    sweep_tab(db)
with tab_ablation:
    ablation_tab(db)
