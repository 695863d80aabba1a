"""Scoring of the architecture search on hand-made (p, i, e) tables with answers worked out by hand."""

import math
import os.path

import pytest

from bortzoo.arch import PRESETS, Arch, search_space
from bortzoo.errors import BortzooError
from bortzoo.extract.scoring import (
    Measures,
    describe_score,
    maximum_point,
    pareto_front,
    partition,
    rank,
    score_function,
    step_budget,
    w_coefficient,
)

NAN = float("nan")

# The maximum point T of the W-coefficient tables below.
T = Measures(params=100, flops=1000, latency_ms=8.0, error=2.0)


# -- Measures ---------------------------------------------------------------------------------------


def test_measures_cost_picks_flops_or_latency():
    m = Measures(params=10, flops=500, latency_ms=3.5, error=1.0)
    assert m.cost(use_latency=False) == 500.0
    assert m.cost(use_latency=True) == 3.5


def test_measures_cost_without_latency_names_the_fields():
    m = Measures(params=10, flops=500)
    with pytest.raises(BortzooError, match=r"latency_ms=None") as err:
        m.cost(use_latency=True)
    assert "params=10" in str(err.value) and "use_latency=False" in str(err.value)


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(params=0, flops=1), "params"),
        (dict(params=True, flops=1), "params"),
        (dict(params=1.5, flops=1), "params"),
        (dict(params=1, flops=-3), "flops"),
        (dict(params=1, flops=1, error=-0.5), "error"),
        (dict(params=1, flops=1, latency_ms="fast"), "latency_ms"),
    ],
)
def test_measures_reject_bad_values(kwargs, bad):
    with pytest.raises(BortzooError, match=rf"Measures\.{bad} must be") as err:
        Measures(**kwargs)
    assert repr(kwargs[bad]) in str(err.value)


def test_measures_accept_nan_error_for_a_diverged_run():
    assert math.isnan(Measures(params=1, flops=1, error=NAN).error)


# -- Pareto front ------------------------------------------------------------------------------------


def test_pareto_front_on_a_six_point_table():
    points = [
        (1, 5, 5),  # 0: smallest p -> nobody is <= in p          -> kept
        (2, 2, 2),  # 1: beaten by nobody                          -> kept
        (2, 2, 2),  # 2: duplicate of 1: <= everywhere, < nowhere  -> kept (both)
        (2, 2, 3),  # 3: equal to 1 in p and i, worse only in e    -> dominated by 1
        (5, 1, 9),  # 4: smallest i                                -> kept
        (6, 6, 6),  # 5: worse than 1 in every coordinate          -> dominated
    ]
    assert pareto_front(points) == [True, True, True, False, True, False]


def test_pareto_front_nan_counts_as_worst_and_edge_cases():
    # (1, 5, NaN) is read as (1, 5, inf): (1, 5, 5) is <= everywhere and < in e -> dominated.
    assert pareto_front([(1, 5, 5), (1, 5, NAN)]) == [True, False]
    assert pareto_front([]) == []
    assert pareto_front([(3, 3)]) == [True]
    with pytest.raises(BortzooError, match=r"\[2, 3\]"):
        pareto_front([(1, 2), (1, 2, 3)])


# -- W-coefficient -----------------------------------------------------------------------------------


def test_w_coefficient_exact_values():
    c = Measures(params=50, flops=250, latency_ms=4.0, error=3.0)
    # FLOPs mode: (50/100)^1 · (250/1000)^1 · (3/2)^1 = 0.5 · 0.25 · 1.5 = 0.1875
    assert w_coefficient(c, T) == pytest.approx(0.1875, rel=1e-12)
    # latency mode: (50/100) · (4/8) · (3/2) = 0.5 · 0.5 · 1.5 = 0.375
    assert w_coefficient(c, T, use_latency=True) == pytest.approx(0.375, rel=1e-12)
    # weights (0, 0, 1): only e/e_T = 3/2 = 1.5 is left, in either cost mode
    assert w_coefficient(c, T, weights=(0, 0, 1)) == pytest.approx(1.5, rel=1e-12)
    assert w_coefficient(c, T, weights=(0, 0, 1), use_latency=True) == pytest.approx(1.5, rel=1e-12)
    # weights (2, 1, 0.5) with e = 8: (0.5)^2 · (0.25)^1 · (8/2)^0.5 = 0.25 · 0.25 · 2 = 0.125
    c8 = Measures(params=50, flops=250, error=8.0)
    assert w_coefficient(c8, T, weights=(2, 1, 0.5)) == pytest.approx(0.125, rel=1e-12)
    # T against itself: 1 · 1 · 1 = 1
    assert w_coefficient(T, T) == 1.0


