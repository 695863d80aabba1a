"""One DataModule for every benchmark task: load a spec's splits, check them, tokenise, pad per batch.

Data comes from the task's Hub dataset (`nyu-mll/glue`, `ehovy/race`) or from a local folder laid out
the same way (a clone of the repo, or the project's tiny fixtures), through `datasets.load_dataset`.
Every row is checked against the spec before training starts: a missing column, a label outside the
spec, a score that is not a number or an empty split stops the run with the task, split, row and column.
Texts longer than `max_length` are truncated longest-first, counted and reported, never dropped; so are
rows a task can read but not perfectly (a ReCoRD query without its placeholder: the spec's `notes`).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from bortzoo.data.glue_tsv import read_glue_tsv, task_folder
from bortzoo.data.local_copies import align_label_names, explain_load_error
from bortzoo.data.tasks import CHOICE, CLASSES, RANKING, REGRESSION, EvalSplit, RowError, TaskSpec, get_task
from bortzoo.errors import BortzooError
from bortzoo.resources import project_path

PAIR_ENCODINGS = ("tokenizer", "bort")
ENCODING_VERSION = "2"  # bump when the encoding below changes, so cached encodings are not reused


# -- loading and checking ------------------------------------------------------------------------------
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


# -- encoding -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """Where a tokenizer puts its special tokens around one text or a pair, read off the tokenizer itself.

    ``bort`` pair encoding uses one separator between the texts (`<s> A </s> B </s>`, as the official
    Bort code did) where RoBERTa's tokenizer puts two.
    """

    start: tuple[int, ...]
    middle: tuple[int, ...]
    end: tuple[int, ...]
    second_type: int  # token type id of the second text (1 for BERT, 0 for RoBERTa)

    @classmethod
    def of(cls, tokenizer, pair_encoding: str = "tokenizer") -> "Template":
        if pair_encoding not in PAIR_ENCODINGS:
            raise BortzooError(f"pair_encoding must be one of {PAIR_ENCODINGS}, got {pair_encoding!r}")
        a = tokenizer("a", add_special_tokens=False)["input_ids"]
        b = tokenizer("b", add_special_tokens=False)["input_ids"]
        pair = tokenizer("a", "b", return_token_type_ids=True)
        ids = list(pair["input_ids"])
        at = _find(ids, a, 0)
        bt = _find(ids, b, at + len(a))
        if at < 0 or bt < 0:
            raise BortzooError(f"cannot read the pair template of tokenizer {type(tokenizer).__name__}")
        start, middle, end = ids[:at], ids[at + len(a):bt], ids[bt + len(b):]
        types = pair.get("token_type_ids") or [0] * len(ids)
        if pair_encoding == "bort":
            middle = end
        return cls(tuple(start), tuple(middle), tuple(end), int(types[-1]))

    def budget(self, pair: bool) -> int:
        return len(self.start) + len(self.end) + (len(self.middle) if pair else 0)

    def build(self, first: list[int], second: Optional[list[int]], max_length: int):
        """input_ids, token_type_ids and whether anything was cut, truncating the longer text first."""
        room = max_length - self.budget(second is not None)
        if room < 2:
            raise BortzooError(f"max_length {max_length} leaves no room for text after the special tokens")
        truncated = False
        if second is None:
            if len(first) > room:
                first, truncated = first[:room], True
            ids = [*self.start, *first, *self.end]
            return ids, [0] * len(ids), truncated
        if len(first) + len(second) > room:
            truncated = True
            keep_first, keep_second = _longest_first(len(first), len(second), room)
            first, second = first[:keep_first], second[:keep_second]
        head = [*self.start, *first, *self.middle]
        tail = [*second, *self.end]
        return head + tail, [0] * len(head) + [self.second_type] * len(tail), truncated


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    return -1


def _longest_first(n_first: int, n_second: int, room: int) -> tuple[int, int]:
    """Lengths after removing tokens one at a time from the longer text until both fit in `room`."""
    short = min(n_first, n_second)
    if short <= room // 2:
        return (room - short, short) if n_first > n_second else (short, room - short)
    return math.ceil(room / 2), room // 2


def encode_rows(batch: dict[str, list], spec: TaskSpec, tokenizer, template: Template, max_length: int,
                hidden: bool = False) -> dict:
    """A `datasets.map` batch function: the token ids of every row (one sequence per option for choices, per
    candidate for rankings), and what the metrics need beside the label: `groups` (the row's group key),
    and for rankings the `candidates`, the `gold_answers` and the `labels` (one 0/1 per candidate)."""
    count = len(next(iter(batch.values())))
    rows = [{key: batch[key][i] for key in batch} for i in range(count)]
    pairs = [spec.texts(row) for row in rows]
    texts = list(dict.fromkeys(t for row_pairs in pairs for pair in row_pairs for t in pair if t is not None))
    ids = dict(zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"])) if texts else {}
    out: dict[str, list] = {"input_ids": [], "token_type_ids": [], "truncated": []}
    if spec.group is not None:
        out["groups"] = [list(spec.group(row)) for row in rows]
    if spec.kind == RANKING:
        out["candidates"] = [spec.candidates(row) for row in rows]
        out["gold_answers"] = [[] if hidden else list(row[spec.label_columns[0]] or []) for row in rows]
        out["labels"] = [[0] * len(c) if hidden else spec.target(row) for c, row in zip(out["candidates"], rows)]
    for row_pairs in pairs:
        built = [template.build(ids[a], ids[b] if b is not None else None, max_length) for a, b in row_pairs]
        if spec.kind in (CHOICE, RANKING):
            out["input_ids"].append([x[0] for x in built])
            out["token_type_ids"].append([x[1] for x in built])
        else:
            out["input_ids"].append(built[0][0])
            out["token_type_ids"].append(built[0][1])
        out["truncated"].append(any(x[2] for x in built))
    return out


@dataclass
class Encoded:
    """A split as model inputs (`input_ids`, `token_type_ids`, `labels`, `ids`, and `groups`, `candidates`,
    `gold_answers` where the task has them), how many rows were truncated, and the rows' notes."""

    data: Any
    truncated: int
    notes: dict[str, list[tuple[int, str]]]


def encode_split(spec: TaskSpec, data, split: str, tokenizer, max_length: int, pair_encoding: str = "tokenizer",
                 hidden: bool = False) -> Encoded:
    """Check every row of the split (texts, the spec's reading of it, labels), then tokenise it."""
    check_texts(spec, data, split)
    if spec.kind == CHOICE and spec.pairs is None:
        _check_option_lists(spec, data, split)
    notes = check_rows(spec, data, split)
    labels = check_labels(spec, data, split, hidden)
    template = Template.of(tokenizer, pair_encoding)
    key = "|".join([ENCODING_VERSION, spec.name, split, str(getattr(data, "_fingerprint", "")), str(data.cache_files),
                    str(getattr(tokenizer, "name_or_path", "")), str(len(tokenizer)), str(max_length), pair_encoding,
                    str(hidden)])
    encoded = data.map(
        encode_rows, batched=True, batch_size=1000,
        fn_kwargs={"spec": spec, "tokenizer": tokenizer, "template": template, "max_length": max_length,
                   "hidden": hidden},
        remove_columns=[c for c in data.column_names if c != spec.id_column],
        new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32],
        desc=f"tokenise {spec.name}/{split}",
    )
    encoded = encoded.rename_column(spec.id_column, "ids") if spec.id_column != "ids" else encoded
    if spec.kind != RANKING:  # a ranking's labels (one per candidate) come out of encode_rows
        encoded = encoded.add_column("labels", [float(x) for x in labels] if spec.kind == REGRESSION else labels)
    truncated = int(sum(encoded["truncated"]))
    return Encoded(encoded.remove_columns(["truncated"]), truncated, notes)


