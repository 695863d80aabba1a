"""CPU inference latency of Bort: every engine `bortzoo.optimize` chooses among, and its `auto` choice, against
transformers fp32, interleaved in one run.

Engines (the rows), all on random weights (a forward costs the same whatever the numbers in the matrices are,
so latency depends only on the shapes):

    hf-fp32-bert-large   transformers BertModel, fp32, sdpa attention, shape --large (BERT-large): the model Bort
                         claims to replace, the baseline of the 50x target
    hf-fp32-bort         the same for shape --arch (Bort): the weights every Bort row below shares, run as a user
                         would without bortzoo
    <engine>-<scheme>-bort
                         one row per candidate of `bortzoo.serve.optimize.candidates("auto")`, built by
                         `optimize(bort, engine, scheme=scheme, threads=t)` for each thread count t (the threads
                         an engine uses are fixed when it is loaded), self-checked against the fp32 model:
                         torch-int8 and torch-bf16 (bortzoo's own path; bf16 only where the CPU has it natively),
                         and the peers a user would otherwise pick, each with the schemes it declares (ort-int8,
                         ort-fp32, openvino-int8, openvino-fp32, ctranslate2-int8, ctranslate2-fp32, ...)
    auto-bort            `optimize(bort, "auto", threads=t, shapes=<the grid's (batch, seq) pairs>)`: what a user
                         gets; the "chose" column names the candidate it picked at that thread count

A row that cannot run says why instead of disappearing: "not installed (pip install 'bortzoo[serve]')",
"cannot build: <reason>" (the engine refused the model), "failed guard: <reason>" (it built, but its output is
off the fp32 model's), or "not applicable: ...". The engines' artefacts go to a cache folder in this run's
temporary directory (--cache-dir keeps them), so auto loads what the candidate rows built.

Every setting (batch, seq, threads) is timed interleaved: each round runs every engine once, the starting
engine rotating from round to round, so drift of the machine (turbo, heat, a neighbour) hits all engines
alike. A setting stops after --repeats rounds, or earlier once its rounds have used --max-seconds and at
least --min-repeats rounds are done (BERT-large takes ~30 s a forward at batch 8, seq 512 on one thread). All
engines of a setting get the same token ids and mask. Each runtime keeps its default thread behaviour (OpenMP
for torch; the peers: t intra-op threads, one inter-op thread). Idle threads that still spin steal the CPU from
the next engine (measured: torch at 2 threads ran 1.6x slower right after onnxruntime, whose threads spin for
longer than one Bort forward), and threads put to sleep wake slowly (a 50 ms pause before each call made every
engine 10-30% slower). So each timed call comes after a 50 ms pause (the last engine's threads go to sleep)
and one untimed call of the same engine (its threads wake): every engine is timed as it runs back to back,
alone, the way latency benchmarks and servers under load see it (--no-lead-in turns this off).

Before the models, a GEMM microbenchmark (M x K x N, default 1024^3 = batch 8 x seq 128 tokens through a
1024 x 1024 linear) measures the best rate this CPU reaches per data type at each thread count, over the
kernels installed: fp32 torch.mm (MKL) and onnxruntime MatMul (MLAS); bf16 torch.mm (oneDNN); int8
torch._int_mm, oneDNN's quantised linear (as torch exposes it) and onnxruntime MatMulInteger (MLAS). These
probe kernel peaks, not engines. The fastest backend of a dtype is its "peak"; each model row reports encoder
GOP/s (`Arch.encoder_flops`: matmuls only, 2 ops per multiply-add) and the percentage of the peak of the dtype
its matmuls run in (hf: fp32; a candidate: its scheme's precision; auto-bort: that of the candidate it chose).
The int8 engines do some matmuls (attention) in floating point, so their % of the int8 peak is a lower bound
on how busy the int8 units are.

Then a ratio table gives, per setting, auto-bort's speed-up (their ms / auto's) against hf-fp32-bert-large,
hf-fp32-bort and the fastest peer (a non-torch candidate that held its self-check there, named; a calibrated
scheme such as openvino-int8 is timed and shown but is not a peer here: its activation ranges come from the
bench's random tokens, and auto, given no check= batches of real text, does not consider it). At the end
a TARGETS block checks the goals of the CPU-inference issue:
  - at every grid point: auto-bort >= 1.0x the fastest peer that holds the guard;
  - batch 8, seq 128 (threads 1 and 2): auto-bort's encoder GOP/s >= 70% of this CPU's int8 GEMM peak;
  - batch 1, seq 128 (threads 1 and 2): auto-bort >= 50x hf-fp32-bert-large where the CPU has VNNI or AMX;
    without, >= 75% of the bound the int8 peak sets (bert-large ms / (Bort encoder ops / int8 peak ops per s));
    the bound is printed either way;
  - with --guard: auto's choice on that fine-tuned model agrees with fp32 on >= 99% of a dev sample and keeps
    its metric within 0.5 points (`optimize_for_task(..., engine="auto")`; the target rows name the engine).
A miss is a measurement, not an error: the exit code is 0 either way, and the line says by how much. Results
go to CSV (one row per engine x setting) and JSON (rows, targets, and meta: CPU summary, every engine
library's version, auto's OptimizeReport per thread count), named after the CPU, its kernel-choosing flags and
the library versions.

    python bench/cpu_latency.py                                  # the whole grid: long (BERT-large!)
    python bench/cpu_latency.py --batch 1 8 --seq 128 --threads 1 2
    python bench/cpu_latency.py --engines hf-fp32-bort torch-int8-bort auto-bort --out none
    python bench/cpu_latency.py --arch 2,2,64,128 --large 2,2,64,128 --seq 16 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only; never reach out
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bortzoo.arch import Arch, get_arch  # noqa: E402
from bortzoo.errors import BortzooError, first_line  # noqa: E402
from bortzoo.serve.timing import SETTLE_S  # noqa: E402
from bortzoo.serve.bench import OtherCpuLoad, build_model, hardware_info, make_inputs, percentile, slug  # noqa: E402
from bortzoo.serve.bench import write_results as bench_results  # noqa: E402
from bortzoo.serve.cpu import cpu_flags, cpu_model, cpu_summary, has_vnni, isa_limit, native_bf16  # noqa: E402
from bortzoo.serve.engine_cache import library_versions  # noqa: E402
from bortzoo.serve.engines import peer  # noqa: E402
from bortzoo.serve.engines.base import EngineError  # noqa: E402
from bortzoo.serve.optimize import CandidateResult, OptimizeReport, candidates, optimize  # noqa: E402

try:
    import onnxruntime as ort  # the GEMM peak's MLAS probes; the ort engine imports it itself
except ImportError:  # optional: pip install 'bortzoo[serve]'
    ort = None

INSTALL_HINT = "pip install 'bortzoo[serve]'"
NOT_INSTALLED = f"not installed ({INSTALL_HINT})"
OK = "ok"
PENDING = "pending"  # a candidate that can be built here (candidates()' status)
DEFAULT_MIN_REPEATS = 3
LEAD_IN_MAX_S = 0.5  # calls longer than this get a pause instead of an untimed lead-in call

LARGE, HF_BORT, AUTO = "hf-fp32-bert-large", "hf-fp32-bort", "auto-bort"
KINDS = ("hf", "torch", "peer", "auto")


# -- engines --------------------------------------------------------------------------------------
def scheme_dtype(scheme: str) -> str:
    """The dtype a scheme's matmuls run in, for % of peak: its precision ("int8-static" -> "int8")."""
    return scheme.split("-")[0]


