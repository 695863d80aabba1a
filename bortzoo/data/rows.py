"""A task's rows: one split loaded (Hub dataset, a local copy in its layout, or classic GLUE TSVs) and
checked against the spec before anything trains: a missing column, a label outside the spec, a score
that is not a number or an empty split stops the run naming the task, split, row and column."""

from __future__ import annotations

import hashlib
import math
import os
from typing import Optional

from bortzoo.data.glue_tsv import read_glue_tsv, task_folder
from bortzoo.data.local_copies import align_label_names, explain_load_error
from bortzoo.errors import BortzooError
from bortzoo.resources import project_path
from bortzoo.tasks.spec import CHOICE, CLASSES, RANKING, REGRESSION, RowError, TaskSpec


def load_split(spec: TaskSpec, split: str, data_dir: Optional[str] = None, revision: Optional[str] = None):
    """One split of the task's dataset, from the Hub or from `data_dir` (a folder laid out like the repo)."""
    import datasets

    data_dir = project_path(data_dir) if data_dir is not None else None  # a recipe's bortzoo/assets/... from anywhere
    where = data_dir or spec.dataset
    cache_dir = None
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise BortzooError(f"task {spec.name}: data_dir {data_dir!r} is not a folder (expected a folder laid out "
                               f"like the Hub repo {spec.dataset}, with a {spec.config}/ config)")
        # datasets caches a local folder by its name, not its contents: key the cache on the files instead
        cache_dir = os.path.join(datasets.config.HF_DATASETS_CACHE, "bortzoo-local", folder_signature(data_dir))
    try:
        tsv_folder = task_folder(spec, data_dir) if data_dir is not None else None  # a classic glue_data download
        splits = (read_glue_tsv(spec, tsv_folder, [split]) if tsv_folder is not None else
                  datasets.load_dataset(where, spec.config, revision=None if data_dir else revision,
                                        cache_dir=cache_dir))
    except BortzooError:
        raise
    except Exception as err:  # datasets raises many kinds: no network, no such config, unreadable files
        raise explain_load_error(spec, where, err, data_dir) from None
    if split not in splits:
        raise BortzooError(f"task {spec.name}: {where} (config {spec.config!r}) has no split {split!r}; "
                           f"its splits are {sorted(splits)}")
    data = splits[split]
    missing = [c for c in spec.columns if c not in data.column_names]
    if missing:
        raise BortzooError(f"task {spec.name}, split {split}: missing column(s) {missing} in {where}; "
                           f"the columns are {data.column_names}")
    if len(data) == 0:
        raise BortzooError(f"task {spec.name}, split {split}: the split is empty ({where})")
    return align_label_names(spec, data, split, where)


