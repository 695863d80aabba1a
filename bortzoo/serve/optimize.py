"""`bortzoo.optimize`: a BERT-family model made fast for CPU inference by the fastest engine that holds the accuracy
guard on this CPU, called exactly like the original.

The engines are bortzoo's own torch path ("torch", `bortzoo.serve.own`) and the peers a user would otherwise pick
(`bortzoo.serve.engines`: ONNX Runtime, OpenVINO, CTranslate2), each with its schemes (int8 recipes, bf16, fp32).
`engine="auto"` builds every installed candidate, checks each against the original (a self-check on fixed tokens,
and the caller's `check` batches when given), times the ones that hold at the caller's shapes, interleaved, and
returns the fastest. The built artefacts and the choice with its measurements are cached on disk
(`bortzoo.serve.engine_cache`), so the second call loads. A named engine is used as asked: its first scheme that
holds the guard. The report of what was chosen and why is `optimized.bortzoo_report`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bortzoo.errors import BortzooError, first_line
from bortzoo.serve import engine_cache
from bortzoo.serve.cpu import cpu_summary, native_bf16
from bortzoo.serve.engines import ENGINE_NAMES, peer
from bortzoo.serve.engines.base import EngineError, export_source
from bortzoo.serve.engines.wrapper import EngineBertModel, RoutedEncoder, find_bert, swap_bert
from bortzoo.serve.guard import GuardReport, compare, guard, predictions
from bortzoo.serve.int8 import QuantizedLinear
from bortzoo.serve.own import (
    PRECISIONS,
    SELF_CHECK_MAX_ERROR,
    auto_attention,
    int8_backend,
    optimize_torch,
    relative_error,
    self_check_batch,
)

__all__ = [
    "DEFAULT_SHAPES",
    "ENGINES",
    "PRECISIONS",
    "SELF_CHECK_MAX_ERROR",
    "CandidateResult",
    "GuardReport",
    "OptimizeReport",
    "QuantizedLinear",
    "auto_attention",
    "candidates",
    "guard",
    "int8_backend",
    "optimize",
]

ENGINES = ("auto", *ENGINE_NAMES)
DEFAULT_SHAPES = ((1, 128), (8, 128))  # (batch, seq): one request alone, and a small server batch
TIMING_SECONDS = 0.6  # per shape, shared by the candidates (at least MIN_ROUNDS rounds each)
MIN_ROUNDS, MAX_ROUNDS = 3, 25
PRUNE_FACTOR = 2.0  # a candidate this many times slower than the fastest at a shape is timed there once only
LEAD_IN_MAX_S = 0.5  # calls longer than this get the pause but no untimed call before each timed one
ROUTE_MARGIN = 0.05  # another candidate serves a shape only when it was this much faster there than the choice
CALIBRATION = (4, 64)  # synthetic calibration batches (rows, tokens) when the caller gives no check batches
_log = logging.getLogger("bortzoo")


# -- the report -----------------------------------------------------------------------------------
@dataclass
class CandidateResult:
    """One candidate's fate: built or not, held the guard or not, and its median milliseconds per shape."""

    engine: str
    scheme: str
    status: str = "pending"  # chosen | held | failed guard | cannot build | not installed | not applicable | not timed
    reason: str = ""
    ms: dict[str, float] = field(default_factory=dict)  # "BxS" -> median ms
    self_check_error: float | None = None
    agreement: float | None = None
    metric_change: float | None = None
    build_s: float | None = None

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.scheme}"

    @property
    def total_ms(self) -> float | None:
        return sum(self.ms.values()) if self.ms else None


