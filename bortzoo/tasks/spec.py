"""What a benchmark task is: one `TaskSpec` per task (the registry is `bortzoo.tasks`).

A spec says where a task's data lives on the Hub (`nyu-mll/glue`, `aps/super_glue`, `ehovy/race`), which splits it has
and which leaderboard column each evaluation split is, which columns hold the inputs, what the label is
(classes with names, a regression score, one of several choices, or a ranking of candidates), which metrics
score it, and how one example becomes the text pairs a model reads. Data loading, metrics, results files, submission files and
model cards all read these facts from here. Adding a task is adding a spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from bortzoo.errors import BortzooError

CLASSES, REGRESSION, CHOICE, RANKING = "classes", "regression", "choice", "ranking"
KINDS = (CLASSES, REGRESSION, CHOICE, RANKING)
MULTI_OPTION = (CHOICE, RANKING)  # kinds whose row is several (first, second) sequences scored against each other

Pair = tuple[str, Optional[str]]


class RowError(ValueError):
    """A row a spec cannot read; `column` names the culprit so the loader can report task, split, row and column."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation split and the leaderboard column it is reported as.

    `task` names another task whose data this split reads: the GLUE diagnostic `ax` has no training
    data and is predicted with the MNLI model, so MNLI's test splits include `ax`'s.
    """

    split: str
    board: str
    task: Optional[str] = None
    labelled: bool = False  # `task`'s labels of this split are public (checked against its spec by the registry)


@dataclass(frozen=True)
class TaskSpec:
    """Everything the library needs to know about one benchmark task.

    Args:
        name: Registry name (``sst2``, ``mnli``, ``race-high``).
        benchmark: ``glue`` or ``race`` (``superglue`` later); names the score that aggregates it.
        dataset: Hub dataset id; a local folder laid out the same way can replace it.
        config: Dataset config (the folder inside the Hub repo).
        kind: ``classes``, ``regression``, ``choice`` (multiple choice, a fixed number of options) or
            ``ranking`` (a variable number of candidates per row, any of which may be right: ReCoRD).
        text_fields: Input columns: one (single sentence) or two (a pair). With `pairs` set, every column
            `pairs` reads.
        metrics: Official metric names, in leaderboard order (see `bortzoo.tasks.metrics`).
        label_names: Class names, in label-id order, as the Hub dataset's ClassLabel has them.
        submission_labels: The label strings of the leaderboard's files (the original TSVs), by label id.
        label_range: Valid interval of a regression label.
        num_choices: Options per example of a ``choice`` task.
        train: Training split; None for a task that is only predicted (``ax``).
        train_rows: Rows of the Hub dataset's training split (its dataset card), for `bortzoo plan`'s step counts.
        validation: Labelled evaluation splits.
        test: Test splits; their labels are hidden (-1) unless `test_labels`.
        test_labels: Whether the test split's labels are public (RACE), so `bortzoo test` scores it.
        id_column: Column with the example id written to submission files.
        pairs: How one example (a row as a dict) becomes the texts the model reads: one (first,
            second-or-None) pair, or one pair per option for ``choice`` tasks.
        label: How one row becomes its label (class id, float, or index of the right option).
        label_columns: The columns `label` reads (checked to exist).
        predicted_by: For a task without training data, the task whose model predicts it.
        candidates: For ``ranking`` tasks, the candidate answers of a row (one pair each, in `pairs` order).
        group: The key of the group a row belongs to, for metrics that score groups of rows (MultiRC's
            exact match per question, AX-g's gender parity per pair of examples).
        notes: Problems of a row that do not stop training (a ReCoRD query without its placeholder): a
            list of (column, what) the loader counts and reports.
        rewritable: The text columns a transformation may rewrite into a new example (Agora) without breaking
            the row; by default the text fields of a spec without `pairs`, none for one with `pairs` (WiC's
            offsets, WSC's word indices would no longer match).
    """

    name: str
    benchmark: str
    dataset: str
    config: str
    kind: str
    text_fields: tuple[str, ...]
    metrics: tuple[str, ...]
    validation: tuple[EvalSplit, ...]
    test: tuple[EvalSplit, ...]
    label_names: tuple[str, ...] = ()
    submission_labels: tuple[str, ...] = ()
    label_range: Optional[tuple[float, float]] = None
    num_choices: int = 0
    train: Optional[str] = "train"
    train_rows: Optional[int] = None
    test_labels: bool = False
    id_column: str = "idx"
    pairs: Optional[Callable[[dict], list[Pair]]] = field(default=None, repr=False, compare=False)
    label: Optional[Callable[[dict], object]] = field(default=None, repr=False, compare=False)
    label_columns: tuple[str, ...] = ("label",)
    predicted_by: Optional[str] = None
    candidates: Optional[Callable[[dict], list[str]]] = field(default=None, repr=False, compare=False)
    group: Optional[Callable[[dict], tuple[int, ...]]] = field(default=None, repr=False, compare=False)
    notes: Optional[Callable[[dict], list[tuple[str, str]]]] = field(default=None, repr=False, compare=False)
    rewritable: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BortzooError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == CLASSES and len(self.label_names) < 2:
            raise BortzooError(f"task {self.name!r}: a classification task needs at least two label names")
        if self.kind == CHOICE and self.num_choices < 2:
            raise BortzooError(f"task {self.name!r}: a multiple-choice task needs num_choices >= 2")
        if self.kind == RANKING and (self.candidates is None or self.pairs is None or self.label is None):
            raise BortzooError(f"task {self.name!r}: a ranking task needs candidates, pairs and label functions")
        if not 1 <= len(self.text_fields) <= 2 and self.pairs is None:
            raise BortzooError(f"task {self.name!r}: text_fields must name one or two columns (or give pairs)")

    # -- facts derived from the spec ---------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        """Output units of the head: classes, 1 for a regression score, 1 score per option or candidate."""
        return len(self.label_names) if self.kind == CLASSES else 1

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the spec reads from a row."""
        return tuple(dict.fromkeys((*self.text_fields, *self.label_columns, self.id_column)))

    @property
    def rewritable_fields(self) -> tuple[str, ...]:
        """The text columns a transformation may rewrite (see `rewritable`)."""
        if self.rewritable is not None:
            return self.rewritable
        return () if self.pairs is not None else self.text_fields

    @property
    def chance(self) -> float:
        """Accuracy of a uniform guess (what an untrained classifier scores on balanced data)."""
        if self.kind == CLASSES:
            return 1.0 / len(self.label_names)
        if self.kind == CHOICE:
            return 1.0 / self.num_choices
        return 0.0

    def texts(self, row: dict) -> list[Pair]:
        """The (first, second) text pairs of one row: one pair, or one per option or candidate."""
        if self.pairs is not None:
            return self.pairs(row)
        first = row[self.text_fields[0]]
        second = row[self.text_fields[1]] if len(self.text_fields) == 2 else None
        return [(first, second)]

    def target(self, row: dict):
        """The label of one row (the class id, the score, the right option's index, or for a ranking one 0/1
        per candidate)."""
        return self.label(row) if self.label is not None else row[self.label_columns[0]]

    def eval_splits(self, stage: str) -> tuple[EvalSplit, ...]:
        """The splits a Trainer verb reads: `validate`/`fit` the dev splits; `test` the test split when its
        labels are public, else the dev splits (GLUE's test labels are hidden) plus any diagnostic this
        task's model predicts whose labels are public (SuperGLUE's AX-b and AX-g); `predict` the test splits."""
        if stage == "predict":
            return self.test
        if stage == "test" and self.test_labels:
            return self.test
        if stage == "test":
            return self.validation + tuple(s for s in self.test if s.task and s.labelled)
        return self.validation
