"""The leaderboard metrics and scores, defined once so every number the zoo reports is the official one.

Bort's claims are GLUE, SuperGLUE and RACE leaderboard numbers, so a validation metric that differs from the
leaderboard's definition (macro instead of micro accuracy, F1 of the wrong class, a 3-class MCC computed
as binary) would make every comparison wrong. `make_metric` builds each named metric from torchmetrics
with the leaderboard's settings for a task; `task_metrics` gives a task's whole set; `split_score` and
`benchmark_score` turn per-column values into the per-task score and the GLUE (or SuperGLUE) score the
papers quote. The SuperGLUE metrics torchmetrics lacks (MultiRC's exact match, AX-g's gender parity,
ReCoRD's F1 and exact match) are in `bortzoo.tasks.superglue_metrics`.

Input convention: ``collection.update(preds, target, groups=..., candidates=..., answers=...)``.
``classes`` and ``choice`` tasks take predicted class ids (a LongTensor ``[N]``; the caller takes the
argmax of the logits) and target ids ``[N]``; ``regression`` tasks take float scores ``[N]`` for both;
``ranking`` tasks (ReCoRD) take the index of the chosen candidate ``[N]`` and any target (ignored).
Accuracy also accepts ``[N, C]`` scores (it takes the argmax itself), but F1 and MCC do not, so pass ids.
The keyword arguments are what some metrics need besides: ``groups`` (LongTensor ``[N, k]``, the spec's
`group` key of each row) for MultiRC's ``em`` and AX-g's ``parity``; ``candidates`` and ``answers`` (per
example, the candidate texts and the gold answer texts) for ReCoRD. Pass them whenever the task has them:
`torchmetrics.MetricCollection` hands each metric only the keyword arguments its ``update`` names, so the
others never see them. Everything runs on CPU and in float32 (ReCoRD's sums in float64).
"""

from __future__ import annotations

import warnings
from typing import Mapping

import torch
import torchmetrics
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from bortzoo.errors import BortzooError
from bortzoo.tasks import SCORE_GROUPS
from bortzoo.tasks.spec import CHOICE, CLASSES, RANKING, REGRESSION, TaskSpec
from bortzoo.tasks.superglue_metrics import GenderParity, GroupedExactMatch, RecordExactMatch, RecordF1

METRIC_NAMES = ("accuracy", "f1", "mcc", "pearson", "spearman", "macro_f1", "f1a", "em", "parity")

# Which task kinds each metric is defined for.
_KINDS = {"accuracy": (CLASSES, CHOICE), "f1": (CLASSES, RANKING), "mcc": (CLASSES,), "pearson": (REGRESSION,),
          "spearman": (REGRESSION,), "macro_f1": (CLASSES,), "f1a": (CLASSES,), "em": (CLASSES, RANKING),
          "parity": (CLASSES,)}


class _FloatPearson(PearsonCorrCoef):
    """Pearson r on float32 scores whatever float type the labels arrive in (STS-B labels may be float64)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.float(), target.float())


class _FloatSpearman(SpearmanCorrCoef):
    """Spearman rho (average ranks for ties) on float32 scores. It keeps every score to rank them, which is
    small for evaluation sets (STS-B dev has 1,500), so torchmetrics' warning about that is silenced."""

    def __init__(self, **kwargs) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all targets and predictions in the buffer")
            super().__init__(**kwargs)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.float(), target.float())


def rk_coefficient(confmat: torch.Tensor) -> torch.Tensor:
    """Gorodkin's R_K from a K x K confusion matrix (rows true, columns predicted); MCC when K = 2.

    ``(c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2) (s^2 - sum t_k^2))`` with c the correct count, s the total,
    p_k and t_k the predicted and true counts of class k. A zero denominator (one class predicted, or only
    one class present) gives 0, as scikit-learn's `matthews_corrcoef`, which GLUE's scorer uses, does.
    """
    confmat = confmat.double()
    true, predicted = confmat.sum(dim=1), confmat.sum(dim=0)
    correct, total = confmat.trace(), confmat.sum()
    numerator = correct * total - (predicted * true).sum()
    denominator = (total**2 - (predicted**2).sum()) * (total**2 - (true**2).sum())
    if denominator == 0:
        return torch.zeros((), dtype=torch.float32, device=confmat.device)
    return (numerator / denominator.sqrt()).float()


class _BinaryMCC(BinaryMatthewsCorrCoef):
    """Binary MCC that is 0 when undefined. torchmetrics (1.9) extrapolates a limit instead: predicting one
    class on CoLA's dev set would score about 0.03 rather than the leaderboard's 0."""

    def compute(self) -> torch.Tensor:
        return rk_coefficient(self.confmat)


class _MulticlassMCC(MulticlassMatthewsCorrCoef):
    """Multiclass R_K (AX's 3-class MCC), by the same formula as the binary one."""

    def compute(self) -> torch.Tensor:
        return rk_coefficient(self.confmat)


def _classes(spec: TaskSpec) -> int:
    """The number of classes a classification metric counts: labels, or options of a choice task."""
    return spec.num_choices if spec.kind == CHOICE else spec.num_labels


