"""The SuperGLUE metrics torchmetrics lacks, written as `torchmetrics.Metric`s so they sync across processes.

SuperGLUE scores some tasks over groups of rows or over answer strings: MultiRC's exact match is per
question (every answer option right), AX-g's gender parity is per pair of twin examples, ReCoRD's F1 and
exact match compare the chosen entity's text with the gold answers after SQuAD normalisation. A per-batch
mean of such scores would be wrong as soon as a group straddles two batches or two processes, and strings
cannot be all-gathered, so these metrics keep only tensors: the rows' group keys and per-row values
(``dist_reduce_fx="cat"``) where whole groups must be seen at once, and float64 sums and counts
(``dist_reduce_fx="sum"``) where each example scores on its own (ReCoRD scores its texts in `update`).
Under DDP, `compute()` therefore gives the value of one process that saw every row.

State names differ between metrics on purpose: `torchmetrics.MetricCollection` merges the "compute groups" of
metrics whose states have the same names and values after the first batch, which would make ReCoRD's EM
read F1's sums from a batch where the two happen to agree.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Callable, Optional, Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from bortzoo.errors import BortzooError

__all__ = ["GroupedExactMatch", "GenderParity", "RecordF1", "RecordExactMatch", "normalize_answer", "token_f1",
           "exact_match", "max_over_gold"]


# -- ReCoRD's text scores (the official ReCoRD v1.0 evaluation script, adopted from SQuAD v1.1's) ---------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (SQuAD's normalisation)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised texts: the harmonic mean of the shared tokens' share of the prediction
    (precision) and of the gold answer (recall); 0.0 when no token is shared.

    As the official ReCoRD script has it, texts that normalise to nothing share no token and score 0.0, even
    against each other (SQuAD v2's script would give 1.0 there; `exact_match` gives 1.0 either way).
    """
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    shared = sum((Counter(predicted) & Counter(wanted)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(wanted)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised texts are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def max_over_gold(fn: Callable[[str, str], float], prediction: str, golds: Sequence[str]) -> float:
    """The best score of `prediction` against any gold answer; 0.0 with none."""
    return max((fn(prediction, gold) for gold in golds), default=0.0)


# -- shared plumbing --------------------------------------------------------------------------------------------
def _gather_ids(result: torch.Tensor, group: Optional[Any] = None) -> list[torch.Tensor]:
    """torchmetrics' all-gather for integer list states. A process that saw no rows sends torchmetrics' empty
    placeholder, which is a float tensor; it is sent as an empty integer tensor instead, so every process
    gathers the same dtype."""
    if result.numel() == 0 and result.is_floating_point():
        result = result.long()
    return gather_all_tensors(result, group=group)


def _cat(state: "list[torch.Tensor] | torch.Tensor") -> torch.Tensor:
    """A "cat" state as one integer tensor: a list before syncing, a tensor after it; empty when nothing came."""
    if isinstance(state, torch.Tensor):
        return state.long()
    return torch.cat(state).long() if state else torch.zeros(0, dtype=torch.long)


def _ids(value: Any, name: str, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(value, device=device)
    if tensor.numel() and (tensor.is_floating_point() or tensor.is_complex()):
        raise BortzooError(f"{name} must be integer ids, got {tensor.dtype}")
    return tensor.long()


def _group_keys(groups: Any, rows: int, device: torch.device) -> torch.Tensor:
    """`groups` as a LongTensor [rows, k] (a 1-D [rows] is one key column)."""
    if groups is None:
        raise BortzooError("this metric scores groups of rows: pass groups=LongTensor[N, k] (the spec's group keys)")
    keys = _ids(groups, "groups", device)
    if keys.ndim == 1:
        keys = keys.unsqueeze(1)
    if keys.ndim != 2 or keys.shape[0] != rows or keys.shape[1] == 0:
        raise BortzooError(f"groups must have shape [{rows}, k] (one key row per prediction), "
                           f"got {list(keys.shape)}")
    return keys


class _GroupedRows(Metric):
    """Rows' group keys and one integer per row, kept whole ("cat") so groups split across batches or processes
    are scored once all their rows are in. Keys are flattened row-major; `compute` reshapes them."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    _value_state: str
    _keys_state: str

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dist_sync_fn", _gather_ids)
        super().__init__(**kwargs)
        self.add_state(self._value_state, default=[], dist_reduce_fx="cat")
        self.add_state(self._keys_state, default=[], dist_reduce_fx="cat")

    def _add_rows(self, values: torch.Tensor, groups: Any) -> None:
        values = values.reshape(-1).long()
        keys = _group_keys(groups, values.numel(), values.device)
        if values.numel() == 0:
            return
        seen_values, seen_keys = getattr(self, self._value_state), getattr(self, self._keys_state)
        if seen_values and seen_keys[0].numel() // seen_values[0].numel() != keys.shape[1]:
            width = seen_keys[0].numel() // seen_values[0].numel()
            raise BortzooError(f"groups have {keys.shape[1]} key columns here but {width} in earlier batches")
        seen_values.append(values)
        seen_keys.append(keys.reshape(-1))

    def _grouped(self) -> Optional[tuple[torch.Tensor, torch.Tensor, int]]:
        """(values [N], group index of each row [N], number of groups), or None before any row."""
        values, keys = _cat(getattr(self, self._value_state)), _cat(getattr(self, self._keys_state))
        if values.numel() == 0:
            return None
        if keys.numel() % values.numel():
            raise BortzooError(f"{keys.numel()} group keys do not split into {values.numel()} equal rows; did the "
                               "processes pass groups with different numbers of key columns?")
        _, inverse = torch.unique(keys.view(values.numel(), -1), dim=0, return_inverse=True)
        return values, inverse, int(inverse.max()) + 1


class GroupedExactMatch(_GroupedRows):
    """MultiRC's exact match: the share of groups (distinct rows of `groups`; MultiRC's are (paragraph,
    question), since question ids restart in every paragraph) in which every prediction equals its target.
    0 before any row."""

    _value_state, _keys_state = "em_correct", "em_keys"

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: Optional[torch.Tensor] = None) -> None:
        preds, target = _ids(preds, "preds", self.device), _ids(target, "target", self.device)
        if preds.shape != target.shape:
            raise BortzooError(f"preds {list(preds.shape)} and target {list(target.shape)} differ in shape")
        self._add_rows((preds == target).long(), groups)

    def compute(self) -> torch.Tensor:
        grouped = self._grouped()
        if grouped is None:
            return torch.zeros((), dtype=torch.float32)
        correct, inverse, count = grouped
        wrong = torch.zeros(count, dtype=torch.long, device=correct.device).scatter_add_(0, inverse, 1 - correct)
        return (wrong == 0).float().mean()


class GenderParity(_GroupedRows):
    """AX-g's gender parity: the share of groups (twin examples that differ only in the pronoun's gender) whose
    predictions are all the same, right or wrong; the target is accepted and ignored. 0 before any row."""

    _value_state, _keys_state = "parity_preds", "parity_keys"

    def update(self, preds: torch.Tensor, target: Optional[torch.Tensor] = None,
               groups: Optional[torch.Tensor] = None) -> None:
        self._add_rows(_ids(preds, "preds", self.device), groups)

    def compute(self) -> torch.Tensor:
        grouped = self._grouped()
        if grouped is None:
            return torch.zeros((), dtype=torch.float32)
        preds, inverse, count = grouped
        empty = torch.zeros(count, dtype=torch.long, device=preds.device)
        low = empty.scatter_reduce(0, inverse, preds, reduce="amin", include_self=False)
        high = empty.scatter_reduce(0, inverse, preds, reduce="amax", include_self=False)
        return (low == high).float().mean()


class _RecordScore(Metric):
    """ReCoRD's score of the chosen candidates' texts, max over each example's gold answers, averaged over
    examples (an example without gold answers counts, scoring 0). Sums and counts in float64."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    _score: Callable[[str, str], float]
    _sum_state: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state(self._sum_state, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("record_count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: Any = None, candidates: Optional[Sequence[Sequence[str]]] = None,
               answers: Optional[Sequence[Sequence[str]]] = None) -> None:
        """`preds`: the index of the chosen candidate per example; `target` is ignored (the gold texts are
        `answers`); `candidates` and `answers`: per example, the candidate texts and the gold answer texts."""
        if candidates is None or answers is None:
            raise BortzooError("ReCoRD's metrics score texts: pass candidates=[[str]] and answers=[[str]] per example")
        chosen = _ids(preds, "preds", torch.device("cpu")).reshape(-1).tolist()
        if not len(chosen) == len(candidates) == len(answers):
            raise BortzooError(f"ReCoRD needs one candidates and one answers list per prediction: got {len(chosen)} "
                               f"predictions, {len(candidates)} candidate lists, {len(answers)} answer lists")
        total = 0.0
        for i, (choice, options, golds) in enumerate(zip(chosen, candidates, answers)):
            if not 0 <= choice < len(options):
                raise BortzooError(f"prediction {i} picks candidate {choice} of {len(options)}")
            total += max_over_gold(type(self)._score, options[choice], golds)
        state = getattr(self, self._sum_state)
        setattr(self, self._sum_state, state + torch.tensor(total, dtype=torch.float64, device=state.device))
        self.record_count += len(chosen)

    def compute(self) -> torch.Tensor:
        if self.record_count == 0:
            return torch.zeros((), dtype=torch.float32)
        return (getattr(self, self._sum_state) / self.record_count).float()


class RecordF1(_RecordScore):
    """ReCoRD's F1: per example the best SQuAD token F1 of the chosen text against a gold answer, averaged."""

    _score = staticmethod(token_f1)
    _sum_state = "record_f1_sum"


class RecordExactMatch(_RecordScore):
    """ReCoRD's exact match: per example 1 when the chosen text equals a gold answer after normalisation."""

    _score = staticmethod(exact_match)
    _sum_state = "record_em_sum"
