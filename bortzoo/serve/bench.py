"""CPU inference latency of BERT-family architectures: Bort against BERT-large and friends.

The paper's speed claim is about shapes, not trained weights, so every model here is built
with random weights: a forward pass costs the same whatever the numbers in the matrices are.
Models are timed interleaved (each round runs every model once) so that slow drift of the
machine (turbo, heat, a noisy neighbour) hits all of them alike instead of whichever ran last.

Torch and transformers are imported lazily so that `bortzoo --help` stays fast.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError
from bortzoo.serve.timing import time_interleaved
from bortzoo.files import write_text
from bortzoo.serve import cpu

if TYPE_CHECKING:
    import torch
    from transformers import BertModel

__all__ = [
    "bench",
    "validate",
    "build_model",
    "make_inputs",
    "time_interleaved",
    "summarise",
    "format_table",
    "format_report",
    "hardware_info",
    "result_stem",
    "write_results",
    "Plan",
]

DEFAULT_MODELS = ("bort", "bert-large", "bert-base")
ATTN_IMPLEMENTATION = "sdpa"
INPUT_SEED = 0
WEIGHT_SEED = 0
# CPU speed-ups claimed for Bort (alexa/bort README; its protocol was never published),
# printed next to what this machine measures: (slower model, faster model) -> claim.
CLAIMED_SPEEDUPS = {
    ("bert-large", "bort"): "claimed 20x (alexa/bort README)",
    ("bert-base", "bort"): "claimed 7.9x (alexa/bort README)",
    ("bert-large", "bort optimized"): "fp32 BERT-large vs Bort by bortzoo.optimize; issue 7 targets 50x",
    ("bort", "bort optimized"): "fp32 vs optimised Bort; issue 7 targets 3.5x",
}
OPTIMIZED_SUFFIX = "optimized"
OPTIMIZED_NOTE = (" (rows '... optimized': bortzoo.optimize(engine='auto'), the fastest engine that holds its self-check "
                  "on this CPU at these shapes; the engine column names it)")
RANDOM_WEIGHTS_NOTE = "random weights: latency depends only on the shapes"


@dataclass(frozen=True)
class Plan:
    """A validated benchmark: what to time, so nothing is built before every input is known good."""

    archs: dict[str, Arch]  # display name -> architecture, in the order given
    batch: tuple[int, ...]
    seq: tuple[int, ...]
    threads: tuple[int, ...]
    warmup: int
    repeats: int
    optimized: bool = False  # also time each model after bortzoo.optimize(engine="auto"), as "<name> optimized"

    @property
    def timed_forwards(self) -> int:
        """Total timed forward passes, the length of the progress bar."""
        models = len(self.archs) * (2 if self.optimized else 1)
        return models * len(self.batch) * len(self.seq) * len(self.threads) * self.repeats

    def rows_archs(self) -> dict[str, Arch]:
        """Every timed row's name -> architecture (the optimised twins share their model's)."""
        if not self.optimized:
            return dict(self.archs)
        return {**self.archs, **{optimized_name(name): arch for name, arch in self.archs.items()}}


def optimized_name(name: str) -> str:
    return f"{name} {OPTIMIZED_SUFFIX}"


# -- the public entry point -------------------------------------------------------------------
def bench(
    models: Union[str, Sequence[str]] = DEFAULT_MODELS,
    batch: Union[int, Sequence[int]] = (1,),
    seq: Union[int, Sequence[int]] = (128,),
    threads: Union[int, Sequence[int], None] = None,
    warmup: int = 3,
    repeats: int = 20,
    out: Optional[str] = "bench/results",
    progress: bool = True,
    optimized: bool = False,
) -> list[dict]:
    """Time CPU inference (fp32, sdpa attention) of architectures and compare with their FLOPs.

    Every model gets random weights: latency depends only on the shapes. Each round times one
    forward of every model in turn, so drift of the machine affects all models alike.

    Args:
        models: Architectures to time: presets (bort, bert-large, bert-base, roberta-large) or
            "D,A,H,I" strings such as "4,8,1024,768" (RoBERTa vocabulary); several separated
            by spaces (--models bort bert-large). Python callers may also pass `Arch` objects.
        batch: Batch sizes to time, e.g. --batch 1 8.
        seq: Sequence lengths to time (at most the model's position embeddings, 512 for BERT).
        threads: Intra-op CPU thread counts to time; default: torch's current setting.
        warmup: Untimed forwards per model before timing each setting.
        repeats: Timed rounds per setting; every round runs each model once.
        out: Folder for the CSV and JSON results (named after the CPU, thread counts and
            library versions); null to write nothing.
        progress: Show a progress bar on stderr.
        optimized: Also time each model after `bortzoo.optimize(engine="auto")` (the fastest engine
            that holds its self-check here, chosen at these shapes and the first thread count), as a
            row named "<model> optimized" whose engine column names the engine. For every engine side
            by side and the CPU's peak rates, run bench/cpu_latency.py.

    Returns:
        One dict per (model, batch, seq, threads) with median_ms, p90_ms, vs_fastest,
        flop_ratio and gflops_per_s.
    """
    plan = validate(models, batch, seq, threads, warmup, repeats, out, optimized)
    out_dir = _prepare_out(out)
    info = hardware_info()
    rows = measure(plan, progress=progress)
    print(format_report(rows, info, plan))
    if out_dir is not None:
        for path in write_results(rows, results_meta(info, plan), out_dir):
            print(f"wrote {path}")
    return rows


# -- validation -------------------------------------------------------------------------------
def validate(
    models: Union[str, Arch, Sequence[Union[str, Arch]]],
    batch: Union[int, Sequence[int]],
    seq: Union[int, Sequence[int]],
    threads: Union[int, Sequence[int], None],
    warmup: int,
    repeats: int,
    out: Optional[str] = None,
    optimized: bool = False,
) -> Plan:
    """Check every input before any model is built, so a typo fails in milliseconds, not minutes."""
    archs = _resolve_models(models)
    batch_t = _positive_ints("batch", batch)
    seq_t = _positive_ints("seq", seq)
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    threads_t = _positive_ints("threads", threads)
    cpus = os.cpu_count() or 1
    for t in threads_t:
        if t > cpus:
            raise BortzooError(f"threads {t} is more than the {cpus} CPUs of this machine (os.cpu_count())")
    for s in seq_t:
        for name, arch in archs.items():
            if s > arch.max_positions:
                raise BortzooError(
                    f"seq {s} is longer than the {arch.max_positions} position embeddings of {name} {arch.short()}"
                )
    if _not_int(warmup) or warmup < 0:
        raise BortzooError(f"warmup must be a non-negative integer, got {warmup!r}")
    if _not_int(repeats) or repeats < 1:
        raise BortzooError(f"repeats must be a positive integer, got {repeats!r}")
    if out is not None:
        if not str(out).strip():
            raise BortzooError("out is empty; give a folder, or null to write nothing")
        if os.path.exists(out) and not os.path.isdir(out):
            raise BortzooError(f"out {out!r} exists and is not a folder")
    if not isinstance(optimized, bool):
        raise BortzooError(f"optimized must be true or false, got {optimized!r}")
    return Plan(archs, batch_t, seq_t, threads_t, warmup, repeats, optimized)


def _resolve_models(models: Union[str, Arch, Sequence[Union[str, Arch]]]) -> dict[str, Arch]:
    """Name -> Arch in the order given; a duplicate name would make two rows indistinguishable."""
    specs = [models] if isinstance(models, (str, Arch)) else list(models)
    if not specs:
        raise BortzooError("models is empty; name at least one, e.g. bort")
    archs: dict[str, Arch] = {}
    for spec in specs:
        arch = get_arch(spec)  # raises BortzooError naming an unknown model
        name = arch.short() if isinstance(spec, Arch) else str(spec).strip()
        if name in archs:
            raise BortzooError(f"model {name!r} is listed twice")
        archs[name] = arch
    return archs


def _not_int(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _positive_ints(name: str, values: Union[int, Sequence[int]]) -> tuple[int, ...]:
    """A non-empty tuple of positive ints without repeats (a repeat would only time the same thing twice)."""
    items = [values] if isinstance(values, int) else list(values)
    if not items:
        raise BortzooError(f"{name} is empty; give at least one value")
    for value in items:
        if _not_int(value) or value < 1:
            raise BortzooError(f"{name} must be positive integers, got {value!r}")
    return tuple(dict.fromkeys(items))


def _prepare_out(out: Optional[str]) -> Optional[Path]:
    """Create the results folder before timing, so an unwritable path fails before a long run."""
    if out is None:
        return None
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BortzooError(f"cannot create the results folder {out!r}: {err}") from None
    return path


# -- models and inputs ------------------------------------------------------------------------
def build_model(arch: Arch) -> "BertModel":
    """A random-weight fp32 encoder of this shape (no pooler, as Bort has none), ready for inference."""
    import torch
    from transformers import BertModel

    with torch.random.fork_rng(devices=[]):  # reproducible weights without touching the caller's RNG
        torch.manual_seed(WEIGHT_SEED)
        model = BertModel(arch.to_bert_config(attn_implementation=ATTN_IMPLEMENTATION), add_pooling_layer=False)
    return model.to(torch.float32).eval()


def make_inputs(arch: Arch, batch: int, seq: int, seed: int = INPUT_SEED) -> dict[str, "torch.Tensor"]:
    """Seeded random token ids in the model's vocabulary and a full attention mask (no padding)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, arch.vocab_size, (batch, seq), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


# -- timing -----------------------------------------------------------------------------------
def measure(plan: Plan, progress: bool = True, models: Optional[dict[str, "torch.nn.Module"]] = None) -> list[dict]:
    """Build each model once, then time every (batch, seq, threads) setting; torch's thread count is restored.

    `models` is a cache a long-lived caller (the demo) keeps between calls: rows missing from it are built
    and added to it, so BERT-large's random weights are made once, not per measurement.
    """
    import torch
    from tqdm.auto import tqdm

    models = {} if models is None else models
    for name, arch in plan.archs.items():
        if name not in models:
            models[name] = build_model(arch)
    if plan.optimized:
        from bortzoo.serve.optimize import optimize

        for name in plan.archs:
            if optimized_name(name) not in models:
                models[optimized_name(name)] = optimize(
                    models[name], engine="auto", threads=plan.threads[0],
                    shapes=[(b, s) for b in plan.batch for s in plan.seq])
    archs = plan.rows_archs()
    models = {name: models[name] for name in archs}  # only this plan's rows, in its order
    original_threads = torch.get_num_threads()
    rows: list[dict] = []
    with tqdm(total=plan.timed_forwards, desc="bench", unit="fwd", file=sys.stderr, disable=not progress) as bar:
        try:
            with torch.inference_mode():
                for batch in plan.batch:
                    for seq in plan.seq:
                        for threads in plan.threads:
                            torch.set_num_threads(threads)
                            bar.set_postfix(batch=batch, seq=seq, threads=threads)
                            forwards = {
                                name: partial(model, **make_inputs(archs[name], batch, seq))
                                for name, model in models.items()
                            }
                            times = time_interleaved(
                                forwards, plan.warmup, plan.repeats, on_timed=lambda _name: bar.update()
                            )
                            rows += summarise(archs, times, batch, seq, threads)
        finally:
            torch.set_num_threads(original_threads)
    for row in rows:
        report = getattr(models[row["model"]], "bortzoo_report", None)
        row["engine"] = report.chosen if report is not None else f"transformers-fp32-{ATTN_IMPLEMENTATION}"
    return rows


# -- statistics -------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default), defined for a single value too."""
    if not values:
        raise BortzooError("percentile of no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summarise(archs: Mapping[str, Arch], times: Mapping[str, Sequence[float]], batch: int, seq: int,
              threads: int) -> list[dict]:
    """Rows of one setting: median and p90 in ms, and each model against the fastest in time and in FLOPs.

    Comparing `vs_fastest` with `flop_ratio` shows how far the measured speed-up falls short of
    (or exceeds) what the matmul count alone predicts.
    """
    medians = {name: statistics.median(times[name]) for name in archs}
    fastest = min(medians, key=medians.__getitem__)
    fastest_flops = archs[fastest].encoder_flops(seq, batch)
    rows = []
    for name, arch in archs.items():
        flops = arch.encoder_flops(seq, batch)
        rows.append({
            "model": name,
            "arch": arch.short(),
            "params": arch.total_params(mlm_head=False),
            "gflops": flops / 1e9,
            "batch": batch,
            "seq": seq,
            "threads": threads,
            "median_ms": medians[name] * 1e3,
            "p90_ms": percentile(times[name], 90) * 1e3,
            "vs_fastest": medians[name] / medians[fastest],
            "flop_ratio": flops / fastest_flops,
            "gflops_per_s": flops / medians[name] / 1e9,
        })
    return rows


# -- reporting --------------------------------------------------------------------------------
def _num(x: float) -> str:
    """Three significant digits below 100, one decimal above: readable for 0.05 ms and 330 M alike."""
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:#.3g}"


_COLUMNS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("model", lambda r: r["model"]),
    ("arch", lambda r: r["arch"]),
    ("engine", lambda r: r.get("engine", "")),
    ("params M", lambda r: _num(r["params"] / 1e6)),
    ("GFLOPs", lambda r: _num(r["gflops"])),
    ("batch", lambda r: str(r["batch"])),
    ("seq", lambda r: str(r["seq"])),
    ("threads", lambda r: str(r["threads"])),
    ("median ms", lambda r: _num(r["median_ms"])),
    ("p90 ms", lambda r: _num(r["p90_ms"])),
    ("x-fastest", lambda r: _num(r["vs_fastest"])),
    ("FLOP ratio", lambda r: _num(r["flop_ratio"])),
    ("GFLOP/s", lambda r: _num(r["gflops_per_s"])),
)
_LEFT_ALIGNED = {"model", "arch", "engine"}


