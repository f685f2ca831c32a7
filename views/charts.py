"""Charts the pages share: rates with their intervals, and differences with theirs around zero (forest plots).
Altair, titled axes, no facets (their titles overlapped)."""

from __future__ import annotations

import altair as alt
import pandas as pd

GREEN, RED, GREY = "#2ca02c", "#d62728", "#9e9e9e"


def rates(
    frame: pd.DataFrame, value: str, low: str, high: str, title: str, label: str = "group"
) -> alt.LayerChart:
    """One bar per row with its 95 % interval as an error bar (`value`, `low`, `high` in 0..1)."""
    base = alt.Chart(frame, title=title).encode(
        y=alt.Y(f"{label}:N", title=None, sort=None, axis=alt.Axis(labelLimit=420))
    )
    bars = base.mark_bar(color="#4c78a8").encode(
        x=alt.X(f"{value}:Q", title=title, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=[
            label,
            alt.Tooltip(value, format=".1%"),
            alt.Tooltip(low, format=".1%"),
            alt.Tooltip(high, format=".1%"),
        ],
    )
    errors = base.mark_errorbar(ticks=True, color="black").encode(x=alt.X(f"{low}:Q"), x2=f"{high}:Q")
    return (bars + errors).properties(height=max(90, 45 * len(frame)))  # fmt: skip


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
    base = alt.Chart(frame, title=title).encode(
        y=alt.Y(f"{label}:N", title=None, sort=None, axis=alt.Axis(labelLimit=420))
    )
    fmt = "+.0%" if unit == "points" else "+.2f"
    x = alt.X("delta:Q", title=f"change ({unit}) with 95 % interval", axis=alt.Axis(format=fmt))
    points = base.mark_point(filled=True, size=90).encode(
        x=x,
        color=alt.Color("verdict:N", scale=scale, title=None),
        tooltip=[
            label,
            alt.Tooltip("delta", format=fmt),
            alt.Tooltip("low", format=fmt),
            alt.Tooltip("high", format=fmt),
            "verdict",
        ],
    )
    bars = base.mark_rule(strokeWidth=2).encode(
        x="low:Q", x2="high:Q", color=alt.Color("verdict:N", scale=scale)
    )
    zero = (
        alt.Chart(pd.DataFrame({"zero": [0.0]}))
        .mark_rule(strokeDash=[4, 4], color="black")
        .encode(x="zero:Q")
    )
    return (bars + points + zero).properties(height=max(90, 40 * len(frame)))  # fmt: skip
