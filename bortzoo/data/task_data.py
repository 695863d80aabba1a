"""One DataModule for every benchmark task: load a spec's splits, check them, tokenise, pad per batch.

Data comes from the task's Hub dataset (`nyu-mll/glue`, `ehovy/race`) or from a local folder laid out
the same way (a clone of the repo, or the project's tiny fixtures), through `datasets.load_dataset`.
Every row is checked against the spec before training starts: a missing column, a label outside the
spec, a score that is not a number or an empty split stops the run with the task, split, row and column.
Texts longer than `max_length` are truncated longest-first, counted and reported, never dropped; so are
rows a task can read but not perfectly (a ReCoRD query without its placeholder: the spec's `notes`).
"""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from bortzoo.data.encoding import PAIR_ENCODINGS, PadCollator, Template, encode_split
from bortzoo.data.rows import describe_notes, load_split
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task
from bortzoo.tasks.spec import REGRESSION, EvalSplit, TaskSpec


# -- the DataModule -----------------------------------------------------------------------------------
class TaskData(L.LightningDataModule):
    """A benchmark task's train, evaluation and test data, tokenised with the model's tokenizer.

    `fit` and `validate` read the task's dev splits (MNLI: matched and mismatched, one loader each);
    `test` reads the test split where its labels are public (RACE) and the dev splits where they are
    hidden (GLUE: real test scores need a leaderboard submission, see `bortzoo predict`); `predict` reads
    the test splits (MNLI's include the AX diagnostic). Texts are tokenised with the fine-tuned model's
    tokenizer (`TaskModel.tokenizer`), which `bortzoo fit` hands over through `connect`; call
    `connect(tokenizer)` yourself to use this module on its own.

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
    def connect(self, tokenizer) -> None:
        """Tokenise with `tokenizer`, the model's (`bortzoo fit` hands it over once model and data are built)."""
        self.tokenizer = tokenizer

    def _tokenizer(self):
        if self.tokenizer is None:
            raise BortzooError("TaskData has no tokenizer: bortzoo fit hands it the model's; outside the CLI call "
                               "data.connect(model.tokenizer) before the Trainer runs")
        return self.tokenizer

    def run_facts(self) -> dict:
        """What this data made of the run, for its results.json: the pair template as token ids (what publishing
        bakes into the shipped tokenizer), the rows truncated and the rows kept with a noted problem."""
        import dataclasses

        return {
            "pair_encoding": self.hparams.pair_encoding,
            "pair_template": dataclasses.asdict(Template.of(self._tokenizer(), self.hparams.pair_encoding)),
            "truncated": dict(self.truncated),
            # rows kept with a problem the spec noted (a ReCoRD query without its placeholder): count per column
            "noted": {key: {column: len(rows) for column, rows in notes.items()}
                      for key, notes in self.notes.items() if notes},
        }

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
