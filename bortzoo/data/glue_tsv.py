"""Read GLUE as the classic TSV download (``glue_data/<TASK>/*.tsv``) into the schema of the Hub's `nyu-mll/glue`.

Many people hold GLUE as the folder `download_glue_data.py` writes, not as the Hub repo. This module finds a task's
files in such a folder and reads them into exactly what ``datasets.load_dataset("nyu-mll/glue", config)`` gives:
the same split names, columns, `idx` (int32) and `label` (the Hub's ClassLabel, or float32 for STS-B; -1 where a
test file hides it), so everything after `bortzoo.data.rows.load_split` cannot tell the two apart.

The formats follow two references, not memory:

* huggingface/datasets, ``datasets/glue/glue.py`` (the loading script whose output the Hub's parquet files are):
  per task the TSV columns read (`sentence1`/`sentence2` become MNLI's and AX's `premise`/`hypothesis`; MRPC's
  ``#1 String``/``#2 String`` and ``Quality``; QQP's ``is_duplicate``; MNLI's ``gold_label``; STS-B's ``score``),
  ``csv.QUOTE_NONE`` with tab separators, CoLA's train and dev files without a header (label in field 2, sentence
  in field 4), a label that is a class name mapped by name and otherwise read as an integer, -1 for a file
  without the label column, and ``idx`` = the row's number in its file, counted from 0 (header excluded). The
  files' own `index`/`id` column is not read, as there (QQP's train/dev `id` is a Quora pair id, not a row number).
* nyu-mll/GLUE-baselines, ``download_glue_data.py``: the folder names (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI,
  RTE, WNLI, diagnostic), ``diagnostic/diagnostic.tsv`` for AX, and MRPC's files, which it writes itself from
  ``msr_paraphrase_*.txt``: train.tsv and dev.tsv with that file's header (and its UTF-8 byte-order mark, so files
  are read as ``utf-8-sig``), test.tsv as ``index  #1 ID  #2 ID  #1 String  #2 String``.

Where the loading script was lenient this module is not: it dropped a row with a missing field or an empty label
and kept one with extra fields; here every such line stops the read with a `BortzooError` naming the file, the
line, the column and the value. One difference cannot be helped: the Hub's MRPC train and validation `idx` are
row numbers in ``msr_paraphrase_train.txt`` (both splits together), which train.tsv and dev.tsv no longer
record; here they are row numbers in each file, as for every other task (MRPC's test `idx` agree).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional

from bortzoo.errors import BortzooError
from bortzoo.tasks.spec import REGRESSION, TaskSpec

HIDDEN = -1  # the label of a row whose file has no label column (GLUE's test files)
ENCODING = "utf-8-sig"  # MRPC's train/dev files start with the byte-order mark of msr_paraphrase_train.txt
DEFAULT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


@dataclass(frozen=True)
class TsvLayout:
    """Where one GLUE config lives in ``glue_data`` and which TSV columns hold its fields.

    `texts` are the TSV columns of the spec's `text_fields`, in order; `label` the label column (None: the files
    have none, AX). `numeric`: the files hold class ids (0/1), not class names. `headerless`: names for the
    fields of the train/dev files that have no header (CoLA), used to find columns and in error messages.
    """

    folder: str
    texts: tuple[str, ...]
    label: Optional[str]
    numeric: bool = False
    files: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FILES))
    headerless: tuple[str, ...] = ()


LAYOUTS: dict[str, TsvLayout] = {
    "cola": TsvLayout("CoLA", ("sentence",), "label", numeric=True,
                      headerless=("source", "label", "author's mark", "sentence")),
    "sst2": TsvLayout("SST-2", ("sentence",), "label", numeric=True),
    "mrpc": TsvLayout("MRPC", ("#1 String", "#2 String"), "Quality", numeric=True),
    "stsb": TsvLayout("STS-B", ("sentence1", "sentence2"), "score"),
    "qqp": TsvLayout("QQP", ("question1", "question2"), "is_duplicate", numeric=True),
    "mnli": TsvLayout("MNLI", ("sentence1", "sentence2"), "gold_label",
                      files={"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                             "validation_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
                             "test_mismatched": "test_mismatched.tsv"}),
    "qnli": TsvLayout("QNLI", ("question", "sentence"), "label"),
    "rte": TsvLayout("RTE", ("sentence1", "sentence2"), "label"),
    "wnli": TsvLayout("WNLI", ("sentence1", "sentence2"), "label", numeric=True),
    "ax": TsvLayout("diagnostic", ("sentence1", "sentence2"), None, files={"test": "diagnostic.tsv"}),
}


def layout_of(spec: TaskSpec) -> Optional[TsvLayout]:
    """The classic layout of a GLUE spec; None for any other benchmark (their data has no such download)."""
    return LAYOUTS.get(spec.config) if spec.benchmark == "glue" else None


def hub_features(spec: TaskSpec):
    """The features `nyu-mll/glue` gives the config: its text columns, `label` and `idx` (int32)."""
    from datasets import ClassLabel, Features, Value

    label = Value("float32") if spec.kind == REGRESSION else ClassLabel(names=list(spec.label_names))
    return Features({**{name: Value("string") for name in spec.text_fields}, "label": label,
                     spec.id_column: Value("int32")})


# -- finding the files ----------------------------------------------------------------------------------------
def task_folder(spec: TaskSpec, data_dir: str) -> Optional[str]:
    """The folder holding `spec`'s TSV files when `data_dir` is a classic ``glue_data`` folder or one task's
    folder (``glue_data/RTE``); None when it is neither (a folder laid out like the Hub repo).

    Names are compared exactly (``RTE``, not the Hub config's ``rte``), so a Hub-layout folder is never taken
    for a classic one, on case-insensitive file systems too. A classic folder that lacks this task's files
    is an error, rather than a confusing failure of the Hub-layout loader.
    """
    layout = layout_of(spec)
    if layout is None or not os.path.isdir(data_dir):
        return None
    entries = set(os.listdir(data_dir))
    if layout.folder in entries and os.path.isdir(os.path.join(data_dir, layout.folder)):
        return os.path.join(data_dir, layout.folder)
    wanted = ", ".join(layout.files.values())
    if any(name.endswith(".tsv") for name in entries):  # data_dir is itself a task's folder
        own = os.path.basename(os.path.normpath(os.path.abspath(data_dir)))
        if own != layout.folder and own in {other.folder for other in LAYOUTS.values()}:
            raise BortzooError(f"task {spec.name}: data_dir {data_dir!r} is the classic GLUE folder of {own}, not of "
                               f"{layout.folder} ({wanted}); point data_dir at the glue_data folder that holds both")
        return data_dir
    classic = sorted(other.folder for other in LAYOUTS.values() if other.folder in entries)
    if classic:
        raise BortzooError(f"task {spec.name}: data_dir {data_dir!r} is a classic GLUE download (it has "
                           f"{', '.join(name + '/' for name in classic)}) but no {layout.folder}/ folder with {wanted}")
    return None


# -- reading ------------------------------------------------------------------------------------------------
def read_glue_tsv(spec: TaskSpec, folder: str, splits: Optional[Iterable[str]] = None):
    """The named splits (default: all of the task's) of the TSV files in `folder`, as a ``datasets.DatasetDict``
    in the Hub's schema. Reading only the splits asked for spares re-reading MNLI's 393k training rows for
    every evaluation split."""
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    layout = layout_of(spec)
    if layout is None:
        raise BortzooError(f"task {spec.name}: only GLUE tasks have a classic TSV download")
    names = list(layout.files) if splits is None else list(splits)
    unknown = [name for name in names if name not in layout.files]
    if unknown:
        raise BortzooError(f"task {spec.name}: the classic GLUE folder {folder} has no split {unknown[0]!r}; its "
                           f"splits are {sorted(layout.files)} "
                           f"({', '.join(f'{s}: {f}' for s, f in layout.files.items())})")
    features = hub_features(spec)
    result = datasets.DatasetDict()
    for name in names:
        path = os.path.join(folder, layout.files[name])
        if not os.path.isfile(path):
            raise BortzooError(f"task {spec.name}: {folder} has no {layout.files[name]} (the {name} split); a classic "
                               f"GLUE {layout.folder} folder holds {', '.join(layout.files.values())}")
        columns = read_file(spec, layout, path, test=name.startswith("test"))
        # straight to Arrow in the features' schema: `Dataset.from_dict` re-encodes value by value (7x slower on MNLI)
        table = InMemoryTable(pa.Table.from_pydict(columns, schema=features.arrow_schema))
        result[name] = datasets.Dataset(table, info=datasets.DatasetInfo(features=features),
                                        split=datasets.NamedSplit(name))
    return result


def read_file(spec: TaskSpec, layout: TsvLayout, path: str, test: bool) -> dict[str, list]:
    """One TSV file as Hub columns. Every line is one row (QUOTE_NONE: quote characters are text); a row with
    the wrong number of fields or a bad label stops the read, naming file, line, column and value. Blank lines
    are allowed only at the end of the file (they hold nothing; one between rows means a broken file)."""
    columns: dict[str, list] = {name: [] for name in (*spec.text_fields, "label", spec.id_column)}
    header: Optional[list[str]] = None
    if layout.headerless and not test:
        header = list(layout.headerless)
        text_at, label_at = _find_columns(spec, layout, path, header, test)
    blank = 0  # the line number of a blank line not (yet) followed by a row
    with open(path, encoding=ENCODING) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                line = reader.line_num
                if header is None:
                    header = row
                    text_at, label_at = _find_columns(spec, layout, path, header, test)
                    continue
                if not row:
                    blank = blank or line
                    continue
                if blank:
                    raise BortzooError(f"{path}, line {blank}: a blank line between rows (every line is a row of "
                                       f"{len(header)} tab-separated fields: {', '.join(header)})")
                _check_width(path, line, header, row)
                for name, at in zip(spec.text_fields, text_at):
                    columns[name].append(row[at])
                columns["label"].append(HIDDEN if label_at is None else
                                        _label(spec, layout, path, line, header[label_at], row[label_at]))
                columns[spec.id_column].append(len(columns[spec.id_column]))  # the row number, as the Hub's idx
        except csv.Error as err:
            raise BortzooError(f"{path}, line {reader.line_num}: cannot read the line ({err})") from None
    if header is None:
        raise BortzooError(f"{path}: the file is empty (expected a header line and rows)")
    return columns


def _find_columns(spec: TaskSpec, layout: TsvLayout, path: str, header: list[str],
                  test: bool) -> tuple[list[int], Optional[int]]:
    """Positions of the text columns and of the label column (None: no labels, read as -1). A train or dev file
    without its label column is an error; the loading script would have hidden its labels."""
    where = f"{path}, line 1 (the header)" if not (layout.headerless and not test) else path
    missing = [name for name in layout.texts if name not in header]
    if missing:
        raise BortzooError(f"{where}: no column {missing[0]!r} (task {spec.name} reads {', '.join(layout.texts)}); "
                           f"the columns are {header}")
    label_at = header.index(layout.label) if layout.label in header else None
    if label_at is None and layout.label is not None and not test:
        raise BortzooError(f"{where}: no label column {layout.label!r}; the columns are {header}")
    return [header.index(name) for name in layout.texts], label_at


def _check_width(path: str, line: int, header: list[str], row: list[str]) -> None:
    """A row has one field per column: with QUOTE_NONE a stray tab or a cut line shifts every column after it."""
    if len(row) < len(header):
        raise BortzooError(f"{path}, line {line}, column {header[len(row)]!r}: no value; the line has {len(row)} "
                           f"tab-separated fields, expected {len(header)} ({', '.join(header)}); its last field is "
                           f"{row[-1]!r}")
    if len(row) > len(header):
        raise BortzooError(f"{path}, line {line}: an extra field {row[len(header)]!r} after column "
                           f"{header[-1]!r}; the line has {len(row)} tab-separated fields, expected {len(header)} "
                           f"({', '.join(header)})")


def _label(spec: TaskSpec, layout: TsvLayout, path: str, line: int, column: str, value: str):
    """A label as the Hub stores it: a class name maps to its ClassLabel id by name, a number to itself where
    the files hold class ids (0/1), an STS-B score to a float within the task's range."""
    where = f"{path}, line {line}, column {column!r}"
    if spec.kind == REGRESSION:
        try:
            score = float(value)
        except ValueError:
            raise BortzooError(f"{where}: score {value!r} is not a number") from None
        low, high = spec.label_range or (-math.inf, math.inf)
        if not (math.isfinite(score) and low <= score <= high):
            raise BortzooError(f"{where}: score {value!r} is outside [{low:g}, {high:g}]")
        return score
    names = list(spec.label_names)
    if value in names:
        return names.index(value)
    if layout.numeric and value in {str(i) for i in range(len(names))}:
        return int(value)
    accepted = [f"{i} ({name})" for i, name in enumerate(names)] if layout.numeric else names
    raise BortzooError(f"{where}: label {value!r} is not one of the task's labels: {', '.join(accepted)}")
