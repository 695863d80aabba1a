"""Training-step throughput of distillation: Lightning `Trainer` against a bare PyTorch loop.

Both sides do the same work on the same models and batches: a `Student` (random init from one
seed) distilled from a frozen `Teacher` loaded from a model folder, forward on masked positions
only (`masked_logits`), teacher logits without gradients, `distillation_loss` plus the metrics
`Student` logs, `backward`, AdamW (no decay on bias/LayerNorm), the linear warm-up/decay
scheduler stepped every step, gradients zeroed. Lightning runs `Student.training_step` itself,
`self.log` of five metrics included; the bare loop computes the same five metrics and keeps them
detached, as a hand-written loop would. The only difference left is Lightning's machinery.

Setups are timed in alternating order over several rounds (L B, B L, L B, ...) so that drift of
the machine hits both alike; the report gives the median over rounds. Each run times `--steps`
whole step cycles after `--warmup` untimed steps: from the start of step `warmup` to the start
of step `warmup + steps` (one extra step is run and not timed), so everything Lightning does
between two batches (fetching, scheduler, hooks) is inside the measurement.

    python bench/train_step.py                      # defaults: CPU-friendly shapes, 3 rounds
    python bench/train_step.py --threads 1 --steps 50 --out none
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the teacher comes from a local folder; never reach out
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bortzoo.arch import Arch, get_arch  # noqa: E402
from bortzoo.data.masking import mask_tokens  # noqa: E402
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR  # noqa: E402
from bortzoo.export import write_random_masked_lm  # noqa: E402
from bortzoo.modules.distill import distillation_loss  # noqa: E402
from bortzoo.modules.mlm import masked_logits  # noqa: E402
from bortzoo.modules.optim import adamw_with_warmup, param_groups  # noqa: E402
from bortzoo.modules.student import Student  # noqa: E402
from bortzoo.modules.teacher import Teacher  # noqa: E402
from bortzoo.serve.bench import OtherCpuLoad, alternating_orders, hardware_info, slug  # noqa: E402

DEFAULT_STUDENT = "2,4,256,512"
DEFAULT_TEACHER = "4,8,512,1536"  # ~10x the student's encoder parameters
TARGET_OVERHEAD_PCT = 10.0
WEIGHT_SEED = 0  # student init (and teacher folder weights, offset by 1)
DATA_SEED = 0  # token ids and masking
DROPOUT_SEED = 0  # global RNG right before training, so dropout masks match across setups
SETUPS = ("lightning", "bare")
FLOPS_FORMULA = ("FLOPs/step = 3 x student fwd + 1 x teacher fwd; fwd = arch.encoder_flops(seq, batch) "
                 "+ arch.mlm_head_flops(1, masked rows) (matmuls only, 2 per multiply-add)")


# -- inputs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocab:
    """What batch making needs from the tokenizer: its size, <mask>, and the ids never masked."""

    size: int
    mask_id: int
    special_ids: tuple[int, ...]


def load_vocab(folder: str = TINY_TOKENIZER_DIR) -> Vocab:
    """Read vocab.json directly: the size and special ids are all we need, no tokenizer object."""
    vocab = json.loads((Path(folder) / "vocab.json").read_text(encoding="utf-8"))
    specials = tuple(vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>"))
    return Vocab(size=len(vocab), mask_id=vocab["<mask>"], special_ids=specials)


def make_batches(count: int, batch: int, seq: int, vocab: Vocab, seed: int = DATA_SEED) -> list[dict[str, torch.Tensor]]:
    """`count` pre-masked batches of random ordinary tokens, built once so no side pays for data making."""
    generator = torch.Generator().manual_seed(seed)
    first_ordinary = max(vocab.special_ids) + 1
    special = torch.tensor(vocab.special_ids)
    batches = []
    for _ in range(count):
        ids = torch.randint(first_ordinary, vocab.size, (batch, seq), generator=generator)
        batches.append(mask_tokens(ids, special, vocab.mask_id, vocab.size, generator))
    return batches


def masked_rows(batch: dict[str, torch.Tensor]) -> int:
    """How many positions the LM heads run on (labels other than -100)."""
    return int((batch["labels"] != -100).sum())


# -- models -------------------------------------------------------------------------------------
def write_model_folder(folder: Path, arch: Arch, seed: int, tokenizer_dir: str = TINY_TOKENIZER_DIR) -> Path:
    """A random-weight masked-LM folder laid out like amazon/bort, so the teacher loads as in real runs."""
    return write_random_masked_lm(folder, arch, seed=seed, tokenizer_dir=tokenizer_dir)


def build_student(arch: Arch, teacher: Optional[Teacher], seed: int = WEIGHT_SEED, **hparams: Any) -> Student:
    """A `Student` whose initial weights depend only on `seed`, so both setups start identical."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Student(arch, teacher=teacher, **hparams)