def _check_option_lists(spec: TaskSpec, data, split: str) -> None:
    """A choice task whose options are one list column (RACE): the list has exactly `num_choices` options."""
    field = spec.text_fields[-1]
    for row_number, options in enumerate(data[field]):
        if not isinstance(options, (list, tuple)) or len(options) != spec.num_choices:
            got = len(options) if isinstance(options, (list, tuple)) else type(options).__name__
            raise BortzooError(f"task {spec.name}, split {split}, row {row_number}, column {field!r}: expected "
                               f"{spec.num_choices} options, got {got}")


# -- batching -----------------------------------------------------------------------------------------
class PadCollator:
    """Pads a batch to its longest sequence; the options of multiple-choice rows are padded alike.

    Rows with different numbers of options (a ranking's candidates) are padded to the most options in the
    batch with one-token dummy sequences, and `option_mask` ([rows, options], True for real options) tells the
    model which to ignore. Group keys become a `groups` tensor; a ranking's `candidates` and gold answers
    (`answers`) stay lists of strings for the metrics and the leaderboard file.
    """

    def __init__(self, pad_id: int, regression: bool = False):
        self.pad_id = pad_id
        self.regression = regression

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        ids = [row["input_ids"] for row in rows]
        choice = bool(ids) and isinstance(ids[0][0], list)
        types = [row["token_type_ids"] for row in rows]
        options = max(len(item) for item in ids) if choice else 0
        ragged = choice and any(len(item) != options for item in ids)
        if choice:  # pad every row to `options` sequences; a dummy is one attended pad token (no empty softmax)
            flat_ids = [seq for item in ids for seq in (*item, *[[self.pad_id]] * (options - len(item)))]
            flat_types = [seq for item in types for seq in (*item, *[[0]] * (options - len(item)))]
        else:
            flat_ids, flat_types = ids, types
        longest = max(len(seq) for seq in flat_ids)
        input_ids = torch.full((len(flat_ids), longest), self.pad_id, dtype=torch.long)
        token_types = torch.zeros((len(flat_ids), longest), dtype=torch.long)
        mask = torch.zeros((len(flat_ids), longest), dtype=torch.long)
        for i, (seq, seq_types) in enumerate(zip(flat_ids, flat_types)):
            input_ids[i, :len(seq)] = torch.tensor(seq)
            token_types[i, :len(seq)] = torch.tensor(seq_types)
            mask[i, :len(seq)] = 1
        batch: dict[str, Any] = {"ids": [row["ids"] for row in rows]}
        if choice:
            shape = (len(rows), options, longest)
            input_ids, token_types, mask = input_ids.view(shape), token_types.view(shape), mask.view(shape)
        batch.update(input_ids=input_ids, attention_mask=mask, token_type_ids=token_types)
        if ragged or (choice and isinstance(rows[0]["labels"], list)):
            option_mask = torch.zeros((len(rows), options), dtype=torch.bool)
            for i, item in enumerate(ids):
                option_mask[i, :len(item)] = True
            batch["option_mask"] = option_mask
        labels = [row["labels"] for row in rows]
        if labels and isinstance(labels[0], list):  # one 0/1 per candidate
            batch["labels"] = torch.tensor([[*x, *[0] * (options - len(x))] for x in labels], dtype=torch.float)
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.float if self.regression else torch.long)
        if "groups" in rows[0]:
            batch["groups"] = torch.tensor([row["groups"] for row in rows], dtype=torch.long)
        if "candidates" in rows[0]:
            batch["candidates"] = [row["candidates"] for row in rows]
            batch["answers"] = [row["gold_answers"] for row in rows]
        return batch


