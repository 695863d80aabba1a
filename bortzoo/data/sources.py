"""Where pretraining text comes from: Hub datasets, local folders laid out like Hub repos, and files.

Every source becomes a `datasets` table with one column, `text`. Hub datasets go through
`datasets.load_dataset` (cached, or streamed); local .txt / .jsonl / .json / .parquet files
through its file builders. A folder is read the way the Hub reads a repo, so a copy of
`wikimedia/wikipedia` on disk loads with the same `name` (config) as the real one.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Optional

from bortzoo.errors import BortzooError, first_line
from bortzoo.resources import project_path

FILE_BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class Source:
    """One corpus of the mix.

    Args:
        path: Hub dataset id (``wikimedia/wikipedia``), a local folder laid out like a Hub dataset
            repo, or local files (a path or glob) ending in .txt, .jsonl, .json or .parquet.
        name: Dataset config on the Hub (e.g. ``20231101.en`` for Wikipedia).
        split: Split to read.
        text_column: Column holding the text (.txt files always give ``text``).
        weight: Share of training blocks drawn from this source, relative to the others.
        streaming: Read lazily instead of downloading and caching the whole dataset first.
        revision: Hub revision of the dataset.
        data_files: Files to read inside a Hub repo or folder (globs allowed), for repos whose
            files are not laid out as configs, e.g. a parquet export on ``refs/convert/parquet``.
    """

    path: str
    name: Optional[str] = None
    split: str = "train"
    text_column: str = "text"
    weight: float = 1.0
    streaming: bool = False
    revision: Optional[str] = None
    data_files: Optional[list[str]] = None

    def __post_init__(self) -> None:
        if not str(self.path).strip():
            raise BortzooError("a corpus source has an empty path")
        if not self.weight > 0:
            raise BortzooError(f"source {self.path!r}: weight must be positive, got {self.weight}")

    def describe(self) -> str:
        return self.path + (f" ({self.name})" if self.name else "") + f" [{self.split}]"


def as_sources(items, where: str = "sources") -> list[Source]:
    """`Source`s from Sources, dicts (as YAML gives them) or plain paths; unknown keys are named."""
    from dataclasses import fields

    valid = {f.name for f in fields(Source)}
    result = []
    for index, item in enumerate(items or []):
        if isinstance(item, Source):
            result.append(item)
            continue
        if isinstance(item, str):
            result.append(Source(item))
            continue
        data = dict(vars(item)) if hasattr(item, "__dict__") and not isinstance(item, dict) else dict(item)
        unknown = set(data) - valid
        if unknown:
            raise BortzooError(f"{where}[{index}] has unknown key(s) {sorted(unknown)}; valid keys: {sorted(valid)}")
        if "path" not in data:
            raise BortzooError(f"{where}[{index}] has no 'path'")
        result.append(Source(**data))
    return result


def local_files(path: str) -> Optional[list[str]]:
    """The files `path` names when it is a file or a glob of files; None for anything else."""
    files = sorted(glob.glob(path)) if any(c in path for c in "*?[") else ([path] if os.path.isfile(path) else [])
    return files or None


def load_source(source: Source):
    """The source as a `datasets` Dataset (or IterableDataset when streaming) with one column, `text`."""
    import datasets

    path = project_path(source.path)  # a recipe's bortzoo/assets/... from any folder
    files = local_files(path)
    try:
        if files:
            builder = _builder_for(files, source)
            data = datasets.load_dataset(builder, data_files=files, split="train", streaming=source.streaming)
        elif os.path.isdir(path) or _looks_like_hub_id(source.path):
            split = "train" if source.data_files else source.split  # data_files form one "train" split
            data = datasets.load_dataset(path, source.name, split=split, streaming=source.streaming,
                                         revision=source.revision, data_files=source.data_files)
        else:
            raise BortzooError(f"corpus source {source.path!r} is neither an existing file, a glob matching files, "
                               "a folder, nor a Hub dataset id")
    except BortzooError:
        raise
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        raise BortzooError(f"cannot load corpus source {source.describe()}: {first_line(err)}") from None
    except Exception as err:  # datasets raises builder-specific errors for files that are not what they claim
        if type(err).__module__.startswith(("datasets", "pyarrow", "json")):
            raise BortzooError(f"corpus source {source.describe()} could not be read: {first_line(err)}") from None
        raise
    columns = data.column_names
    if columns is not None and source.text_column not in columns:
        raise BortzooError(f"corpus source {source.describe()} has no column {source.text_column!r}; "
                           f"its columns are {columns}")
    if columns is not None:
        extra = [c for c in columns if c != source.text_column]
        data = data.remove_columns(extra)
        if source.text_column != "text":
            data = data.rename_column(source.text_column, "text")
    return data


def _builder_for(files: list[str], source: Source) -> str:
    kinds = {os.path.splitext(f)[1].lower() for f in files}
    unknown = kinds - set(FILE_BUILDERS)
    if unknown:
        raise BortzooError(f"corpus source {source.path!r}: cannot read files ending in {sorted(unknown)}; "
                           f"use {', '.join(sorted(FILE_BUILDERS))}")
    builders = {FILE_BUILDERS[k] for k in kinds}
    if len(builders) > 1:
        raise BortzooError(f"corpus source {source.path!r} mixes file kinds {sorted(kinds)}; give one source per kind")
    builder = builders.pop()
    if builder == "text":
        _check_text_files(files)
    return builder


def _check_text_files(files: list[str]) -> None:
    """A binary file fed as text would train on garbage: refuse it, naming the file."""
    for path in files:
        with open(path, "rb") as handle:
            head = handle.read(8192)
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as err:
            if err.start < len(head) - 4:  # not just a multi-byte character cut at the boundary
                raise BortzooError(f"corpus file {path!r} is not UTF-8 text (byte {err.start})") from None
        if b"\x00" in head:
            raise BortzooError(f"corpus file {path!r} is not text: it contains NUL bytes")


def _looks_like_hub_id(path: str) -> bool:
    from bortzoo.hub import is_hub_id

    return is_hub_id(path)


