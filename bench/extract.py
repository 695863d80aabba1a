"""What the architecture search costs: its cheap measures, and a surrogate run with the teacher cached or not.

1. Cheap measures over the papers' 300 candidates (`bortzoo.arch.search_space()`): the wall time
   of computing p (`Arch.total_params`) and i (`Arch.encoder_flops(128)`) for all of them (pure
   Python), and the CPU latency (`measure_latency`) of a few candidates spanning the FLOP range,
   with the time latency would take for all 300 *extrapolated* from that sample: each candidate's
   measuring time is estimated as its FLOPs x (sampled seconds / sampled FLOPs), and summed.

2. One candidate's surrogate run, the teacher cached against uncached. Same student shape, same
   initialisation (seed), same masked batches, same steps, same theta, same held-out batches:

   * cached: `bortzoo.extract.surrogate.surrogate_error` on batches that carry the teacher's top-k
     logits, built once by the teacher into a `TeacherCache` (reported separately as the cache
     build, which a search pays once for all its candidates);
   * uncached: the same run (seed, `Student`, quiet `Trainer`, fit for the steps, then validate on
     the held-out batches) with `Student(arch, teacher=Teacher(folder), **theta)` on the same
     masked batches without the cached fields, so the teacher runs at every step.

   Each setup's time is one whole surrogate run (Trainer, fit, held-out validation) divided by its
   steps; setups alternate order over rounds (C U, U C, ...) and the report gives the median.

    python bench/extract.py                       # defaults: CPU-friendly shapes, 3 rounds
    python bench/extract.py --threads 1 --steps 10 --out none
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the teacher comes from a local folder; never reach out
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bortzoo.arch import Arch, get_arch, search_space  # noqa: E402
from bortzoo.data.masking import mask_tokens  # noqa: E402
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR  # noqa: E402
from bortzoo.export import write_random_masked_lm  # noqa: E402
from bortzoo.extract.cache import TeacherCache, cache_key  # noqa: E402
from bortzoo.extract.search import Latency, measure_latency  # noqa: E402
from bortzoo.extract.surrogate import quiet_trainer, surrogate_error, teacher_topk  # noqa: E402
from bortzoo.modules.student import Student  # noqa: E402
from bortzoo.modules.teacher import Teacher  # noqa: E402
from bortzoo.serve.bench import OtherCpuLoad, alternating_orders, hardware_info, slug  # noqa: E402

DEFAULT_STUDENT = "2,4,256,512"
DEFAULT_TEACHER = "4,8,512,1536"  # 9.6x the student's parameters excl. embeddings (4,8,512,2048 would be 11.5x)
TARGET_SPEEDUP = 2.0
SETUPS = ("cached", "uncached")
CHEAP_SEQ = 128
CHEAP_PASSES = 20
CACHED_FIELDS = ("teacher_values", "teacher_indices")
TEACHER_SEED = 1  # random weights of the teacher folder
DATA_SEED = 0
SETUP_NOTES = {
    "cached": "surrogate_error() on batches carrying the teacher's top-k logits (no teacher in the run)",
    "uncached": "Student(arch, teacher=Teacher(folder)) under a quiet Trainer: the teacher runs every step",
}


# -- inputs -------------------------------------------------------------------------------------
def tiny_vocab(folder: str = TINY_TOKENIZER_DIR) -> tuple[int, int, list[int]]:
    """(size, <mask> id, special ids) of the tiny tokenizer, read from its vocab.json."""
    vocab = json.loads((Path(folder) / "vocab.json").read_text(encoding="utf-8"))
    specials = [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")]
    return len(vocab), vocab["<mask>"], specials


def masked_batches(count: int, batch: int, seq: int, seed: int = DATA_SEED) -> list[dict[str, torch.Tensor]]:
    """`count` batches of random ordinary token ids (>= 5), masked the pretraining way (`mask_tokens`)."""
    size, mask_id, specials = tiny_vocab()
    generator = torch.Generator().manual_seed(seed)
    special = torch.tensor(specials)
    first = max(specials) + 1
    return [mask_tokens(torch.randint(first, size, (batch, seq), generator=generator), special, mask_id, size,
                        generator) for _ in range(count)]


def without_cache(batches: Sequence[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """The batches as the uncached run sees them: the cached teacher fields removed."""
    return [{k: v for k, v in b.items() if k not in CACHED_FIELDS} for b in batches]


def build_cache(teacher: Teacher, train: Sequence[dict], evaluation: Sequence[dict], top_k: int,
                folder: Path) -> tuple[list[dict], list[dict]]:
    """The search's one-time teacher pass: top-k logits of every batch into a `TeacherCache`, read back."""
    cache = TeacherCache(folder, cache_key({"bench": "extract", "top_k": top_k}), top_k)
    topk = teacher_topk(teacher, top_k)
    cache.fill("train", lambda: iter(train), len(train), topk)
    cache.fill("eval", lambda: iter(evaluation), len(evaluation), topk)
    return cache.batches("train", len(train)), cache.batches("eval", len(evaluation))


