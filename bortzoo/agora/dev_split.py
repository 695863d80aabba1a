"""Agora's data: the dev split cut in two, and the training folders each iteration fine-tunes on.

Agora turns the best model's mistakes on a dev split into training data, so scores on that split are
optimistic after the first iteration. The task's dev split is therefore cut once, seeded and stratified by
label, into an *Agora dev* part (the only one trials are scored on and mistakes come from) and a *held-out*
part that never enters training and only reports. Every iteration writes its data as a folder laid out like
the task's Hub dataset (`<config>/train-*.parquet`, `<config>/validation-*.parquet` and a card naming
them), so each trial is a plain `bortzoo fit` with `data.data_dir` pointing there, and anyone can load the
exact rows a trial saw with `datasets.load_dataset(folder, config)`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

from bortzoo.errors import BortzooError
from bortzoo.files import atomic_path
from bortzoo.tasks.spec import CHOICE, CLASSES, TaskSpec

AGORA_KINDS = (CLASSES, CHOICE)


def check_task(spec: TaskSpec) -> None:
    """Agora needs a label a weak model can predict for a new row, and text a transformation can rewrite."""
    if spec.kind not in AGORA_KINDS:
        raise BortzooError(f"task {spec.name} is a {spec.kind} task; Agora labels new rows with a weak model's "
                           f"predicted class or option, so it supports {' and '.join(AGORA_KINDS)} tasks")
    if spec.group is not None or spec.candidates is not None:
        raise BortzooError(f"task {spec.name} is scored over groups of rows; a rewritten row would break its group, "
                           "so Agora does not support it")
    if not spec.rewritable_fields:
        raise BortzooError(f"task {spec.name} reads its texts through offsets or indices (spec.rewritable is empty): "
                           "a rewritten text would no longer match them, so Agora does not support it")
    if spec.train is None or len(spec.validation) != 1:
        raise BortzooError(f"task {spec.name}: Agora needs a training split and exactly one dev split, "
                           f"it has {len(spec.validation)}")
    if spec.label_columns != ("label",) or spec.label is not None:
        raise BortzooError(f"task {spec.name}: Agora writes the weak model's prediction to a `label` column; "
                           f"this task's label comes from {spec.label_columns}")


def split_dev(labels: list[int], ids: list[int], agora_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Ids of the Agora dev part and of the held-out part: within each label, a seeded shuffle, the first
    `agora_fraction` (rounded, at least one row when the label has two or more) to Agora dev."""
    if not 0.0 < agora_fraction < 1.0:
        raise BortzooError(f"agora_fraction must be within (0, 1), got {agora_fraction}")
    if len(set(ids)) != len(ids):
        raise BortzooError("the dev split has duplicate ids; Agora tells rows apart by id")
    by_label: dict[int, list[int]] = defaultdict(list)
    for label, row_id in zip(labels, ids):
        by_label[label].append(row_id)
    rng = random.Random(seed)
    agora, held_out = [], []
    for label in sorted(by_label):
        members = sorted(by_label[label])
        rng.shuffle(members)
        take = round(len(members) * agora_fraction)
        if len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        agora += members[:take]
        held_out += members[take:]
    if not agora or not held_out:
        raise BortzooError(f"the dev split ({len(ids)} rows) is too small to cut into an Agora dev part and a "
                           "held-out part")
    return sorted(agora), sorted(held_out)




def select_ids(data, spec: TaskSpec, ids: list[int]):
    """The rows of `data` whose id is in `ids`, in the split's order."""
    wanted = set(ids)
    return data.filter(lambda row: row[spec.id_column] in wanted, desc="select rows")


def write_task_folder(folder: Path, spec: TaskSpec, splits: dict[str, Any]) -> Path:
    """Write `splits` (name → `datasets.Dataset`, features kept) as a folder `load_dataset(folder, config)`
    reads like the Hub repo; the parquet files carry the features (class names) in their metadata."""
    import yaml

    config_dir = folder / spec.config
    config_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for split, data in splits.items():
        target = config_dir / f"{split}-00000-of-00001.parquet"
        with atomic_path(target) as tmp:
            data.to_parquet(str(tmp))
        files.append({"split": split, "path": f"{spec.config}/{split}-*"})
    meta = {"pretty_name": f"Agora data for {spec.name} (schema of {spec.dataset})",
            "configs": [{"config_name": spec.config, "data_files": files}]}
    (folder / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n"
                                      "Written by `bortzoo agora`: the rows one Agora iteration trained and was "
                                      "scored on.\n", encoding="utf-8")
    return folder


def with_rows(data, rows: list[dict[str, Any]]):
    """`data` with `rows` (dicts of the same schema) appended, features kept."""
    from datasets import Dataset, concatenate_datasets

    if not rows:
        return data
    return concatenate_datasets([data, Dataset.from_list(rows, features=data.features)])


def next_id(data, spec: TaskSpec, taken: Optional[list[int]] = None) -> int:
    """The first id after every id of `data` (and `taken`): new rows get fresh ids, so provenance by id is exact."""
    ids = list(data[spec.id_column]) + list(taken or [])
    return (max(ids) + 1) if ids else 0
