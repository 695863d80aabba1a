"""CPU inference latency of Bort: bortzoo's optimised model against transformers and onnxruntime, one run.

Engines, all on random weights (a forward costs the same whatever the numbers in the matrices
are, so latency depends only on the shapes):

    hf-fp32-bert-large   transformers BertModel, fp32, sdpa attention, shape --large (BERT-large)
    hf-fp32-bort         the same for shape --arch (Bort) -- the weights every Bort engine below shares
    ort-fp32-bort        those weights exported to ONNX (legacy exporter, opset 17) on onnxruntime's CPU
                         provider, default graph optimisations (ORT_ENABLE_ALL)
    ort-int8-bort        that ONNX file after `quantize_dynamic(weight_type=QInt8)`: the strongest
                         off-the-shelf CPU peer we know of. onnxruntime's transformer optimizer
                         (fused Attention/SkipLayerNorm graph) was *slower* on the Zen 5 we measured
                         (14.6 vs 13.3 ms int8 at batch 1, seq 128, 1 thread), so plain export +
                         quantize_dynamic is both the fair and the fastest peer; --ort-fusion times
                         the fused graph instead.
    bortzoo-int8-bort    `bortzoo.optimize(bort, precision="int8")`
    bortzoo-bf16-bort    `optimize(bort, precision="bf16")`, with --precisions int8 bf16

Every setting (batch, seq, threads) is timed interleaved: each round runs every engine once, the
starting engine rotating from round to round, so drift of the machine (turbo, heat, a neighbour)
hits all engines alike. A setting stops after --repeats rounds, or earlier once its rounds have
used --max-seconds and at least --min-repeats rounds are done (BERT-large takes ~30 s a forward
at batch 8, seq 512 on one thread). All engines get the same token ids and mask. Each runtime
keeps its default thread behaviour (OpenMP for torch; onnxruntime: intra_op_num_threads = the
thread count timed, inter_op_num_threads = 1, worker threads that spin briefly after a run). Idle
threads that still spin steal the CPU from the next engine (measured: torch at 2 threads ran 1.6x
slower right after onnxruntime, whose threads spin for longer than one Bort forward), and threads
put to sleep wake slowly (a 50 ms pause before each call made every engine 10-30% slower). So each
timed call comes after a 50 ms pause (the last engine's threads go to sleep) and one untimed call
of the same engine (its threads wake): every engine is timed as it runs back to back, alone, the
way latency benchmarks and servers under load see it (--no-lead-in turns this off).

Before the models, a GEMM microbenchmark (M x K x N, default 1024^3 = batch 8 x seq 128 tokens
through a 1024 x 1024 linear) measures the best rate this CPU reaches per data type at each
thread count, over the backends installed: fp32 torch.mm (MKL) and onnxruntime MatMul (MLAS);
bf16 torch.mm (oneDNN); int8 torch._int_mm, oneDNN's quantised linear (as torch exposes it) and
onnxruntime MatMulInteger (MLAS). The fastest backend of a dtype is its "peak"; each model row
reports encoder GOP/s (`Arch.encoder_flops`: matmuls only, 2 ops per multiply-add) and the
percentage of the peak of the dtype its matmuls run in (hf/ort fp32 -> fp32, ort-int8 and
bortzoo-int8 -> int8, bortzoo-bf16 -> bf16). The int8 engines do some matmuls (attention) in
floating point, so their % of the int8 peak is a lower bound on how busy the int8 units are.

At the end a TARGETS block checks the numbers against the goals of the CPU-inference issue
(batch 1, seq 128, threads 1 and 2: bortzoo-int8 >= 50x hf-fp32 bert-large, >= 3.5x hf-fp32 bort,
>= 1.0x ort-int8; batch 8, seq 128: >= 70% of the int8 peak). A miss is a measurement, not an
error: the exit code is 0 either way. Results go to CSV and JSON named after the CPU and versions.

onnxruntime is optional (pip install bortzoo[bench]); without it the ORT engines and ORT GEMM
backends are reported as "not installed" and everything else still runs.

    python bench/cpu_latency.py                                  # the whole grid: long (BERT-large!)
    python bench/cpu_latency.py --batch 1 8 --seq 128 --threads 1 2
    python bench/cpu_latency.py --engines ort-int8-bort bortzoo-int8-bort --precisions int8 --out none
    python bench/cpu_latency.py --arch 2,2,64,128 --large 2,2,64,128 --seq 16 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import io
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only; never reach out
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bortzoo.arch import Arch, get_arch  # noqa: E402
from bortzoo.errors import BortzooError  # noqa: E402
from bortzoo.serve.bench import OtherCpuLoad, build_model, hardware_info, make_inputs, percentile, slug  # noqa: E402
from bortzoo.serve.bench import write_results as bench_results  # noqa: E402

try:
    import onnxruntime as ort
except ImportError:  # optional: pip install bortzoo[bench]
    ort = None

try:
    from bortzoo.serve.optimize import optimize
    OPTIMIZE_ERROR: Optional[str] = None
except ImportError as _err:  # reported in the rows, never hidden: the tests require the bortzoo rows
    optimize = None
    OPTIMIZE_ERROR = f"{type(_err).__name__}: {_err}"

INSTALL_HINT = "pip install bortzoo[bench]"
NOT_INSTALLED = f"not installed ({INSTALL_HINT})"
OK = "ok"
LEAD_IN_MAX_S = 0.5  # calls longer than this get a pause instead of an untimed lead-in call
SETTLE_S = 0.05  # long enough for a runtime's spinning worker threads to go to sleep


# -- engines --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    """One way of running a model: which shape (large or bort), which runtime, which matmul dtype."""

    name: str
    label: str
    model: str  # "large" (--large) or "bort" (--arch)
    runtime: str  # "hf", "ort" or "bortzoo"
    dtype: str  # the dtype its matmuls run in, for % of peak

    @property
    def precision(self) -> str:
        return self.name.split("-")[1]


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("hf-fp32-bert-large", "hf-fp32 bert-large", "large", "hf", "fp32"),
    Engine("hf-fp32-bort", "hf-fp32 bort", "bort", "hf", "fp32"),
    Engine("ort-fp32-bort", "ort-fp32 bort", "bort", "ort", "fp32"),
    Engine("ort-int8-bort", "ort-int8 bort", "bort", "ort", "int8"),
    Engine("bortzoo-int8-bort", "bortzoo-int8 bort", "bort", "bortzoo", "int8"),
    Engine("bortzoo-bf16-bort", "bortzoo-bf16 bort", "bort", "bortzoo", "bf16"),
)}
BORTZOO_PRECISIONS = ("int8", "bf16")


def default_engines(precisions: Sequence[str]) -> list[str]:
    """The hf and ort engines plus bortzoo-<p>-bort for each precision asked, in ENGINES order."""
    wanted = {f"bortzoo-{p}-bort" for p in precisions}
    return [name for name, e in ENGINES.items() if e.runtime != "bortzoo" or name in wanted]


# -- targets of the CPU-inference issue -------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """bortzoo-int8 against a reference engine (speed-up = their ms / ours), or against the int8 peak (%)."""

    batch: int
    seq: int
    threads: tuple[int, ...]
    threshold: float
    reference: Optional[str] = None  # an engine name; None: % of the int8 GEMM peak
    engine: str = "bortzoo-int8-bort"

    def describe(self) -> str:
        ours = ENGINES[self.engine].label
        if self.reference is None:
            return f"{ours} % of the {ENGINES[self.engine].dtype} peak >= {self.threshold:g}%"
        return f"{ours} vs {ENGINES[self.reference].label} >= {self.threshold:g}x"


TARGETS: tuple[Target, ...] = (
    Target(1, 128, (1, 2), 50.0, "hf-fp32-bert-large"),
    Target(1, 128, (1, 2), 3.5, "hf-fp32-bort"),
    Target(1, 128, (1, 2), 1.0, "ort-int8-bort"),
    Target(8, 128, (1, 2), 70.0, None),
)


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
class _ExportWrapper(torch.nn.Module):
    """(input_ids, attention_mask) -> last_hidden_state: the plain-tensor signature the ONNX exporter wants."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.m = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


