"""The optimal-subarchitecture search (the FPTAS of arXiv 2010.08512) as a resumable, shardable run.

    bortzoo extract --config recipes/extract/bort.yaml [--shard 2/8]
    bortzoo extract report --out runs/extract/bort

Steps, each a named function: the candidates and their cheap measures (parameters, FLOPs, CPU
latency); ε-partitioning by the cheap measures, one representative trained per partition (the
maximum point T always trained); a step budget from ε and s; the teacher cached once; one
surrogate run per representative and hyperparameter set; the score and the Pareto front
(`bortzoo.extract.report`). Every candidate's result is its own file, written atomically, so an
interrupted search resumes where it stopped and shards on several machines share one folder.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from bortzoo.arch import (
    SEARCH_DEPTHS,
    SEARCH_HEADS,
    SEARCH_HIDDEN,
    SEARCH_INTERMEDIATE,
    Arch,
    get_arch,
    search_space,
)
from bortzoo.errors import BortzooError
from bortzoo.extract.records import (
    candidate_key,
    read_checked,
    settings_hash,
    write_checked,
)
from bortzoo.extract.scoring import Measures, maximum_point, partition, step_budget


@dataclass
class Space:
    """The candidates: the grid of the papers (H divisible by A), or an explicit list.

    Args:
        depths: Depths D of the grid.
        heads: Attention heads A of the grid.
        hidden: Hidden sizes H of the grid.
        intermediate: Feed-forward sizes I of the grid.
        candidates: Explicit "D,A,H,I" candidates instead of the grid.
    """

    depths: list[int] = field(default_factory=lambda: list(SEARCH_DEPTHS))
    heads: list[int] = field(default_factory=lambda: list(SEARCH_HEADS))
    hidden: list[int] = field(default_factory=lambda: list(SEARCH_HIDDEN))
    intermediate: list[int] = field(default_factory=lambda: list(SEARCH_INTERMEDIATE))
    candidates: Optional[list[str]] = None


@dataclass
class Latency:
    """CPU latency of every candidate (random weights: shape decides it), timed as `bortzoo bench` does.

    Args:
        enabled: Measure latency (the report can then rank by it with use_latency).
        seq: Sequence length.
        batch: Batch size.
        threads: Torch intra-op threads.
        warmup: Untimed forwards first.
        repeats: Timed forwards; the median counts.
    """

    enabled: bool = True
    seq: int = 128
    batch: int = 1
    threads: int = 1
    warmup: int = 2
    repeats: int = 5


def parse_shard(shard: str) -> tuple[int, int]:
    """'k/N' → (k, N), 1 ≤ k ≤ N."""
    try:
        k, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise BortzooError(f"--shard must look like k/N (e.g. 2/8), got {shard!r}") from None
    if not 1 <= k <= n:
        raise BortzooError(f"--shard {shard}: need 1 <= k <= N")
    return k, n


def build_candidates(space: Space, vocab_size: int, max_positions: int) -> list[Arch]:
    """The candidates with the tokenizer's vocabulary; an empty or invalid space is an error."""
    if space.candidates:
        archs = [get_arch(c).replace(vocab_size=vocab_size, max_positions=max_positions) for c in space.candidates]
    else:
        for name in ("depths", "heads", "hidden", "intermediate"):
            if not getattr(space, name):
                raise BortzooError(f"the search space has no {name}: give at least one value")
        archs = search_space(space.depths, space.heads, space.hidden, space.intermediate, vocab_size=vocab_size,
                             max_positions=max_positions)
    keys = [candidate_key(a) for a in archs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise BortzooError(f"the search space lists candidates twice: {duplicates}")
    return archs


def check_smaller_than_teacher(archs: list[Arch], teacher_params: int) -> None:
    larger = [a.short() for a in archs if a.total_params() > teacher_params]
    if larger:
        raise BortzooError(f"candidates larger than the teacher ({teacher_params:,} parameters): {larger}; "
                           "a student is extracted from a bigger model, not a smaller one")


def plan_partitions(measures: list[Measures], archs: list[Arch], epsilon: float) -> tuple[list[list[int]], int]:
    """ε-partitions by (params, FLOPs) with the maximum point T in a group of its own (it is always trained)."""
    top = maximum_point(archs)
    groups = [[i for i in g if i != top] for g in partition(measures, epsilon)]
    groups = [g for g in groups if g] + [[top]]
    return groups, top


class CandidateLock:
    """An exclusive claim on one candidate, so two shards never write the same file.

    A lock left by a process that died on this machine is taken over; any other held lock is an error.
    """

    def __init__(self, path: Path, shard: str):
        self.path, self.shard = path, shard
        self.owner = {"shard": shard, "pid": os.getpid(), "host": socket.gethostname()}

    def __enter__(self) -> "CandidateLock":
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    continue
                holder = self._holder()
                raise BortzooError(
                    f"{self.path.stem} is being computed by shard {holder.get('shard')} (pid {holder.get('pid')} on "
                    f"{holder.get('host')}): two shards claim the same candidate; give each machine its own k of the "
                    f"same N (this one: {self.shard}). Delete {self.path} if that process is gone") from None
            with os.fdopen(handle, "w") as out:
                json.dump(self.owner, out)
            return self
        raise BortzooError(f"cannot claim {self.path}")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _stale(self) -> bool:
        holder = self._holder()
        if holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except (ProcessLookupError, ValueError):
            return True
        except PermissionError:
            return False
        return False


# -- measures -----------------------------------------------------------------------------------
def measure_latency(arch: Arch, latency: Latency) -> float:
    """Median CPU latency (ms) of one candidate, with the timing code of `bortzoo bench`."""
    import functools

    import torch

    from bortzoo.serve.bench import build_model, make_inputs
    from bortzoo.serve.timing import time_interleaved

    previous = torch.get_num_threads()
    torch.set_num_threads(latency.threads)
    try:
        model = build_model(arch)
        with torch.inference_mode():
            forward = functools.partial(model, **make_inputs(arch, latency.batch, latency.seq))
            times = time_interleaved({"m": forward}, latency.warmup, latency.repeats)["m"]
    finally:
        torch.set_num_threads(previous)
    times.sort()
    return 1000 * times[len(times) // 2]


def keep_best_weights(folders: list[Path], best: int, target: Path) -> None:
    """Move the best θ's weights to `target` and drop the others (a rerun replaces what an interrupted one left)."""
    import shutil

    shutil.rmtree(target, ignore_errors=True)
    folders[best].rename(target)
    for index, folder in enumerate(folders):
        if index != best:
            shutil.rmtree(folder, ignore_errors=True)


# -- the run ------------------------------------------------------------------------------------
def extract(
    teacher: str,
    data: dict,
    out: str = "runs/extract/bort",
    tokenizer: Optional[str] = None,
    space: Space = Space(),
    epsilon: float = 0.0,
    s: float = 1.0,
    budget_scale: float = 100.0,
    min_steps: int = 10,
    max_steps: int = 1000,
    hparams: Optional[list[dict]] = None,
    train_batches: int = 64,
    eval_batches: int = 8,
    top_k: int = 64,
    score: str = "w_coefficient",
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    use_latency: bool = False,
    latency: Latency = Latency(),
    shard: str = "1/1",
    seed: int = 0,
    accelerator: str = "auto",
    precision: Optional[str] = None,
    report_top: int = 10,
    save_weights: bool = True,
) -> Optional[dict]:
    """Search the space for the architecture jointly best in parameters, inference cost and error.

    Args:
        teacher: The maximum-point model the candidates are distilled from (Hub id or folder).
        data: Corpus settings (bortzoo.data.corpus.Corpus arguments except tokenizer): sources, seq_len,
            batch_size, max_predictions, ...
        out: Run folder: cache, per-candidate results, and the report.
        tokenizer: Tokenizer (default: the teacher's); the candidates take its vocabulary.
        space: The candidates.
        epsilon: ε of the partitioning (0 trains every candidate) and of the step budget.
        s: The s of the FPTAS bound, in (0, 1]: the step budget grows as s^-1.5.
        budget_scale: Steps = ceil(budget_scale / (ε·s^1.5)), clamped to [min_steps, max_steps].
        min_steps: Fewest steps of a surrogate run.
        max_steps: Most steps of a surrogate run (and the budget when ε = 0).
        hparams: Hyperparameter sets Θ (Student arguments such as lr, warmup_ratio); each candidate is
            trained with every set and its best error counts.
        train_batches: Distinct cached training batches (cycled when steps exceed them).
        eval_batches: Held-out cached batches the error is measured on.
        top_k: Teacher logits kept per masked position in the cache.
        score: Score function: 'w_coefficient' or a dotted path to one with its signature.
        weights: Exponents (w_p, w_i, w_e) of the W-coefficient.
        use_latency: Score and Pareto-rank by measured latency instead of counted FLOPs.
        latency: CPU latency measurement.
        shard: This machine's share 'k/N' of the candidates (all shards share `out`).
        seed: Seed of the data, the initialisations and the training.
        accelerator: Lightning accelerator of the surrogate runs.
        precision: Lightning precision of the surrogate runs (e.g. bf16-mixed on GPUs).
        report_top: Rows of the top-k table in report.md.
        save_weights: Keep each trained candidate's surrogate weights (best θ) in `out/weights/<D-A-H-I>/`, so
            `bortzoo publish OUT --candidate D,A,H,I` can ship it; at Bort scale this needs disk (see the recipe).
    """
    from tqdm.auto import tqdm

    from bortzoo.data.corpus import Corpus
    from bortzoo.extract.cache import TeacherCache, cache_key
    from bortzoo.extract.report import report
    from bortzoo.extract.scoring import score_function
    from bortzoo.extract.surrogate import ALLOWED_HPARAMS, surrogate_error, teacher_topk
    from bortzoo.hub import load_config, load_tokenizer

    k, n = parse_shard(shard)
    score_function(score)  # fail on a bad name now, not after hours of training
    thetas = hparams or [{"lr": 1e-4}]
    for theta in thetas:
        unknown = set(theta) - ALLOWED_HPARAMS
        if unknown:
            raise BortzooError(f"hparams set {theta} has unknown key(s) {sorted(unknown)}; valid: {sorted(ALLOWED_HPARAMS)}")
    if "tokenizer" in data:
        raise BortzooError("give the tokenizer as the search's own 'tokenizer' setting, not inside 'data'")
    tokenizer = tokenizer or teacher
    vocab = len(load_tokenizer(tokenizer))
    seq_len = int(data.get("seq_len", 512))
    archs = build_candidates(space, vocab, max(seq_len, latency.seq if latency.enabled else 0))
    teacher_arch = Arch.from_config(load_config(teacher))
    check_smaller_than_teacher(archs, teacher_arch.total_params())
    steps = step_budget(epsilon, s, budget_scale, min_steps, max_steps)
    measures = [Measures(a.total_params(), a.encoder_flops(seq_len)) for a in archs]
    groups, top = plan_partitions(measures, archs, epsilon)

    run = Path(out)
    (run / "results").mkdir(parents=True, exist_ok=True)
    (run / "latency").mkdir(exist_ok=True)
    result_settings = {"teacher": teacher, "tokenizer": tokenizer, "data": data, "steps": steps, "hparams": thetas,
                       "train_batches": train_batches, "eval_batches": eval_batches, "top_k": top_k, "seed": seed,
                       "precision": precision}
    settings = settings_hash(result_settings)
    latency_settings = settings_hash({"latency": asdict(latency)})
    write_checked(run / f"search-{k}-of-{n}.json", {
        "settings": settings, "result_settings": result_settings, "space": [a.as_dict() for a in archs],
        "groups": groups, "maximum_point": top, "epsilon": epsilon, "s": s, "score": score, "weights": list(weights),
        "use_latency": use_latency, "latency": asdict(latency), "latency_settings": latency_settings,
        "teacher_params": teacher_arch.total_params()})

    # the teacher, once for the whole search
    cache = TeacherCache(run / "cache", cache_key({**result_settings, "steps": None, "hparams": None}), top_k)
    corpus = Corpus(tokenizer, **data, seed=seed) if "seed" not in data else Corpus(tokenizer, **data)
    corpus.setup()
    val_batches = len(corpus.val_dataloader())
    if val_batches < eval_batches:
        raise BortzooError(f"the corpus holds {val_batches} validation batches, fewer than eval_batches={eval_batches}")
    loaded: dict[str, Any] = {}

    def topk(batch):
        if "teacher" not in loaded:
            from bortzoo.modules import Teacher

            loaded["teacher"] = Teacher(teacher)
            loaded["fn"] = teacher_topk(loaded["teacher"], top_k)
        return loaded["fn"](batch)

    cache.fill("train", lambda: iter(corpus.train_dataloader()), train_batches, topk)
    cache.fill("eval", lambda: iter(corpus.val_dataloader()), eval_batches, topk)
    train, evaluation = cache.batches("train", train_batches), cache.batches("eval", eval_batches)
    loaded.clear()  # free the teacher before training candidates

    mine = [g[0] for g in groups][k - 1::n]
    my_latency = list(range(len(archs)))[k - 1::n] if latency.enabled else []
    with tqdm(total=len(mine) + len(my_latency), desc=f"extract {k}/{n}", unit="cand") as bar:
        for index in my_latency:
            path = run / "latency" / f"{candidate_key(archs[index])}.json"
            if read_checked(path, latency_settings) is None:
                write_checked(path, {"settings": latency_settings, "arch": archs[index].as_dict(),
                                  "latency_ms": measure_latency(archs[index], latency)})
            bar.update()
        for index in mine:
            arch = archs[index]
            path = run / "results" / f"{candidate_key(arch)}.json"
            bar.set_postfix(candidate=arch.short())
            if read_checked(path, settings) is None:
                with CandidateLock(path.with_suffix(".lock"), shard):
                    kept = [run / "weights" / f".{candidate_key(arch)}.theta-{i}" for i in range(len(thetas))]
                    runs = [surrogate_error(arch, train, evaluation, steps, theta, seed, accelerator, precision,
                                            save_to=str(kept[i]) if save_weights else None)
                            for i, theta in enumerate(thetas)]
                    best = min(runs, key=lambda r: r["error"])
                    if save_weights:
                        keep_best_weights(kept, runs.index(best), run / "weights" / candidate_key(arch))
                    write_checked(path, {"settings": settings, "arch": arch.as_dict(), "error": best["error"],
                                      "best_theta": best["theta"], "runs": runs, "shard": shard})
            bar.update()
    if n == 1:
        return report(out, top=report_top)
    print(f"shard {k}/{n} done; when every shard has finished: bortzoo extract report --out {out}")
    return None
