"""The accuracy guard on a real task: an optimised model against its fp32 self on a task's dev split.

`bortzoo.serve.guard.guard` compares two models on given batches; this module supplies the batches,
the labels and the task's metric from the task spec, for a fine-tuned model named by zoo name, Hub
id or folder (anything `bortzoo.load` takes), so the check reads the same data and scores the same
way as fine-tuning does.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from bortzoo.errors import BortzooError
from bortzoo.serve.guard import GuardReport, guard
from bortzoo.tasks import get_task
from bortzoo.tasks.spec import MULTI_OPTION, RANKING

__all__ = ["task_guard", "optimize_for_task", "check_head"]

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def task_guard(model: str, task: str, *, data_dir: Optional[str] = None, examples: int = 1000,
               batch_size: int = 32, max_length: int = 128, engine: str = "torch", precision: Optional[str] = "int8",
               pair_encoding: str = "tokenizer") -> GuardReport:
    """Agreement and metric change of `optimize(model, engine, precision=precision)` against fp32 on the first
    `examples` rows of the task's first dev split (MNLI: matched). The report's `engine` names the candidate
    that ran (with engine="auto": the fastest that held the guard on these very rows).

    `pair_encoding` must be how the model was fine-tuned: a published bortzoo model has its pair
    template in its tokenizer ("tokenizer"); a raw TaskModel run of a Bort recipe used "bort".
    """
    return optimize_for_task(model, task, data_dir=data_dir, examples=examples, batch_size=batch_size,
                             max_length=max_length, engine=engine, precision=precision,
                             pair_encoding=pair_encoding).bortzoo_task_guard


def optimize_for_task(model: str, task: str, *, data_dir: Optional[str] = None, examples: int = 1000,
                      batch_size: int = 32, max_length: int = 128, engine: str = "auto",
                      precision: Optional[str] = None, pair_encoding: str = "tokenizer") -> torch.nn.Module:
    """`optimize(model, engine)` with the task's first `examples` dev rows as the guard's check batches (auto: the
    choice holds on them), and the optimised model's `bortzoo_task_guard`, a GuardReport naming its engine."""
    from bortzoo.data.task_data import TaskData
    from bortzoo.serve.optimize import optimize
    from bortzoo.tasks.metrics import split_score, task_metrics, to_percent
    from bortzoo.zoo import load

    spec = get_task(task)
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise BortzooError(f"examples must be a positive integer, got {examples!r}")
    splits = spec.eval_splits("validate")
    if spec.group is not None or spec.kind == RANKING:
        raise BortzooError(f"the accuracy check scores rows one by one; task {spec.name} is scored over groups of "
                           "rows or candidates (MultiRC, ReCoRD, AX-g): check it with bortzoo test on the optimised "
                           "model instead")
    if not splits:
        raise BortzooError(f"task {spec.name} has no labelled dev split to check accuracy on")
    reference, tokenizer = load(model)
    check_head(reference, spec, model)
    data = TaskData(task, data_dir=data_dir, max_length=max_length, eval_batch_size=batch_size,
                    pair_encoding=pair_encoding)
    data.tokenizer = tokenizer
    batches, labels = [], []
    for batch in data.val_dataloader()[0]:
        take = min(examples - len(labels), len(batch["labels"]))
        batches.append({k: batch[k][:take] for k in _MODEL_INPUTS if k in batch})
        labels += batch["labels"][:take].tolist()
        if len(labels) >= examples:
            break

    def metric(predictions: torch.Tensor, target: torch.Tensor) -> float:
        collection = task_metrics(spec)
        collection.update(predictions, target)
        return to_percent(split_score({k: float(v) for k, v in collection.compute().items()}))

    if engine == "auto":  # the choice itself is held to these rows
        optimized = optimize(reference, engine="auto", precision=precision, check=batches, labels=labels, metric=metric)
    else:
        optimized = optimize(reference, engine=engine, precision=precision)
    report = guard(reference, optimized, batches, labels=labels, metric=metric)
    chosen = getattr(optimized, "bortzoo_report", None)
    name = chosen.chosen if chosen is not None else f"torch-{optimized.bortzoo_optimize['precision']}"
    optimized.bortzoo_task_guard = dataclasses.replace(report, engine=name)
    return optimized


def check_head(model: torch.nn.Module, spec, ref: str) -> None:
    """A task check needs a task model whose head fits the task, not an encoder or another task's head."""
    config = getattr(model, "config", None)
    arch = (getattr(config, "architectures", None) or [type(model).__name__])[0]
    wanted = "ForMultipleChoice" if spec.kind in MULTI_OPTION else "ForSequenceClassification"
    if wanted not in type(model).__name__:
        raise BortzooError(f"{ref} is a {arch}; checking {spec.name} needs a model fine-tuned on it (a *{wanted})")
    if spec.kind not in MULTI_OPTION and getattr(config, "num_labels", spec.num_labels) != spec.num_labels:
        raise BortzooError(f"{ref} has {config.num_labels} outputs; {spec.name} has {spec.num_labels}")