@dataclass
class OptimizeReport:
    """What `optimize` chose and why: every candidate's build, guard and timing, on which CPU and shapes."""

    chosen: str
    engine: str
    scheme: str
    cpu: str
    threads: int
    shapes: list[tuple[int, int]]
    candidates: list[CandidateResult]
    versions: dict[str, str | None]
    routes: dict[str, str] = field(default_factory=dict)  # "BxS" -> the candidate serving calls nearest that shape
    from_cache: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizeReport:
        data = dict(data)
        data["candidates"] = [CandidateResult(**c) for c in data["candidates"]]
        data["shapes"] = [tuple(s) for s in data["shapes"]]
        return cls(**data)

    def candidate(self, name: str) -> CandidateResult:
        return next(c for c in self.candidates if c.name == name)

    def summary(self) -> str:
        """A table: each candidate's status, ms per shape, agreement and self-check error, and the reason."""
        shapes = [f"{b}x{s}" for b, s in self.shapes]
        head = ["candidate", "status", *[f"ms {s}" for s in shapes], "agreement", "self-check err", "why"]
        rows = []
        for c in self.candidates:
            rows.append([c.name, c.status, *[f"{c.ms[s]:.2f}" if s in c.ms else "-" for s in shapes],
                         "-" if c.agreement is None else f"{c.agreement:.2%}",
                         "-" if c.self_check_error is None else f"{c.self_check_error:.4f}", c.reason])
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        lines = [(f"bortzoo.optimize chose {self.chosen} on {self.cpu}, {self.threads} thread(s)"
                 f"{' (from the cache)' if self.from_cache else ''}, in {self.seconds:.1f} s")]
        lines += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows]]
        return "\n".join(lines)


# -- candidates -----------------------------------------------------------------------------------
def candidates(engine: str = "auto", precision: str | None = None, scheme: str | None = None,
               has_bert: bool = True, has_check: bool = True) -> list[CandidateResult]:
    """The (engine, scheme) pairs `optimize` considers, in the order it tries them; ones that cannot run here
    come with status 'not installed' or 'not applicable' and the reason."""
    out: list[CandidateResult] = []
    names = ENGINE_NAMES if engine == "auto" else (engine,)
    for name in names:
        status, reason = "pending", ""
        if name == "torch":
            schemes = ["int8", *(["bf16"] if native_bf16() else []), *(["fp32"] if engine == "torch" else [])]
        else:
            try:
                eng = peer(name)
            except ImportError as err:  # a broken install of an engine's library: said, not fatal
                out.append(CandidateResult(name, "int8", status="not installed", reason=first_line(err)))
                continue
            schemes = list(eng.schemes)
            if eng.missing():
                status, reason = "not installed", eng.missing()
            elif not has_bert:
                status = "not applicable"
                reason = "the peer engines export a transformers BertModel; this model has none"
        for s in schemes:
            if scheme is not None and s != scheme:
                continue
            if precision is not None and s.split("-")[0] != precision:
                continue
            if status == "pending" and s.split("-")[0] == "bf16" and not native_bf16():
                out.append(CandidateResult(name, s, status="not applicable", reason=(
                    "bf16 needs native bf16 matmuls (avx512_bf16 or AMX), which this CPU lacks or "
                    "ONEDNN_MAX_CPU_ISA hides")))
                continue
            calibrated = () if name == "torch" else getattr(eng, "calibrated", ())
            if status == "pending" and engine == "auto" and not has_check and s in calibrated:
                out.append(CandidateResult(name, s, status="not applicable", reason=(
                    "its activation ranges are fixed from calibration data: give check= batches of real inputs "
                    "(random tokens misplace them on real text)")))
                continue
            out.append(CandidateResult(name, s, status=status, reason=reason))
    if not out:
        raise BortzooError(f"engine {engine!r} has no scheme {scheme or precision!r}; "
                           f"its schemes: {', '.join(c.scheme for c in candidates(engine, has_bert=has_bert))}")
    return out