@dataclass(frozen=True)
class Engine:
    """One row of the benchmark: which shape (large or bort) and how it is run.

    kind: "hf" (transformers fp32), "torch" (bortzoo's own path), "peer" (ort, openvino, ctranslate2, ...)
    or "auto" (optimize's choice). engine and scheme are what `optimize` is called with; status is
    "pending" where it can be built here, else why not (from `candidates()`)."""

    name: str
    kind: str
    model: str = "bort"  # "large" (--large) or "bort" (--arch)
    engine: Optional[str] = None
    scheme: Optional[str] = None
    status: str = PENDING
    # a static-int8 scheme, calibrated here on the bench's random tokens: auto-bort (given no check= batches)
    # does not consider it, so it is timed and shown but is no "peer that holds the guard" for the targets
    calibrated: bool = False

    @property
    def dtype(self) -> Optional[str]:
        """The dtype its matmuls run in (None for auto-bort: that of its choice, known once built)."""
        if self.kind == "hf":
            return "fp32"
        return scheme_dtype(self.scheme) if self.scheme else None

    @property
    def candidate(self) -> Optional[str]:
        """Its name in an OptimizeReport ("ort-int8"), for torch and peer rows."""
        return f"{self.engine}-{self.scheme}" if self.kind in ("torch", "peer") else None

    @property
    def label(self) -> str:
        """Short column heading: every column but hf-fp32 bert-large runs Bort."""
        return "hf-fp32 bert-large" if self.name == LARGE else self.name.removesuffix("-bort")


def candidate_status(cand: CandidateResult) -> str:
    """A row's status from a candidate's: "pending", "not installed (pip install ...)[: why]", "<status>: <why>"."""
    if cand.status == PENDING:
        return PENDING
    reason = (cand.reason or "").strip()
    if cand.status == "not installed":
        reason = re.sub(r"^not installed\W*", "", reason)
        return NOT_INSTALLED if not reason or "pip install" in reason else f"{NOT_INSTALLED}: {reason}"
    return f"{cand.status}: {reason}" if reason else cand.status


def engine_list(cands: Optional[Sequence[CandidateResult]] = None) -> list[Engine]:
    """Every row, in order: the two hf rows, one per candidate of `candidates("auto")` (torch-bf16 always, as
    "not applicable" where the CPU has no native bf16 and auto does not consider it), then auto-bort."""
    cands = list(candidates("auto") if cands is None else cands)
    rows = [Engine(LARGE, "hf", "large"), Engine(HF_BORT, "hf")]
    names = {c.name for c in cands}
    for cand in cands:
        rows.append(Engine(f"{cand.name}-bort", "torch" if cand.engine == "torch" else "peer", "bort", cand.engine,
                           cand.scheme, candidate_status(cand), calibrated=_calibrated(cand)))
        if cand.name == "torch-int8" and "torch-bf16" not in names:
            rows.append(Engine("torch-bf16-bort", "torch", "bort", "torch", "bf16",
                               "not applicable: no native bf16 on this CPU (avx512_bf16 or AMX), so auto does not "
                               "consider it (emulated bf16 is slower than fp32)"))
    rows.append(Engine(AUTO, "auto", "bort", "auto"))
    return rows


def _calibrated(cand: CandidateResult) -> bool:
    """Whether this candidate's scheme fixes activation ranges from calibration batches (auto needs check=)."""
    if cand.engine == "torch":
        return False
    try:
        return cand.scheme in getattr(peer(cand.engine), "calibrated", ())
    except (ImportError, BortzooError):
        return False


def select_engines(engines: Sequence[Engine], names: Optional[Sequence[str]]) -> list[Engine]:
    """The rows named (all when None), in the list's order; BortzooError naming any unknown name."""
    if not names:
        return list(engines)
    known = {e.name: e for e in engines}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BortzooError(f"unknown engine {', '.join(map(repr, unknown))}; the engines here are: "
                           f"{', '.join(known)}")
    wanted = set(names)
    return [e for e in engines if e.name in wanted]


# -- the GEMM peak --------------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmBackend:
    name: str
    dtype: str
    runtime: str  # "torch" or "ort"


GEMM_BACKENDS: tuple[GemmBackend, ...] = (
    GemmBackend("torch.mm fp32 (MKL)", "fp32", "torch"),
    GemmBackend("onnxruntime MatMul fp32 (MLAS)", "fp32", "ort"),
    GemmBackend("torch.mm bf16 (oneDNN)", "bf16", "torch"),
    GemmBackend("torch._int_mm s8s8", "int8", "torch"),
    GemmBackend("oneDNN qlinear u8s8 (torch)", "int8", "torch"),
    GemmBackend("onnxruntime MatMulInteger u8s8 (MLAS)", "int8", "ort"),
)


def gemm_ops(m: int, k: int, n: int) -> int:
    """Operations of one M x K by K x N product: 2 per multiply-add, as `Arch.encoder_flops` counts."""
    return 2 * m * k * n


