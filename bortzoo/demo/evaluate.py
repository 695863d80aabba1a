""""Evaluate now": both loaded models on the same seeded sample of the task's dev split, scored as
fine-tuning scores it (the task spec's encoding, metrics and leaderboard columns).

A side that is not loaded, or data that cannot be read (offline, no `--data` folder), is reported in
words and skipped; the other side still runs.
"""

from __future__ import annotations

from typing import Callable, Optional

from bortzoo.demo import SIDES
from bortzoo.demo.accuracy import NOW, Score
from bortzoo.demo.models import READY, ModelPool, describe
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task
from bortzoo.tasks.spec import REGRESSION

Progress = Callable[[float, str], None]


def sample_split(task: str, split: str, examples: int, seed: int, data_dir: Optional[str]):
    """A seeded sample of `examples` rows of one split (all rows if it has fewer)."""
    from bortzoo.data.rows import load_split

    data = load_split(get_task(task), split, data_dir=data_dir)
    return data.shuffle(seed=seed).select(range(min(examples, len(data)))), len(data)


def score_model(loaded, task: str, split: str, sample, batch_size: int = 16,
                on_batch: Optional[Callable[[int], None]] = None) -> dict[str, float]:
    """Metric fractions of one model on one sampled split."""
    import torch

    from bortzoo.data.encoding import PadCollator, encode_split
    from bortzoo.modules.task_model import METRIC_EXTRAS
    from bortzoo.tasks.metrics import task_metrics

    spec = get_task(task)
    encoded = encode_split(spec, sample, split, loaded.tokenizer, loaded.max_length, "tokenizer").data
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    collate = PadCollator(pad, regression=spec.kind == REGRESSION)
    metrics = task_metrics(spec)
    single_type = getattr(loaded.model.config, "type_vocab_size", 2) < 2
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            batch = collate([encoded[i] for i in range(start, min(start + batch_size, len(encoded)))])
            types = torch.zeros_like(batch["token_type_ids"]) if single_type else batch["token_type_ids"]
            logits = loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  token_type_ids=types).logits.float()
            if "option_mask" in batch:  # padded candidates of a ranking are never chosen
                logits = logits.masked_fill(~batch["option_mask"], torch.finfo(logits.dtype).min)
            predictions = logits.reshape(-1) if spec.kind == REGRESSION else logits.argmax(-1)
            extras = {key: batch[key] for key in METRIC_EXTRAS if key in batch}
            metrics.update(predictions, batch["labels"], **extras)
            if on_batch is not None:
                on_batch(len(batch["labels"]))
    return {name: float(value) for name, value in metrics.compute().items()}


def evaluate_now(pool: ModelPool, task: str, examples: int = 200, seed: int = 0, batch_size: int = 16,
                 progress: Optional[Progress] = None) -> tuple[list[Score], list[str]]:
    """Scores of every ready side on `examples` dev rows per dev split, and a line per side or split skipped."""
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise BortzooError(f"examples must be a positive integer, got {examples!r}")
    spec = get_task(task)
    settings = pool.settings
    if progress is not None:
        progress(0.0, "waiting for the models to load")
    pool.wait(spec.name, timeout=settings.load_wait)
    ready, notes = {}, []
    for side in SIDES:
        slot = pool.slot(side, spec.name)
        if slot.state == READY:
            ready[side] = slot.loaded
        else:
            notes.append(f"{side}: not evaluated; {describe(slot)}")
    if not ready:
        return [], notes
    samples = []
    for item in spec.eval_splits("validate"):
        try:
            sample, size = sample_split(spec.name, item.split, examples, seed, settings.data.get(spec.name))
        except BortzooError as err:
            hint = "" if settings.data.get(spec.name) else f" (give a local copy with --data {spec.name}=FOLDER)"
            notes.append(f"{item.board}: no data; {err}{hint}")
            continue
        samples.append((item, sample, size))
    total = sum(len(sample) for _, sample, _ in samples) * len(ready)
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None and total:
            progress(done / total, f"evaluated {done}/{total} examples")

    scores = []
    for item, sample, size in samples:
        for side, loaded in ready.items():
            with pool.compute:
                values = score_model(loaded, spec.name, item.split, sample, batch_size, on_batch=step)
            names = tuple(values)
            scores.append(Score(spec.benchmark, item.board, side, names, tuple(100 * values[n] for n in names), NOW,
                                f"{len(sample)} of {size} {item.split} rows (seed {seed}), `{loaded.ref}`"))
    return scores, notes