# -- the entry point ------------------------------------------------------------------------------
def optimize(
    model: nn.Module,
    engine: str = "auto",
    *,
    scheme: str | None = None,
    precision: str | None = None,
    attention: str = "auto",
    threads: int | None = None,
    shapes: Sequence[tuple[int, int]] | None = None,
    inplace: bool = False,
    check: Iterable[Mapping[str, torch.Tensor]] | None = None,
    labels: Sequence[Any] | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    min_agreement: float = 0.99,
    max_metric_drop: float = 0.5,
    cache_dir: os.PathLike | None = None,
) -> nn.Module:
    """A copy of a BERT-family model made fast for CPU inference, called exactly like the original.

    Args:
        model: a transformers BERT model (BertModel, BertForSequenceClassification, ...) or a module holding
            one (bortzoo's TaskModel, Student). Pooler and task heads stay in torch, fp32.
        engine: "auto" (measure every installed engine here and take the fastest that holds the guard),
            "torch" (bortzoo's own path, `bortzoo.serve.own`), "ort", "openvino" or "ctranslate2".
        scheme: one scheme of the named engine (e.g. "int8", "fp32"); default: the engine's schemes in order,
            the first that holds the guard (auto: all of them, timed).
        precision: only schemes of this precision ("int8", "bf16", "fp32"); with engine="torch" it is the
            own path's precision (default int8).
        attention: the own path's attention ("auto", "bf16", "sdpa").
        threads: intra-op threads every engine uses (default: torch's current setting).
        shapes: (batch, seq) pairs auto times the candidates at (default (1, 128) and (8, 128)).
        inplace: engine="torch" only: modify `model` itself instead of a copy.
        check, labels, metric, min_agreement, max_metric_drop: the accuracy guard (`bortzoo.serve.guard`):
            a candidate whose predictions on `check` agree with the original's on fewer than `min_agreement`
            of the examples, or whose metric drops by more than `max_metric_drop` points, is not used.
        cache_dir: where built engines and auto's choice are kept (default `engine_cache.cache_root()`).
    The returned model has `bortzoo_report` (an OptimizeReport; `.summary()` prints it).
    """
    if engine not in ENGINES:
        raise BortzooError(f"engine must be one of {ENGINES}, got {engine!r}")
    if precision is not None and precision not in PRECISIONS:
        raise BortzooError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(model, nn.Module):
        raise BortzooError(f"optimize() takes a torch nn.Module, got {type(model).__name__}")
    served = next((m for m in model.modules() if isinstance(m, (EngineBertModel, RoutedEncoder))), None)
    if served is not None or hasattr(model, "bortzoo_optimize"):
        raise BortzooError("this model is already served by bortzoo.optimize; optimize the original model instead")
    threads = _threads(threads)
    check = None if check is None else list(check)
    if engine == "torch" and scheme is None and shapes is None:  # the own path as asked: nothing to choose
        optimized = optimize_torch(model, precision=precision or "int8", attention=attention, threads=threads,
                                   inplace=inplace, check=check, labels=labels, metric=metric,
                                   min_agreement=min_agreement, max_metric_drop=max_metric_drop)
        return optimized
    if inplace:
        raise BortzooError("inplace=True is for engine='torch' (the peers replace the encoder, not modify it)")
    shapes = _shapes(shapes, _max_positions(model))
    start = time.perf_counter()
    selector = _Selector(model, engine, scheme, precision, attention, threads, shapes, check, labels, metric,
                         min_agreement, max_metric_drop, Path(cache_dir) if cache_dir else engine_cache.cache_root())
    optimized, report = selector.run()
    report.seconds = round(time.perf_counter() - start, 3)
    optimized.bortzoo_report = report
    _log.info("%s", report.summary())
    return optimized