def _ort_session(model: Any, threads: int) -> Any:
    """An onnxruntime CPU session (model: bytes or a path) with `threads` intra-op threads, one inter-op
    thread and all graph optimisations (ORT_ENABLE_ALL, onnxruntime's default)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def _one_node_model(op: str, a_type: int, b: np.ndarray, out_type: int, m: int, k: int, n: int,
                    extra_inputs: Sequence[np.ndarray] = ()) -> bytes:
    """An ONNX graph `Y = op(A, B, *extra)` with B (and the extras) constant, so MLAS may prepack it like a weight."""
    from onnx import helper, numpy_helper

    extra_names = [f"c{i}" for i in range(len(extra_inputs))]
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B", *extra_names], ["Y"])], "gemm",
        [helper.make_tensor_value_info("A", a_type, [m, k])],
        [helper.make_tensor_value_info("Y", out_type, [m, n])],
        initializer=[numpy_helper.from_array(b, "B"),
                     *(numpy_helper.from_array(x, name) for x, name in zip(extra_inputs, extra_names))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def gemm_forwards(shape: tuple[int, int, int], threads: int) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    """One callable per available backend computing the M x K x N product, and why each other one is missing.

    torch backends use preallocated outputs where torch allows it; onnxruntime ones bind the
    output buffer once (IOBinding), so each call times the kernel, not the allocator.
    """
    m, k, n = shape
    generator = torch.Generator().manual_seed(0)
    forwards: dict[str, Callable[[], object]] = {}
    missing: dict[str, str] = {}
    a32 = torch.randn(m, k, generator=generator)
    b32 = torch.randn(k, n, generator=generator)
    a8 = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=generator)
    b8 = torch.randint(-127, 128, (k, n), dtype=torch.int8, generator=generator)
    u8 = torch.randint(0, 256, (m, k), dtype=torch.uint8, generator=generator)

    def add(name: str, build: Callable[[], Callable[[], object]]) -> None:
        try:
            forward = build()
            forward()  # fail here, at build time, not inside the timing loop
            forwards[name] = forward
        except Exception as err:  # noqa: BLE001 - a backend this build lacks is reported, not fatal
            missing[name] = f"unavailable: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160]

    c32 = torch.empty(m, n)
    add("torch.mm fp32 (MKL)", lambda: partial(torch.mm, a32, b32, out=c32))
    a16, b16, c16 = a32.to(torch.bfloat16), b32.to(torch.bfloat16), torch.empty(m, n, dtype=torch.bfloat16)
    add("torch.mm bf16 (oneDNN)", lambda: partial(torch.mm, a16, b16, out=c16))
    c_i32 = torch.empty(m, n, dtype=torch.int32)
    add("torch._int_mm s8s8", lambda: partial(torch._int_mm, a8, b8, out=c_i32))

    def qlinear() -> Callable[[], object]:
        if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")):
            raise RuntimeError("this torch has no oneDNN qlinear_pointwise")
        packed = torch.ops.onednn.qlinear_prepack(b8.t().contiguous(), None)  # weight is (N, K)
        w_scale, w_zero = torch.full((n,), 0.01), torch.zeros(n, dtype=torch.int64)
        return partial(torch.ops.onednn.qlinear_pointwise.default, u8, 0.02, 128, packed, w_scale, w_zero, None,
                       1.0, 0, torch.float32, "none", [], "")

    add("oneDNN qlinear u8s8 (torch)", qlinear)

    if ort is None:
        for backend in GEMM_BACKENDS:
            if backend.runtime == "ort":
                missing[backend.name] = NOT_INSTALLED
    else:
        from onnx import TensorProto

        def bound(model: bytes, a: np.ndarray, out: np.ndarray) -> Callable[[], object]:
            session = _ort_session(model, threads)
            binding = session.io_binding()
            binding.bind_ortvalue_input("A", ort.OrtValue.ortvalue_from_numpy(a))
            binding.bind_ortvalue_output("Y", ort.OrtValue.ortvalue_from_numpy(out))
            return partial(session.run_with_iobinding, binding)

        add("onnxruntime MatMul fp32 (MLAS)", lambda: bound(
            _one_node_model("MatMul", TensorProto.FLOAT, b32.numpy(), TensorProto.FLOAT, m, k, n),
            a32.numpy(), np.empty((m, n), dtype=np.float32)))
        add("onnxruntime MatMulInteger u8s8 (MLAS)", lambda: bound(
            _one_node_model("MatMulInteger", TensorProto.UINT8, b8.numpy(), TensorProto.INT32, m, k, n,
                            [np.array(128, dtype=np.uint8)]),
            u8.numpy(), np.empty((m, n), dtype=np.int32)))
    order = [b.name for b in GEMM_BACKENDS]
    return dict(sorted(forwards.items(), key=lambda kv: order.index(kv[0]))), missing


def measure_peaks(shape: tuple[int, int, int], threads_list: Sequence[int], warmup: int, repeats: int,
                  progress: bool = True) -> list[dict]:
    """One row per (threads, backend): median ms and GOP/s of the GEMM, or why the backend is missing."""
    from tqdm.auto import tqdm

    ops = gemm_ops(*shape)
    rows: list[dict] = []
    original = torch.get_num_threads()
    try:
        with tqdm(total=len(threads_list) * len(GEMM_BACKENDS) * repeats, desc="GEMM peak", unit="call",
                  file=sys.stderr, disable=not progress) as bar:
            for threads in threads_list:
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    forwards, missing = gemm_forwards(shape, threads)
                    bar.total -= len(missing) * repeats
                    times = time_setting(forwards, warmup, repeats, repeats, math.inf,
                                         on_timed=lambda _name: bar.update())
                for backend in GEMM_BACKENDS:
                    row = {"threads": threads, "dtype": backend.dtype, "backend": backend.name,
                           "m": shape[0], "k": shape[1], "n": shape[2]}
                    if backend.name in times:
                        median, best = statistics.median(times[backend.name]), min(times[backend.name])
                        # the peak is the best rate reached (fastest call), so "% of peak" never flatters
                        rows.append({**row, "status": OK, "median_ms": median * 1e3, "best_ms": best * 1e3,
                                     "gops": ops / best / 1e9})
                    else:
                        rows.append({**row, "status": missing[backend.name], "median_ms": None, "gops": None})
                del forwards
    finally:
        torch.set_num_threads(original)
    return rows


def select_peaks(backend_rows: Iterable[Mapping[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """(threads, dtype) -> {"gops", "backend"}: the fastest measured backend of each dtype at each thread count."""
    peaks: dict[tuple[int, str], dict[str, Any]] = {}
    for row in backend_rows:
        if row.get("gops") is None:
            continue
        key = (row["threads"], row["dtype"])
        if key not in peaks or row["gops"] > peaks[key]["gops"]:
            peaks[key] = {"threads": row["threads"], "dtype": row["dtype"], "gops": row["gops"],
                          "backend": row["backend"]}
    return peaks


# -- building the engines -------------------------------------------------------------------------
_FAILURE = re.compile(r"(cannot build|failed guard|not installed|not applicable) \((.*?)\)(?:; the fastest engine|$)",
                      re.S)


def failure_status(candidate: str, err: BaseException) -> str:
    """A row's status from the error `optimize(bort, engine, scheme=...)` raised for `candidate` ("ort-int8"):
    "cannot build: <reason>" for an EngineError, else the candidate's fate as optimize's message states it."""
    if isinstance(err, EngineError):
        return f"cannot build: {err.reason}"
    text = str(err)
    at = text.find(f"{candidate}: ")
    match = _FAILURE.match(text, at + len(candidate) + 2) if at >= 0 else None
    if match:
        status, reason = match.groups()
        if status == "not installed":
            return candidate_status(CandidateResult(*candidate.split("-", 1), status=status, reason=reason))
        return f"{status}: {reason}"
    return f"failed: {first_line(err)}"


@dataclass
class Built:
    """The engines of one thread count: runnable models, why each other row cannot run, facts about the builds,
    and auto's report (None when auto-bort is not run or failed)."""

    threads: int
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: Optional[OptimizeReport] = None

    @property
    def chose(self) -> Optional[str]:
        return self.report.chosen if self.report is not None else None


def build_engines(engines: Sequence[Engine], bort: torch.nn.Module, threads: int, shapes: Sequence[tuple[int, int]],
                  cache_dir: Path, log: Callable[[str], None] = lambda _line: None) -> Built:
    """The torch, peer and auto rows at `threads` (hf rows are the caller's: they share torch's global setting).

    Each candidate row is `optimize(bort, engine, scheme=scheme, threads=threads)`; auto-bort is
    `optimize(bort, "auto", threads=threads, shapes=shapes)`. All share `cache_dir`, so auto loads the
    artefacts the candidate rows built instead of building them again."""
    built = Built(threads)
    for e in engines:
        if e.kind not in ("torch", "peer", "auto"):
            continue
        if e.status != PENDING:
            built.status[e.name] = e.status
            continue
        if e.kind == "auto":
            log(f"{threads} thread(s): optimize(bort, 'auto', shapes={list(shapes)})")
            try:
                model = optimize(bort, "auto", threads=threads, shapes=list(shapes), cache_dir=cache_dir)
            except BortzooError as err:
                built.status[e.name] = f"failed: {first_line(err)}"
                continue
            built.models[e.name] = model
            built.report = model.bortzoo_report
            built.facts[e.name] = {"chose": built.report.chosen, "seconds": built.report.seconds,
                                   "from_cache": built.report.from_cache}
            log(built.report.summary())
            continue
        log(f"{threads} thread(s): optimize(bort, {e.engine!r}, scheme={e.scheme!r})")
        try:
            model = optimize(bort, e.engine, scheme=e.scheme, threads=threads, cache_dir=cache_dir)
        except BortzooError as err:
            built.status[e.name] = failure_status(e.candidate, err)
            continue
        built.models[e.name] = model
        report = getattr(model, "bortzoo_report", None)
        cand = next((c for c in report.candidates if c.name == e.candidate), None) if report else None
        built.facts[e.name] = {"self_check_error": getattr(cand, "self_check_error", None),
                               "build_s": getattr(cand, "build_s", None),
                               "from_cache": getattr(report, "from_cache", None)}
    return built