def test_w_coefficient_equal_weights_trade_size_for_error():
    # a 2x smaller model with a 2x higher error and the same FLOPs: 0.5 · 1 · 2 = 1 (= T)
    c = Measures(params=50, flops=1000, error=4.0)
    assert w_coefficient(c, T) == pytest.approx(1.0, rel=1e-12)


def test_w_coefficient_nan_error_gives_nan_unless_its_weight_is_zero():
    c = Measures(params=50, flops=250, error=NAN)
    assert math.isnan(w_coefficient(c, T))
    # (50/100)^1 · (250/1000)^1 · NaN^0 = 0.5 · 0.25 · 1 = 0.125
    assert w_coefficient(c, T, weights=(1, 1, 0)) == pytest.approx(0.125, rel=1e-12)


@pytest.mark.parametrize("weights", [(1, 1), (1, -1, 1), (1, NAN, 1), (1, math.inf, 1), "abc", (True, 1, 1), None])
def test_w_coefficient_rejects_bad_weights(weights):
    c = Measures(params=50, flops=250, error=3.0)
    with pytest.raises(BortzooError, match=r"weights must be 3 finite numbers >= 0") as err:
        w_coefficient(c, T, weights=weights)
    assert repr(weights) in str(err.value)


def test_w_coefficient_missing_error_names_the_candidate_fields():
    c = Measures(params=50, flops=250)
    with pytest.raises(BortzooError, match=r"candidate Measures\(params=50, flops=250, latency_ms=None, error=None\)"):
        w_coefficient(c, T)
    with pytest.raises(BortzooError, match=r"reference Measures\(params=100, flops=1000, latency_ms=None, error=None\)"):
        w_coefficient(Measures(params=50, flops=250, error=1.0), Measures(params=100, flops=1000))


def test_w_coefficient_missing_latency_in_latency_mode():
    c = Measures(params=50, flops=250, error=3.0)
    with pytest.raises(BortzooError, match=r"latency_ms=None"):
        w_coefficient(c, T, use_latency=True)


@pytest.mark.parametrize(
    "reference, use_latency, bad",
    [
        (Measures(params=100, flops=1000, error=0.0), False, "error 0.0"),
        (Measures(params=100, flops=1000, error=NAN), False, "error nan"),
        (Measures(params=100, flops=1000, latency_ms=0.0, error=2.0), True, "cost 0.0"),
    ],
)
def test_w_coefficient_reference_must_be_positive(reference, use_latency, bad):
    c = Measures(params=50, flops=250, latency_ms=1.0, error=3.0)
    with pytest.raises(BortzooError, match=rf"{bad}; it must be a finite number > 0"):
        w_coefficient(c, reference, use_latency=use_latency)


def test_w_coefficient_rejects_non_measures():
    with pytest.raises(BortzooError, match=r"candidate must be a Measures, got tuple"):
        w_coefficient((50, 250, 3.0), T)


def test_describe_score():
    assert describe_score((1.0, 1.0, 1.0), False, "<12,16,1024,3072>") == (
        "W = (p/p_T)^1 · (FLOPs/FLOPs_T)^1 · (e/e_T)^1, lower is better; T = <12,16,1024,3072>"
    )
    assert describe_score((0.5, 2, 1), True, "<12,16,1024,3072>") == (
        "W = (p/p_T)^0.5 · (latency/latency_T)^2 · (e/e_T)^1, lower is better; T = <12,16,1024,3072>"
    )
    assert describe_score().endswith("T = the maximum point (largest candidate)")
    with pytest.raises(BortzooError, match=r"\(1, 2\)"):
        describe_score((1, 2))


# -- score_function ----------------------------------------------------------------------------------


def test_score_function_default_and_dotted_paths():
    assert score_function("w_coefficient") is w_coefficient
    assert score_function(" w_coefficient ") is w_coefficient
    assert score_function("bortzoo.extract.scoring.w_coefficient") is w_coefficient
    assert score_function("bortzoo.extract.scoring:w_coefficient") is w_coefficient
    assert score_function("math.hypot") is math.hypot
    assert score_function("math:hypot") is math.hypot
    assert score_function("os.path.join") is os.path.join  # module os.path, function join
    assert score_function("os:path.join") is os.path.join  # module os, attribute path path.join


