"""Numbers with their uncertainty: intervals, paired tests, power. Pure functions over arrays, no I/O.

Cases are the unit everywhere: a case's repeats are averaged first (its pass fraction and mean score), never
counted as independent samples, so a suite of 50 cases run 3 times has 50 observations, not 150. Comparisons are
paired by case. Distributions, tests and the bootstrap come from scipy; seeds make every interval reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import comb

CONFIDENCE = 0.95
RESAMPLES = 2000
BCA_MAX_CASES = 2000  # BCa's jackknife costs O(n²); past this many cases the percentile interval is as good
POWER = 0.80
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass
class CaseOutcomes:
    """Per-case results of one group (a version × provider of a run), repeats averaged."""

    keys: list[Hashable]
    passes: np.ndarray  # passed repeats per case
    scored: np.ndarray  # scored (not errored) repeats per case
    score: np.ndarray  # mean score over the scored repeats

    @classmethod
    def from_cells(cls, cells: Iterable[tuple[Hashable, bool | None, float | None, bool]]) -> CaseOutcomes:
        """`cells`: (case key, passed, score, errored) per cell; errored cells carry no verdict and are left out."""
        table: dict[Hashable, list[tuple[bool, float]]] = {}
        for key, passed, score, errored in cells:
            if not errored:
                table.setdefault(key, []).append((bool(passed), float(score or 0.0)))
        keys = list(table)
        passes = np.array([sum(p for p, _ in table[k]) for k in keys], dtype=float)
        scored = np.array([len(table[k]) for k in keys], dtype=float)
        score = np.array([sum(s for _, s in table[k]) / len(table[k]) for k in keys], dtype=float)
        return cls(keys, passes, scored, score)

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def pass_fraction(self) -> np.ndarray:
        return self.passes / np.maximum(self.scored, 1)

    def subset(self, keys: Sequence[Hashable]) -> CaseOutcomes:
        index = {k: i for i, k in enumerate(self.keys)}
        rows = [index[k] for k in keys]
        return CaseOutcomes(list(keys), self.passes[rows], self.scored[rows], self.score[rows])


def wilson(successes: float, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Wilson score interval of a proportion (scipy's, for whole counts; the same formula for the averaged
    pass fractions of repeated cases, which is conservative for them)."""
    if n <= 0:
        return None
    if float(successes).is_integer():
        ci = stats.binomtest(int(successes), n).proportion_ci(confidence_level=confidence, method="wilson")
        return Interval(float(ci.low), float(ci.high))
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_mean(
    values: np.ndarray, seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Interval | None:
    """Bootstrap interval of a mean over cases (scipy.stats.bootstrap, seeded): BCa, or the percentile interval
    for suites larger than BCA_MAX_CASES."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return None
    if np.all(values == values[0]):
        return Interval(float(values[0]), float(values[0]))
    method = "BCa" if values.size <= BCA_MAX_CASES else "percentile"
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method=method,
        rng=np.random.default_rng(seed),
        batch=250,
    )
    low, high = result.confidence_interval
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa degenerates on near-constant data
        result = stats.bootstrap(
            (values,),
            np.mean,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
            batch=250,
        )
        low, high = result.confidence_interval
    return Interval(float(low), float(high))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): the chance that at least one of k samples drawn from n passes."""
    return 1.0 if n - c < k else 1.0 - float(comb(n - c, k, exact=True)) / float(comb(n, k, exact=True))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: the chance that all k samples drawn from n pass (reliability, as in tau-bench)."""
    return float(comb(c, k, exact=True)) / float(comb(n, k, exact=True))


@dataclass
class GroupStats:
    cases: int
    pass_rate: float | None
    pass_ci: Interval | None
    mean_score: float | None
    score_ci: Interval | None
    pass_at: dict[int, float] = field(default_factory=dict)
    pass_hat: dict[int, float] = field(default_factory=dict)
    flaky: list[Hashable] = field(default_factory=list)


def group_stats(outcomes: CaseOutcomes, seed: int = 0) -> GroupStats:
    """Pass rate with a Wilson interval and mean score with a bootstrap interval over cases; with repeats also
    unbiased pass@k and pass^k (for every k up to the fewest repeats of a case) and the flaky cases."""
    n = outcomes.n
    if n == 0:
        return GroupStats(0, None, None, None, None)
    fractions = outcomes.pass_fraction
    result = GroupStats(
        n,
        float(fractions.mean()),
        wilson(float(fractions.sum()), n),
        float(outcomes.score.mean()),
        bootstrap_mean(outcomes.score, seed),
    )
    repeats = int(outcomes.scored.min())
    if repeats > 1:
        for k in range(1, repeats + 1):
            result.pass_at[k] = float(
                np.mean(
                    [
                        pass_at_k(int(s), int(c), k)
                        for s, c in zip(outcomes.scored, outcomes.passes, strict=True)
                    ]
                )
            )
            result.pass_hat[k] = float(
                np.mean(
                    [
                        pass_hat_k(int(s), int(c), k)
                        for s, c in zip(outcomes.scored, outcomes.passes, strict=True)
                    ]
                )
            )
    result.flaky = [
        key for key, c, s in zip(outcomes.keys, outcomes.passes, outcomes.scored, strict=True) if 0 < c < s
    ]
    return result


# --- paired comparison ---------------------------------------------------------------------------------------

SETTLE = 0.10  # the difference the verdict says how many cases would settle (10 points)


@dataclass(frozen=True)
class CaseChange:
    """One shared case: its pass fraction (over repeats) and mean score in A and in B."""

    key: Hashable
    a: float
    b: float
    score_a: float
    score_b: float

    @property
    def change(self) -> float:
        return self.b - self.a

    @property
    def direction(self) -> str:
        """improved | regressed | unchanged, by the case's pass fraction (so with repeats 1/3 -> 0 counts)."""
        return "improved" if self.b > self.a else "regressed" if self.b < self.a else "unchanged"


@dataclass
class Paired:
    """B against A on the cases both have; deltas are B − A. The headline (delta) is the mean of the per-case
    changes in `per_case`: the table and the headline are one computation."""

    cases: int
    only_a: list[Hashable]
    only_b: list[Hashable]
    rate_a: float | None
    rate_b: float | None
    delta: float | None  # pass rate
    delta_ci: Interval | None
    delta_score: float | None
    delta_score_ci: Interval | None
    p_value: float | None
    test: str
    mdd: float | None  # the smallest difference this comparison detects at 80 % power (min_detectable)
    settle_cases: int | None = None  # cases that would detect a SETTLE-point difference at 80 % power
    per_case: list[CaseChange] = field(default_factory=list)

    @property
    def improved(self) -> list[Hashable]:
        return [c.key for c in self.per_case if c.direction == "improved"]

    @property
    def regressed(self) -> list[Hashable]:
        return [c.key for c in self.per_case if c.direction == "regressed"]

    @property
    def significant(self) -> bool:
        return (
            self.p_value is not None
            and self.p_value < ALPHA
            and self.delta_ci is not None
            and not self.delta_ci.contains(0.0)
        )

    @property
    def verdict(self) -> str:
        return verdict(self)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar p-value from the discordant pairs (b: A passed and B failed; c: the reverse)."""
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * stats.binom.cdf(min(b, c), b + c, 0.5)))


def sign_flip_p(d: np.ndarray, seed: int = 0, resamples: int = 9999) -> float:
    """Paired permutation test (random sign flips of the case differences), for repeated cases."""
    if not np.any(d):
        return 1.0
    result = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def no_change_bound(n: int, confidence: float = CONFIDENCE) -> float:
    """When no case changed at all: the largest share of cases that could change while n cases show no change
    with probability (1 − confidence)/2, the Clopper–Pearson upper bound for 0 of n: 1 − ((1 − c)/2)^(1/n). Eight
    unchanged cases still allow ±37 points; 200 allow ±1.8."""
    return 1.0 - ((1.0 - confidence) / 2.0) ** (1.0 / n)


def change_interval(d: np.ndarray, seed: int, resamples: int = RESAMPLES) -> Interval | None:
    """The interval of the mean per-case change: a paired bootstrap over cases, or ± no_change_bound when every
    case is unchanged (a bootstrap would say [0, 0], which reads as certainty). None below 2 cases."""
    if d.size < 2:
        return None
    if not np.any(d):
        bound = no_change_bound(d.size)
        return Interval(-bound, bound)
    return bootstrap_mean(d, seed, resamples)


def effective_se(d: np.ndarray, interval: Interval | None) -> float:
    """The standard error the MDD and the case count use: the larger of the observed one, sd(d)/√n, and the one
    the reported interval implies (its larger half-width around the observed mean / z₁₋α/₂)."""
    z = stats.norm.ppf(1 - ALPHA / 2)
    se = float(np.std(d, ddof=1)) / math.sqrt(len(d))
    if interval is not None:
        mean = float(d.mean())
        se = max(se, max(mean - interval.low, interval.high - mean) / z)
    return se


def min_detectable(d: np.ndarray, interval: Interval | None, power: float = POWER) -> float | None:
    """The smallest true change in pass rate this comparison detects with `power` at level α:
    MDD = (z₁₋α/₂ + z_power) × SE with SE = effective_se; so MDD ≥ 1.43 × the interval's larger half-width, never
    smaller than what the interval already allows. None with fewer than 2 cases (no spread to measure)."""
    if len(d) < 2:
        return None
    return float((stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(power)) * effective_se(d, interval))


def cases_to_detect(d: np.ndarray, interval: Interval | None, detect: float = SETTLE) -> int | None:
    """Shared cases that would detect a true change of `detect` at 80 % power, at the spread of the per-case
    changes seen here (the MDD formula solved for n)."""
    if len(d) < 2:
        return None
    sd = effective_se(d, interval) * math.sqrt(len(d))
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)
    return max(2, math.ceil((z * sd / detect) ** 2))


def paired(a: CaseOutcomes, b: CaseOutcomes, seed: int = 0, resamples: int = RESAMPLES) -> Paired:
    """Match cases by key; exact McNemar on pass/fail (a sign-flip permutation test when cases repeat), paired
    bootstrap intervals for Δ pass rate and Δ mean score (resampling cases), and the minimum detectable difference."""
    keys_b = set(b.keys)
    common = [k for k in a.keys if k in keys_b]
    shared = set(common)
    only_a = [k for k in a.keys if k not in shared]
    only_b = [k for k in b.keys if k not in shared]
    if not common:
        return Paired(0, only_a, only_b, None, None, None, None, None, None, None, "none", None)
    ca, cb = a.subset(common), b.subset(common)
    fa, fb = ca.pass_fraction, cb.pass_fraction
    d, d_score = fb - fa, cb.score - ca.score
    if bool(ca.scored.max() > 1 or cb.scored.max() > 1):
        p_value, test = sign_flip_p(d, seed), "sign-flip permutation test over cases"
    else:
        regressed, improved = int(((fa == 1) & (fb == 0)).sum()), int(((fa == 0) & (fb == 1)).sum())
        p_value, test = mcnemar_exact(regressed, improved), "exact McNemar test"
    interval = change_interval(d, seed, resamples)
    per_case = [
        CaseChange(key, float(x), float(y), float(sx), float(sy))
        for key, x, y, sx, sy in zip(common, fa, fb, ca.score, cb.score, strict=True)
    ]
    return Paired(
        cases=len(common),
        only_a=only_a,
        only_b=only_b,
        rate_a=float(fa.mean()),
        rate_b=float(fb.mean()),
        delta=float(d.mean()),
        delta_ci=interval,
        delta_score=float(d_score.mean()),
        delta_score_ci=change_interval(d_score, seed + 1, resamples),
        p_value=p_value,
        test=test,
        mdd=min_detectable(d, interval),
        settle_cases=cases_to_detect(d, interval),
        per_case=per_case,
    )


def verdict(result: Paired) -> str:
    """The decision in plain words, e.g. "B is worse by 4 points; with 8 cases this cannot be told from noise
    (95 % interval −17 to 0 points); about 220 cases would settle a 10-point difference"."""
    from prompting.numbers import magnitude, points_interval

    if result.cases == 0 or result.delta is None:
        return "A and B share no case: nothing to compare"
    n = result.cases
    size = magnitude(result.delta, n)
    if size == "0":
        head = (
            "B and A pass the same share of cases"
            if result.delta == 0
            else "B and A pass about the same share"
        )
    else:
        head = f"B is {'better' if result.delta > 0 else 'worse'} by {size} points"
    if result.delta_ci is None:
        return f"{head} on {n} case: too few cases to tell anything from noise"
    ci = f"95 % interval {points_interval(result.delta_ci, n)}"
    if result.significant:
        return f"{head} ({ci}): more than noise over {n} cases"
    text = f"{head}; with {n} cases this cannot be told from noise ({ci})"
    if result.settle_cases is not None and result.settle_cases > n:
        return f"{text}; about {result.settle_cases} cases would settle a {SETTLE * 100:.0f}-point difference"
    if result.mdd is not None:
        mdd = magnitude(result.mdd, n)
        return f"{text}; a real difference of {mdd} points or more would likely (80 % power) have shown"
    return text


def regression(result: Paired, max_drop: float) -> bool:
    """The CI gate: a significant regression, i.e. the interval's upper bound of Δ lies below −max_drop."""
    return result.delta_ci is not None and result.significant and result.delta_ci.high < -max_drop


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def cases_needed(detect: float, baseline: float = 0.7, power: float = POWER, alpha: float = ALPHA) -> int:
    """Cases a suite needs to detect a pass-rate change of `detect` from `baseline` (two-sided test of two
    proportions; runs of the same cases are correlated, so a paired comparison usually needs fewer)."""
    if not 0 < detect < 1 or not 0 < baseline < 1:
        raise ValueError("detect and baseline-rate must be fractions between 0 and 1")
    other = baseline - detect if baseline - detect > 0 else baseline + detect
    if not 0 < other < 1:
        raise ValueError(f"a change of {detect:g} from {baseline:g} leaves the 0-1 range")
    pooled = (baseline + other) / 2
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (
        za * math.sqrt(2 * pooled * (1 - pooled))
        + zb * math.sqrt(baseline * (1 - baseline) + other * (1 - other))
    ) ** 2
    return math.ceil(n / detect**2)


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's κ of two raters' pass/fail verdicts on the same items (1 = perfect agreement, 0 = chance)."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    observed = float(np.mean(x == y))
    expected = float(np.mean(x) * np.mean(y) + np.mean(~x) * np.mean(~y))
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def kappa_interval(
    a: Sequence[bool], b: Sequence[bool], seed: int = 0, resamples: int = RESAMPLES
) -> Interval | None:
    """Percentile bootstrap interval of κ over the rated items (scipy's bootstrap, paired)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or (np.all(x == x[0]) and np.all(y == y[0])):
        return None

    def kappa(p, q, axis=-1):
        po = np.mean(p == q, axis=axis)
        pe = np.mean(p, axis=axis) * np.mean(q, axis=axis) + np.mean(1 - p, axis=axis) * np.mean(
            1 - q, axis=axis
        )
        return np.where(pe == 1.0, 1.0, (po - pe) / np.where(pe == 1.0, 1.0, 1.0 - pe))

    result = stats.bootstrap(
        (x, y),
        kappa,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Interval(float(low), float(high))