# -- timing ---------------------------------------------------------------------------------------
def time_setting(forwards: Mapping[str, Callable[[], object]], warmup: int, repeats: int, min_repeats: int,
                 max_seconds: float, *, lead_in: bool = True, on_timed: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each timed call over rounds that each run every forward once, the first one rotating.

    After `warmup` untimed calls of each forward, runs rounds until `repeats` are done, or until at
    least `min_repeats` are and the timed calls have used `max_seconds` in all. With `lead_in`, each
    timed call comes after a pause of SETTLE_S (the previous runtime's spinning threads sleep) and
    an untimed call of the same forward (its own threads are awake), as in a back-to-back loop
    of that engine alone; calls slower than LEAD_IN_MAX_S skip the untimed call.
    """
    names = list(forwards)
    for name in names:
        for _ in range(warmup):
            forwards[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    spent = 0.0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            start = r % len(names) if names else 0
            for name in names[start:] + names[:start]:
                if lead_in:
                    time.sleep(SETTLE_S)  # the previous runtime's spinning threads go to sleep
                    if not (times[name] and times[name][-1] > LEAD_IN_MAX_S):
                        forwards[name]()  # this runtime's threads wake up
                began = clock()
                forwards[name]()
                seconds = clock() - began
                times[name].append(seconds)
                spent += seconds
                if on_timed is not None:
                    on_timed(name)
            if r + 1 >= min_repeats and spent >= max_seconds:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def model_rows(engines: Sequence[Engine], archs: Mapping[str, Arch], times: Mapping[str, Sequence[float]],
               status: Mapping[str, str], peaks: Mapping[tuple[int, str], Mapping[str, Any]], batch: int, seq: int,
               threads: int, chose: Optional[str] = None) -> list[dict]:
    """One row per engine of one setting: latency, encoder GOP/s and % of its dtype's GEMM peak, or why not run.

    `chose`: the candidate auto-bort runs at this thread count ("ort-int8"), whose dtype it is measured in."""
    rows = []
    for engine in engines:
        arch = archs[engine.model]
        ops = arch.encoder_flops(seq, batch)
        dtype = engine.dtype
        if engine.kind == "auto":
            dtype = scheme_dtype(chose.split("-", 1)[1]) if chose and "-" in chose else None
        peak = peaks.get((threads, dtype)) if dtype else None
        row: dict[str, Any] = {
            "engine": engine.name, "kind": engine.kind, "calibrated": engine.calibrated, "dtype": dtype,
            "chose": chose if engine.kind == "auto" else None, "model": engine.model, "arch": arch.short(),
            "batch": batch, "seq": seq, "threads": threads, "encoder_gop": ops / 1e9, "status": OK,
            "median_ms": None, "p90_ms": None, "min_ms": None, "rounds": 0, "achieved_gops": None,
            "peak_gops": peak["gops"] if peak else None, "peak_backend": peak["backend"] if peak else None,
            "pct_of_peak": None,
        }
        if times.get(engine.name):
            samples = times[engine.name]
            median = statistics.median(samples)
            row.update(median_ms=median * 1e3, p90_ms=percentile(samples, 90) * 1e3, min_ms=min(samples) * 1e3,
                       rounds=len(samples), achieved_gops=ops / median / 1e9)
            if peak:
                row["pct_of_peak"] = row["achieved_gops"] / peak["gops"] * 100
        else:
            row["status"] = status.get(engine.name, "not measured")
        rows.append(row)
    return rows


def measure_models(engines: Sequence[Engine], archs: Mapping[str, Arch],
                   peaks: Mapping[tuple[int, str], Mapping[str, Any]], args: argparse.Namespace, cache_dir: Path,
                   log: Callable[[str], None] = lambda _line: None,
                   progress: bool = True) -> tuple[list[dict], dict[int, Built]]:
    """Every (batch, seq, threads) setting, timed interleaved; the rows in grid order and what was built per
    thread count (its models dropped). Engines are built per thread count, then every setting of that count is
    timed, so only one thread count's engines are in memory at a time. torch's thread count is restored."""
    from tqdm.auto import tqdm

    names = {e.name for e in engines}
    hf: dict[str, torch.nn.Module] = {}
    if LARGE in names:
        log(f"building hf-fp32 bert-large {archs['large'].short()}")
        hf[LARGE] = build_model(archs["large"])
    bort = build_model(archs["bort"])  # the weights every bort row shares, built even when not timed itself
    if HF_BORT in names:
        hf[HF_BORT] = bort
    shapes = [(b, s) for b in args.batch for s in args.seq]
    order = {(b, s, t): i for i, (b, s, t) in enumerate((b, s, t) for b in args.batch for s in args.seq
                                                        for t in args.threads)}
    rows: list[dict] = []
    builds: dict[int, Built] = {}
    original = torch.get_num_threads()
    with tqdm(total=0, desc="models", unit="fwd", file=sys.stderr, disable=not progress) as bar:
        try:
            for threads in args.threads:
                torch.set_num_threads(threads)
                built = build_engines(engines, bort, threads, shapes, cache_dir, log)
                models = {e.name: hf[e.name] if e.name in hf else built.models[e.name] for e in engines
                          if e.name in hf or e.name in built.models}
                bar.total += len(shapes) * len(models) * args.repeats
                with torch.inference_mode():
                    for batch, seq in shapes:
                        torch.set_num_threads(threads)
                        bar.set_postfix(batch=batch, seq=seq, threads=threads)
                        inputs = {key: make_inputs(arch, batch, seq) for key, arch in archs.items()}
                        forwards = {e.name: partial(models[e.name], **inputs[e.model]) for e in engines
                                    if e.name in models}
                        times = time_setting(forwards, args.warmup, args.repeats, args.min_repeats,
                                             args.max_seconds, lead_in=args.lead_in,
                                             on_timed=lambda _name: bar.update())
                        done = max((len(v) for v in times.values()), default=args.repeats)
                        bar.total -= (args.repeats - done) * len(forwards)
                        bar.refresh()
                        rows += model_rows(engines, archs, times, built.status, peaks, batch, seq, threads,
                                           chose=built.chose)
                del models, forwards
                built.models.clear()  # the next thread count's engines replace these
                builds[threads] = built
                gc.collect()
        finally:
            torch.set_num_threads(original)
    rows.sort(key=lambda r: order[(r["batch"], r["seq"], r["threads"])])  # stable: engine order kept
    return rows, builds


# -- ratios and targets (pure) --------------------------------------------------------------------
RATIO_REFERENCES = (LARGE, HF_BORT)
PEER_MIN_SPEEDUP = 1.0  # auto-bort vs the fastest peer that holds the guard, at every grid point
PEAK_SETTING, PEAK_MIN_PCT = (8, 128), 70.0  # auto-bort's encoder GOP/s as % of the int8 GEMM peak
LARGE_SETTING, LARGE_MIN_SPEEDUP = (1, 128), 50.0  # auto-bort vs hf-fp32-bert-large, CPUs with VNNI or AMX
BOUND_SHARE = 0.75  # CPUs without: at least this share of the bound the int8 peak sets
TARGET_THREADS = (1, 2)


def _index(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int, int, str], Mapping[str, Any]]:
    return {(r["batch"], r["seq"], r["threads"], r["engine"]): r for r in rows}


def _timed(row: Optional[Mapping[str, Any]]) -> bool:
    return row is not None and row.get("median_ms") is not None


def _at(rows: Sequence[Mapping[str, Any]], batch: int, seq: int, threads: int) -> list[Mapping[str, Any]]:
    return [r for r in rows if (r["batch"], r["seq"], r["threads"]) == (batch, seq, threads)]


def fastest_peer(rows: Sequence[Mapping[str, Any]], batch: int, seq: int,
                 threads: int) -> tuple[Optional[Mapping[str, Any]], str]:
    """The fastest peer row (non-torch candidate) timed at this setting -- it held its self-check, or it would
    not have been timed -- or None and why there is none. Calibrated rows (static int8 fixed on the bench's
    random tokens) are left out: auto-bort gets no check= batches, so it may not choose them either."""
    here = [r for r in _at(rows, batch, seq, threads) if r.get("kind") == "peer"]
    peers = [r for r in here if not r.get("calibrated")]
    timed = [r for r in peers if _timed(r)]
    if timed:
        return min(timed, key=lambda r: r["median_ms"]), ""
    if not peers:
        return None, ("no peer engine in this run (--engines)" if not here else
                      "only calibrated peers ran, which auto does not consider without check= batches")
    return None, "no peer engine held its self-check here: " + "; ".join(f"{r['engine']} {r['status']}"
                                                                        for r in peers)


def speedups(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Per setting where auto-bort was timed: each reference's ms / auto's (None where not timed), the fastest
    peer's name and its ms / auto's, auto's choice and its % of peak."""
    index = _index(rows)
    out = []
    for row in rows:
        if row["engine"] != AUTO or not _timed(row):
            continue
        b, s, t = row["batch"], row["seq"], row["threads"]
        entry: dict[str, Any] = {"batch": b, "seq": s, "threads": t, "chose": row.get("chose"),
                                 "dtype": row["dtype"], "median_ms": row["median_ms"],
                                 "pct_of_peak": row["pct_of_peak"]}
        for ref in RATIO_REFERENCES:
            other = index.get((b, s, t, ref))
            entry[f"vs_{ref}"] = other["median_ms"] / row["median_ms"] if _timed(other) else None
        peer, _why = fastest_peer(rows, b, s, t)
        entry["fastest_peer"] = peer["engine"] if peer else None
        entry["vs_fastest_peer"] = peer["median_ms"] / row["median_ms"] if peer else None
        out.append(entry)
    return out


def _target(target: str, reference: str, batch: int, seq: int, threads: int, threshold: Optional[float],
            unit: str) -> dict[str, Any]:
    return {"target": target, "engine": AUTO, "reference": reference, "batch": batch, "seq": seq,
            "threads": threads, "threshold": threshold, "unit": unit, "value": None, "status": "not measured",
            "detail": ""}


def _judge(result: dict[str, Any], value: float, ours_ms: float, needed_ms: float, short: str) -> dict[str, Any]:
    """PASS when value >= threshold, else MISS with the shortfall and the latency auto-bort needs."""
    result["value"] = value
    if value >= result["threshold"]:
        result["status"] = "PASS"
        return result
    faster = (1 - needed_ms / ours_ms) * 100
    result.update(status="MISS", shortfall=result["threshold"] - value, needed_ms=needed_ms,
                  detail=f"{short}; auto-bort needs to be {faster:.1f}% faster: {ours_ms:.2f} -> <= "
                         f"{needed_ms:.2f} ms")
    return result


def _auto_missing(index, settings, batch: int, seq: int, threads: int) -> Optional[str]:
    """Why auto-bort has no time at this setting, or None."""
    if (batch, seq, threads) not in settings:
        return "this setting is not in the run's grid (--batch, --seq, --threads)"
    ours = index.get((batch, seq, threads, AUTO))
    if ours is None:
        return f"{AUTO} not run (--engines)"
    if not _timed(ours):
        return f"{AUTO} {ours['status']}"
    return None


def peer_target(rows: Sequence[Mapping[str, Any]], batch: int, seq: int, threads: int) -> dict[str, Any]:
    """auto-bort >= PEER_MIN_SPEEDUP x the fastest peer that holds the guard at this setting (named)."""
    index, settings = _index(rows), set(_settings(rows))
    peer, why = fastest_peer(rows, batch, seq, threads)
    name = peer["engine"] if peer else "none"
    result = _target(f"auto-bort vs the fastest peer ({name}) >= {PEER_MIN_SPEEDUP:g}x", name, batch, seq, threads,
                     PEER_MIN_SPEEDUP, "x")
    missing = _auto_missing(index, settings, batch, seq, threads)
    if missing or peer is None:
        result["detail"] = missing or why
        return result
    ours = index[(batch, seq, threads, AUTO)]
    value = peer["median_ms"] / ours["median_ms"]
    result = _judge(result, value, ours["median_ms"], peer["median_ms"] / PEER_MIN_SPEEDUP,
                    f"short by {PEER_MIN_SPEEDUP - value:.3g}x ({name} {peer['median_ms']:.2f} ms)")
    if result["status"] == "MISS" and ours.get("chose") and f"{ours['chose']}-bort" == name:
        result["detail"] += f"; auto runs {ours['chose']} itself, so the gap is between two copies of one engine"
    return result


def _int8_peak(peaks: Mapping[tuple[int, str], Mapping[str, Any]], threads: int) -> Optional[float]:
    peak = peaks.get((threads, "int8"))
    return peak["gops"] if peak else None


def peak_target(rows: Sequence[Mapping[str, Any]], peaks: Mapping[tuple[int, str], Mapping[str, Any]],
                threads: int) -> dict[str, Any]:
    """auto-bort's encoder GOP/s >= PEAK_MIN_PCT % of the int8 GEMM peak at batch 8, seq 128 (whatever dtype it
    chose: the int8 peak is what this CPU can do)."""
    batch, seq = PEAK_SETTING
    index, settings = _index(rows), set(_settings(rows))
    result = _target(f"auto-bort % of the int8 GEMM peak >= {PEAK_MIN_PCT:g}%", "int8 peak", batch, seq, threads,
                     PEAK_MIN_PCT, "%")
    peak = _int8_peak(peaks, threads)
    missing = _auto_missing(index, settings, batch, seq, threads)
    if missing or peak is None:
        result["detail"] = missing or f"no int8 GEMM peak at {threads} threads"
        return result
    ours = index[(batch, seq, threads, AUTO)]
    value = ours["encoder_gop"] / (ours["median_ms"] / 1e3) / peak * 100
    result["peak_gops"] = peak
    return _judge(result, value, ours["median_ms"], ours["median_ms"] * value / PEAK_MIN_PCT,
                  f"short by {PEAK_MIN_PCT - value:.1f} points")


def large_target(rows: Sequence[Mapping[str, Any]], peaks: Mapping[tuple[int, str], Mapping[str, Any]],
                 threads: int, vnni: bool) -> dict[str, Any]:
    """auto-bort vs hf-fp32-bert-large at batch 1, seq 128: >= 50x on a CPU with VNNI or AMX; without, >= 75% of
    the bound = bert-large ms / (Bort encoder ops / int8 peak ops per s). The bound is in the line either way."""
    batch, seq = LARGE_SETTING
    index, settings = _index(rows), set(_settings(rows))
    ours, large = index.get((batch, seq, threads, AUTO)), index.get((batch, seq, threads, LARGE))
    peak = _int8_peak(peaks, threads)
    bound = None
    if _timed(large) and peak and ours is not None:
        bound = large["median_ms"] / (ours["encoder_gop"] / peak * 1e3)
    bound_text = f"{bound:.1f}x" if bound is not None else "n/a"
    if vnni:
        threshold = LARGE_MIN_SPEEDUP
        text = f"auto-bort vs hf-fp32-bert-large >= {threshold:g}x (CPU with VNNI/AMX; int8-peak bound {bound_text})"
    else:
        threshold = BOUND_SHARE * bound if bound is not None else None
        text = (f"auto-bort vs hf-fp32-bert-large >= {BOUND_SHARE:.0%} of the int8-peak bound {bound_text}"
                + (f" = {threshold:.1f}x" if threshold is not None else "") + " (CPU without VNNI/AMX)")
    result = _target(text, LARGE, batch, seq, threads, threshold, "x")
    result.update(bound=bound, vnni=vnni)
    why = _auto_missing(index, settings, batch, seq, threads)
    if why is None and large is None:
        why = f"{LARGE} not run (--engines)"
    elif why is None and not _timed(large):
        why = f"{LARGE} {large['status']}"
    if why is None and threshold is None:
        why = f"no int8 GEMM peak at {threads} threads to set the bound (needed without VNNI/AMX)"
    if why:
        result["detail"] = why
        return result
    ours_ms = ours["median_ms"]
    value = large["median_ms"] / ours_ms
    return _judge(result, value, ours_ms, large["median_ms"] / threshold, f"short by {threshold - value:.3g}x")


def evaluate_targets(rows: Sequence[Mapping[str, Any]], peaks: Mapping[tuple[int, str], Mapping[str, Any]],
                     vnni: Optional[bool] = None) -> list[dict]:
    """The latency targets: batch 1, seq 128 vs bert-large and batch 8, seq 128 % of the int8 peak (threads 1 and
    2), then auto vs the fastest peer at every grid point. Each is PASS, MISS (with the shortfall), or "not
    measured" with the reason. `vnni`: whether the CPU has VNNI or AMX (default: `has_vnni()`)."""
    vnni = has_vnni() if vnni is None else vnni
    results = [large_target(rows, peaks, t, vnni) for t in TARGET_THREADS]
    results += [peak_target(rows, peaks, t) for t in TARGET_THREADS]
    results += [peer_target(rows, b, s, t) for b, s, t in _settings(rows)]
    return results


GUARD_MIN_AGREEMENT = 99.0  # % of examples whose predicted class is fp32's
GUARD_MAX_METRIC_CHANGE = 0.5  # points of the task's metric


def guard_targets(report: Optional[Mapping[str, Any]], where: str, why: str = "") -> list[dict]:
    """The accuracy targets: auto's choice on a fine-tuned model agrees with fp32 on >= 99% of a dev sample, its
    metric within 0.5 points.

    `report` is a GuardReport.as_dict() whose "engine" names the candidate auto chose (None: not measured, for
    the reason `why`)."""
    engine = (report or {}).get("engine")
    who = f"auto's choice {engine}" if engine else "auto's choice"
    base = {"engine": engine or "auto", "reference": "fp32", "batch": None, "seq": None, "threads": None,
            "where": where, "value": None, "status": "not measured", "detail": why}
    agreement = {**base, "target": f"{who}: prediction agreement with fp32 >= {GUARD_MIN_AGREEMENT:g}%",
                 "threshold": GUARD_MIN_AGREEMENT, "unit": "%"}
    metric = {**base, "target": f"{who}: metric within {GUARD_MAX_METRIC_CHANGE:g} points of fp32",
              "threshold": GUARD_MAX_METRIC_CHANGE, "unit": "points"}
    if report is None:
        return [agreement, metric]
    if report.get("agreement") is None:
        agreement["detail"] = "a regression task predicts no classes; see the metric"
    else:
        value = report["agreement"] * 100
        ok = value >= GUARD_MIN_AGREEMENT
        agreement.update(value=value, status="PASS" if ok else "MISS", detail="" if ok else
                         f"short by {GUARD_MIN_AGREEMENT - value:.2f} points")
    change = report.get("metric_change")
    if change is not None:
        ok = abs(change) <= GUARD_MAX_METRIC_CHANGE
        metric.update(value=change, status="PASS" if ok else "MISS", detail="" if ok else
                      f"{abs(change) - GUARD_MAX_METRIC_CHANGE:.2f} points beyond the bar "
                      f"(fp32 {report['metric_fp32']:.2f}, {engine or 'optimised'} {report['metric_optimized']:.2f})")
    return [agreement, metric]


# -- reporting (pure) -----------------------------------------------------------------------------
def _num(x: Optional[float]) -> str:
    """Three significant digits below 100, one decimal above; '-' for nothing."""
    if x is None:
        return "-"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:#.3g}"


def _table(headers: Sequence[str], cells: Sequence[Sequence[str]], left: Iterable[int] = ()) -> str:
    """Aligned plain text: the columns numbered in `left` left-aligned (text), the rest right-aligned (numbers)."""
    left = set(left)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i in left else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def format_peak_table(backend_rows: Sequence[Mapping[str, Any]]) -> str:
    """threads | dtype | backend | ms | GOP/s | note: '*' marks each dtype's peak, a missing backend has its reason."""
    peaks = select_peaks(backend_rows)
    cells = []
    for r in backend_rows:
        peak = peaks.get((r["threads"], r["dtype"]))
        if r.get("gops") is None:
            note = r["status"]
        else:
            note = "*" if peak and peak["backend"] == r["backend"] else ""
        cells.append([str(r["threads"]), r["dtype"], r["backend"], _num(r.get("median_ms")), _num(r.get("best_ms")),
                      _num(r.get("gops")), note])
    return _table(["threads", "dtype", "backend", "median ms", "best ms", "GOP/s (best)", "note"], cells,
                  left=(1, 2, 6))


def _settings(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, int, int]]:
    return list(dict.fromkeys((r["batch"], r["seq"], r["threads"]) for r in rows))


def _engines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["engine"] for r in rows))


