"""Statistics against statsmodels' references on fixed tables, and their behaviour in seeded simulations:
interval coverage (clustered when cases repeat, against the naive count), and the regression gate's error rates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from prompting.stats import (
    CaseOutcomes,
    bootstrap_mean,
    cases_needed,
    group_stats,
    holm,
    mcnemar_exact,
    paired,
    pass_at_k,
    pass_hat_k,
    regression,
    wilson,
)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (7, 12), (50, 100), (99, 100), (5, 5)])
def test_wilson_equals_statsmodels(k, n):
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    ci = wilson(k, n)
    assert abs(ci.low - low) < 1e-9 and abs(ci.high - high) < 1e-9


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (3, 9), (10, 10), (0, 25), (17, 4), (40, 60)])
def test_exact_mcnemar_equals_statsmodels(b, c):
    table = [[30, b], [c, 25]]
    assert abs(mcnemar_exact(b, c) - mcnemar(table, exact=True).pvalue) < 1e-9


def test_holm_equals_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.001]
    expected = multipletests(p, alpha=0.05, method="holm")[1]
    assert np.allclose(holm(p), expected, atol=1e-12)


def test_pass_at_k_and_pass_hat_k():
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 3) == 1.0
    assert abs(pass_at_k(5, 2, 2) - (1 - 3 / 10)) < 1e-12  # 1 - C(3,2)/C(5,2)
    assert abs(pass_hat_k(5, 3, 2) - 3 / 10) < 1e-12  # C(3,2)/C(5,2)


def test_repeats_are_averaged_per_case_and_flaky_cases_listed():
    cells = [
        ("a", True, 1.0, False),
        ("a", True, 1.0, False),
        ("a", False, 0.0, False),
        ("b", True, 1.0, False),
        ("b", True, 1.0, False),
        ("b", True, 1.0, False),
        ("c", False, 0.0, False),
        ("c", False, 0.0, True),
        ("c", False, 0.0, False),
    ]
    stats = group_stats(CaseOutcomes.from_cells(cells))
    assert stats.cases == 3 and abs(stats.pass_rate - (2 / 3 + 1 + 0) / 3) < 1e-12
    assert stats.flaky == ["a"]
    assert set(stats.pass_at) == {1, 2}  # case c has 2 scored repeats (one errored)
    assert abs(stats.pass_at[2] - (pass_at_k(3, 2, 2) + 1 + 0) / 3) < 1e-12


def test_bootstrap_is_seeded():
    values = np.random.default_rng(3).random(40)
    assert bootstrap_mean(values, seed=7) == bootstrap_mean(values, seed=7)
    assert bootstrap_mean(values, seed=7) != bootstrap_mean(values, seed=8)


def test_the_verdict_reads_like_a_decision():
    a = CaseOutcomes.from_cells([(i, i % 10 >= 5, float(i % 10 >= 5), False) for i in range(200)])
    b = CaseOutcomes.from_cells([(i, i % 10 >= 2, float(i % 10 >= 2), False) for i in range(200)])
    better = paired(a, b)
    assert better.significant and better.test == "exact McNemar test"
    assert better.verdict.startswith("B is better by 30 points (95 % interval +")
    assert better.verdict.endswith("): more than noise over 200 cases")
    same = paired(a, a)
    assert same.verdict.startswith(
        "B and A pass the same share of cases; with 200 cases this cannot be told from"
    )
    assert "(95 % interval −2 to +2 points)" in same.verdict  # no case changed: not [0, 0]
    assert same.verdict.endswith("a real difference of 3 points or more would likely (80 % power) have shown")
    assert paired(a, CaseOutcomes.from_cells([("x", True, 1.0, False)])).cases == 0


def eight_cases(late_b: list[bool]) -> tuple[CaseOutcomes, CaseOutcomes]:
    """The issue's fixture: 8 cases x 3 repeats, all passing except "late", which passes 1 of 3 in A."""

    def cells(late):
        rows = [(k, True, 1.0, False) for k in "abcdefg" for _ in range(3)]
        return rows + [("late", p, float(p), False) for p in late]

    return CaseOutcomes.from_cells(cells([True, False, False])), CaseOutcomes.from_cells(cells(late_b))


def test_a_case_whose_rate_changed_is_marked_and_the_rows_sum_to_the_headline():
    a, b = eight_cases([False, False, False])
    result = paired(a, b)
    assert result.regressed == ["late"] and result.improved == []
    [late] = [c for c in result.per_case if c.key == "late"]
    assert (late.a, late.b, late.direction) == (pytest.approx(1 / 3), 0.0, "regressed")
    assert sum(c.change for c in result.per_case) / result.cases == pytest.approx(result.delta)
    assert result.verdict.startswith("B is worse by 4 points; with 8 cases this cannot be told from noise")
    assert "cases would settle a 10-point difference" in result.verdict
    assert result.mdd >= bound_from_interval(result) - 1e-12


def bound_from_interval(result) -> float:
    """What the interval itself allows, scaled to 80 % power: (z.975 + z.8) / z.975 x its larger half-width."""
    from scipy.stats import norm

    half = max(result.delta - result.delta_ci.low, result.delta_ci.high - result.delta)
    return (norm.ppf(0.975) + norm.ppf(0.8)) / norm.ppf(0.975) * half


