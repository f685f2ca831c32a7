"""Compare: any two groups (run × version × provider) over the cases they share — a verdict in words, rates with
their intervals, the change with its interval, and each case's change — plus the quantization sweep and the section
ablation, each variant against its reference. Sweeps and ablations are queued for the worker."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from prompting import numbers
from services import compare, reviews
from services.errors import PromptingError, StoreError
from ui.charts import draw, forest, rates
from ui.common import store
from ui.compare_variants import ablation_tab, sweep_tab

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
    """The verdict in plain words first; the tests behind it in an expander."""
    for warning in result.warnings:
        st.warning(warning, icon=":material/warning:")
    p = result.paired
    if p.cases == 0:
        return
    if p.significant and p.delta > 0:
        st.success(p.verdict, icon=":material/trending_up:")
    elif p.significant:
        st.error(p.verdict, icon=":material/trending_down:")
    else:
        st.info(p.verdict, icon=":material/balance:")
    with st.expander("How this was computed", icon=":material/functions:"):
        st.markdown(method_text(result))


def method_text(result: compare.Comparison) -> str:
    p = result.paired
    mdd = "–" if p.mdd is None else f"{numbers.magnitude(p.mdd, p.cases)} points"
    return (
        f"- Cells pair on the {result.matched_on}: **{p.cases}** shared cases; a case's repeats are averaged "
        "into its pass fraction first, so cases are the unit.\n"
        f"- Test: {p.test}, p = {p.p_value:.3g}.\n"
        f"- Change in pass rate: {numbers.points(p.delta, p.cases)} points, 95 % interval "
        f"{numbers.points_interval(p.delta_ci, p.cases)} (paired bootstrap over cases; when no case changed, the "
        "Clopper–Pearson bound on the share of cases that could have).\n"
        f"- Smallest difference this comparison detects at 80 % power: {mdd} "
        "((z₀.₉₇₅ + z₀.₈) × the larger of the observed standard error and the one the interval implies).\n"
        f"- Change in mean score: {numbers.points(p.delta_score, p.cases)} points, 95 % interval "
        f"{numbers.points_interval(p.delta_score_ci, p.cases)}."
    )


def figures(result: compare.Comparison) -> None:
    stats = [
        compare.run_group_stats(db, g.ref.run_id)[(g.ref.version_id, g.ref.provider_id)]
        for g in (result.a, result.b)
    ]
    rows = [
        {
            "group": side,
            "name": g.label,
            "rate": s.pass_rate,
            "low": s.pass_ci.low if s.pass_ci else None,
            "high": s.pass_ci.high if s.pass_ci else None,
        }
        for side, g, s in zip("AB", (result.a, result.b), stats, strict=True)
        if s.pass_rate is not None
    ]
    p = result.paired
    change = numbers.points(p.delta, p.cases)
    moved = change not in ("0", "–")
    # coloured only when the change is more than noise; the arrow says its direction either way (Streamlit reads
    # direction from an ASCII '-', and our numbers carry a true minus sign)
    colour = ("green" if p.delta > 0 else "red") if moved and p.significant else "gray"
    st.metric(
        f"Pass rate: A {numbers.percent(p.rate_a, p.cases)} → B",
        numbers.percent(p.rate_b, p.cases),
        f"{change} points" if moved else None,
        delta_color=colour,
        delta_arrow=("up" if p.delta > 0 else "down") if moved else "off",
    )
    left, right = st.columns(2)
    if rows:
        with left:
            draw(
                rates(
                    pd.DataFrame(rows), "rate", "low", "high", "Pass rate (95 % interval, cases as the unit)"
                ),
                2,
            )
    if p.delta_ci is not None:
        deltas = pd.DataFrame(
            [
                {
                    "variant": "pass rate",
                    "delta": p.delta,
                    "low": p.delta_ci.low,
                    "high": p.delta_ci.high,
                    "significant": p.significant,
                }
            ]
        )
        with right:
            draw(forest(deltas, "B − A"), len(deltas))


def per_case(result: compare.Comparison) -> None:
    """Each case's pass rate in A and B and its change; the changes average to the headline's change."""
    order = {"regressed": 0, "improved": 1, "only in A": 2, "only in B": 3, "unchanged": 4}
    p, n = result.paired, result.paired.cases
    rows = sorted(result.rows, key=lambda r: (order[r.change], r.delta or 0))
    frame = pd.DataFrame(
        [
            {
                "case": r.case,
                "change": r.change,
                "A": numbers.percent(r.a, n),
                "B": numbers.percent(r.b, n),
                "change (points)": numbers.points(r.delta, n),
                "A score": numbers.score(r.score_a),
                "B score": numbers.score(r.score_b),
            }
            for r in rows
        ]
    )
    unchanged = n - len(p.improved) - len(p.regressed)
    st.markdown(
        f"**Per case** — improved {len(p.improved)}, regressed {len(p.regressed)}, unchanged {unchanged}; "
        f"the {n} changes average to {numbers.points(p.delta, n)} points, the headline's change"
    )
    st.dataframe(frame, hide_index=True, width="stretch")


def per_turn(result: compare.Comparison) -> None:
    """Conversation cases: the same paired comparison for each turn and for the whole-conversation assertions."""
    if not result.turns:
        return
    frame = pd.DataFrame(
        [
            {
                "turn": t.label,
                "cases": t.paired.cases,
                "A": numbers.percent(t.paired.rate_a, t.paired.cases),
                "B": numbers.percent(t.paired.rate_b, t.paired.cases),
                "change (points)": numbers.points(t.paired.delta, t.paired.cases),
                "95 % interval": numbers.points_interval(t.paired.delta_ci, t.paired.cases),
                "p": f"{t.paired.p_value:.3g}",
                "verdict": t.paired.verdict,
            }
            for t in result.turns
        ]
    )
    st.markdown("**Per turn** — conversation cases, paired on the case for each turn")
    st.dataframe(frame, hide_index=True, width="stretch")


def judge_agreement(result: compare.Comparison) -> None:
    """Model-graded and similarity assertions checked against the reviewers' ratings on the same cells."""
    run_ids = list(dict.fromkeys([result.a.ref.run_id, result.b.ref.run_id]))
    found = [(run_id, judge) for run_id in run_ids for judge in reviews.agreement(db, run_id)]
    with st.expander(f"Judges vs reviewers ({len(found)})", icon=":material/rate_review:"):
        if not found:
            st.caption("No rated cells with a model-graded or similarity assertion yet (Review page).")
        for run_id, judge in found:
            st.markdown(f"**{judge.assertion}** in run `{run_id[:8]}`: {judge.text}")
            matrix = pd.DataFrame(
                [
                    [judge.matrix[f"judge {j} / human {h}"] for h in ("pass", "fail")]
                    for j in ("pass", "fail")
                ],
                index=["judge pass", "judge fail"],
                columns=["human pass", "human fail"],
            )
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
            per_turn(result)
            per_case(result)
            judge_agreement(result)
        except (PromptingError, StoreError) as exc:
            st.error(str(exc))
with tab_sweep:
    sweep_tab(db)
with tab_ablation:
    ablation_tab(db)