def parse_arch(spec: str, vocab_size: int, max_positions: int) -> Arch:
    return get_arch(spec).replace(vocab_size=vocab_size, max_positions=max_positions)


def params_no_embeddings(arch: Arch) -> int:
    return arch.encoder_params + arch.mlm_head_params


# -- 1. cheap measures --------------------------------------------------------------------------
def time_cheap_measures(archs: Sequence[Arch], seq: int = CHEAP_SEQ, passes: int = CHEAP_PASSES) -> dict[str, float]:
    """Median seconds (over `passes`) to compute p and i for every candidate."""
    def median_seconds(fn: Callable[[Arch], int]) -> float:
        times = []
        for _ in range(passes):
            start = time.perf_counter()
            for arch in archs:
                fn(arch)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return {"params_s": median_seconds(lambda a: a.total_params()),
            "flops_s": median_seconds(lambda a: a.encoder_flops(seq))}


def latency_sample(archs: Sequence[Arch], count: int, seq: int = CHEAP_SEQ) -> list[Arch]:
    """`count` candidates evenly spaced over the FLOP-sorted space (cheapest and costliest included)."""
    ranked = sorted(archs, key=lambda a: (a.encoder_flops(seq), a.total_params()))
    if count <= 1:
        return ranked[:count]
    picks = sorted({round(j * (len(ranked) - 1) / (count - 1)) for j in range(count)})
    return [ranked[j] for j in picks]


def time_latency(archs: Sequence[Arch], sample: Sequence[Arch], latency: Latency) -> dict[str, Any]:
    """Latency of the sample, and the time measuring every candidate would take, extrapolated from it.

    A candidate's measuring time is its timed and warm-up forwards (scaled by encoder FLOPs) plus the
    rest, mostly building the random-weight model (scaled by parameters); each part's rate comes from
    the sample (sampled seconds / sampled FLOPs or parameters), and the estimates are summed.
    """
    measured = []
    forwards = latency.warmup + latency.repeats
    for arch in sample:
        start = time.perf_counter()
        ms = measure_latency(arch, latency)
        total = time.perf_counter() - start
        forward_s = min(forwards * ms / 1e3, total)
        measured.append({"arch": arch.short(), "flops": arch.encoder_flops(latency.seq, latency.batch),
                         "params": arch.total_params(mlm_head=False), "latency_ms": ms, "measure_s": total,
                         "forwards_s": forward_s, "other_s": total - forward_s})
    flops_rate = sum(m["forwards_s"] for m in measured) / max(sum(m["flops"] for m in measured), 1)
    params_rate = sum(m["other_s"] for m in measured) / max(sum(m["params"] for m in measured), 1)
    estimates = [flops_rate * a.encoder_flops(latency.seq, latency.batch) + params_rate * a.total_params(mlm_head=False)
                 for a in archs]
    return {"sample": measured, "candidates": len(archs),
            "sample_measure_s": sum(m["measure_s"] for m in measured),
            "extrapolated_measure_s": sum(estimates),
            "method": f"per candidate: its {forwards} forwards scaled by encoder FLOPs, the rest (model build) by "
                      "parameters, rates from the sample; summed over all candidates"}


