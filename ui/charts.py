"""Charts the pages share: rates with their intervals, and differences with theirs around zero (forest plots).
Altair, titled axes, no facets (their titles overlapped)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

GREEN, RED, GREY = "#2ca02c", "#d62728", "#9e9e9e"


def rates(
    frame: pd.DataFrame, value: str, low: str, high: str, title: str, label: str = "group"
) -> alt.LayerChart:
    """One bar per row with its 95 % interval as an error bar (`value`, `low`, `high` in 0..1)."""
    base = alt.Chart(frame, title=title).encode(
        y=alt.Y(f"{label}:N", title=None, sort=None, axis=alt.Axis(labelLimit=420))
    )
    tooltip = [
        alt.Tooltip(c, format=".1%") if c in (value, low, high) else alt.Tooltip(c) for c in frame.columns
    ]
    x = alt.X(f"{value}:Q", title="pass rate", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    bars = base.mark_bar(color="#4c78a8").encode(x=x, tooltip=tooltip)
    errors = base.mark_errorbar(ticks=True, color="black").encode(
        x=alt.X(f"{low}:Q", title="pass rate"), x2=f"{high}:Q"
    )
    return bars + errors


def forest(frame: pd.DataFrame, title: str, label: str = "variant", unit: str = "points") -> alt.LayerChart:
    """Each row's difference (`delta`, `low`, `high`) as a point with its interval, around a rule at zero;
    green/red when significant, grey when not."""
    frame = frame.copy()
    frame["verdict"] = frame.apply(
        lambda r: (
            "not significant" if not r.get("significant") else ("better" if r["delta"] > 0 else "worse")
        ),
        axis=1,
    )
    scale = alt.Scale(domain=["better", "worse", "not significant"], range=[GREEN, RED, GREY])
    colour = alt.Color("verdict:N", scale=scale, title=None)
    base = alt.Chart(frame, title=title).encode(
        y=alt.Y(f"{label}:N", title=None, sort=None, axis=alt.Axis(labelLimit=420))
    )
    fmt = "+.0%" if unit == "points" else "+.2f"
    # the axis reads as prompting/numbers does: "+12", "−4" and a bare "0"
    scale_by = 100 if unit == "points" else 1
    digits = 0 if unit == "points" else 2
    labels = (
        f"datum.value == 0 ? '0' : replace(format(datum.value * {scale_by}, '+.{digits}f'), '-', '\u2212')"
    )
    title_x = f"change ({unit}) with 95 % interval"
    tooltip = [
        label,
        alt.Tooltip("delta", format=fmt),
        alt.Tooltip("low", format=fmt),
        alt.Tooltip("high", format=fmt),
        "verdict",
    ]
    points = base.mark_point(filled=True, size=90).encode(
        x=alt.X("delta:Q", title=title_x, axis=alt.Axis(labelExpr=labels)), color=colour, tooltip=tooltip
    )
    bars = base.mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", title=title_x), x2="high:Q", color=colour)
    zero = (
        alt.Chart(pd.DataFrame({"zero": [0.0]}))
        .mark_rule(strokeDash=[4, 4], color="black")
        .encode(x=alt.X("zero:Q", title=title_x))
    )
    return bars + points + zero


def draw(chart, rows: int) -> None:
    """Show a chart with room for its rows (Streamlit ignores a layered chart's own height)."""
    st.altair_chart(chart, width="stretch", height=110 + 34 * max(rows, 1))
