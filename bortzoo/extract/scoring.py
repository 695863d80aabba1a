"""How the architecture search compares candidates: the W-coefficient, Pareto flags, ranking,
the maximum point T, the FPTAS ε-partition and the per-candidate step budget.

Pure Python on purpose (no torch): scoring 300 candidates must be cheap, testable with
hand-made tables, and usable from a report without a GPU stack.

Each candidate ξ is measured on three things, all minimised:
  p(ξ)  parameter count (exact, `Arch.total_params()`),
  i(ξ)  inference cost (counted FLOPs, or a measured latency in ms),
  e(ξ)  surrogate error (validation distillation loss of a short training run).
The papers (arXiv 2010.10499, 2010.08512) compare candidates with the "maximum point" T, the
largest architecture of the space, through a "W-coefficient" whose exact formula is not
published; ours (`w_coefficient`) is a documented default that `score_function` can replace.
"""

from __future__ import annotations

import importlib
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from bortzoo.arch import Arch
from bortzoo.errors import BortzooError

DEFAULT_SCORE = "w_coefficient"
# T is chosen by FLOPs at this length: the papers' pre-training and benchmark sequence length.
MAXIMUM_POINT_SEQ_LEN = 128


# -- measures ------------------------------------------------------------------------------------


def _is_real(value: object) -> bool:
    """A real number that is not a bool (True would otherwise pass as 1)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Measures:
    """What the search knows about one candidate: size, cost and (once trained) error.

    `latency_ms` and `error` may be NaN: a timing that failed or a surrogate run that diverged
    scores NaN and so ranks last, instead of aborting the whole search.
    """

    params: int
    flops: int
    latency_ms: Optional[float] = None
    error: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("params", "flops"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise BortzooError(f"Measures.{name} must be a positive integer, got {value!r}")
        for name in ("latency_ms", "error"):
            value = getattr(self, name)
            if value is None:
                continue
            if not _is_real(value) or value < 0:  # NaN < 0 is False: NaN passes on purpose
                raise BortzooError(f"Measures.{name} must be None, NaN or a number >= 0, got {value!r}")

    def cost(self, use_latency: bool) -> float:
        """The inference cost i(ξ): measured latency if `use_latency`, counted FLOPs otherwise.

        Latency is what a deployment pays but is noisy and machine-specific; FLOPs are exact and
        reproducible, hence the default elsewhere.
        """
        if use_latency:
            if self.latency_ms is None:
                raise BortzooError(
                    f"{self!r} has no latency_ms; measure latency for every candidate "
                    f"or score with FLOPs (use_latency=False)"
                )
            return float(self.latency_ms)
        return float(self.flops)


# -- the W-coefficient ----------------------------------------------------------------------------


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    """Three finite exponents >= 0: a negative one would reward a larger model / cost / error."""
    ok = (
        not isinstance(weights, (str, bytes))
        and isinstance(weights, Sequence)
        and len(weights) == 3
        and all(_is_real(w) and math.isfinite(w) and w >= 0 for w in weights)
    )
    if not ok:
        raise BortzooError(
            f"weights must be 3 finite numbers >= 0 (w_params, w_cost, w_error), "
            f"e.g. (1.0, 1.0, 1.0); got {weights!r}"
        )
    return float(weights[0]), float(weights[1]), float(weights[2])


def _need_error(measures: Measures, role: str) -> float:
    if measures.error is None:
        raise BortzooError(
            f"the {role} {measures!r} has no error; the W-coefficient needs the surrogate error "
            f"(validation distillation loss) of every candidate and of the maximum point T"
        )
    return float(measures.error)


def w_coefficient(
    candidate: Measures,
    reference: Measures,
    weights: Sequence[float] = (1.0, 1.0, 1.0),
    use_latency: bool = False,
) -> float:
    """W(ξ) = (p(ξ)/p(T))^w_p · (i(ξ)/i(T))^w_i · (e(ξ)/e(T))^w_e, lower is better (T the maximum point).

    Why this form: dividing by T makes each factor scale-free (parameters, FLOPs and a loss have
    incomparable units), and a weighted geometric combination trades relative changes, so with
    equal weights a 2x smaller model exactly pays for a 2x higher error (W unchanged), whatever
    the absolute sizes. T itself scores 1. A weight of 0 drops its factor (weights (0, 0, 1)
    reduce W to e/e_T); larger weights make that factor count more. i is FLOPs, or latency in
    ms when `use_latency`. A NaN candidate error or latency (a diverged run) gives NaN, which
    `rank` puts last. The papers' formula is unpublished: this is a documented, replaceable
    default (see `score_function`).
    """
    w_p, w_i, w_e = _check_weights(weights)
    for role, value in (("candidate", candidate), ("reference", reference)):
        if not isinstance(value, Measures):
            raise BortzooError(f"the {role} must be a Measures, got {type(value).__name__} {value!r}")
    ref_error = _need_error(reference, "reference")
    cand_error = _need_error(candidate, "candidate")
    ref_cost = reference.cost(use_latency)
    cand_cost = candidate.cost(use_latency)
    for name, value in (("cost", ref_cost), ("error", ref_error)):
        if not (math.isfinite(value) and value > 0):
            raise BortzooError(
                f"the reference (maximum point T) {reference!r} has {name} {value!r}; "
                f"it must be a finite number > 0 since every candidate is divided by it"
            )
    ratios = (candidate.params / reference.params, cand_cost / ref_cost, cand_error / ref_error)
    # math.pow(x, 0.0) is 1.0 even for NaN/inf: a weight of 0 truly ignores its coordinate.
    return math.prod(math.pow(r, w) for r, w in zip(ratios, (w_p, w_i, w_e)))


def describe_score(
    weights: Sequence[float] = (1.0, 1.0, 1.0),
    use_latency: bool = False,
    reference_name: Optional[str] = None,
) -> str:
    """The default score as one line of text, so a report or README states exactly what was ranked.

    e.g. "W = (p/p_T)^1 · (FLOPs/FLOPs_T)^1 · (e/e_T)^1, lower is better; T = <12,16,1024,3072>".
    """
    w_p, w_i, w_e = _check_weights(weights)
    cost = "latency" if use_latency else "FLOPs"
    where = reference_name if reference_name else "the maximum point (largest candidate)"
    return (
        f"W = (p/p_T)^{w_p:g} · ({cost}/{cost}_T)^{w_i:g} · (e/e_T)^{w_e:g}, "
        f"lower is better; T = {where}"
    )


def score_function(name: str) -> Callable[..., float]:
    """'w_coefficient' (the default) or a dotted path 'package.module.function' /
    'package.module:function' to any function with w_coefficient's signature, called as
    fn(candidate, reference, weights=..., use_latency=...) and returning a float, lower better.

    Why a path and not a registry: the W-coefficient of the papers is unpublished, so anyone
    reproducing them must be able to swap in their own without editing this package.
    BortzooError naming the value and the valid forms otherwise.
    """
    forms = (
        f"use {DEFAULT_SCORE!r} or a dotted path to a function such as "
        f"'mypackage.scores.my_score' or 'mypackage.scores:my_score'"
    )
    if not isinstance(name, str) or not name.strip():
        raise BortzooError(f"score function {name!r} is not a name; {forms}")
    text = name.strip()
    if text == DEFAULT_SCORE:
        return w_coefficient
    if ":" in text:
        module_name, _, attr_path = text.partition(":")
    else:
        module_name, _, attr_path = text.rpartition(".")
    if not module_name or not attr_path or ":" in attr_path:
        raise BortzooError(f"unknown score function {name!r}; {forms}")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as err:
        raise BortzooError(f"score function {name!r}: cannot import module {module_name!r} ({err}); {forms}") from None
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise BortzooError(f"score function {name!r}: {module_name!r} has no attribute {attr_path!r}; {forms}")
        target = getattr(target, part)
    if not callable(target):
        raise BortzooError(
            f"score function {name!r} is a {type(target).__name__}, not a function; {forms}"
        )
    return target  # type: ignore[return-value]


# -- comparing many candidates ---------------------------------------------------------------------


def _order_value(x: float) -> tuple[int, float]:
    """Sort key that puts NaN after every number (NaN compares False both ways and breaks sorts)."""
    x = float(x)
    return (1, 0.0) if math.isnan(x) else (0, x)


def pareto_front(points: Sequence[Sequence[float]]) -> list[bool]:
    """Non-dominated flags, all coordinates minimised. A point is dominated if another is <= in
    every coordinate and < in one. Identical points are both kept.

    Why: the W-coefficient collapses (p, i, e) to one number with chosen weights; the front
    shows every candidate that some weighting could prefer. NaN counts as worse than any number
    (a diverged run), so it never keeps a point on the front by failing comparisons.
    O(n²·d), fine for the 300-candidate space.
    """
    rows = [tuple(math.inf if math.isnan(float(v)) else float(v) for v in p) for p in points]
    if rows and len({len(r) for r in rows}) != 1:
        raise BortzooError(f"all points need the same number of coordinates, got lengths {sorted({len(r) for r in rows})}")
    flags = []
    for i, p in enumerate(rows):
        dominated = any(
            j != i and all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
            for j, q in enumerate(rows)
        )
        flags.append(not dominated)
    return flags


def rank(scores: Sequence[float], tie_breakers: Optional[Sequence[Sequence[float]]] = None) -> list[int]:
    """Indices best-first by score, ties broken by the tie-breaker tuples (e.g. (params, flops)),
    then by index. NaN scores last.

    Why tie-breakers: with ε-partitioning members inherit their representative's error, so equal
    scores are common; preferring the smaller model among equals is the search's intent, and
    the final index tie-break makes the order reproducible.
    """
    scores = list(scores)
    if tie_breakers is not None:
        tie_breakers = list(tie_breakers)
        if len(tie_breakers) != len(scores):
            raise BortzooError(
                f"tie_breakers has {len(tie_breakers)} entries but there are {len(scores)} scores; "
                f"give one tuple per score or None"
            )

    def key(i: int) -> tuple:
        ties = () if tie_breakers is None else tuple(_order_value(v) for v in tie_breakers[i])
        return (_order_value(scores[i]), ties, i)

    return sorted(range(len(scores)), key=key)


def maximum_point(archs: Sequence[Arch]) -> int:
    """Index of T: most parameters, then most FLOPs at 128 tokens, then most heads (deterministic).

    Why this order: T is the papers' "largest architecture", the yardstick every candidate is
    divided by; size is the primary notion, FLOPs next. Heads change neither, so they break the
    remaining tie (the widest attention); if still tied, the first index wins.
    """
    archs = list(archs)
    if not archs:
        raise BortzooError("cannot pick the maximum point T of an empty list of architectures; give at least one Arch")

    def key(i: int) -> tuple:
        a = archs[i]
        return (a.total_params(), a.encoder_flops(MAXIMUM_POINT_SEQ_LEN), a.heads, -i)

    return max(range(len(archs)), key=key)


# -- the FPTAS -------------------------------------------------------------------------------------


def _check_epsilon(epsilon: float) -> float:
    if not (_is_real(epsilon) and math.isfinite(epsilon) and epsilon >= 0):
        raise BortzooError(
            f"epsilon must be a finite number >= 0 (0 = exhaustive, e.g. 0.1 groups candidates "
            f"within 10% in params and FLOPs); got {epsilon!r}"
        )
    return float(epsilon)


def partition(measures: Sequence[Measures], epsilon: float) -> list[list[int]]:
    """ε-partitioning (FPTAS): sort candidate indices by (params, flops, index); walk in that order;
    a candidate joins the current group while params <= (1+ε)·params_rep AND flops <= (1+ε)·flops_rep,
    where rep is the group's FIRST (smallest) member, else it starts a new group. Returns groups
    (lists of original indices, rep first). ε = 0 groups only exact (params, flops) ties.
    Only representatives are trained; members inherit the representative's error. ε < 0 → BortzooError.

    Why: the expensive part of the search is training a surrogate per candidate. Candidates within
    a factor (1+ε) of each other in size and cost are treated as one, which is what makes the
    number of trainings polynomial in 1/ε. Comparing to the group's first member (not the previous
    one) stops a chain of small steps from drifting arbitrarily far from the representative.
    """
    eps = _check_epsilon(epsilon)
    measures = list(measures)
    for i, m in enumerate(measures):
        if not isinstance(m, Measures):
            raise BortzooError(f"measures[{i}] must be a Measures, got {type(m).__name__} {m!r}")
    order = sorted(range(len(measures)), key=lambda i: (measures[i].params, measures[i].flops, i))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            rep = measures[groups[-1][0]]
            m = measures[i]
            if m.params <= (1 + eps) * rep.params and m.flops <= (1 + eps) * rep.flops:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def step_budget(epsilon: float, s: float, scale: float, min_steps: int, max_steps: int) -> int:
    """Steps of each surrogate run. The FPTAS bound O(|Ξ| + |W*_T|(1 + |Θ||B||Ξ| / (ε s^{3/2}))) puts
    the training work per candidate proportional to 1/(ε s^{3/2}); so steps = ceil(scale / (ε · s**1.5))
    clamped to [min_steps, max_steps]; ε = 0 (exhaustive) → max_steps. Validate: s in (0, 1],
    scale > 0, 1 <= min_steps <= max_steps, else BortzooError.

    Why: a coarser ε already forgives more error, so it buys fewer steps; `scale` is the
    calibration constant the O() hides. The quotient is rounded to 9 decimals before the ceiling
    so float noise (1000.0000000000001) does not add a step.
    """
    eps = _check_epsilon(epsilon)
    if not (_is_real(s) and 0 < s <= 1):
        raise BortzooError(f"s must be a number in (0, 1] (the bound's s; smaller s means more steps), got {s!r}")
    if not (_is_real(scale) and math.isfinite(scale) and scale > 0):
        raise BortzooError(f"scale must be a finite number > 0 (steps at ε = s = 1), got {scale!r}")
    for name, value in (("min_steps", min_steps), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise BortzooError(f"{name} must be an integer >= 1, got {value!r}")
    if not 1 <= min_steps <= max_steps:
        raise BortzooError(
            f"need 1 <= min_steps <= max_steps, got min_steps={min_steps!r}, max_steps={max_steps!r}"
        )
    denominator = eps * float(s) ** 1.5
    if denominator == 0:  # ε = 0 (exhaustive), or an underflow: as many steps as allowed
        return int(max_steps)
    raw = float(scale) / denominator
    if raw >= max_steps:  # also catches inf, which math.ceil cannot take
        return int(max_steps)
    return max(int(min_steps), math.ceil(round(raw, 9)))
