"""The latency panel: both architectures timed live on this CPU with `bortzoo bench`'s own code.

The models are random-weight encoders of the real shapes (`bench.build_model`: latency depends only on
the shapes), built once and kept. Each click validates its settings as `bortzoo bench` does, times the
models interleaved over the chosen sequence lengths (`bench.measure`), and gives back the rows, a
speed-up summary with the hardware, and a chart of latency against sequence length.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Optional, Sequence

from bortzoo.arch import Arch
from bortzoo.demo import SIDES
from bortzoo.serve import bench

SEQ_CHOICES = (16, 32, 64, 128, 256, 512)
TABLE_HEADERS = ("model", "⟨D,A,H,I⟩", "batch", "seq", "threads", "median ms", "p90 ms", "× fastest", "FLOP ratio")


class LatencyPanel:
    """Random-weight models of each side's architecture, built on first use and kept for later clicks."""

    def __init__(self, archs: dict[str, Arch]):
        self.archs = dict(archs)
        self._models: dict = {}  # bench.measure's cache: name → model (and "<name> optimized")
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Build the fp32 models now (BERT-large takes seconds), so the first click only times."""
        with self._lock:
            for name, arch in self.archs.items():
                if name not in self._models:
                    self._models[name] = bench.build_model(arch)

    def plan(self, batch: int, seqs: Sequence[int], threads: int, warmup: int, repeats: int,
             int8: bool = False) -> bench.Plan:
        """`bortzoo bench`'s validation (positive ints, threads ≤ CPUs, seq ≤ positions), rows named by side."""
        checked = bench.validate(list(self.archs.values()), batch, sorted(set(int(s) for s in seqs)), threads,
                                 warmup, repeats, None, int8)
        return dataclasses.replace(checked, archs=dict(self.archs))

    def run(self, plan: bench.Plan, progress: bool = False) -> list[dict]:
        """Time the plan; `progress` shows bench's tqdm bar (the page tracks it)."""
        with self._lock:
            return bench.measure(plan, progress=progress, models=self._models)


def table(rows: Sequence[dict]) -> list[list]:
    """The rows as the page's table (numbers rounded as `bortzoo bench` prints them)."""
    return [[r["model"], angled(r["arch"]), r["batch"], r["seq"], r["threads"], round(r["median_ms"], 2),
             round(r["p90_ms"], 2), round(r["vs_fastest"], 2), round(r["flop_ratio"], 2)] for r in rows]


def angled(short: str) -> str:
    """`<4,8,1024,768>` as the paper writes it, ⟨4,8,1024,768⟩."""
    return short.replace("<", "⟨").replace(">", "⟩")


def speedups(rows: Sequence[dict], slow: str = "BERT-large", fast: str = "Bort") -> dict[int, float]:
    """seq → median(slow) / median(fast), for every sequence length measured."""
    by = {(r["model"], r["seq"]): r["median_ms"] for r in rows}
    return {seq: by[(slow, seq)] / by[(fast, seq)] for (model, seq) in by if model == fast and (slow, seq) in by}


def summary(rows: Sequence[dict], plan: bench.Plan, info: Optional[dict] = None) -> str:
    """The speed-up per sequence length, and what the numbers were measured on."""
    info = info or bench.hardware_info()
    ups = speedups(rows)
    parts = [f"seq {seq}: **{ratio:.1f}×**" for seq, ratio in sorted(ups.items())]
    threads = plan.threads[0]
    lead = ("Bort is faster than BERT-large by" if ups and min(ups.values()) > 1
            else "BERT-large's median latency over Bort's:")  # never call a slow-down a speed-up
    lines = [f"{lead} {', '.join(parts)} (median latency, batch {plan.batch[0]})." if parts else "Nothing timed."]
    if plan.optimized:
        fast = bench.optimized_name("Bort")
        ups_fast = speedups(rows, slow="BERT-large", fast=fast)
        engine = next((r.get("engine") for r in rows if r["model"] == fast), None)
        lines.append(f"Optimised Bort (`bortzoo.optimize`, engine **{engine}**, the fastest that holds its check on "
                     "this CPU) against fp32 BERT-large: "
                     + ", ".join(f"seq {s}: **{r:.1f}×**" for s, r in sorted(ups_fast.items())) + ".")
    lines.append(f"Measured now on **{info['cpu']}** ({info['cores']} cores) with **{threads} thread"
                 f"{'s' if threads != 1 else ''}**, torch {info['torch']}; {plan.warmup} warm-up forwards, then "
                 f"{plan.repeats} interleaved rounds (median and p90). Models have **random weights** of the real "
                 f"shapes: {'; '.join(f'{side} {angled(arch.short())}' for side, arch in plan.archs.items())}.")
    return "  \n".join(lines)


def chart(rows: Sequence[dict], title: str = "CPU latency against sequence length"):
    """A matplotlib figure: median latency (with p90 as the bar's top) per sequence length, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=100)
    models = list(dict.fromkeys(r["model"] for r in rows))
    colors = {"BERT-large": "#d62728", "Bort": "#1f77b4"}
    for model in models:
        points = sorted((r["seq"], r["median_ms"], r["p90_ms"]) for r in rows if r["model"] == model)
        seqs = [p[0] for p in points]
        medians = [p[1] for p in points]
        axes.errorbar(seqs, medians, yerr=[[0] * len(points), [p[2] - p[1] for p in points]], marker="o",
                      capsize=3, label=model, color=colors.get(model))
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    seqs = sorted({r["seq"] for r in rows})
    axes.set_xticks(seqs, [str(s) for s in seqs])
    axes.set_xlabel("sequence length (tokens)")
    axes.set_ylabel("median ms per forward (bar: p90)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    plt.close(figure)
    return figure


__all__ = ["LatencyPanel", "SEQ_CHOICES", "SIDES", "chart", "speedups", "summary", "table"]
