"""Leaderboard files from `bortzoo predict`: the TSVs the GLUE server takes, zipped, and RACE answers.

(SuperGLUE's JSON-lines files and their zip are written by `bortzoo.tasks.superglue_leaderboard`; the callback
below picks the format by each split's benchmark.)

GLUE wants one file per leaderboard column, named after it (`CoLA.tsv`, `MNLI-m.tsv`, `AX.tsv`...), with a
header `index<TAB>prediction` and one row per test example: the example's `idx` (an integer) and the label as
the original task files wrote it (0/1 for CoLA, SST-2, MRPC, QQP, WNLI; `entailment`... for MNLI, AX, QNLI, RTE;
a score in [0, 5] with three decimals for STS-B). The zip holds every GLUE file written so far in the
folder, at its top level; each task's `bortzoo predict` adds its own.

Checked against jiant, the GLUE authors' library (nyu-mll/jiant):
- file names: jiant/scripts/benchmarks/benchmarks.py, GlueBenchmark.BENCHMARK_SUBMISSION_FILENAMES (they come
  from the specs' boards, `bortzoo.tasks`);
- header and id column: the same file, GlueBenchmark.write_predictions (a tab-separated `index`, `prediction`
  header, then the integer index of each test row), as jiant 1.x jiant/evaluate.py _write_glue_preds wrote it;
- label strings: jiant/tasks/core.py, GlueMixin.get_glue_preds (the specs' `submission_labels`);
- STS-B: jiant 1.x jiant/evaluate.py _write_glue_preds clips to [0, 5] and writes "%.3f" (followed here;
  jiant 2's jiant/tasks/lib/stsb.py get_glue_preds only rounds to three decimals, without clipping).
jiant writes the files but no zip; the zip holding them at its top level follows the sites' instructions as
this project had them (the GLUE site itself could not be reached to check).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from bortzoo.errors import BortzooError
from bortzoo.files import atomic_path, write_text
from bortzoo.tasks import get_task, tasks_of
from bortzoo.tasks.spec import REGRESSION, EvalSplit, TaskSpec
from bortzoo.tasks.superglue_leaderboard import SUPERGLUE_FILES, SUPERGLUE_ZIP, expected_ids_from, write_jsonl

GLUE_ZIP = "glue-submission.zip"


def glue_files() -> list[str]:
    """Every file a complete GLUE submission holds (AX included)."""
    boards = [item.board for spec in tasks_of("glue") for item in spec.test]
    return [f"{board}.tsv" for board in dict.fromkeys(boards)]


def format_prediction(spec: TaskSpec, value) -> str:
    """One prediction as the leaderboard file writes it: a regression score clipped to the spec's label range
    with three decimals (a NaN or infinite score is refused: it is not a prediction), else the label string."""
    if spec.kind == REGRESSION:
        score = float(value)
        if not math.isfinite(score):
            raise BortzooError(f"score {score} is not a finite number")
        low, high = spec.label_range or (float("-inf"), float("inf"))
        return f"{min(max(score, low), high):.3f}"
    index = int(value)
    if not 0 <= index < len(spec.submission_labels):
        raise BortzooError(f"task {spec.name}: prediction {index} has no label in {spec.submission_labels}")
    return spec.submission_labels[index]


def write_split_file(spec: TaskSpec, board: str, ids: Sequence, predictions: Sequence, folder: "str | Path",
                     expected_rows: Optional[int] = None) -> Path:
    """One leaderboard file, rows sorted by example id; written atomically."""
    if len(ids) != len(predictions):
        raise BortzooError(f"{board}: {len(ids)} ids but {len(predictions)} predictions")
    if expected_rows is not None and len(ids) != expected_rows:
        raise BortzooError(f"{board}: {len(ids)} predictions for {expected_rows} test rows")
    if len(set(ids)) != len(ids):
        raise BortzooError(f"{board}: duplicate example ids in the predictions")
    # jiant: jiant/scripts/benchmarks/benchmarks.py, GlueBenchmark.write_predictions (the GLUE header)
    header = ("index", "prediction") if spec.benchmark == "glue" else (spec.id_column, "answer")
    rows = sorted(zip(ids, predictions), key=lambda pair: pair[0])
    lines = []  # formatted before the file is opened, so a bad prediction leaves no file behind
    for example_id, value in rows:
        try:
            lines.append(f"{example_id}\t{format_prediction(spec, value)}\n")
        except BortzooError as err:
            raise BortzooError(f"{board}, {header[0]} {example_id}: {err}") from None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{board}.tsv"
    return write_text(path, "\t".join(header) + "\n" + "".join(lines))


def zip_files(folder: "str | Path", names: Sequence[str], zip_name: str) -> tuple[Path, list[str]]:
    """Zip the files of `names` present in `folder` at the zip's top level (as the servers want), atomically;
    returns the zip and the names still missing."""
    folder = Path(folder)
    present = [name for name in names if (folder / name).is_file()]
    missing = [name for name in names if name not in present]
    target = folder / zip_name
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in present:
            archive.write(folder / name, arcname=name)
    return target, missing


def zip_glue(folder: "str | Path") -> tuple[Path, list[str]]:
    """The GLUE files present in `folder`, zipped as `glue-submission.zip`; the missing ones named."""
    return zip_files(folder, glue_files(), GLUE_ZIP)


def zip_superglue(folder: "str | Path") -> tuple[Path, list[str]]:
    """The SuperGLUE files present in `folder`, zipped as `superglue-submission.zip`; the missing ones named."""
    return zip_files(folder, SUPERGLUE_FILES, SUPERGLUE_ZIP)


# benchmark -> (the server's name, the function zipping its files)
ZIPPERS = {"glue": ("GLUE", zip_glue), "superglue": ("SuperGLUE", zip_superglue)}


class SubmissionWriter(BasePredictionWriter):
    """`bortzoo predict` callback: writes each test split's leaderboard file and, for GLUE and SuperGLUE, the zip.

    Args:
        dirpath: Folder for the files (one folder can collect every GLUE, or SuperGLUE, task's files); by default
            `<default_root_dir>/submission`.
    """

    def __init__(self, dirpath: Optional[str] = None):
        super().__init__(write_interval="epoch")
        self.dirpath = dirpath

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence,
                           batch_indices: Optional[Sequence]) -> None:
        if trainer.world_size > 1:
            raise BortzooError("write leaderboard files from one device (trainer.devices=1): each process only "
                               "sees its share of the test rows")
        spec: TaskSpec = pl_module.spec
        splits: tuple[EvalSplit, ...] = spec.eval_splits("predict")
        per_loader = predictions if len(splits) > 1 else [predictions]
        folder = Path(self.dirpath or os.path.join(trainer.default_root_dir, "submission"))
        datamodule = getattr(trainer, "datamodule", None)
        for item, outputs in zip(splits, per_loader):
            task = get_task(item.task) if item.task else spec
            ids = [i.item() if isinstance(i, torch.Tensor) else i for out in outputs for i in out["ids"]]
            values = torch.cat([out["predictions"] for out in outputs]).tolist() if outputs else []
            dataset = None
            if datamodule is not None and f"{task.name}/{item.split}" in getattr(datamodule, "datasets", {}):
                dataset = datamodule.datasets[f"{task.name}/{item.split}"]
            expected = len(dataset) if dataset is not None else None
            if task.benchmark == "superglue":
                candidates = None  # ReCoRD: each row's candidate texts, which its prediction indexes
                if outputs and all(out.get("candidates") is not None for out in outputs):
                    candidates = [c for out in outputs for c in out["candidates"]]
                expected_ids = expected_ids_from(dataset, task) if dataset is not None else None
                path = write_jsonl(task, item.board, ids, values, folder, candidates=candidates,
                                   expected_rows=expected, expected_ids=expected_ids)
            else:
                path = write_split_file(task, item.board, ids, values, folder, expected)
            rank_zero_info(f"wrote {path} ({len(ids):,} rows)")
        if spec.benchmark in ZIPPERS:
            server, zipper = ZIPPERS[spec.benchmark]
            target, missing = zipper(folder)
            rank_zero_info(f"wrote {target}")
            if missing:
                rank_zero_warn(f"the {server} server needs every task's file; still missing: {', '.join(missing)} "
                               f"(run bortzoo predict for those tasks with dirpath {folder})")
