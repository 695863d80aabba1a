"""What goes wrong with a user's own copy of a benchmark, said in the user's terms.

`datasets` reports a local folder's problems in its own: a folder without a dataset card says
`BuilderConfig 'sst2' not found`, a class string its card does not know says `An error occurred while
generating the dataset`. And a copy whose ClassLabel names come in another order (MNLI's, famously) loads
without complaint and trains on swapped labels. Here each becomes a remap or an error naming the task, split,
file, row, column and value.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from lightning.pytorch.utilities import rank_zero_warn

from bortzoo.errors import BortzooError
from bortzoo.tasks.spec import CLASSES, TaskSpec

_BAD_CLASS = re.compile(r"Invalid string class label (.*)$")
_NO_CONFIG = re.compile(r"BuilderConfig '(.*)' not found")


def explain_load_error(spec: TaskSpec, where: str, err: BaseException, data_dir: Optional[str]) -> BortzooError:
    """The error a user can act on for `datasets.load_dataset(where, spec.config)` raising `err`."""
    causes = list(_chain(err))
    text = " | ".join(str(c) for c in causes)
    bad = next((m for m in (_BAD_CLASS.search(str(c)) for c in causes) if m), None)
    if bad is not None and data_dir is not None:
        return _bad_class_string(spec, data_dir, bad.group(1).strip())
    if data_dir is not None and _NO_CONFIG.search(text):
        return BortzooError(
            f"task {spec.name}: {data_dir} has no config {spec.config!r}. A local copy must be laid out like the Hub "
            f"repo {spec.dataset}: a dataset card README.md whose `configs:` list names {spec.config!r} with its "
            f"files ({spec.config}/<split>-*.parquet, as `hf download {spec.dataset} --repo-type dataset "
            "--local-dir DIR` writes them)"
            + (", or the classic GLUE download (glue_data/<TASK>/train.tsv, dev.tsv, test.tsv)"
               if spec.benchmark == "glue" else "")
            + (f". Found no dataset card at {os.path.join(data_dir, 'README.md')}"
               if not os.path.isfile(os.path.join(data_dir, "README.md")) else ""))
    first = (str(err).strip() or type(err).__name__).splitlines()[0]
    return BortzooError(f"task {spec.name}: cannot load {where} (config {spec.config!r}): {first}")


def _chain(err: Optional[BaseException]):
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _bad_class_string(spec: TaskSpec, data_dir: str, value: str) -> BortzooError:
    """Find the file and row holding `value` in the label column by reading the config's files raw."""
    import datasets

    column = spec.label_columns[0]
    try:
        builder = datasets.load_dataset_builder(data_dir, spec.config)
        names = builder.info.features[column].names if builder.info.features else None
        for split, files in (builder.config.data_files or {}).items():
            for path in files:
                raw = datasets.load_dataset(builder.name, data_files=[str(path)], split="train",
                                            cache_dir=os.path.join(datasets.config.HF_DATASETS_CACHE, "bortzoo-raw"))
                for row, found in enumerate(raw[column]):
                    if str(found) == value:
                        return BortzooError(
                            f"task {spec.name}, split {split}, file {_relative(path, data_dir)}, row {row}, column "
                            f"{column!r}: {value!r} is not a label of the dataset card ({', '.join(names or [])})")
    except BortzooError:
        raise
    except Exception:  # the raw read failed too: the value alone still says what is wrong
        pass
    return BortzooError(f"task {spec.name}: {data_dir} holds the label {value!r} in column {column!r}, which is not one "
                        f"of the dataset card's class names")


def _relative(path, root: str) -> str:
    path = str(path).removeprefix("file://")
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return path


def align_label_names(spec: TaskSpec, data, split: str, where: str):
    """`data` with its class ids in the spec's order.

    The data's ClassLabel names are compared with the spec's, never trusted by position: the same names in
    another order are remapped (with a warning that says so); names that differ stop the run. Names equal to the leaderboard's
    label strings (`submission_labels`, e.g. GLUE's 0/1 files) are the same classes by id. Label columns that
    are not ClassLabels (plain ids or strings) are checked row by row later (`check_labels`).
    """
    from datasets import ClassLabel

    if spec.kind != CLASSES:
        return data
    column = spec.label_columns[0]
    feature = data.features.get(column)
    if not isinstance(feature, ClassLabel):
        return data
    names, wanted = list(feature.names), list(spec.label_names)
    if names == wanted or names == list(spec.submission_labels):
        return data
    if sorted(names) != sorted(wanted):
        raise BortzooError(f"task {spec.name}, split {split}, column {column!r}: {where} names its classes {names}, "
                           f"but task {spec.name} has {wanted}: the labels cannot be matched by name")
    order = [wanted.index(name) for name in names]
    rank_zero_warn(f"task {spec.name}, split {split}: {where} orders its classes {names}; remapped by name to the "
                   f"task's order {wanted}")
    features = data.features.copy()
    features[column] = ClassLabel(names=wanted)
    return data.map(lambda batch: {column: [order[v] if v >= 0 else v for v in batch[column]]}, batched=True,
                    features=features, desc=f"remap {spec.name}/{split} labels")