def folder_signature(folder: str) -> str:
    """A digest of a folder's files (paths, sizes, modification times): changes whenever its data does."""
    digest = hashlib.sha256(os.path.abspath(folder).encode())
    for base, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            stat = os.stat(os.path.join(base, name))
            digest.update(f"{os.path.relpath(os.path.join(base, name), folder)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def check_texts(spec: TaskSpec, data, split: str) -> None:
    """Every input text and example id present: `datasets` fills a column the files lack with nulls."""
    for column in (*spec.text_fields, spec.id_column):
        for row_number, value in enumerate(data[column]):
            if value is None or (spec.kind == CHOICE and column == spec.text_fields[-1]
                                 and any(option is None for option in value)):
                raise BortzooError(f"task {spec.name}, split {split}, row {row_number}, column {column!r}: no value "
                                   "(null); is the column missing from the data files?")


def check_rows(spec: TaskSpec, data, split: str) -> dict[str, list[tuple[int, str]]]:
    """Every row through the spec's own reading (`pairs`, `notes`, `group`): a row it cannot read stops the
    run naming task, split, row and column; a row it reads imperfectly is returned as a note per column,
    ``{column: [(row number, what), ...]}``, for the caller to count and report. Tasks read column by
    column (most GLUE tasks) have nothing to check here."""
    notes: dict[str, list[tuple[int, str]]] = {}
    if spec.pairs is None and spec.notes is None and spec.group is None:
        return notes
    for row_number, row in enumerate(data.select_columns(list(spec.columns))):
        where = f"task {spec.name}, split {split}, row {row_number}"
        try:
            pairs = spec.texts(row)
            if spec.group is not None:
                spec.group(row)
            for column, what in (spec.notes(row) if spec.notes is not None else []):
                notes.setdefault(column, []).append((row_number, what))
        except RowError as err:
            raise BortzooError(f"{where}, column {err.column!r}: {err}") from None
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise BortzooError(f"{where}: cannot read the row ({type(err).__name__}: {err})") from None
        if spec.kind == CHOICE and len(pairs) != spec.num_choices:
            raise BortzooError(f"{where}, column {spec.text_fields[-1]!r}: expected {spec.num_choices} options, "
                               f"got {len(pairs)}")
    return notes


def describe_notes(key: str, notes: dict[str, list[tuple[int, str]]], total: int, shown: int = 3) -> str:
    """One line per column: how many rows have a note, and the first few with their row numbers."""
    lines = []
    for column, items in notes.items():
        sample = "; ".join(f"row {row}: {what}" for row, what in items[:shown])
        more = f"; and {len(items) - shown:,} more" if len(items) > shown else ""
        lines.append(f"{key}: {len(items):,} of {total:,} rows, column {column!r}: {sample}{more}")
    return "\n".join(lines)


def check_labels(spec: TaskSpec, data, split: str, hidden: bool) -> list:
    """The label of every row, checked against the spec; a bad one names its row and column.

    Hidden labels (GLUE's test splits hold -1) are not checked and come back as -1.
    """
    column = spec.label_columns[0]
    if hidden:
        return [-1] * len(data)
    names = {name: i for i, name in enumerate(spec.label_names)}
    labels = []
    # A plain label column is read whole (fast on MNLI's 393k rows); a label function sees each row.
    values = data[column] if spec.label is None else data.select_columns(
        list(dict.fromkeys((*spec.label_columns, *spec.text_fields))))
    for row_number, value in enumerate(values):
        where = f"task {spec.name}, split {split}, row {row_number}, column {column!r}"
        if spec.label is not None:
            try:
                value = spec.target(value)
            except (ValueError, KeyError, IndexError, TypeError) as err:
                raise BortzooError(f"{where}: {err}") from None
        if spec.kind == CLASSES:
            if isinstance(value, str) and value in names:
                value = names[value]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(spec.label_names):
                raise BortzooError(f"{where}: label {value!r} is not one of 0..{len(spec.label_names) - 1} "
                                   f"({', '.join(spec.label_names)})")
        elif spec.kind == CHOICE:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < spec.num_choices:
                raise BortzooError(f"{where}: label {value!r} is not an option index 0..{spec.num_choices - 1}")
        elif spec.kind == RANKING:
            if not isinstance(value, list) or any(v not in (0, 1) for v in value):
                raise BortzooError(f"{where}: label {value!r} is not one 0/1 per candidate")
        elif spec.kind == REGRESSION:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise BortzooError(f"{where}: label {value!r} is not a number") from None
            low, high = spec.label_range or (-math.inf, math.inf)
            if not (math.isfinite(value) and low <= value <= high):
                raise BortzooError(f"{where}: label {value} is outside [{low:g}, {high:g}]")
        labels.append(value)
    return labels


def check_option_lists(spec: TaskSpec, data, split: str) -> None:
    """A choice task whose options are one list column (RACE): the list has exactly `num_choices` options."""
    field = spec.text_fields[-1]
    for row_number, options in enumerate(data[field]):
        if not isinstance(options, (list, tuple)) or len(options) != spec.num_choices:
            got = len(options) if isinstance(options, (list, tuple)) else type(options).__name__
            raise BortzooError(f"task {spec.name}, split {split}, row {row_number}, column {field!r}: expected "
                               f"{spec.num_choices} options, got {got}")