def _label(name: str) -> str:
    return "hf-fp32 bert-large" if name == LARGE else name.removesuffix("-bort")


def format_latency_table(rows: Sequence[Mapping[str, Any]], field: str = "median_ms") -> str:
    """Rows (batch, seq, threads), one column per engine: `field` (median ms or % of peak); '-' where not run."""
    index, engines = _index(rows), _engines(rows)
    cells = []
    for batch, seq, threads in _settings(rows):
        line = [str(batch), str(seq), str(threads)]
        for name in engines:
            row = index.get((batch, seq, threads, name))
            line.append(_num(row.get(field)) if row is not None else "-")
        cells.append(line)
    return _table(["batch", "seq", "threads", *(_label(n) for n in engines)], cells)


def format_ratio_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per setting: auto's choice and ms, its speed-up vs each reference and the fastest peer (named), % of peak."""
    cells = []
    for s in speedups(rows):
        peer = (f"{_num(s['vs_fastest_peer'])}x {s['fastest_peer']}" if s["fastest_peer"] else "- (none held)")
        cells.append([str(s["batch"]), str(s["seq"]), str(s["threads"]), s["chose"] or "-", _num(s["median_ms"]),
                      *(f"{_num(s[f'vs_{ref}'])}x" if s[f"vs_{ref}"] is not None else "-" for ref in RATIO_REFERENCES),
                      peer, f"{_num(s['pct_of_peak'])}% {s['dtype']}" if s["pct_of_peak"] is not None else "-"])
    headers = ["batch", "seq", "threads", "auto chose", "auto ms", *(f"vs {_label(r)}" for r in RATIO_REFERENCES),
               "vs fastest peer", "% of peak"]
    return _table(headers, cells, left=(3, 7))