# -- 2. the surrogate run, cached and uncached --------------------------------------------------------
def _loss_recorder(losses: list[float]):
    import lightning as L

    class LossRecorder(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            losses.append(float(loss.detach()))

    return LossRecorder()


def run_student(arch: Arch, train: Sequence[dict], evaluation: Sequence[dict], steps: int, theta: dict[str, Any],
                seed: int = 0, teacher: Optional[Teacher] = None, accelerator: str = "cpu",
                record_losses: bool = False) -> dict[str, Any]:
    """`surrogate_error`'s run step for step (seed, Student, quiet Trainer, fit, validate), with a live teacher.

    `record_losses` adds a callback noting each training step's loss (off when timing).
    """
    import lightning as L
    from torch.utils.data import DataLoader

    L.seed_everything(seed, verbose=False)
    student = Student(arch, teacher=teacher, **theta)
    cycled = [train[i % len(train)] for i in range(steps)]
    losses: list[float] = []
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = quiet_trainer(max_steps=steps, accelerator=accelerator,
                                callbacks=[_loss_recorder(losses)] if record_losses else None)
        trainer.fit(student, train_dataloaders=DataLoader(cycled, batch_size=None))
        metrics = trainer.validate(student, dataloaders=DataLoader(list(evaluation), batch_size=None), verbose=False)[0]
    return {"error": float(metrics["val/loss"]), "seconds": time.perf_counter() - started, "steps": steps,
            "losses": losses}


def run_setup(name: str, arch: Arch, cached: tuple[list, list], plain: tuple[list, list], teacher: Teacher,
              steps: int, theta: dict[str, Any], seed: int) -> dict[str, Any]:
    """One timed surrogate run of `name`; returns its wall seconds and held-out error."""
    if name == "cached":
        start = time.perf_counter()
        result = surrogate_error(arch, cached[0], cached[1], steps, theta, seed, accelerator="cpu")
        return {"seconds": time.perf_counter() - start, "error": result["error"]}
    if name == "uncached":
        start = time.perf_counter()
        result = run_student(arch, plain[0], plain[1], steps, theta, seed, teacher=teacher)
        return {"seconds": time.perf_counter() - start, "error": result["error"]}
    raise ValueError(f"unknown setup {name!r}")


def measure_setups(arch: Arch, cached: tuple[list, list], plain: tuple[list, list], teacher: Teacher, steps: int,
                   theta: dict[str, Any], seed: int, rounds: int,
                   log: Callable[[str], None] = print) -> dict[str, list[dict[str, float]]]:
    """Every round's run of each setup, after one untimed short run of each (imports, allocator, kernels)."""
    for name in SETUPS:
        run_setup(name, arch, cached, plain, teacher, min(steps, 2), theta, seed)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SETUPS}
    for r, order in enumerate(alternating_orders(("cached", "uncached"), rounds), start=1):
        for name in order:
            gc.collect()
            run = run_setup(name, arch, cached, plain, teacher, steps, theta, seed)
            runs[name].append(run)
            note = "; top-k loss: equals the uncached one only at top-k = vocab" if name == "cached" else ""
            log(f"  round {r}/{rounds} {name:<9} {run['seconds'] / steps:8.4f} s/step  "
                f"(held-out loss {run['error']:.4f}{note})")
    return runs


def summarise(runs: dict[str, list[dict[str, float]]], steps: int) -> list[dict[str, Any]]:
    """One row per setup: median s/step over rounds (whole surrogate run / steps), steps/s, the range."""
    rows = []
    for name in SETUPS:
        per_step = [run["seconds"] / steps for run in runs[name]]
        median = statistics.median(per_step)
        rows.append({"setup": name, "s_per_step": median, "steps_per_s": 1 / median,
                     "min_s_per_step": min(per_step), "max_s_per_step": max(per_step),
                     "run_s": median * steps, "rounds": len(per_step), "steps": steps,
                     "heldout_loss": statistics.median(run["error"] for run in runs[name])})
    return rows