def make_metric(name: str, spec: TaskSpec) -> torchmetrics.Metric:
    """The metric `name` for task `spec`, with the leaderboard's definition.

    accuracy: micro-averaged multiclass accuracy over the labels (or over the options of a choice task);
    f1: binary F1 of the positive class (label 1), as GLUE scores MRPC and QQP; on a ranking task
    (ReCoRD) the mean over examples of the best SQuAD token F1 of the chosen candidate against a gold answer;
    f1a: MultiRC's F1 over all answer options, the binary F1 of label 1 (True);
    em: MultiRC's exact match, the share of groups (the spec's `group`: paragraph and question) whose rows are
    all right; on ReCoRD the share of examples whose chosen candidate equals a gold answer (normalised);
    parity: AX-g's gender parity, the share of groups (twin examples) predicted alike;
    macro_f1: CB's F1, the mean of the per-class F1 over the classes present in predictions or targets
    (scikit-learn's ``f1_score(average="macro")``, which the SuperGLUE scorer uses);
    mcc: binary Matthews correlation for two classes, the multiclass R_K coefficient otherwise (AX), 0 where
    undefined (one class predicted) as scikit-learn and the GLUE scorer have it;
    pearson / spearman: correlation of float scores.
    """
    if name not in METRIC_NAMES:
        raise BortzooError(f"unknown metric {name!r}; valid metrics: {', '.join(METRIC_NAMES)}")
    if spec.kind not in _KINDS[name]:
        raise BortzooError(f"metric {name!r} needs a {' or '.join(_KINDS[name])} task; "
                           f"task {spec.name!r} is {spec.kind}")
    if spec.kind == RANKING:
        return RecordF1() if name == "f1" else RecordExactMatch()
    if name in ("em", "parity") and spec.group is None:
        raise BortzooError(f"metric {name!r} scores groups of rows; task {spec.name!r} has no group key")
    classes = _classes(spec)
    if name == "accuracy":
        return MulticlassAccuracy(num_classes=classes, average="micro")
    if name in ("f1", "f1a"):
        if classes != 2:
            raise BortzooError(f"metric {name!r} is the binary F1 of label 1; task {spec.name!r} has {classes} labels")
        return BinaryF1Score()
    if name == "macro_f1":
        # torchmetrics leaves out of the mean the classes absent from both predictions and targets, as
        # scikit-learn does (tests/test_superglue_metrics.py checks it by hand)
        return MulticlassF1Score(num_classes=classes, average="macro")
    if name == "em":
        return GroupedExactMatch()
    if name == "parity":
        return GenderParity()
    if name == "mcc":
        return _BinaryMCC() if classes == 2 else _MulticlassMCC(num_classes=classes)
    if name == "pearson":
        return _FloatPearson()
    return _FloatSpearman()


def task_metrics(spec: TaskSpec, prefix: str = "") -> torchmetrics.MetricCollection:
    """All of a task's metrics, keyed by the spec's metric names (with `prefix` prepended, e.g. ``"val/"``).

    Keys keep the spec's leaderboard order (MRPC: f1, then accuracy); a dict given to MetricCollection at
    once would be sorted alphabetically, so the metrics are added one at a time. Compute groups are off:
    torchmetrics would otherwise share the state of metrics whose states merely look alike after the first
    batch (same names, equal values), a saving of nothing measurable on these sizes and a wrong number if two
    different metrics ever coincide.
    """
    collection = torchmetrics.MetricCollection({}, prefix=prefix or None, compute_groups=False)
    for name in spec.metrics:
        collection.add_metrics({name: make_metric(name, spec)})
    return collection


def split_score(values: Mapping[str, float]) -> float:
    """One leaderboard column's score: the mean of its metrics (MRPC is the mean of F1 and accuracy)."""
    if not values:
        raise BortzooError("a split needs at least one metric value to score")
    return sum(float(value) for value in values.values()) / len(values)


def benchmark_score(results: Mapping[str, Mapping[str, float]], benchmark: str = "glue") -> float:
    """The benchmark score from per-column metric values, e.g. the GLUE score.

    `results` maps a leaderboard column (``"CoLA"``, ``"MNLI-m"``) to ``{metric name: value}``. The score
    is the mean over the benchmark's groups of the mean `split_score` of the group's columns (MNLI's two
    columns count as one task); other columns (AX) are ignored. It is linear in the values, so fractions
    give a fraction and percentages a percentage.
    """
    if benchmark not in SCORE_GROUPS:
        raise BortzooError(f"no score is defined for benchmark {benchmark!r}; known: {', '.join(SCORE_GROUPS)}")
    groups = SCORE_GROUPS[benchmark]
    missing = [column for group in groups for column in group if column not in results]
    if missing:
        raise BortzooError(f"the {benchmark} score needs every column; missing: {', '.join(missing)}")
    group_scores = [sum(split_score(results[column]) for column in group) / len(group) for group in groups]
    return sum(group_scores) / len(group_scores)


def to_percent(value: float) -> float:
    """A fraction as a percentage (0.853 -> 85.3)."""
    return 100.0 * float(value)