def format_targets(results: Sequence[Mapping[str, Any]]) -> str:
    lines = ["TARGETS (CPU-inference issue; a MISS is a measurement, the exit code stays 0):"]
    for r in results:
        where = r.get("where") or f"batch {r['batch']}, seq {r['seq']}, threads {r['threads']}"
        if r["status"] == "not measured":
            lines.append(f"  not measured  {r['target']} at {where}: {r['detail']}")
            continue
        value = {"%": f"{r['value']:.1f}%", "points": f"{r['value']:+.2f} points"}.get(r["unit"], f"{r['value']:.2f}x")
        line = f"  {r['status']:<12}  {r['target']} at {where}: measured {value}"
        lines.append(line + (f" ({r['detail']})" if r["status"] == "MISS" else ""))
    return "\n".join(lines)


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _status_notes(engine_status: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One line per row that did not run everywhere: its reason, per thread count where they differ."""
    notes = []
    for name, per_threads in engine_status.items():
        bad = {t: s for t, s in per_threads.items() if s != OK}
        if not bad:
            continue
        if len(set(bad.values())) == 1 and len(bad) == len(per_threads):
            notes.append(f"  {name}: {next(iter(bad.values()))}")
        else:
            notes += [f"  {name} at {t} thread(s): {s}" for t, s in bad.items()]
    return notes


def format_report(meta: Mapping[str, Any], peak_rows: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                  targets: Sequence[Mapping[str, Any]]) -> str:
    """Hardware and method, GEMM peaks, auto's choices, latency, % of peak, speed-ups, then the targets."""
    a = meta["args"]
    m, k, n = a["peak_shape"]
    archs = meta["archs"]
    versions = meta["versions"]
    libs = " | ".join(f"{lib} {versions.get(lib) or 'not installed'}"
                      for lib in ("torch", "transformers", "onnxruntime", "openvino", "ctranslate2"))
    notes = _status_notes(meta["engine_status"])
    choices = [f"{t} thread(s): {c['chose']}" if c.get("chose") else f"{t} thread(s): {c.get('status')}"
               for t, c in meta["auto"].items()]
    lines = [
        f"CPU: {meta['cpu_summary']} ({meta['cores']} cores) | {libs} | python {meta['python']}",
        f"CPU used by other processes while timing: {_pct(meta['other_cpu_pct'])} of the machine "
        "(far above 0% means a busy neighbour skewed these numbers)",
        f"bort = {archs['bort']['short']} (vocab {archs['bort']['vocab_size']}), bert-large = "
        f"{archs['large']['short']} (vocab {archs['large']['vocab_size']}); random weights: latency depends only "
        "on the shapes; every column but hf-fp32 bert-large runs Bort",
        "hf = transformers BertModel fp32 (sdpa); <engine>-<scheme> = optimize(bort, engine, scheme=scheme, "
        "threads=t) (torch = bortzoo's own path; ort, openvino, ctranslate2 = peers); auto = optimize(bort, "
        "'auto', threads=t, shapes=the grid's (batch, seq))",
        f"{a['warmup']} warmup + {a['min_repeats']}..{a['repeats']} interleaved rounds per setting (stops after "
        f"{a['min_repeats']} once {a['max_seconds']:g} s are used), first engine rotating; median",
        *(["not timed:", *notes] if notes else []),
        "",
        f"GEMM peak: M={m} K={k} N={n} ({gemm_ops(m, k, n) / 1e9:.2f} GOP a call, 2 per multiply-add), "
        f"{a['peak_repeats']} calls after {a['peak_warmup']} warmup; GOP/s from the fastest call; "
        "* = the dtype's peak at that thread count",
        format_peak_table(peak_rows),
        "",
        f"auto chose: {'; '.join(choices) if choices else 'auto-bort not run'}",
        *(meta["auto"][t]["summary"] for t in meta["auto"] if meta["auto"][t].get("summary")),
        "",
        "Latency, median ms",
        format_latency_table(rows, "median_ms"),
        "",
        "Encoder GOP/s as % of the GEMM peak of each engine's matmul dtype (auto: its choice's)",
        format_latency_table(rows, "pct_of_peak"),
        "",
        "Speed-up of auto-bort = their median ms / auto's",
        format_ratio_table(rows),
        "",
        format_targets(targets),
    ]
    return "\n".join(lines)


# -- files ----------------------------------------------------------------------------------------
KERNEL_FLAGS = {"avx512f": "avx512", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni",
                "avx512_bf16": "avx512_bf16", "amx_int8": "amx", "amx_bf16": "amx", "asimddp": "asimddp",
                "i8mm": "i8mm", "bf16": "bf16", "sve": "sve"}
STEM_LIBRARIES = (("torch", "torch"), ("onnxruntime", "ort"), ("openvino", "ov"), ("ctranslate2", "ct2-"))


def kernel_flags(flags: Optional[Iterable[str]] = None) -> list[str]:
    """The CPU flags that choose int8/bf16 kernels, short ("avx512", "avx512_vnni", "amx"; "avx2" without AVX-512)."""
    flags = set(cpu_flags() if flags is None else flags)
    out = [short for flag, short in KERNEL_FLAGS.items() if flag in flags]
    if "avx512f" not in flags and "avx2" in flags:
        out.insert(0, "avx2")
    return list(dict.fromkeys(out))


def result_stem(meta: Mapping[str, Any]) -> str:
    """timm-style: stamped with the CPU, its kernel flags (and any ISA limit) and the versions of torch and each
    installed engine library, so results from different machines or installs never collide."""
    parts = ["cpu_latency", slug(meta["cpu"]) or "unknown-cpu"]
    if meta.get("cpu_model"):  # "family 25 model 17" -> "f25m17": two generations may share a name
        model = re.sub(r"family (\S+) model (\S+)", r"f\1m\2", slug(meta["cpu_model"], keep=" "))
        parts.append(model.replace(" ", "-"))
    parts += meta.get("kernel_flags", [])
    if meta.get("isa_limit"):
        parts.append(f"limit-{slug(meta['isa_limit'])}")
    versions = meta.get("versions", {})
    parts += [f"{short}{slug(versions[lib], keep='.')}" for lib, short in STEM_LIBRARIES if versions.get(lib)]
    return "-".join(parts)


def write_results(rows: Sequence[dict], meta: Mapping[str, Any], targets: Sequence[dict], out: Path) -> list[Path]:
    """CSV (one row per engine x setting) and JSON {"meta", "rows", "targets"}; returns both paths."""
    return bench_results(rows, meta, out, stem=result_stem(meta), targets=list(targets))


# -- command line ---------------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except where there is none to show (the help says what None means)."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser(engines: Optional[Sequence[Engine]] = None) -> argparse.ArgumentParser:
    engines = engine_list() if engines is None else engines
    parser = argparse.ArgumentParser(
        prog="bench/cpu_latency.py",
        description="CPU latency of Bort on every engine bortzoo.optimize chooses among (torch int8/bf16, ONNX "
                    "Runtime, OpenVINO, CTranslate2 with their schemes) and on optimize's own 'auto' choice, "
                    "against transformers fp32 (Bort and BERT-large), interleaved in one run, with the GEMM peak "
                    "of this CPU per dtype and a check of the CPU-inference targets. Random weights: latency "
                    "depends only on the shapes. An engine that cannot run here is a row saying why.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes")
    parser.add_argument("--seq", type=int, nargs="+", default=[32, 128, 512], help="sequence lengths")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="intra-op thread counts (torch.set_num_threads; each engine is built with optimize("
                             "threads=t) per count)")
    parser.add_argument("--engines", nargs="+", default=None, metavar="ENGINE",
                        help=f"rows to time, of: {', '.join(e.name for e in engines)}; default: all. auto-bort "
                             "always chooses among every candidate, timed or not")
    parser.add_argument("--arch", default="bort", help="the small model: a preset or D,A,H,I (RoBERTa vocabulary)")
    parser.add_argument("--large", default="bert-large", help="the large fp32 baseline: a preset or D,A,H,I")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards of each engine before each setting")
    parser.add_argument("--repeats", type=int, default=10, help="most timed rounds per setting")
    parser.add_argument("--min-repeats", type=int, default=None,
                        help=f"fewest timed rounds per setting (default: {DEFAULT_MIN_REPEATS}, or --repeats if fewer)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="a setting stops after --min-repeats rounds once its timed calls used this many seconds")
    parser.add_argument("--no-lead-in", dest="lead_in", action="store_false",
                        help="time each call right after another engine's (by default an untimed call of the same "
                             "engine comes first, so no other runtime's threads are still spinning)")
    parser.add_argument("--peak-shape", type=int, nargs=3, default=[1024, 1024, 1024], metavar=("M", "K", "N"),
                        help="GEMM of the peak microbenchmark (M rows = batch x seq tokens)")
    parser.add_argument("--peak-warmup", type=int, default=3, help="untimed GEMM calls per backend")
    parser.add_argument("--peak-repeats", type=int, default=20, help="timed GEMM calls per backend")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="where optimize keeps the engines' artefacts and auto's choice (default: a fresh "
                             "folder in this run's temporary directory, so every engine is built and auto measures "
                             "anew; give one to reuse them across runs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.add_argument("--out", default="bench/results", help="folder for the CSV and JSON, or 'none'")
    return parser


def add_guard_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("accuracy guard (a fine-tuned model on a task's dev split, after timing)")
    group.add_argument("--guard", metavar="MODEL", default=None,
                       help="a fine-tuned model (zoo name, Hub id or folder): optimize(engine='auto') chooses on "
                            "its dev rows, and the chosen engine's agreement and metric against fp32 are targets")
    group.add_argument("--guard-task", metavar="TASK", default=None, help="its task, e.g. sst2 (needs --guard)")
    group.add_argument("--guard-data", metavar="DIR", default=None,
                       help="a local folder laid out like the task's Hub dataset (default: the Hub dataset)")
    group.add_argument("--guard-examples", type=int, default=1000, help="dev rows to compare on")
    group.add_argument("--guard-pair-encoding", choices=("tokenizer", "bort"), default="tokenizer",
                       help="how the model encodes sentence pairs (a published bortzoo model: tokenizer)")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check everything: a bad value fails here, naming its flag, before anything is built."""
    engines = engine_list()
    parser = build_parser(engines)
    add_guard_args(parser)
    args = parser.parse_args(argv)
    if (args.guard is None) != (args.guard_task is None):
        parser.error("--guard and --guard-task go together: a fine-tuned model and the task it was tuned on")
    if args.guard_task is not None:
        from bortzoo.tasks import TASKS

        if args.guard_task not in TASKS:
            parser.error(f"--guard-task: unknown task {args.guard_task!r}; known: {', '.join(TASKS)}")
    if args.guard_examples < 1:
        parser.error(f"--guard-examples must be at least 1, got {args.guard_examples}")
    cpus = os.cpu_count() or 1
    for name in ("batch", "seq", "threads", "peak_shape"):
        for value in getattr(args, name):
            if value < 1:
                parser.error(f"--{name.replace('_', '-')} must be positive integers, got {value}")
    for t in args.threads:
        if t > cpus:
            parser.error(f"--threads {t} is more than the {cpus} CPUs of this machine (os.cpu_count())")
    if args.min_repeats is None:
        args.min_repeats = min(DEFAULT_MIN_REPEATS, args.repeats)
    for name in ("repeats", "min_repeats", "peak_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("warmup", "peak_warmup"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be at least 0, got {getattr(args, name)}")
    if args.min_repeats > args.repeats:
        parser.error(f"--min-repeats {args.min_repeats} is more than --repeats {args.repeats}")
    if not args.max_seconds > 0:
        parser.error(f"--max-seconds must be positive, got {args.max_seconds}")
    archs = {}
    for flag, key in (("--arch", "arch"), ("--large", "large")):
        try:
            archs[key] = get_arch(getattr(args, key))
        except BortzooError as err:
            parser.error(f"{flag}: {err}")
    for s in args.seq:
        for flag, key in (("--arch", "arch"), ("--large", "large")):
            if s > archs[key].max_positions:
                parser.error(f"--seq {s} is longer than the {archs[key].max_positions} position embeddings of "
                             f"{flag} {archs[key].short()}")
    if args.out.strip() == "":
        parser.error("--out is empty; give a folder, or 'none'")
    if args.out.strip().lower() != "none" and os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out!r} exists and is not a folder")
    if args.cache_dir is not None and os.path.exists(args.cache_dir) and not os.path.isdir(args.cache_dir):
        parser.error(f"--cache-dir {args.cache_dir!r} exists and is not a folder")
    try:
        args.engine_objs = select_engines(engines, list(dict.fromkeys(args.engines or [])))
    except BortzooError as err:
        parser.error(f"--engines: {err}")
    args.batch, args.seq, args.threads = (list(dict.fromkeys(v)) for v in (args.batch, args.seq, args.threads))
    args.engines = [e.name for e in args.engine_objs]
    args.arch_obj, args.large_obj = archs["arch"], archs["large"]
    return args


def _args_meta(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if not k.endswith("_obj") and k != "engine_objs"}


def run_guard(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[list[dict], Optional[dict]]:
    """The accuracy targets from --guard (untimed, after the latency runs), and what to record of the run: auto
    chooses on the fine-tuned model's dev rows (`optimize_for_task(..., engine="auto")`), so the agreement and
    metric measured are those of the engine it chose, named in the target rows."""
    if args.guard is None:
        return guard_targets(None, "a dev sample", "no --guard MODEL --guard-task TASK given (a fine-tuned model, "
                                                   "e.g. --guard bert-large-sst2 --guard-task sst2)"), None
    from bortzoo.serve.task_guard import optimize_for_task

    where = f"{args.guard} on {args.guard_task} dev, first {args.guard_examples} rows"
    log(f"accuracy guard: {where}, optimize(engine='auto')")
    try:
        optimized = optimize_for_task(args.guard, args.guard_task, data_dir=args.guard_data,
                                      examples=args.guard_examples, pair_encoding=args.guard_pair_encoding,
                                      engine="auto")
    except Exception as err:  # the latency results are kept; the guard says why it could not run
        return guard_targets(None, where, f"could not run: {first_line(err)}"), {"error": first_line(err)}
    report = optimized.bortzoo_task_guard
    log(f"accuracy guard ({report.engine}): {report.summary()}")
    chosen = getattr(optimized, "bortzoo_report", None)
    record = {"model": args.guard, "task": args.guard_task, "guard": report.as_dict(),
              "optimize": chosen.as_dict() if chosen is not None else None}
    return guard_targets(report.as_dict(), f"{where} ({report.examples} checked)"), record


def _auto_meta(builds: Mapping[int, Built], engines: Sequence[Engine]) -> dict[str, dict[str, Any]]:
    """Per thread count: what auto chose, in which dtype, and its OptimizeReport as a dict (or why it did not run)."""
    if not any(e.kind == "auto" for e in engines):
        return {}
    out = {}
    for t, built in builds.items():
        if built.report is None:
            out[str(t)] = {"chose": None, "status": built.status.get(AUTO, "not run")}
            continue
        report = built.report
        out[str(t)] = {"chose": report.chosen, "dtype": scheme_dtype(report.scheme), "status": OK,
                       "summary": report.summary(), "report": report.as_dict()}
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the benchmark; returns {"rows", "peaks", "targets", "meta", "files"} for callers such as the tests."""
    args = parse_args(argv)
    out = None if args.out.strip().lower() == "none" else Path(args.out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)  # fail before a long run, not after
    progress = not args.no_progress
    log = partial(print, file=sys.stderr)
    if ort is None:
        log(f"onnxruntime is not installed: its GEMM backends are skipped ({INSTALL_HINT})")
    archs = {"large": args.large_obj, "bort": args.arch_obj}
    engines = args.engine_objs

    with OtherCpuLoad() as other:
        peak_rows = measure_peaks(tuple(args.peak_shape), args.threads, args.peak_warmup, args.peak_repeats, progress)
        peaks = select_peaks(peak_rows)
        with tempfile.TemporaryDirectory(prefix="cpu-latency-") as tmp:
            cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tmp) / "engine-cache"
            rows, builds = measure_models(engines, archs, peaks, args, cache_dir, log, progress)
            gc.collect()  # the engines' sessions close before their files go

    guard_results, guard_record = run_guard(args, log)
    targets = evaluate_targets(rows, peaks) + guard_results
    engine_status = {e.name: {str(t): (OK if e.name not in b.status else b.status[e.name]) for t, b in builds.items()}
                     for e in engines}
    for e in engines:  # the hf rows are built once, outside the per-thread builds
        if e.kind == "hf":
            engine_status[e.name] = {str(t): OK for t in args.threads}
    meta = {
        **hardware_info(),
        "cpu_summary": cpu_summary(),
        "cpu_model": cpu_model(),
        "kernel_flags": kernel_flags(),
        "isa_limit": isa_limit(),
        "has_vnni": has_vnni(),
        "native_bf16": native_bf16(),
        "versions": library_versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "random_weights": True,
        "archs": {key: {"short": arch.short(), **arch.as_dict()} for key, arch in archs.items()},
        "engines": [{"name": e.name, "kind": e.kind, "engine": e.engine, "scheme": e.scheme, "dtype": e.dtype,
                     "model": e.model} for e in engines],
        "engine_status": engine_status,
        "builds": {e.name: {str(t): b.facts[e.name] for t, b in builds.items() if e.name in b.facts}
                   for e in engines if e.kind != "hf"},
        "auto": _auto_meta(builds, engines),
        "gemm": peak_rows,
        "peaks": list(peaks.values()),
        "other_cpu_pct": other.pct,
        "guard": guard_record,
        "args": _args_meta(args),
    }
    print(format_report(meta, peak_rows, rows, targets))
    files = write_results(rows, meta, targets, out) if out is not None else []
    for path in files:
        print(f"wrote {path}")
    return {"rows": rows, "peaks": peaks, "targets": targets, "meta": meta, "files": files}


if __name__ == "__main__":
    main()