def test_no_change_is_not_certainty():
    a, _ = eight_cases([])
    result = paired(a, a)
    assert result.delta == 0 and result.delta_ci.low < -0.3 and result.delta_ci.high > 0.3
    assert result.mdd >= bound_from_interval(result) - 1e-12 > result.delta_ci.high


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=40),
    st.integers(0, 5),
)
def test_the_mdd_is_never_smaller_than_the_interval_allows(pairs, seed):
    def side(pick):
        return CaseOutcomes.from_cells(
            [(i, r < pick(p), float(r < pick(p)), False) for i, p in enumerate(pairs) for r in range(3)]
        )

    result = paired(side(lambda p: p[0]), side(lambda p: p[1]), seed=seed, resamples=300)
    assert result.mdd is not None and result.mdd >= bound_from_interval(result) - 1e-12
    assert sum(c.change for c in result.per_case) / result.cases == pytest.approx(result.delta)
    assert len(result.improved) + len(result.regressed) == sum(c.a != c.b for c in result.per_case)


def test_cases_present_on_one_side_are_reported():
    a = CaseOutcomes.from_cells([(k, True, 1.0, False) for k in "abcd"])
    b = CaseOutcomes.from_cells([(k, True, 1.0, False) for k in "cdef"])
    result = paired(a, b)
    assert (result.cases, result.only_a, result.only_b) == (2, ["a", "b"], ["e", "f"])


def test_cases_needed():
    assert cases_needed(0.10, 0.7) == 356 and cases_needed(0.20, 0.7) < 100
    with pytest.raises(ValueError, match="between 0 and 1"):
        cases_needed(1.5)


# --- simulations ------------------------------------------------------------------------------------------


def population(rng, n, shift=0.0, rewrite=0.4):
    """Per-case chances that A and B pass. Most cases are easy or hard (Beta(0.3, 0.2), mean 0.6); the change B
    makes rewrites a share of them (a fresh chance) and moves all by `shift`, so cases differ in how B does on
    them: the case-level structure that makes repeats of one case correlated. With rewrite=0, B is A with each
    chance scaled so that the mean moves by `shift` exactly (shift=0: the same configuration run again)."""
    p = rng.beta(0.3, 0.2, n)
    if rewrite == 0:
        return p, np.clip(p * (1 + shift / 0.6), 0, 1)
    rewritten = rng.random(n) < rewrite
    return p, np.clip(np.where(rewritten, rng.beta(0.3, 0.2, n), p) + shift, 0, 1)


def true_delta(shift: float) -> float:
    p, q = population(np.random.default_rng(12345), 2_000_000, shift)
    return float((q - p).mean())


def simulate(seed: int, shift: float, n: int = 100, repeats: int = 1, rewrite: float = 0.4):
    rng = np.random.default_rng(seed)
    p, q = population(rng, n, shift, rewrite)
    draws_a, draws_b = rng.random((n, repeats)) < p[:, None], rng.random((n, repeats)) < q[:, None]

    def cells(draws):
        return [(i, bool(x), float(x), False) for i in range(n) for x in draws[i]]

    return draws_a, draws_b, CaseOutcomes.from_cells(cells(draws_a)), CaseOutcomes.from_cells(cells(draws_b))


@pytest.mark.slow
def test_paired_intervals_cover_the_true_difference():
    truth = true_delta(-0.10)
    covered = sum(
        paired(*simulate(seed, -0.10)[2:], seed=seed).delta_ci.contains(truth) for seed in range(1000)
    )
    print(f"coverage of the 95 % interval over 1000 suites of 100 cases: {covered / 10:.1f} %")
    assert 930 <= covered <= 970


@pytest.mark.slow
def test_repeats_need_the_clustered_interval():
    truth = true_delta(-0.10)
    clustered = naive = 0
    for seed in range(500):  # 500 suites: ±1 point of coverage is one standard error (1000 took 74 s)
        draws_a, draws_b, a, b = simulate(seed, -0.10, repeats=3)
        clustered += paired(a, b, seed=seed).delta_ci.contains(truth)
        cell_level = (draws_b.astype(float) - draws_a.astype(float)).ravel()  # repeats as if independent
        naive += bootstrap_mean(cell_level, seed=seed).contains(truth)
    print(f"repeats = 3: clustered coverage {clustered / 5:.1f} %, naive {naive / 5:.1f} %")
    assert 465 <= clustered <= 485 and naive < 465


@pytest.mark.slow
def test_the_gate_rarely_fails_on_noise_and_catches_a_real_drop():
    noise = sum(
        regression(paired(*simulate(10_000 + s, 0.0, rewrite=0)[2:], seed=s), 0.0) for s in range(200)
    )
    drop = sum(
        regression(paired(*simulate(20_000 + s, -0.15, rewrite=0)[2:], seed=s), 0.0) for s in range(200)
    )
    print(f"gate: A-vs-A fails {noise / 2:.1f} % of 200; a 15-point drop caught in {drop / 2:.1f} %")
    assert noise <= 10 and drop >= 160