def speedup(rows: Sequence[dict]) -> tuple[float, float]:
    """(uncached / cached s/step, the teacher's share (uncached - cached) / uncached)."""
    s = {row["setup"]: row["s_per_step"] for row in rows}
    return s["uncached"] / s["cached"], (s["uncached"] - s["cached"]) / s["uncached"]


# -- reporting -----------------------------------------------------------------------------------
def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def format_table(rows: Sequence[dict]) -> str:
    headers = ("setup", "s/step", "steps/s", "s/step min..max", "run s")
    cells = [(r["setup"], f"{r['s_per_step']:.4f}", f"{r['steps_per_s']:.2f}",
              f"{r['min_s_per_step']:.4f}..{r['max_s_per_step']:.4f}", f"{r['run_s']:.2f}") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def format_report(rows: Sequence[dict], meta: dict[str, Any]) -> str:
    cheap, lat, s, t = meta["cheap"], meta["latency"], meta["student"], meta["teacher"]
    n = cheap["candidates"]
    sample = ", ".join(f"{m['arch']} {m['latency_ms']:.1f} ms ({m['measure_s']:.2f} s to measure)"
                       for m in lat["sample"])
    ratio = meta["speedup"]
    lines = [
        f"CPU: {meta['cpu']} ({meta['cores']} cores), {meta['threads']} torch threads | torch {meta['torch']} | "
        f"lightning {meta['lightning']} | transformers {meta['transformers']} | python {meta['python']}",
        f"CPU used by other processes while timing: {_pct(meta['other_cpu_pct'])} of the machine "
        "(far above 0% means a busy neighbour skewed these numbers)",
        "",
        f"1. Cheap measures over all {n} candidates of the papers' search space (median of {cheap['passes']} passes, "
        "pure Python):",
        f"   {n} candidates: p (total_params) {_seconds(cheap['params_s'])}, i (encoder_flops({cheap['seq']})) "
        f"{_seconds(cheap['flops_s'])}",
        f"   CPU latency (measure_latency, seq {meta['latency_settings']['seq']}, batch "
        f"{meta['latency_settings']['batch']}, {meta['latency_settings']['threads']} thread, warmup "
        f"{meta['latency_settings']['warmup']}, repeats {meta['latency_settings']['repeats']}; random weights) of "
        f"{len(lat['sample'])} sampled candidates spanning the FLOP range: {sample}",
        f"   latency for all {n} candidates, EXTRAPOLATED from the {len(lat['sample'])} sampled ({lat['method']}): "
        f"{_seconds(lat['extrapolated_measure_s'])} to measure (the sample took {_seconds(lat['sample_measure_s'])})",
        "",
        "2. One candidate's surrogate run, teacher cached vs uncached (same student init, batches, steps, theta):",
        f"   student {s['short']}: {s['params_no_embeddings'] / 1e6:.2f} M params excl. embeddings "
        f"({s['params_total'] / 1e6:.2f} M total)",
        f"   teacher {t['short']}: {t['params_no_embeddings'] / 1e6:.2f} M params excl. embeddings "
        f"({t['params_total'] / 1e6:.2f} M total), {meta['teacher_ratio']:.1f}x the student",
        f"   vocab {meta['vocab_size']}, batch {meta['batch']} x seq {meta['seq']}, {meta['steps']} steps over "
        f"{meta['train_batches']} distinct train batches, {meta['eval_batches']} held-out batches, top-k "
        f"{meta['top_k']}, theta {meta['theta']}, seed {meta['seed']}; {meta['rounds']} rounds alternating order, fp32",
        "   s/step = one whole surrogate run (Trainer, fit, held-out validation) / steps; median over rounds",
        *(f"   {name}: {note}" for name, note in SETUP_NOTES.items()),
        f"   cache build (once per search): {meta['cache_build_s']:.2f} s for {meta['train_batches']} + "
        f"{meta['eval_batches']} batches (teacher forward + top-k + safetensors write), not in the table",
        "",
        format_table(rows),
        "",
        f"speed-up = uncached / cached = {ratio:.2f}x (target >= {TARGET_SPEEDUP:.0f}x with a teacher 10x the "
        f"student's size; this teacher is {meta['teacher_ratio']:.1f}x): "
        f"{'PASS' if ratio >= TARGET_SPEEDUP else 'MISS'}",
        f"teacher's share of an uncached run = (uncached - cached) / uncached = {meta['teacher_share'] * 100:.0f}%",
        f"the cache build is repaid after {meta['break_even_runs']:.1f} surrogate runs "
        "(cache build / time saved per run)",
    ]
    return "\n".join(lines)


def result_stem(meta: dict[str, Any]) -> str:
    return f"extract-{slug(meta['cpu']) or 'unknown-cpu'}-t{meta['threads']}-torch{slug(meta['torch'], keep='.')}"


def write_results(rows: Sequence[dict], meta: dict[str, Any], out: Path) -> list[Path]:
    """CSV of the two setups (the headline scalars folded into each row) and JSON {"meta", "rows"}."""
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(meta)
    folded = {"student": meta["student"]["short"], "teacher": meta["teacher"]["short"],
              "teacher_ratio": meta["teacher_ratio"], "batch": meta["batch"], "seq": meta["seq"],
              "top_k": meta["top_k"], "threads": meta["threads"], "speedup": meta["speedup"],
              "teacher_share": meta["teacher_share"], "cache_build_s": meta["cache_build_s"],
              "candidates": meta["cheap"]["candidates"], "params_all_s": meta["cheap"]["params_s"],
              "flops_all_s": meta["cheap"]["flops_s"],
              "latency_all_extrapolated_s": meta["latency"]["extrapolated_measure_s"],
              "other_cpu_pct": meta["other_cpu_pct"]}
    flat = [{**row, **folded} for row in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    csv_path.write_text(buffer.getvalue(), encoding="utf-8")
    json_path.write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2) + "\n", encoding="utf-8")
    return [csv_path, json_path]