def parse_arch(spec: str, vocab_size: int, max_positions: int) -> Arch:
    """A "D,A,H,I" shape on the tiny tokenizer's vocabulary."""
    return get_arch(spec).replace(vocab_size=vocab_size, max_positions=max_positions)


# -- the bare loop: Student's arithmetic, without Lightning ---------------------------------------
def bare_optimizer(student: Student, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser and scheduler of `Student.configure_optimizers`, built without a Trainer."""
    hp = student.hparams
    groups = param_groups(student.model.named_parameters(), hp.lr, hp.weight_decay)
    built = adamw_with_warmup(groups, hp.lr, hp.betas, hp.eps, hp.warmup_ratio, total_steps)
    return built["optimizer"], built["lr_scheduler"]["scheduler"]


def bare_step(student: Student, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`Student._step` for training with a teacher: the loss and the metrics it logs (kept, not logged)."""
    hp = student.hparams
    logits, labels = masked_logits(student.model, batch)
    if int(labels.numel()) == 0:
        return logits.sum() * 0.0, {}
    teacher_logits, _ = student.teacher.masked_logits(batch)
    loss, mlm, kl = distillation_loss(logits, teacher_logits, labels, hp.alpha, hp.beta, hp.temperature)
    metrics = {
        "mlm_loss": mlm, "kl": kl,
        "teacher_agreement": (logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean(),
        "loss": loss,
        "mlm_acc": (logits.argmax(-1) == labels).float().mean(),
    }
    return loss, {name: value.detach() for name, value in metrics.items()}


@dataclass
class Run:
    """One training run: when each step started (plus the end), and each step's loss."""

    starts: list[float] = field(default_factory=list)
    losses: list[torch.Tensor] = field(default_factory=list)

    def step_seconds(self, first: int, count: int) -> list[float]:
        """Wall time of each of `count` whole step cycles from step `first` (start to next start)."""
        return [b - a for a, b in zip(self.starts[first:first + count], self.starts[first + 1:first + count + 1])]

    def loss_values(self) -> list[float]:
        return [float(x) for x in self.losses]


def run_bare(student: Student, batches: Sequence[dict[str, torch.Tensor]], clock: Callable[[], float] = time.perf_counter) -> Run:
    """Train one step per batch the way a hand-written loop would; the DataLoader mirrors Lightning's."""
    optimizer, scheduler = bare_optimizer(student, len(batches))
    loader = torch.utils.data.DataLoader(list(batches), batch_size=None)
    student.train()
    run = Run()
    torch.manual_seed(DROPOUT_SEED)
    for batch in loader:
        run.starts.append(clock())
        loss, _metrics = bare_step(student, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        run.losses.append(loss.detach())
    run.starts.append(clock())
    return run


# -- the Lightning side ---------------------------------------------------------------------------
def _step_clock(clock: Callable[[], float]):
    """A Callback noting when each batch starts and its loss; a class made lazily to keep imports light."""
    import lightning as L

    class StepClock(L.Callback):
        def __init__(self) -> None:
            self.run = Run()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.run.starts.append(clock())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.run.losses.append(outputs["loss"].detach())

        def on_train_end(self, trainer, pl_module) -> None:
            self.run.starts.append(clock())

    return StepClock()


# Expected here, and each printed once per run, they would bury the table: the frozen teacher is
# in eval mode on purpose, there is no validation data, a list needs no workers.
EXPECTED_WARNINGS = (
    r".*does not have many workers.*",
    r".*module\(s\) in eval mode.*",
    r".*no `val_dataloader`.*",
    r".*LeafSpec.*",
)


@contextlib.contextmanager
def quiet_lightning():
    """Hide Lightning's banner lines and the expected warnings above, for this run only."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for pattern in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def run_lightning(student: Student, batches: Sequence[dict[str, torch.Tensor]],
                  clock: Callable[[], float] = time.perf_counter) -> Run:
    """`Trainer.fit` for one step per batch, as a user would call it, with everything optional off.

    The last recorded time is `on_train_end`, so only the final step's tail is not a clean cycle;
    `Run.step_seconds` never uses it (one untimed step follows the timed ones).
    """
    import lightning as L

    step_clock = _step_clock(clock)
    with quiet_lightning():
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            callbacks=[step_clock])
        loader = torch.utils.data.DataLoader(list(batches), batch_size=None)
        torch.manual_seed(DROPOUT_SEED)
        trainer.fit(student, loader)
    if len(step_clock.run.losses) != len(batches):
        raise RuntimeError(f"Lightning ran {len(step_clock.run.losses)} steps, expected {len(batches)}")
    return step_clock.run


RUNNERS: dict[str, Callable[..., Run]] = {"lightning": run_lightning, "bare": run_bare}


# -- FLOPs ----------------------------------------------------------------------------------------
def forward_flops(arch: Arch, batch: int, seq: int, rows: int) -> int:
    """Matmul FLOPs of one forward: the encoder on every position, the MLM head on masked rows only."""
    head = arch.mlm_head_flops(1, rows) if rows else 0
    return arch.encoder_flops(seq, batch) + head


def step_flops(student: Arch, teacher: Arch, batch: int, seq: int, rows: int) -> int:
    """Training ≈ 3x forward (backward is twice the forward) for the student; the frozen teacher runs forward only."""
    return 3 * forward_flops(student, batch, seq, rows) + forward_flops(teacher, batch, seq, rows)


# -- measuring ------------------------------------------------------------------------------------
def measure(student_arch: Arch, teacher: Teacher, batches: Sequence[dict[str, torch.Tensor]], warmup: int,
            steps: int, rounds: int, log: Callable[[str], None] = print) -> dict[str, list[list[float]]]:
    """Seconds of each timed step, per setup and round; every run starts from a fresh, identical student."""
    step_seconds: dict[str, list[list[float]]] = {name: [] for name in SETUPS}
    for r, order in enumerate(alternating_orders(("lightning", "bare"), rounds), start=1):
        for name in order:
            student = build_student(student_arch, teacher)
            gc.collect()
            run = RUNNERS[name](student, batches)
            step_seconds[name].append(run.step_seconds(warmup, steps))
            ms = sum(step_seconds[name][-1]) / steps * 1e3
            log(f"  round {r}/{rounds} {name:<9} {ms:8.1f} ms/step  (final loss {run.loss_values()[-1]:.4f})")
            del student, run
    return step_seconds


def summarise(step_seconds: dict[str, list[list[float]]], tokens_per_step: int, flops: int) -> list[dict]:
    """One row per setup: median tokens/s over rounds, ms/step and achieved GFLOP/s at that median.

    `p50_step_ms`, the median of every timed step pooled over rounds, is robust to a neighbour
    that was busy for part of a run; it is shown beside the headline figure, not instead of it.
    """
    rows = []
    for name in SETUPS:
        tps = [len(steps) * tokens_per_step / sum(steps) for steps in step_seconds[name]]
        median_tps = statistics.median(tps)
        rows.append({
            "setup": name,
            "tokens_per_s": median_tps,
            "ms_per_step": tokens_per_step / median_tps * 1e3,
            "gflops_per_s": flops * median_tps / tokens_per_step / 1e9,
            "min_tokens_per_s": min(tps),
            "max_tokens_per_s": max(tps),
            "p50_step_ms": statistics.median(x for steps in step_seconds[name] for x in steps) * 1e3,
            "rounds": len(tps),
        })
    return rows


def overhead_pct(rows: Sequence[dict]) -> float:
    """How much faster the bare loop is: (bare / lightning - 1) x 100; negative when Lightning is faster."""
    tps = {row["setup"]: row["tokens_per_s"] for row in rows}
    return (tps["bare"] / tps["lightning"] - 1) * 100


# -- reporting ------------------------------------------------------------------------------------
def format_table(rows: Sequence[dict]) -> str:
    """setup | tokens/s | ms/step | GFLOP/s | tokens/s range over rounds | median single step."""
    headers = ("setup", "tokens/s", "ms/step", "GFLOP/s", "tokens/s min..max", "p50 step ms")
    cells = [(r["setup"], f"{r['tokens_per_s']:,.0f}", f"{r['ms_per_step']:.1f}", f"{r['gflops_per_s']:.1f}",
              f"{r['min_tokens_per_s']:,.0f}..{r['max_tokens_per_s']:,.0f}", f"{r['p50_step_ms']:.1f}") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def format_report(rows: Sequence[dict], meta: dict[str, Any]) -> str:
    """Hardware and versions, shapes and sizes, the FLOP formula, the table, then the verdict line."""
    s, t = meta["student"], meta["teacher"]
    pct = meta["overhead_pct"]
    return "\n".join([
        f"CPU: {meta['cpu']} ({meta['cores']} cores), {meta['threads']} torch threads | torch {meta['torch']} | "
        f"lightning {meta['lightning']} | transformers {meta['transformers']} | python {meta['python']}",
        f"CPU used by other processes while timing: {_pct(meta['other_cpu_pct'])} of the machine "
        "(far above 0% means a busy neighbour skewed these numbers)",
        f"student {s['short']}: {s['params_no_embeddings'] / 1e6:.2f} M params excl. embeddings "
        f"({s['params_total'] / 1e6:.2f} M total)",
        f"teacher {t['short']}: {t['params_no_embeddings'] / 1e6:.2f} M params excl. embeddings "
        f"({t['params_total'] / 1e6:.2f} M total), {meta['teacher_ratio']:.1f}x the student",
        f"vocab {meta['vocab_size']}, batch {meta['batch']} x seq {meta['seq']} = {meta['tokens_per_step']} tokens/step, "
        f"{meta['masked_rows']} masked rows/step; {meta['warmup']} warmup + {meta['steps']} timed steps per run, "
        f"{meta['rounds']} rounds alternating order, fp32",
        f"{FLOPS_FORMULA}",
        f"  = {meta['flops_per_step'] / 1e9:.2f} GFLOP/step, {meta['flops_per_token'] / 1e6:.2f} MFLOP/token",
        "",
        format_table(rows),
        "",
        f"Lightning overhead = (bare tokens/s / lightning tokens/s - 1) x 100 = {pct:+.1f}% "
        f"(target <= {TARGET_OVERHEAD_PCT:.0f}%): {'PASS' if pct <= TARGET_OVERHEAD_PCT else 'MISS'}",
    ])


def result_stem(info: dict[str, Any], threads: int) -> str:
    """Like `bortzoo.serve.bench.result_stem`: stamped with CPU, threads and versions so machines never collide."""
    return (f"train-step-{slug(info['cpu']) or 'unknown-cpu'}-t{threads}"
            f"-torch{slug(info['torch'], keep='.')}-lightning{slug(info['lightning'], keep='.')}")


def write_results(rows: Sequence[dict], meta: dict[str, Any], out: Path) -> list[Path]:
    """CSV of the rows (meta fields that matter for comparison folded in) and JSON {"meta", "rows"}."""
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(meta, meta["threads"])
    flat = [{**row, "student": meta["student"]["short"], "teacher": meta["teacher"]["short"], "batch": meta["batch"],
             "seq": meta["seq"], "threads": meta["threads"], "overhead_pct": meta["overhead_pct"]} for row in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    csv_path.write_text(buffer.getvalue(), encoding="utf-8")
    json_path.write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2) + "\n", encoding="utf-8")
    return [csv_path, json_path]


# -- command line ---------------------------------------------------------------------------------
def arch_meta(arch: Arch) -> dict[str, Any]:
    return {"short": arch.short(), **arch.as_dict(),
            "params_no_embeddings": arch.encoder_params + arch.mlm_head_params,
            "params_total": arch.total_params()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/train_step.py",
        description="Tokens/s of one distillation training step (Student + frozen Teacher) under a Lightning "
                    "Trainer and under a bare PyTorch loop doing the same work, interleaved over rounds; "
                    f"reports the Lightning overhead against a {TARGET_OVERHEAD_PCT:.0f}% target.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of every run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per setup, alternating which goes first")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--student", default=DEFAULT_STUDENT, help="student shape D,A,H,I")
    parser.add_argument("--teacher", default=DEFAULT_TEACHER, help="teacher shape D,A,H,I; the default has ~10x the student's encoder parameters")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads; None keeps torch's current setting")
    parser.add_argument("--out", default="bench/results", help="folder for the CSV and JSON, or 'none'")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check: a bad number fails here, before any model is built."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "seq", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the benchmark; returns {"rows", "meta", "files"} for callers such as the tests."""
    import lightning

    args = parse_args(argv)
    vocab = load_vocab()
    max_positions = max(args.seq, 512)
    student_arch = parse_arch(args.student, vocab.size, max_positions)
    teacher_arch = parse_arch(args.teacher, vocab.size, max_positions)
    out = None if args.out.strip().lower() == "none" else Path(args.out)

    threads_before = torch.get_num_threads()
    threads = args.threads or threads_before
    torch.set_num_threads(threads)
    try:
        info = {**hardware_info(), "lightning": lightning.__version__, "threads": threads}
        batches = make_batches(args.warmup + args.steps + 1, args.batch, args.seq, vocab)
        rows_masked = masked_rows(batches[0])
        tokens_per_step = args.batch * args.seq
        flops = step_flops(student_arch, teacher_arch, args.batch, args.seq, rows_masked)
        with tempfile.TemporaryDirectory(prefix="train-step-teacher-") as tmp:
            teacher = Teacher(str(write_model_folder(Path(tmp) / "teacher", teacher_arch, WEIGHT_SEED + 1)))
            print(f"timing {args.rounds} rounds x {', '.join(SETUPS)} ({args.warmup} + {args.steps} + 1 steps each)",
                  file=sys.stderr)
            with OtherCpuLoad() as other:
                step_seconds = measure(student_arch, teacher, batches, args.warmup, args.steps, args.rounds,
                                  log=lambda line: print(line, file=sys.stderr))
    finally:
        torch.set_num_threads(threads_before)

    rows = summarise(step_seconds, tokens_per_step, flops)
    s_meta, t_meta = arch_meta(student_arch), arch_meta(teacher_arch)
    meta = {
        **info,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "student": s_meta, "teacher": t_meta,
        "teacher_ratio": t_meta["params_no_embeddings"] / s_meta["params_no_embeddings"],
        "vocab_size": vocab.size, "batch": args.batch, "seq": args.seq, "tokens_per_step": tokens_per_step,
        "masked_rows": rows_masked, "warmup": args.warmup, "steps": args.steps, "rounds": args.rounds,
        "flops_formula": FLOPS_FORMULA, "flops_per_step": flops, "flops_per_token": flops / tokens_per_step,
        "step_seconds": step_seconds, "other_cpu_pct": other.pct,
        "overhead_pct": overhead_pct(rows), "target_overhead_pct": TARGET_OVERHEAD_PCT,
    }
    meta["verdict"] = "PASS" if meta["overhead_pct"] <= TARGET_OVERHEAD_PCT else "MISS"
    print(format_report(rows, meta))
    files = write_results(rows, meta, out) if out is not None else []
    for path in files:
        print(f"wrote {path}")
    return {"rows": rows, "meta": meta, "files": files}


if __name__ == "__main__":
    main()