ONNX_NAMES = ("input_ids", "attention_mask", "last_hidden_state")


def export_onnx(model: torch.nn.Module, arch: Arch, path: Path) -> Path:
    """`model`'s weights as ONNX (legacy exporter, opset 17, batch and seq dynamic), via an eager-attention twin.

    sdpa does not export with the legacy exporter, so the same state dict goes into a BertModel
    built with eager attention; the two compute the same function.
    """
    from transformers import BertModel

    twin = BertModel(arch.to_bert_config(attn_implementation="eager"), add_pooling_layer=False)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    example = make_inputs(arch, 2, 8)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers("torch.onnx"):
        warnings.simplefilter("ignore")
        torch.onnx.export(_ExportWrapper(twin), (example["input_ids"], example["attention_mask"]), str(path),
                          input_names=list(ONNX_NAMES[:2]), output_names=[ONNX_NAMES[2]],
                          dynamic_axes={name: {0: "batch", 1: "seq"} for name in ONNX_NAMES},
                          opset_version=17, dynamo=False)
    return path


def fuse_onnx(path: Path, arch: Arch, out: Path) -> Path:
    """onnxruntime's transformer optimizer (fused Attention, SkipLayerNorm, BiasGelu) on the exported graph."""
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers("onnxruntime", ""):
        warnings.simplefilter("ignore")
        fused = optimize_model(str(path), model_type="bert", num_heads=arch.heads, hidden_size=arch.hidden)
        fused.save_model_to_file(str(out))
    return out


