"""The accuracy guard: how an optimised model's predictions compare with the fp32 model's on the same inputs
(agreement of predicted classes, output correlation, the task metric), and the refusal below the bar. Every
engine `bortzoo.optimize` considers is held to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bortzoo.errors import BortzooError

__all__ = ["GuardReport", "compare", "guard", "predictions"]


# -- the accuracy guard ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GuardReport:
    """How an optimised model's predictions compare with the fp32 model's on the same inputs.

    agreement: share of examples whose predicted class is the same (None for regression heads
    and bare encoders, which predict no class). output_correlation: Pearson correlation of all
    outputs (logits, or the real tokens' hidden states). metric_*: in points (0-100) when labels and
    a metric were given.
    """

    examples: int
    agreement: float | None
    output_correlation: float
    max_abs_diff: float
    metric_fp32: float | None = None
    metric_optimized: float | None = None
    engine: str | None = None  # the engine-scheme that made the optimised predictions, where known

    @property
    def metric_change(self) -> float | None:
        if self.metric_fp32 is None or self.metric_optimized is None:
            return None
        return self.metric_optimized - self.metric_fp32

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metric_change": self.metric_change}

    def enforce(self, min_agreement: float = 0.99, max_metric_drop: float = 0.5) -> None:
        """Raise BortzooError naming the number that misses the bar."""
        if self.agreement is not None and self.agreement < min_agreement:
            raise BortzooError(
                f"the optimised model agrees with fp32 on {self.agreement:.2%} of {self.examples} examples, "
                f"below the {min_agreement:.0%} required; keep the fp32 model, or try precision='bf16'")
        if self.metric_optimized is not None and math.isnan(self.metric_optimized) \
                and not math.isnan(self.metric_fp32):  # e.g. a correlation of constant predictions
            raise BortzooError(f"the optimised model's metric is not a number (fp32: {self.metric_fp32:.2f})")
        change = self.metric_change
        if change is not None and change < -max_metric_drop:
            raise BortzooError(
                f"the optimised model's metric is {self.metric_optimized:.2f} against {self.metric_fp32:.2f} "
                f"in fp32 ({change:+.2f} points, more than the {max_metric_drop} allowed)")

    def summary(self) -> str:
        parts = [f"{self.examples} examples"]
        if self.agreement is not None:
            parts.append(f"agreement {self.agreement:.2%}")
        parts.append(f"output correlation {self.output_correlation:.5f}")
        if self.metric_change is not None:
            parts.append(f"metric {self.metric_fp32:.2f} -> {self.metric_optimized:.2f} ({self.metric_change:+.2f})")
        return ", ".join(parts)


def _outputs(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Predictions as fp32 rows: logits [B, C], regression scores [B, 1], or the real tokens' hidden states."""
    out = model(**batch)
    value = out if isinstance(out, torch.Tensor) else None
    for name in ("logits", "last_hidden_state"):
        if value is None:
            value = out.get(name) if isinstance(out, Mapping) else getattr(out, name, None)
    if value is None:
        raise BortzooError(f"cannot read predictions from a {type(out).__name__}; expected logits or last_hidden_state")
    value = value.to(torch.float32)
    if value.dim() == 1:
        return value[:, None]
    if value.dim() == 2:
        return value
    mask = batch.get("attention_mask")
    if mask is not None and tuple(mask.shape) == tuple(value.shape[:2]):
        return value[mask.bool()]  # real tokens only: what a padded position holds is no prediction
    return value.reshape(-1, value.shape[-1])


@torch.inference_mode()
def guard(
    reference: nn.Module,
    optimized: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    labels: Sequence[Any] | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> GuardReport:
    """Run both models on the same batches and compare predictions (and the metric, given labels).

    `metric(predictions, labels)` gets class ids (or regression values) and returns points (0-100).
    """
    batches = list(batches)
    return compare(predictions(reference, batches), predictions(optimized, batches), batches, labels, metric)


@torch.inference_mode()
def predictions(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    model.eval()
    out = []
    for i, batch in enumerate(batches):
        if not isinstance(batch, Mapping):
            raise BortzooError(f"check batch {i} is a {type(batch).__name__}; give dicts of model inputs")
        out.append(_outputs(model, batch))
    if not out:
        raise BortzooError("the accuracy check got no batches")
    return torch.cat(out)


def compare(ref: torch.Tensor, opt: torch.Tensor, batches: Sequence[Mapping[str, torch.Tensor]],
             labels: Sequence[Any] | None = None,
             metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None) -> GuardReport:
    """The report on two models' predictions for the same batches (rows as `_outputs` lays them out)."""
    examples = sum(len(next(iter(b.values()))) for b in batches)
    hidden = ref.shape[0] != examples  # a bare encoder: one row per token
    classes = not hidden and ref.shape[-1] > 1
    agreement = float((ref.argmax(-1) == opt.argmax(-1)).float().mean()) if classes else None
    corr = float(torch.corrcoef(torch.stack([ref.flatten(), opt.flatten()]))[0, 1])
    metric_ref = metric_opt = None
    if labels is not None or metric is not None:
        if labels is None or metric is None:
            raise BortzooError("the accuracy check needs both labels and metric, or neither")
        target = torch.as_tensor(list(labels))
        if target.shape[0] != examples:
            raise BortzooError(f"got {target.shape[0]} labels for {examples} checked examples")
        if hidden:
            raise BortzooError("labels need a model with a task head; this model returns hidden states")
        to_pred = (lambda t: t.argmax(-1)) if classes else (lambda t: t.reshape(-1))
        metric_ref, metric_opt = float(metric(to_pred(ref), target)), float(metric(to_pred(opt), target))
    return GuardReport(examples, agreement, corr, float((ref - opt).abs().max()), metric_ref, metric_opt)