# -- the DataModule -----------------------------------------------------------------------------------
class TaskData(L.LightningDataModule):
    """A benchmark task's train, evaluation and test data, tokenised with the model's tokenizer.

    `fit` and `validate` read the task's dev splits (MNLI: matched and mismatched, one loader each);
    `test` reads the test split where its labels are public (RACE) and the dev splits where they are
    hidden (GLUE: real test scores need a leaderboard submission, see `bortzoo predict`); `predict` reads
    the test splits (MNLI's include the AX diagnostic). Texts are tokenised with the fine-tuned model's
    tokenizer (`TaskModel.tokenizer`); set `tokenizer` on the instance to use this module on its own.

    Args:
        task: A registered task name (``sst2``, ``mnli``, ``race-high``...).
        data_dir: A local folder laid out like the task's Hub dataset repo (e.g. a clone of
            ``nyu-mll/glue``, or ``bortzoo/assets/tiny-tasks/glue``); by default the Hub dataset.
        dataset_revision: Hub revision of the dataset.
        max_length: Longest input in tokens, special tokens included; longer texts are truncated,
            the longer of a pair first, and counted.
        batch_size: Training batch size (rows; a multiple-choice row holds every option).
        eval_batch_size: Evaluation batch size (default: `batch_size`).
        pair_encoding: ``tokenizer`` (the tokenizer's own pair template) or ``bort`` (`<s> A </s> B </s>`,
            one separator, as the official Bort code).
        num_workers: DataLoader worker processes.
        train_limit: Use only the first N training rows (quick looks; None = all).
    """

    def __init__(self, task: str = "sst2", data_dir: Optional[str] = None, dataset_revision: Optional[str] = None,
                 max_length: int = 128, batch_size: int = 32,
                 eval_batch_size: Optional[int] = None, pair_encoding: str = "tokenizer", num_workers: int = 0,
                 train_limit: Optional[int] = None):
        super().__init__()
        self.spec = get_task(task)
        if pair_encoding not in PAIR_ENCODINGS:
            raise BortzooError(f"pair_encoding must be one of {PAIR_ENCODINGS}, got {pair_encoding!r}")
        if max_length < 8:
            raise BortzooError(f"max_length must be at least 8 tokens, got {max_length}")
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise BortzooError("batch sizes must be positive")
        self.save_hyperparameters()
        self.tokenizer = None
        self.datasets: dict[str, Any] = {}
        self.truncated: dict[str, int] = {}
        self.notes: dict[str, dict[str, list[tuple[int, str]]]] = {}

    # -- setup ---------------------------------------------------------------------------------------
    def _tokenizer(self):
        if self.tokenizer is None:
            model = self.trainer.lightning_module if self.trainer is not None else None
            self.tokenizer = getattr(model, "tokenizer", None)
            if self.tokenizer is None:
                raise BortzooError("TaskData has no tokenizer: the model must bring one (TaskModel.tokenizer), or "
                                   "set TaskData.tokenizer")
        return self.tokenizer

    def splits_for(self, stage: str) -> tuple[EvalSplit, ...]:
        """The evaluation splits `stage` reads, in loader order (the model names its metrics from them)."""
        return self.spec.eval_splits(stage)

    def _load(self, task: TaskSpec, split: str, hidden: bool):
        key = f"{task.name}/{split}"
        if key not in self.datasets:
            data = load_split(task, split, self.hparams.data_dir, self.hparams.dataset_revision)
            if split == task.train and self.hparams.train_limit:
                data = data.select(range(min(self.hparams.train_limit, len(data))))
            encoded = encode_split(task, data, split, self._tokenizer(), self.hparams.max_length,
                                   self.hparams.pair_encoding, hidden)
            self.datasets[key], self.truncated[key], self.notes[key] = encoded.data, encoded.truncated, encoded.notes
            if encoded.truncated:
                rank_zero_info(f"{key}: {encoded.truncated:,} of {len(encoded.data):,} rows were longer than "
                               f"{self.hparams.max_length} tokens and were truncated (longer text first)")
            if encoded.notes:
                rank_zero_warn(f"rows kept with a problem (counted, not dropped):\n"
                               f"{describe_notes(key, encoded.notes, len(encoded.data))}")
        return self.datasets[key]

    def _eval(self, stage: str) -> list:
        loaded = []
        for item in self.splits_for(stage):
            task = get_task(item.task) if item.task else self.spec
            hidden = stage == "predict" and not task.test_labels
            loaded.append(self._load(task, item.split, hidden))
        return loaded

    def setup(self, stage: str) -> None:
        if stage == "fit":
            if self.spec.train is None:
                raise BortzooError(f"task {self.spec.name} has no training data: it is predicted with a "
                                   f"{self.spec.predicted_by} model (bortzoo predict with a {self.spec.predicted_by} "
                                   "recipe writes its file)")
            self._load(self.spec, self.spec.train, hidden=False)
        if stage in ("fit", "validate", "test") and not self.splits_for("validate" if stage == "fit" else stage):
            raise BortzooError(f"task {self.spec.name} has no labelled split to {stage} on; it is predicted with a "
                               f"{self.spec.predicted_by or 'another'} model (bortzoo predict)")

    # -- loaders -------------------------------------------------------------------------------------
    def _loader(self, data, shuffle: bool, batch_size: int) -> DataLoader:
        tokenizer = self._tokenizer()
        collate = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                              regression=self.spec.kind == REGRESSION)
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._load(self.spec, self.spec.train, False), True, self.hparams.batch_size)

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        size = self.hparams.eval_batch_size or self.hparams.batch_size
        return [self._loader(data, False, size) for data in self._eval(stage)]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("validate")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    def predict_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("predict")