def quantize_onnx(path: Path, out: Path) -> Path:
    """Dynamic int8 quantisation (int8 weights, uint8 activations quantised at run time): the usual recipe."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers("onnxruntime", ""):
        warnings.simplefilter("ignore")
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    loggers = [logging.getLogger(n) if n else logging.getLogger() for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class OrtEngine:
    """An ONNX file run by onnxruntime: one session per thread count, built on first use and kept across shapes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sessions: dict[int, Any] = {}

    def session(self, threads: int) -> Any:
        if threads not in self.sessions:
            self.sessions[threads] = _ort_session(self.path, threads)
        return self.sessions[threads]

    def forward(self, threads: int, inputs: Mapping[str, torch.Tensor]) -> Callable[[], object]:
        """A call running the model on these inputs (int64 numpy, the same ids and mask as the torch engines)."""
        feed = {name: np.ascontiguousarray(inputs[name].numpy().astype(np.int64)) for name in ONNX_NAMES[:2]}
        return partial(self.session(threads).run, [ONNX_NAMES[2]], feed)

    def __call__(self, threads: int, inputs: Mapping[str, torch.Tensor]) -> np.ndarray:
        return self.forward(threads, inputs)()[0]


class TorchEngine:
    """A torch module called like a BertModel; threads are torch's global setting, set per setting."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def forward(self, threads: int, inputs: Mapping[str, torch.Tensor]) -> Callable[[], object]:
        return partial(self.model, **inputs)


def build_ort_engines(model: torch.nn.Module, arch: Arch, folder: Path, fusion: bool = False,
                      log: Callable[[str], None] = lambda _line: None) -> dict[str, OrtEngine]:
    """ort-fp32-bort and ort-int8-bort from `model`'s weights: export (optionally fuse), then quantize_dynamic."""
    folder.mkdir(parents=True, exist_ok=True)
    log(f"exporting {arch.short()} to ONNX")
    path = export_onnx(model, arch, folder / "bort.onnx")
    if fusion:
        log("fusing the ONNX graph (onnxruntime.transformers.optimizer)")
        path = fuse_onnx(path, arch, folder / "bort-fused.onnx")
    log("quantizing the ONNX graph to int8 (quantize_dynamic, QInt8 weights)")
    int8 = quantize_onnx(path, folder / "bort-int8.onnx")
    return {"ort-fp32-bort": OrtEngine(path), "ort-int8-bort": OrtEngine(int8)}