@pytest.mark.parametrize(
    "name, why",
    [
        ("nope.nothing", r"cannot import module 'nope'"),
        ("math.pi", r"is a float, not a function"),
        ("math.nothing_here", r"'math' has no attribute 'nothing_here'"),
        ("math:", r"unknown score function"),
        ("hypot", r"unknown score function"),
        ("a:b:c", r"unknown score function"),
        ("", r"is not a name"),
        (42, r"is not a name"),
    ],
)
def test_score_function_errors_name_the_value_and_valid_forms(name, why):
    with pytest.raises(BortzooError, match=why) as err:
        score_function(name)
    message = str(err.value)
    assert repr(name) in message
    assert "'w_coefficient'" in message and "'mypackage.scores:my_score'" in message


def test_a_resolved_score_is_called_like_the_default():
    fn = score_function("bortzoo.extract.scoring:w_coefficient")
    c = Measures(params=50, flops=250, error=3.0)
    # 0.5 · 0.25 · 1.5 = 0.1875
    assert fn(c, T, weights=(1, 1, 1), use_latency=False) == pytest.approx(0.1875, rel=1e-12)


# -- rank --------------------------------------------------------------------------------------------


def test_rank_with_ties_and_nan():
    scores = [0.5, 0.2, NAN, 0.2, 0.1, 0.2, NAN]
    ties = [(9, 9), (300, 10), (100, 1), (200, 50), (9, 9), (200, 40), (100, 1)]
    # best score 0.1 -> 4; the three 0.2 by (params, flops): 5 (200,40) < 3 (200,50) < 1 (300,10);
    # then 0.5 -> 0; NaN last, tied tie-breakers (100,1) -> by index: 2, 6
    assert rank(scores, ties) == [4, 5, 3, 1, 0, 2, 6]
    # without tie-breakers the 0.2 ties go by index: 1, 3, 5
    assert rank(scores) == [4, 1, 3, 5, 0, 2, 6]
    assert rank([]) == []


def test_rank_nan_in_tie_breakers_goes_last_among_ties():
    # equal scores; tie-breakers (NaN,) vs (5,) vs (1,): 2 (1) < 1 (5) < 0 (NaN)
    assert rank([1.0, 1.0, 1.0], [(NAN,), (5,), (1,)]) == [2, 1, 0]


def test_rank_tie_breakers_must_match_scores():
    with pytest.raises(BortzooError, match=r"tie_breakers has 1 entries but there are 2 scores"):
        rank([1.0, 2.0], [(1, 1)])


# -- maximum point -----------------------------------------------------------------------------------


def test_maximum_point_of_the_search_space():
    space = search_space()
    widest = [a for a in space if (a.depth, a.hidden, a.intermediate) == (12, 1024, 3072)]
    # H = 1024 is not divisible by 12 heads: A in {4, 8, 16}
    assert [a.heads for a in widest] == [4, 8, 16]
    # heads change neither the parameter count nor the FLOPs: a three-way tie broken by heads
    assert len({a.total_params() for a in widest}) == 1
    assert len({a.encoder_flops(128) for a in widest}) == 1
    assert all(a.total_params() < widest[0].total_params() for a in space if a not in widest)
    index = maximum_point(space)
    assert index == 299  # the grid's last candidate (D, A, H, I all at their largest)
    assert space[index] == Arch(12, 16, 1024, 3072)
    # not an accident of order: reversed, ⟨12,4,...⟩ and ⟨12,8,...⟩ come first and still lose
    assert space[::-1][maximum_point(space[::-1])] == Arch(12, 16, 1024, 3072)


def test_maximum_point_of_presets_and_ties():
    # roberta-large and bert-large share ⟨24,16,1024,4096⟩; RoBERTa's 50,265-token vocabulary is bigger
    names = list(PRESETS)
    assert names[maximum_point(list(PRESETS.values()))] == "roberta-large"
    # identical architectures: the first wins
    assert maximum_point([Arch(2, 4, 512, 256), Arch(2, 4, 512, 256)]) == 0
    with pytest.raises(BortzooError, match=r"empty list"):
        maximum_point([])


# -- partition ---------------------------------------------------------------------------------------

# (params, flops) table; the walk order by (params, flops, index) is 0, 3, 2, 4, 5, 1
TABLE = [
    Measures(params=100, flops=1000),  # 0
    Measures(params=300, flops=3000),  # 1
    Measures(params=105, flops=1200),  # 2
    Measures(params=100, flops=1000),  # 3: exact tie with 0
    Measures(params=110, flops=1050),  # 4
    Measures(params=118, flops=1180),  # 5
]