def arch_meta(arch: Arch) -> dict[str, Any]:
    return {"short": arch.short(), **arch.as_dict(), "params_no_embeddings": params_no_embeddings(arch),
            "params_total": arch.total_params()}


# -- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/extract.py",
        description="Cost of the architecture search: p and i over the 300 candidates, sampled CPU latency "
                    "extrapolated to all of them, and one surrogate run with the teacher cached against uncached "
                    f"(target: >= {TARGET_SPEEDUP:.0f}x faster cached with a teacher 10x the student).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps of each surrogate run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setup, alternating which goes first")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--student", default=DEFAULT_STUDENT, help="candidate (student) shape D,A,H,I")
    parser.add_argument("--teacher", default=DEFAULT_TEACHER,
                        help="teacher shape D,A,H,I; the default has ~10x the student's parameters excl. embeddings")
    parser.add_argument("--top-k", type=int, default=64, help="teacher logits kept per masked position in the cache")
    parser.add_argument("--train-batches", type=int, default=None, help="distinct train batches (default: --steps)")
    parser.add_argument("--eval-batches", type=int, default=2, help="held-out batches each run is validated on")
    parser.add_argument("--lr", type=float, default=1e-4, help="theta: the student's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="student init and dropout seed")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the surrogate runs; None keeps torch's")
    parser.add_argument("--latency-sample", type=int, default=3, help="candidates whose CPU latency is measured")
    parser.add_argument("--latency-seq", type=int, default=128, help="sequence length of the latency measure")
    parser.add_argument("--latency-warmup", type=int, default=1, help="untimed forwards of the latency measure")
    parser.add_argument("--latency-repeats", type=int, default=3, help="timed forwards of the latency measure")
    parser.add_argument("--out", default="bench/results", help="folder for the CSV and JSON, or 'none'")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("steps", "rounds", "batch", "seq", "top_k", "eval_batches", "latency_sample", "latency_seq",
                 "latency_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.latency_warmup < 0:
        parser.error("--latency-warmup must be at least 0")
    if args.train_batches is not None and args.train_batches < 1:
        parser.error("--train-batches must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the benchmark; returns {"rows", "meta", "files"} for callers such as the tests."""
    import lightning

    args = parse_args(argv)
    vocab_size = tiny_vocab()[0]
    max_positions = max(args.seq, 512)
    student_arch = parse_arch(args.student, vocab_size, max_positions)
    teacher_arch = parse_arch(args.teacher, vocab_size, max_positions)
    out = None if args.out.strip().lower() == "none" else Path(args.out)
    train_count = args.train_batches or args.steps
    theta = {"lr": args.lr}
    latency = Latency(seq=args.latency_seq, batch=1, threads=1, warmup=args.latency_warmup,
                      repeats=args.latency_repeats)

    threads_before = torch.get_num_threads()
    threads = args.threads or threads_before
    torch.set_num_threads(threads)
    try:
        info = {**hardware_info(), "lightning": lightning.__version__, "threads": threads}
        with OtherCpuLoad() as other:
            # 1. cheap measures
            candidates = search_space()
            cheap = {**time_cheap_measures(candidates), "candidates": len(candidates), "seq": CHEAP_SEQ,
                     "passes": CHEAP_PASSES}
            print(f"timing CPU latency of {args.latency_sample} sampled candidates", file=sys.stderr)
            lat = time_latency(candidates, latency_sample(candidates, args.latency_sample, latency.seq), latency)

            # 2. the surrogate run, cached vs uncached
            plain = masked_batches(train_count + args.eval_batches, args.batch, args.seq)
            plain_train, plain_eval = plain[:train_count], plain[train_count:]
            with tempfile.TemporaryDirectory(prefix="extract-bench-") as tmp:
                teacher = Teacher(str(write_random_masked_lm(Path(tmp) / "teacher", teacher_arch, seed=TEACHER_SEED)))
                start = time.perf_counter()
                cached = build_cache(teacher, plain_train, plain_eval, args.top_k, Path(tmp) / "cache")
                cache_build_s = time.perf_counter() - start
                print(f"timing {args.rounds} rounds x {', '.join(SETUPS)} ({args.steps} steps each)", file=sys.stderr)
                runs = measure_setups(student_arch, cached, (without_cache(cached[0]), without_cache(cached[1])),
                                      teacher, args.steps, theta, args.seed, args.rounds,
                                      log=lambda line: print(line, file=sys.stderr))
    finally:
        torch.set_num_threads(threads_before)

    rows = summarise(runs, args.steps)
    ratio, share = speedup(rows)
    saved = rows[1]["run_s"] - rows[0]["run_s"]
    s_meta, t_meta = arch_meta(student_arch), arch_meta(teacher_arch)
    meta = {
        **info,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cheap": cheap, "latency": lat, "latency_settings": {k: getattr(latency, k) for k in
                                                             ("seq", "batch", "threads", "warmup", "repeats")},
        "student": s_meta, "teacher": t_meta,
        "teacher_ratio": t_meta["params_no_embeddings"] / s_meta["params_no_embeddings"],
        "vocab_size": vocab_size, "batch": args.batch, "seq": args.seq, "steps": args.steps, "rounds": args.rounds,
        "train_batches": train_count, "eval_batches": args.eval_batches, "top_k": args.top_k, "theta": theta,
        "seed": args.seed, "cache_build_s": cache_build_s, "runs": runs, "other_cpu_pct": other.pct,
        "speedup": ratio, "teacher_share": share, "target_speedup": TARGET_SPEEDUP,
        "break_even_runs": cache_build_s / saved if saved > 0 else float("inf"),
    }
    meta["verdict"] = "PASS" if ratio >= TARGET_SPEEDUP else "MISS"
    print(format_report(rows, meta))
    files = write_results(rows, meta, out) if out is not None else []
    for path in files:
        print(f"wrote {path}")
    return {"rows": rows, "meta": meta, "files": files}


if __name__ == "__main__":
    main()