def build_engines(names: Sequence[str], arch: Arch, large: Arch, folder: Path, fusion: bool = False,
                  log: Callable[[str], None] = lambda _line: None) -> tuple[dict[str, Any], dict[str, str], dict]:
    """The runnable engines among `names`, why each other one cannot run, and facts about the builds."""
    runnable: dict[str, Any] = {}
    missing: dict[str, str] = {}
    facts: dict[str, Any] = {}
    if "hf-fp32-bert-large" in names:
        log(f"building hf-fp32 bert-large {large.short()}")
        runnable["hf-fp32-bert-large"] = TorchEngine(build_model(large))
    bort = build_model(arch)  # the weights every bort engine shares, built even when not timed itself
    if "hf-fp32-bort" in names:
        runnable["hf-fp32-bort"] = TorchEngine(bort)
    if any(ENGINES[n].runtime == "ort" for n in names):
        if ort is None:
            for n in names:
                if ENGINES[n].runtime == "ort":
                    missing[n] = NOT_INSTALLED
        else:
            built = build_ort_engines(bort, arch, folder, fusion, log)
            runnable.update({n: e for n, e in built.items() if n in names})
    for n in names:
        if ENGINES[n].runtime != "bortzoo":
            continue
        if optimize is None:
            missing[n] = f"bortzoo.optimize unavailable ({OPTIMIZE_ERROR})"
            continue
        log(f"optimize(precision={ENGINES[n].precision!r})")
        optimized = optimize(copy.deepcopy(bort), precision=ENGINES[n].precision)
        runnable[n] = TorchEngine(optimized)
        facts[n] = dict(getattr(optimized, "bortzoo_optimize", {}) or {})
    order = list(ENGINES)
    return dict(sorted(runnable.items(), key=lambda kv: order.index(kv[0]))), missing, facts


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


def model_rows(engines: Sequence[str], archs: Mapping[str, Arch], times: Mapping[str, Sequence[float]],
               missing: Mapping[str, str], peaks: Mapping[tuple[int, str], Mapping[str, Any]], batch: int, seq: int,
               threads: int) -> list[dict]:
    """One row per engine of one setting: latency, encoder GOP/s and % of its dtype's GEMM peak, or why not run."""
    rows = []
    for name in engines:
        engine = ENGINES[name]
        arch = archs[engine.model]
        ops = arch.encoder_flops(seq, batch)
        peak = peaks.get((threads, engine.dtype))
        row: dict[str, Any] = {
            "engine": name, "runtime": engine.runtime, "dtype": engine.dtype, "model": engine.model,
            "arch": arch.short(), "batch": batch, "seq": seq, "threads": threads, "encoder_gop": ops / 1e9,
            "status": OK, "median_ms": None, "p90_ms": None, "min_ms": None, "rounds": 0, "achieved_gops": None,
            "peak_gops": peak["gops"] if peak else None, "peak_backend": peak["backend"] if peak else None,
            "pct_of_peak": None,
        }
        if name in times and times[name]:
            median = statistics.median(times[name])
            row.update(median_ms=median * 1e3, p90_ms=percentile(times[name], 90) * 1e3,
                       min_ms=min(times[name]) * 1e3, rounds=len(times[name]), achieved_gops=ops / median / 1e9)
            if peak:
                row["pct_of_peak"] = row["achieved_gops"] / peak["gops"] * 100
        else:
            row["status"] = missing.get(name, "not measured")
        rows.append(row)
    return rows


def measure_models(engines: Sequence[str], archs: Mapping[str, Arch], runnable: Mapping[str, Any],
                   missing: Mapping[str, str], peaks: Mapping[tuple[int, str], Mapping[str, Any]],
                   args: argparse.Namespace, progress: bool = True) -> list[dict]:
    """Every (batch, seq, threads) setting, timed interleaved; torch's thread count is restored afterwards."""
    from tqdm.auto import tqdm

    settings = [(b, s, t) for b in args.batch for s in args.seq for t in args.threads]
    rows: list[dict] = []
    original = torch.get_num_threads()
    with tqdm(total=len(settings) * len(runnable) * args.repeats, desc="models", unit="fwd", file=sys.stderr,
              disable=not progress) as bar:
        try:
            with torch.inference_mode():
                for batch, seq, threads in settings:
                    torch.set_num_threads(threads)
                    bar.set_postfix(batch=batch, seq=seq, threads=threads)
                    inputs = {key: make_inputs(arch, batch, seq) for key, arch in archs.items()}
                    forwards = {name: engine.forward(threads, inputs[ENGINES[name].model])
                                for name, engine in runnable.items()}
                    times = time_setting(forwards, args.warmup, args.repeats, args.min_repeats, args.max_seconds,
                                         lead_in=args.lead_in, on_timed=lambda _name: bar.update())
                    done = max((len(v) for v in times.values()), default=args.repeats)
                    bar.total -= (args.repeats - done) * len(runnable)
                    bar.refresh()
                    rows += model_rows(engines, archs, times, missing, peaks, batch, seq, threads)
        finally:
            torch.set_num_threads(original)
    return rows


