"""How numbers read, in one place: every page, the CLI and the reports format rates, changes and intervals here.

A rate is shown with the precision its sample supports: whole percents below 1,000 observations (one case of a
hundred moves the rate by a whole point), one decimal from 1,000 on. A change in pass rate is in points with a
true minus sign and no sign on zero ("+12", "−4", "0"); an interval is "low to high".
"""

from __future__ import annotations

from typing import Protocol

FINE_PRECISION_FROM = 1000  # observations from which a rate is shown to a tenth of a percent
DASH = "–"


class Bounds(Protocol):
    low: float
    high: float


def digits_for(n: int | None) -> int:
    return 1 if n is not None and n >= FINE_PRECISION_FROM else 0


def percent(rate: float | None, n: int | None = None) -> str:
    """'75%' (or '75.3%' over 1,000 observations or more); a dash when there is no rate."""
    if rate is None:
        return DASH
    return f"{rate * 100:.{digits_for(n)}f}%"


def points(delta: float | None, n: int | None = None) -> str:
    """A change in percentage points: '+12', '−4', '0' (never '+0' or '-0')."""
    if delta is None:
        return DASH
    text = f"{delta * 100:.{digits_for(n)}f}"
    if float(text) == 0:
        return text.lstrip("-")
    return ("+" + text) if delta > 0 else text.replace("-", "−")


def magnitude(delta: float | None, n: int | None = None) -> str:
    """The size of a change in points, without its sign: '4'."""
    return DASH if delta is None else points(abs(delta), n).lstrip("+")


def percent_interval(ci: Bounds | None, n: int | None = None) -> str:
    """'62% to 81%'; a dash when there is no interval."""
    return DASH if ci is None else f"{percent(ci.low, n)} to {percent(ci.high, n)}"


def points_interval(ci: Bounds | None, n: int | None = None) -> str:
    """'−17 to 0 points'; a dash when there is no interval."""
    return DASH if ci is None else f"{points(ci.low, n)} to {points(ci.high, n)} points"


def score(value: float | None) -> str:
    """A mean score (0-1) to two decimals; a dash when there is none."""
    return DASH if value is None else f"{value:.2f}"


def score_interval(ci: Bounds | None) -> str:
    return DASH if ci is None else f"{score(ci.low)} to {score(ci.high)}"