def _threads(threads: int | None) -> int:
    if threads is None:
        return torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BortzooError(f"threads must be a positive integer, got {threads!r}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads > cpus:
        raise BortzooError(f"threads {threads} is more than the {cpus} CPUs this process may use")
    return threads


def _max_positions(model: nn.Module) -> int | None:
    config = next((m.config for m in model.modules() if hasattr(m, "config")), None)
    return getattr(config, "max_position_embeddings", None)


def _shapes(shapes: Sequence[tuple[int, int]] | None, max_positions: int | None) -> list[tuple[int, int]]:
    """The caller's (batch, seq) pairs, checked; by default DEFAULT_SHAPES within the model's positions."""
    if shapes is None:
        return sorted({(b, min(s, max_positions or s)) for b, s in DEFAULT_SHAPES})
    out = []
    for i, shape in enumerate(shapes):
        ok = isinstance(shape, (tuple, list)) and len(shape) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
        if not ok:
            raise BortzooError(f"shapes[{i}] must be a (batch, seq) pair of positive integers, got {shape!r}")
        out.append((int(shape[0]), int(shape[1])))
    if not out:
        raise BortzooError("shapes is empty; give at least one (batch, seq) pair")
    too_long = [shape for shape in out if max_positions and shape[1] > max_positions]
    if too_long:
        raise BortzooError(f"shapes {too_long} are longer than the model's {max_positions} positions")
    return out


def _digest_batches(check, labels, metric) -> str | None:
    if check is None:
        return None
    digest = hashlib.sha256()
    for batch in check:
        for name in sorted(batch):
            value = batch[name]
            digest.update(name.encode())
            if isinstance(value, torch.Tensor):
                digest.update(str(tuple(value.shape)).encode() + value.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(None if labels is None else list(labels)).encode())
    digest.update(getattr(metric, "__qualname__", repr(metric)).encode())
    return digest.hexdigest()[:24]


class _Selector:
    """Builds, checks and times the candidates for one `optimize` call, through the cache."""

    def __init__(self, model, engine, scheme, precision, attention, threads, shapes, check, labels, metric,
                 min_agreement, max_metric_drop, root: Path) -> None:
        self.model, self.engine, self.threads, self.shapes = model, engine, threads, shapes
        self.attention, self.root = attention, root
        self.check, self.labels, self.metric = check, labels, metric
        self.min_agreement, self.max_metric_drop = min_agreement, max_metric_drop
        try:
            _, _, self.bert = find_bert(model)
        except BortzooError:
            self.bert = None
        self.candidates = candidates(engine, precision, scheme, has_bert=self.bert is not None,
                                     has_check=check is not None)
        self.digest = engine_cache.model_hash(model)
        self.keys = {"machine": engine_cache.machine_key(), "versions": engine_cache.library_versions()}
        self.request = {"kind": "choice", "engine": engine, "scheme": scheme, "precision": precision,
                        "attention": attention, "threads": threads, "shapes": shapes,
                        "check": _digest_batches(check, labels, metric), "min_agreement": min_agreement,
                        "max_metric_drop": max_metric_drop, **self.keys}
        self._source: nn.Module | None = None
        self._reference: torch.Tensor | None = None

    # -- the whole call
    def run(self) -> tuple[nn.Module, OptimizeReport]:
        folder = engine_cache.entry_folder(self.root, self.digest, self.request)
        try:
            data = engine_cache.read_verified(folder, self.request)
            report = OptimizeReport.from_dict(data["report"])
            names = [c.name for c in self.candidates]
            built = {name: self._build(self.candidates[names.index(name)], guarded=False)  # self-checked: an
                     for name in dict.fromkeys(report.routes.values() or [report.chosen])}  # artefact may be rebuilt
            report.from_cache = True
            return self._serve(built, report), report
        except engine_cache.StaleEntry as why:
            if str(why) != "not built yet":
                _log.warning("bortzoo.optimize: the cached choice at %s is not used: %s; measuring again",
                             folder.name, why)
        except (KeyError, TypeError, ValueError, BortzooError) as err:
            _log.warning("bortzoo.optimize: the cached choice at %s is not used (%s); measuring again",
                         folder.name, first_line(err))
        optimized, report = self._measure()
        engine_cache.write_entry(folder, self.request, {"report": report.as_dict()})
        return optimized, report

    def _measure(self) -> tuple[nn.Module, OptimizeReport]:
        built: dict[str, nn.Module] = {}
        for cand in self.candidates:
            if cand.status != "pending":
                continue
            try:
                built[cand.name] = self._build(cand, guarded=True)
            except EngineError as err:
                cand.status, cand.reason = "cannot build", err.reason
            except BortzooError as err:
                cand.status, cand.reason = "failed guard", first_line(err)
            if self.engine != "auto" and cand.name in built:
                break  # a named engine: its first scheme that holds
        if not built:
            reasons = "; ".join(f"{c.name}: {c.status} ({c.reason})" for c in self.candidates)
            if self.engine == "auto":
                raise BortzooError(f"no engine could serve this model on {cpu_summary()}: {reasons}")
            raise BortzooError(f"engine {self.engine!r} cannot serve this model on {cpu_summary()}: {reasons}; "
                               f"the fastest engine that does: {self._fastest_other()}")
        timeable = self.bert is not None  # token ids in; a bare encoder's input is the caller's business
        if self.engine == "auto" and len(built) > 1 and timeable:
            self._time(built)
            chosen = min(built, key=lambda n: next(c for c in self.candidates if c.name == n).total_ms)
        else:
            chosen = next(iter(built))
            if self.engine == "auto" and timeable:
                self._time(built)
        routes = self._routes(chosen, built) if self.engine == "auto" and timeable else {}
        serving = set(routes.values()) or {chosen}
        if chosen not in serving:  # others were faster at every shape: name the one serving the most tokens
            chosen = routes[max(routes, key=lambda shape: math.prod(int(v) for v in shape.split("x")))]
        for cand in self.candidates:
            if cand.name in built:
                cand.status = "chosen" if cand.name in serving else "held"
            elif cand.status == "pending":
                cand.status = "not timed"
        pick = next(c for c in self.candidates if c.name == chosen)
        report = OptimizeReport(chosen, pick.engine, pick.scheme, cpu_summary(), self.threads, self.shapes,
                                self.candidates, self.keys["versions"], routes=routes)
        return self._serve({n: m for n, m in built.items() if n in serving}, report), report

    def _routes(self, chosen: str, built: Mapping[str, nn.Module]) -> dict[str, str]:
        """Per timed shape, the candidate to serve it: the overall choice, unless another was more than
        ROUTE_MARGIN faster at that very shape (a margin, so noise does not split the work)."""
        results = {c.name: c for c in self.candidates if c.name in built}
        routes = {}
        for shape, overall in results[chosen].ms.items():
            best = min(results, key=lambda n: results[n].ms.get(shape, float("inf")))
            routes[shape] = best if results[best].ms[shape] < overall * (1 - ROUTE_MARGIN) else chosen
        return routes

    def _serve(self, built: Mapping[str, nn.Module], report: OptimizeReport) -> nn.Module:
        """The model to return: the one candidate, or the original's copy whose encoder routes each call to the
        candidate timed fastest at the nearest shape."""
        if len(built) == 1:
            return next(iter(built.values()))
        encoders = {name: find_bert(model)[2] for name, model in built.items()}
        router = RoutedEncoder(encoders, report.routes)
        return swap_bert(copy.deepcopy(self.model), router).eval()

    def _fastest_other(self) -> str:
        """For the error of a named engine that failed: what auto picks among the other engines (measured)."""
        other = copy.copy(self)
        other.engine = "auto"
        other.candidates = [dataclasses.replace(c) for c in candidates("auto", has_bert=self.bert is not None)
                            if c.engine != self.engine]
        try:
            _, report = other._measure()
        except BortzooError:
            return "none"
        best = report.candidate(report.chosen)
        timing = ", ".join(f"{ms:.2f} ms at {shape}" for shape, ms in best.ms.items())
        return f"{report.chosen}{f' ({timing})' if timing else ''}; optimize(model, engine='auto') picks it"

    # -- one candidate
    def source(self) -> nn.Module:
        if self._source is None:
            self._source = export_source(self.bert)
        return self._source

    def _build(self, cand: CandidateResult, guarded: bool) -> nn.Module:
        """The model served by this candidate, self-checked, and with `guarded` held to the caller's check
        batches: BortzooError when it fails either."""
        start = time.perf_counter()
        if cand.engine == "torch":
            optimized = optimize_torch(self.model, precision=cand.scheme, attention=self.attention,
                                       threads=self.threads)
            cand.self_check_error = optimized.bortzoo_optimize.get("self_check_error")
            if optimized.bortzoo_optimize.get("fallback"):
                raise EngineError("torch", optimized.bortzoo_optimize["fallback"])
        else:
            runner = self._runner(cand)
            optimized = swap_bert(copy.deepcopy(self.model), EngineBertModel(self.bert, runner, cand.engine))
            optimized.eval()
            self._self_check(cand, runner)
        if cand.build_s is None:
            cand.build_s = round(time.perf_counter() - start, 3)
        if guarded and self.check is not None:
            report = compare(self._reference_predictions(), predictions(optimized, self.check), self.check,
                             labels=self.labels, metric=self.metric)
            cand.agreement, cand.metric_change = report.agreement, report.metric_change
            optimized.bortzoo_guard = report
            report.enforce(self.min_agreement, self.max_metric_drop)
        return optimized

    def _runner(self, cand: CandidateResult):
        """Load the candidate's artefact from the cache, building it first if absent, stale or corrupt."""
        eng = peer(cand.engine)
        keys = {"kind": "artefact", "engine": cand.engine, "scheme": cand.scheme, **self.keys}
        if cand.scheme in getattr(eng, "calibrated", ()):  # the artefact depends on the calibration batches
            keys["calibration"] = _digest_batches(self._calibration(), None, None)
            if self.check is None:
                _log.warning("bortzoo.optimize: %s calibrates its activation ranges on random tokens; give check= "
                             "batches of real inputs for a model that serves real text", cand.name)
        folder = engine_cache.entry_folder(self.root, self.digest, keys)
        try:
            engine_cache.read_verified(folder, keys)
        except engine_cache.StaleEntry as why:
            if str(why) != "not built yet":
                _log.warning("bortzoo.optimize: the cached %s artefact is not used: %s; rebuilding", cand.name, why)
            engine_cache.write_entry(folder, keys, {"engine": cand.engine, "scheme": cand.scheme},
                                     build=partial(eng.build, self.source(), cand.scheme,
                                                   calibration=self._calibration()))
        return eng.load(folder, cand.scheme, self.threads)

    def _calibration(self) -> list[dict[str, torch.Tensor]]:
        """The caller's check batches (real text) where given, else fixed random tokens."""
        from bortzoo.serve.engines.base import example_batch

        if self.check:
            batches = []
            for batch in self.check[:8]:
                ids = batch["input_ids"]
                batches.append({"input_ids": ids,
                                "attention_mask": batch.get("attention_mask", torch.ones_like(ids)),
                                "token_type_ids": batch.get("token_type_ids", torch.zeros_like(ids))})
            return batches
        rows, tokens = CALIBRATION
        return [example_batch(self.bert.config, rows, tokens, seed=seed) for seed in range(2)]

    def _self_check(self, cand: CandidateResult, runner) -> None:
        probe = self_check_batch(self.model)
        if "input_ids" not in probe:
            raise EngineError(cand.engine, "no embeddings to feed token ids to")
        probe.setdefault("token_type_ids", torch.zeros_like(probe["input_ids"]))
        if self._reference is None:
            with torch.inference_mode():
                self._reference = self.source()(**probe).last_hidden_state[probe["attention_mask"].bool()]
        with torch.inference_mode():
            out = runner(probe["input_ids"], probe["attention_mask"], probe["token_type_ids"])
        error = relative_error(out.float()[probe["attention_mask"].bool()], self._reference)
        cand.self_check_error = round(error, 6)
        bound = SELF_CHECK_MAX_ERROR[cand.scheme.split("-")[0]]
        if not error <= bound:
            raise BortzooError(f"{cand.name}'s encoder output is {error:.2%} off the original's (at most {bound:.1%} "
                               f"is right for {cand.scheme})")

    def _reference_predictions(self) -> torch.Tensor:
        if not hasattr(self, "_ref_predictions"):
            self._ref_predictions = predictions(self.model, self.check)
        return self._ref_predictions

    # -- timing
    def _time(self, built: Mapping[str, nn.Module]) -> None:
        """Median ms of each candidate per shape, interleaved. At each shape every candidate runs once (after a
        warm-up call); one more than PRUNE_FACTOR times slower than the fastest there keeps that one timing and
        sits out the rounds: it will not win that shape, and timing it would make the first call slow."""
        from bortzoo.serve.timing import SETTLE_S, time_interleaved

        config = (self.bert or next(m for m in self.model.modules() if hasattr(m, "config"))).config
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        results = {c.name: c for c in self.candidates}
        try:
            with torch.inference_mode():
                for batch, seq in self.shapes:
                    g = torch.Generator().manual_seed(0)
                    ids = torch.randint(min(1000, config.vocab_size // 2), config.vocab_size, (batch, seq), generator=g)
                    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                    forwards = {name: partial(model, **inputs) for name, model in built.items()}
                    once = {name: t[0] for name, t in time_interleaved(forwards, warmup=1, repeats=1).items()}
                    shape = f"{batch}x{seq}"
                    fastest = min(once.values())
                    contenders = {name: f for name, f in forwards.items() if once[name] <= PRUNE_FACTOR * fastest}
                    for name in forwards.keys() - contenders.keys():
                        results[name].ms[shape] = round(once[name] * 1e3, 3)
                    lead_in = max(once[name] for name in contenders) < LEAD_IN_MAX_S
                    # a round's cost: each call, and with the lead-in its pause and untimed call too
                    per_round = sum(once[name] * (2 if lead_in else 1) + (SETTLE_S if lead_in else 0) for name in contenders)
                    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(TIMING_SECONDS / per_round)))
                    times = time_interleaved(contenders, warmup=0, repeats=rounds, lead_in=lead_in)
                    for name, samples in times.items():
                        results[name].ms[shape] = round(statistics.median(samples) * 1e3, 3)
        finally:
            torch.set_num_threads(previous)