# -- ratios and targets (pure) --------------------------------------------------------------------
RATIO_REFERENCES = ("hf-fp32-bert-large", "hf-fp32-bort", "ort-int8-bort")


def _index(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int, int, str], Mapping[str, Any]]:
    return {(r["batch"], r["seq"], r["threads"], r["engine"]): r for r in rows}


def _timed(row: Optional[Mapping[str, Any]]) -> bool:
    return row is not None and row.get("median_ms") is not None


def speedups(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Per setting and bortzoo engine: each reference's ms / ours (None where either was not timed) and % of peak."""
    index = _index(rows)
    out = []
    for row in rows:
        if ENGINES[row["engine"]].runtime != "bortzoo" or not _timed(row):
            continue
        entry: dict[str, Any] = {"batch": row["batch"], "seq": row["seq"], "threads": row["threads"],
                                 "engine": row["engine"], "dtype": row["dtype"], "pct_of_peak": row["pct_of_peak"]}
        for ref in RATIO_REFERENCES:
            other = index.get((row["batch"], row["seq"], row["threads"], ref))
            entry[f"vs_{ref}"] = other["median_ms"] / row["median_ms"] if _timed(other) else None
        out.append(entry)
    return out


def evaluate_targets(rows: Sequence[Mapping[str, Any]], targets: Sequence[Target] = TARGETS) -> list[dict]:
    """Each target at each of its thread counts: PASS or MISS with the measured value and the shortfall,
    or "not measured" with the reason (setting not in the grid, engine not timed or not installed)."""
    index = _index(rows)
    settings = set(_settings(rows))
    results = []
    for target in targets:
        for threads in target.threads:
            result: dict[str, Any] = {
                "target": target.describe(), "engine": target.engine, "reference": target.reference or "peak",
                "batch": target.batch, "seq": target.seq, "threads": threads, "threshold": target.threshold,
                "unit": "%" if target.reference is None else "x", "value": None, "status": "not measured",
                "detail": "",
            }
            ours = index.get((target.batch, target.seq, threads, target.engine))
            other = (None if target.reference is None
                     else index.get((target.batch, target.seq, threads, target.reference)))
            why = []
            if (target.batch, target.seq, threads) not in settings:
                why.append("this setting is not in the run's grid (--batch, --seq, --threads)")
            for name, row in ((target.engine, ours), (target.reference, other)) if not why else ():
                if name is None:
                    continue
                if row is None:
                    why.append(f"{name} not run at this setting")
                elif not _timed(row):
                    why.append(f"{name} {row['status']}")
            if target.reference is None and _timed(ours) and ours.get("pct_of_peak") is None:
                why.append(f"no {ENGINES[target.engine].dtype} GEMM peak at {threads} threads")
            if why:
                result["detail"] = "; ".join(why)
                results.append(result)
                continue
            ours_ms = ours["median_ms"]
            if target.reference is None:
                value = ours["pct_of_peak"]
                needed_ms = ours_ms * value / target.threshold  # latency at which the % would hit the bar
                short = f"short by {target.threshold - value:.1f} points"
            else:
                value = other["median_ms"] / ours_ms
                needed_ms = other["median_ms"] / target.threshold
                short = f"short by {target.threshold - value:.3g}x"
            result["value"] = value
            if value >= target.threshold:
                result["status"] = "PASS"
            else:
                result["status"] = "MISS"
                faster = (1 - needed_ms / ours_ms) * 100
                result["detail"] = (f"{short}; {ENGINES[target.engine].label} needs to be {faster:.1f}% faster: "
                                    f"{ours_ms:.2f} -> <= {needed_ms:.2f} ms")
                result["shortfall"] = target.threshold - value
                result["needed_ms"] = needed_ms
            results.append(result)
    return results


GUARD_MIN_AGREEMENT = 99.0  # % of examples whose predicted class is fp32's
GUARD_MAX_METRIC_CHANGE = 0.5  # points of the task's metric


def guard_targets(report: Optional[Mapping[str, Any]], where: str, why: str = "") -> list[dict]:
    """The accuracy targets: int8 agrees with fp32 on >= 99% of a dev sample, metric within 0.5 points.

    `report` is a GuardReport.as_dict() (None: not measured, for the reason `why`)."""
    base = {"engine": "bortzoo-int8", "reference": "fp32", "batch": None, "seq": None, "threads": None,
            "where": where, "value": None, "status": "not measured", "detail": why}
    agreement = {**base, "target": f"bortzoo-int8 prediction agreement with fp32 >= {GUARD_MIN_AGREEMENT:g}%",
                 "threshold": GUARD_MIN_AGREEMENT, "unit": "%"}
    metric = {**base, "target": f"bortzoo-int8 metric within {GUARD_MAX_METRIC_CHANGE:g} points of fp32",
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
                      f"(fp32 {report['metric_fp32']:.2f}, int8 {report['metric_optimized']:.2f})")
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
    return _table(["batch", "seq", "threads", *(ENGINES[n].label for n in engines)], cells)


def format_ratio_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per setting and bortzoo engine: speed-up vs each reference (their ms / ours) and % of its dtype's peak."""
    cells = []
    for s in speedups(rows):
        cells.append([str(s["batch"]), str(s["seq"]), str(s["threads"]), ENGINES[s["engine"]].label,
                      *(f"{_num(s[f'vs_{ref}'])}x" if s[f"vs_{ref}"] is not None else "-" for ref in RATIO_REFERENCES),
                      f"{_num(s['pct_of_peak'])}% {s['dtype']}" if s["pct_of_peak"] is not None else "-"])
    headers = ["batch", "seq", "threads", "engine", *(f"vs {ENGINES[r].label}" for r in RATIO_REFERENCES),
               "% of peak"]
    return _table(headers, cells, left=(3,))


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


def format_report(meta: Mapping[str, Any], peak_rows: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                  targets: Sequence[Mapping[str, Any]]) -> str:
    """Hardware and method, GEMM peaks, latency, % of peak, speed-ups, then the targets."""
    a = meta["args"]
    m, k, n = a["peak_shape"]
    archs = meta["archs"]
    notes = [f"{name}: {status}" for name, status in meta["engine_status"].items() if status != OK]
    built = "; ".join(f"{name}: {', '.join(f'{key} {value}' for key, value in facts.items() if value is not None)}"
                      for name, facts in meta["optimize"].items() if facts)
    lines = [
        f"CPU: {meta['cpu']} ({meta['cores']} cores) | torch {meta['torch']} | transformers {meta['transformers']} | "
        f"onnxruntime {meta['onnxruntime'] or NOT_INSTALLED} | python {meta['python']}",
        f"CPU used by other processes while timing: {_pct(meta['other_cpu_pct'])} of the machine "
        "(far above 0% means a busy neighbour skewed these numbers)",
        f"bort = {archs['bort']['short']} (vocab {archs['bort']['vocab_size']}), bert-large = "
        f"{archs['large']['short']} (vocab {archs['large']['vocab_size']}); random weights: latency depends only "
        "on the shapes",
        "hf = transformers BertModel (sdpa); ort = onnxruntime CPU, "
        f"{'fused graph (--ort-fusion)' if a['ort_fusion'] else 'plain export'}, int8 = quantize_dynamic QInt8; "
        "bortzoo = bortzoo.optimize" + (f" ({built})" if built else ""),
        f"{a['warmup']} warmup + {a['min_repeats']}..{a['repeats']} interleaved rounds per setting (stops after "
        f"{a['min_repeats']} once {a['max_seconds']:g} s are used), first engine rotating; median",
        *(f"skipped {note}" for note in notes),
        "",
        f"GEMM peak: M={m} K={k} N={n} ({gemm_ops(m, k, n) / 1e9:.2f} GOP a call, 2 per multiply-add), "
        f"{a['peak_repeats']} calls after {a['peak_warmup']} warmup; GOP/s from the fastest call; "
        "* = the dtype's peak at that thread count",
        format_peak_table(peak_rows),
        "",
        "Latency, median ms",
        format_latency_table(rows, "median_ms"),
        "",
        "Encoder GOP/s as % of the GEMM peak of each engine's matmul dtype (fp32, int8 or bf16)",
        format_latency_table(rows, "pct_of_peak"),
        "",
        "Speed-up of bortzoo = their median ms / ours",
        format_ratio_table(rows),
        "",
        format_targets(targets),
    ]
    return "\n".join(lines)


# -- files ----------------------------------------------------------------------------------------
def result_stem(meta: Mapping[str, Any]) -> str:
    """timm-style: stamped with the CPU and library versions so results from different machines never collide."""
    ort_part = f"ort{slug(meta['onnxruntime'], keep='.')}" if meta.get("onnxruntime") else "no-ort"
    return f"cpu_latency-{slug(meta['cpu']) or 'unknown-cpu'}-torch{slug(meta['torch'], keep='.')}-{ort_part}"


def write_results(rows: Sequence[dict], meta: Mapping[str, Any], targets: Sequence[dict], out: Path) -> list[Path]:
    """CSV (one row per engine x setting) and JSON {"meta", "rows", "targets"}; returns both paths."""
    return bench_results(rows, meta, out, stem=result_stem(meta), targets=list(targets))


# -- command line ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/cpu_latency.py",
        description="CPU latency of Bort under bortzoo.optimize (int8, bf16) against transformers fp32 (Bort and "
                    "BERT-large) and onnxruntime fp32/int8, interleaved in one run, with the GEMM peak of this CPU "
                    "per dtype and a check of the CPU-inference targets. Random weights: latency depends only on "
                    "the shapes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes")
    parser.add_argument("--seq", type=int, nargs="+", default=[32, 128, 512], help="sequence lengths")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="intra-op thread counts (torch.set_num_threads; onnxruntime intra_op_num_threads)")
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=None, metavar="ENGINE",
                        help=f"engines to time, of: {', '.join(ENGINES)}; None: every hf and ort engine plus "
                             "bortzoo-<p>-bort for each of --precisions")
    parser.add_argument("--precisions", nargs="+", choices=BORTZOO_PRECISIONS, default=["int8"],
                        help="bortzoo precisions timed as bortzoo-<p>-bort (ignored when --engines is given)")
    parser.add_argument("--arch", default="bort", help="the small model: a preset or D,A,H,I (RoBERTa vocabulary)")
    parser.add_argument("--large", default="bert-large", help="the large fp32 baseline: a preset or D,A,H,I")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards of each engine before each setting")
    parser.add_argument("--repeats", type=int, default=10, help="most timed rounds per setting")
    parser.add_argument("--min-repeats", type=int, default=3, help="fewest timed rounds per setting")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="a setting stops after --min-repeats rounds once its timed calls used this many seconds")
    parser.add_argument("--no-lead-in", dest="lead_in", action="store_false",
                        help="time each call right after another engine's (by default an untimed call of the same "
                             "engine comes first, so no other runtime's threads are still spinning)")
    parser.add_argument("--peak-shape", type=int, nargs=3, default=[1024, 1024, 1024], metavar=("M", "K", "N"),
                        help="GEMM of the peak microbenchmark (M rows = batch x seq tokens)")
    parser.add_argument("--peak-warmup", type=int, default=3, help="untimed GEMM calls per backend")
    parser.add_argument("--peak-repeats", type=int, default=20, help="timed GEMM calls per backend")
    parser.add_argument("--ort-fusion", action="store_true",
                        help="run onnxruntime.transformers.optimizer on the export before quantizing (slower here)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.add_argument("--out", default="bench/results", help="folder for the CSV and JSON, or 'none'")
    return parser


def add_guard_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("accuracy guard (a fine-tuned model on a task's dev split, after timing)")
    group.add_argument("--guard", metavar="MODEL", default=None,
                       help="a fine-tuned model (zoo name, Hub id or folder) to compare optimize(int8) with fp32 on")
    group.add_argument("--guard-task", metavar="TASK", default=None, help="its task, e.g. sst2 (needs --guard)")
    group.add_argument("--guard-data", metavar="DIR", default=None,
                       help="a local folder laid out like the task's Hub dataset (default: the Hub dataset)")
    group.add_argument("--guard-examples", type=int, default=1000, help="dev rows to compare on")
    group.add_argument("--guard-pair-encoding", choices=("tokenizer", "bort"), default="tokenizer",
                       help="how the model encodes sentence pairs (a published bortzoo model: tokenizer)")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check everything: a bad value fails here, naming its flag, before anything is built."""
    parser = build_parser()
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
    args.batch, args.seq, args.threads = (list(dict.fromkeys(v)) for v in (args.batch, args.seq, args.threads))
    args.engines = list(dict.fromkeys(args.engines)) if args.engines else default_engines(args.precisions)
    args.arch_obj, args.large_obj = archs["arch"], archs["large"]
    return args


def _versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {"onnxruntime": getattr(ort, "__version__", None) if ort else None}
    try:
        import onnx
        versions["onnx"] = onnx.__version__
    except ImportError:
        versions["onnx"] = None
    return versions


def _args_meta(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if not k.endswith("_obj")}


def run_guard(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict]:
    """The accuracy targets from --guard (untimed, after the latency runs), or why they are not measured."""
    if args.guard is None:
        return guard_targets(None, "a dev sample", "no --guard MODEL --guard-task TASK given (a fine-tuned model, "
                                                   "e.g. --guard bert-large-sst2 --guard-task sst2)")
    from bortzoo.serve.task_guard import task_guard

    where = f"{args.guard} on {args.guard_task} dev, first {args.guard_examples} rows"
    log(f"accuracy guard: {where}")
    try:
        report = task_guard(args.guard, args.guard_task, data_dir=args.guard_data, examples=args.guard_examples,
                            pair_encoding=args.guard_pair_encoding)
    except Exception as err:  # the latency results are kept; the guard says why it could not run
        return guard_targets(None, where, f"could not run: {err}")
    log(f"accuracy guard: {report.summary()}")
    return guard_targets(report.as_dict(), f"{where} ({report.examples} checked)")


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the benchmark; returns {"rows", "peaks", "targets", "meta", "files"} for callers such as the tests."""
    args = parse_args(argv)
    out = None if args.out.strip().lower() == "none" else Path(args.out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)  # fail before a long run, not after
    progress = not args.no_progress
    log = partial(print, file=sys.stderr)
    if ort is None:
        log(f"onnxruntime is not installed: the ORT engines and GEMM backends are skipped ({INSTALL_HINT})")
    archs = {"large": args.large_obj, "bort": args.arch_obj}
    info = {**hardware_info(), **_versions()}

    with OtherCpuLoad() as other:
        peak_rows = measure_peaks(tuple(args.peak_shape), args.threads, args.peak_warmup, args.peak_repeats, progress)
        peaks = select_peaks(peak_rows)
        with tempfile.TemporaryDirectory(prefix="cpu-latency-") as tmp:
            runnable, missing, facts = build_engines(args.engines, args.arch_obj, args.large_obj, Path(tmp),
                                                     args.ort_fusion, log)
            rows = measure_models(args.engines, archs, runnable, missing, peaks, args, progress)
            del runnable  # close the sessions before their files go

    targets = evaluate_targets(rows) + run_guard(args, log)
    meta = {
        **info,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "random_weights": True,
        "archs": {key: {"short": arch.short(), **arch.as_dict()} for key, arch in archs.items()},
        "engine_status": {name: (OK if name not in missing else missing[name]) for name in args.engines},
        "optimize": facts,
        "gemm": peak_rows,
        "peaks": list(peaks.values()),
        "other_cpu_pct": other.pct,
        "args": _args_meta(args),
    }
    print(format_report(meta, peak_rows, rows, targets))
    files = write_results(rows, meta, targets, out) if out is not None else []
    for path in files:
        print(f"wrote {path}")
    return {"rows": rows, "peaks": peaks, "targets": targets, "meta": meta, "files": files}


if __name__ == "__main__":
    main()