def test_partition_epsilon_zero_groups_only_exact_ties():
    assert partition(TABLE, 0) == [[0, 3], [2], [4], [5], [1]]


def test_partition_epsilon_one_tenth():
    # rep 0 (100, 1000), bounds (110, 1100): 3 joins; 2 has flops 1200 > 1100 -> new group, rep 2
    # rep 2 (105, 1200), bounds (115.5, 1320): 4 (110, 1050) joins (the current group is 2's, not 0's)
    # 5 (118, 1180): 118 > 115.5 -> new group (it would be within 10% of 4, but the rep is 2: no drift)
    # 1 (300, 3000): 300 > 1.1·118 = 129.8 -> new group
    assert partition(TABLE, 0.1) == [[0, 3], [2, 4], [5], [1]]


def test_partition_bound_is_inclusive():
    # 110 <= (1 + 0.1)·100 and 1100 <= (1 + 0.1)·1000: on the bound still joins
    assert partition([Measures(100, 1000), Measures(110, 1100)], 0.1) == [[0, 1]]


def test_partition_large_epsilon():
    # ε = 1: bounds (200, 2000) from rep 0; only 1 (300, 3000) falls outside
    assert partition(TABLE, 1) == [[0, 3, 2, 4, 5], [1]]
    # ε = 10: bounds (1100, 11000) from rep 0 hold everyone -> one group, rep 0
    assert partition(TABLE, 10) == [[0, 3, 2, 4, 5, 1]]
    assert partition([], 0.1) == []


@pytest.mark.parametrize("epsilon", [-0.1, NAN, math.inf, "0.1"])
def test_partition_rejects_bad_epsilon(epsilon):
    with pytest.raises(BortzooError, match=r"epsilon must be a finite number >= 0") as err:
        partition(TABLE, epsilon)
    assert repr(epsilon) in str(err.value)


def test_partition_rejects_non_measures():
    with pytest.raises(BortzooError, match=r"measures\[1\] must be a Measures"):
        partition([Measures(1, 1), (1, 1)], 0.1)


# -- step budget -------------------------------------------------------------------------------------


def test_step_budget_values_and_clamps():
    # 100 / (0.1 · 1^1.5) = 1000
    assert step_budget(0.1, 1.0, 100, 10, 5000) == 1000
    # 100 / (0.3 · 1) = 333.33… -> 334
    assert step_budget(0.3, 1.0, 100, 10, 5000) == 334
    # 0.64^1.5 = 0.512; 100 / (0.5 · 0.512) = 100 / 0.256 = 390.625 -> 391
    assert step_budget(0.5, 0.64, 100, 10, 5000) == 391
    # 0.25^1.5 = 0.125; 100 / (0.1 · 0.125) = 8000 -> clamped to max 5000
    assert step_budget(0.1, 0.25, 100, 10, 5000) == 5000
    # 100 / (1 · 1) = 100 -> clamped up to min 200
    assert step_budget(1.0, 1.0, 100, 200, 5000) == 200
    # ε = 0 (exhaustive) -> max_steps
    assert step_budget(0, 0.5, 100, 10, 5000) == 5000
    # tiny ε: the quotient overflows past max_steps without error
    assert step_budget(1e-300, 1e-10, 1e300, 10, 5000) == 5000


@pytest.mark.parametrize(
    "args, message",
    [
        ((-1, 1.0, 100, 10, 100), r"epsilon must be a finite number >= 0.*-1"),
        ((0.1, 0, 100, 10, 100), r"s must be a number in \(0, 1\].*got 0"),
        ((0.1, 1.5, 100, 10, 100), r"s must be a number in \(0, 1\].*got 1.5"),
        ((0.1, 1.0, 0, 10, 100), r"scale must be a finite number > 0.*got 0"),
        ((0.1, 1.0, -5, 10, 100), r"scale must be a finite number > 0.*got -5"),
        ((0.1, 1.0, 100, 0, 100), r"min_steps=0, max_steps=100"),
        ((0.1, 1.0, 100, 200, 100), r"min_steps=200, max_steps=100"),
        ((0.1, 1.0, 100, 1.5, 100), r"min_steps must be an integer >= 1, got 1.5"),
        ((0.1, 1.0, 100, 10, True), r"max_steps must be an integer >= 1, got True"),
    ],
)
def test_step_budget_errors(args, message):
    with pytest.raises(BortzooError, match=message):
        step_budget(*args)