def format_table(rows: Sequence[dict]) -> str:
    """Plain-text table with aligned columns: text left, numbers right."""
    cells = [[fmt(row) for _, fmt in _COLUMNS] for row in rows]
    headers = [title for title, _ in _COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if h in _LEFT_ALIGNED else v.rjust(w)
                         for v, w, h in zip(values, widths, headers)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def format_ratios(rows: Sequence[dict]) -> list[str]:
    """One line per setting and claimed pair: the measured slow/fast ratio beside the FLOP ratio and the claim."""
    by_setting: dict[tuple[int, int, int], dict[str, dict]] = {}
    for row in rows:
        by_setting.setdefault((row["batch"], row["seq"], row["threads"]), {})[row["model"].lower()] = row
    lines = []
    for (batch, seq, threads), named in by_setting.items():
        for (slow, fast), claim in CLAIMED_SPEEDUPS.items():
            if slow in named and fast in named:
                a, b = named[slow], named[fast]
                lines.append(
                    f"batch {batch}, seq {seq}, threads {threads}: {slow} / {fast}: "
                    f"measured {a['median_ms'] / b['median_ms']:.1f}x, FLOP ratio {a['gflops'] / b['gflops']:.1f}x, "
                    f"{claim}"
                )
    return lines


def format_report(rows: Sequence[dict], info: Mapping[str, Any], plan: Plan) -> str:
    """Header (hardware, versions, method, the random-weights notice), table, then the bert-large/bort lines."""
    header = [
        f"CPU: {info['cpu']} ({info['cores']} cores) | torch {info['torch']} | "
        f"transformers {info['transformers']} | python {info['python']}",
        f"fp32, {ATTN_IMPLEMENTATION} attention{OPTIMIZED_NOTE if plan.optimized else ''}, no MLM head; "
        f"{plan.warmup} warmup + {plan.repeats} timed forwards "
        f"per model and setting, interleaved",
        RANDOM_WEIGHTS_NOTE,
        "",
    ]
    ratios = format_ratios(rows)
    return "\n".join(header + [format_table(rows)] + ([""] + ratios if ratios else []))


def hardware_info() -> dict[str, Any]:
    """What a latency number depends on besides the model: CPU, cores and library versions."""
    import torch
    import transformers

    return {
        "cpu": cpu.cpu_name(),
        "cpu_flags": cpu.cpu_summary(),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def results_meta(info: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    """Everything needed to reproduce or compare a results file."""
    return {
        **info,
        "threads": list(plan.threads),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "random_weights": True,
        "warmup": plan.warmup,
        "repeats": plan.repeats,
        "dtype": "float32",
        "attn_implementation": ATTN_IMPLEMENTATION,
        "archs": {name: arch.as_dict() for name, arch in plan.archs.items()},
        "optimized": "auto" if plan.optimized else None,
    }


def slug(text: str, keep: str = "") -> str:
    return re.sub(rf"[^a-z0-9{re.escape(keep)}]+", "-", text.lower()).strip("-")


def result_stem(info: Mapping[str, Any], threads: Sequence[int]) -> str:
    """timm-style file name stamping hardware and software, so results from different machines never collide."""
    return (f"latency-{slug(info['cpu']) or 'unknown-cpu'}-t{'-'.join(str(t) for t in threads)}"
            f"-torch{slug(info['torch'], keep='.')}-transformers{slug(info['transformers'], keep='.')}")




def write_results(rows: Sequence[dict], meta: Mapping[str, Any], out: Union[str, Path], stem: Optional[str] = None,
                  **extra: Any) -> list[Path]:
    """The rows as CSV and as JSON ({"meta", "rows", **extra}) in `out`, named `stem` (default: `result_stem`);
    returns both paths. `bench/cpu_latency.py` writes its tables (and targets) through here too."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or result_stem(meta, meta["threads"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = folder / f"{stem}.csv", folder / f"{stem}.json"
    write_text(csv_path, buffer.getvalue())
    write_text(json_path, json.dumps({"meta": dict(meta), "rows": list(rows), **extra}, indent=2) + "\n")
    return [csv_path, json_path]


def alternating_orders(names: Sequence[str], rounds: int) -> list[tuple[str, ...]]:
    """A B, B A, A B, ...: alternating who goes first cancels a steady drift instead of favouring one side."""
    forward, backward = tuple(names), tuple(reversed(names))
    return [forward if r % 2 == 0 else backward for r in range(rounds)]


class OtherCpuLoad:
    """CPU time other processes took while we timed, as a share of the machine (Linux; else None).

    Busy time of all CPUs (/proc/stat) minus this process's own CPU time (children included): the
    part of the machine someone else used. Far above 0% means a neighbour skewed the numbers.
    """

    def __enter__(self) -> "OtherCpuLoad":
        self.pct: Optional[float] = None
        self._start = (time.perf_counter(), self._busy_seconds(), self._own_seconds())
        return self

    def __exit__(self, *exc: Any) -> None:
        wall, busy, own = time.perf_counter(), self._busy_seconds(), self._own_seconds()
        if busy is not None and self._start[1] is not None and wall > self._start[0]:
            other = (busy - self._start[1]) - (own - self._start[2])
            self.pct = max(other, 0.0) / ((wall - self._start[0]) * (os.cpu_count() or 1)) * 100

    @staticmethod
    def _busy_seconds() -> Optional[float]:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                values = [int(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user nice system idle iowait irq softirq steal

    @staticmethod
    def _own_seconds() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

