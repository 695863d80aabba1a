"""A callback a recipe names (`class_path: real.probes.TrainingProbe`) to record what a real run does inside its
training steps, where a test cannot look from outside."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch


class TrainingProbe(L.Callback):
    """Writes, per training step, the active and total dropout modules of the model, whether two forwards of the
    step's batch differ (dropout draws anew each time; in the first `forwards` steps, null after), and the
    parameters' dtypes, to `out` (JSON).

    Args:
        out: The JSON file to write at the end of training.
        forwards: In how many steps to compare two extra forwards.
    """

    def __init__(self, out: str, forwards: int = 3):
        self.out, self.forwards = out, forwards
        self.steps: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        dropouts = [m for m in pl_module.modules() if isinstance(m, torch.nn.Dropout)]
        differ = None
        if len(self.steps) < self.forwards:
            with torch.no_grad():
                differ = not torch.equal(pl_module._logits(batch), pl_module._logits(batch))
        self.steps.append({"active": sum(m.training for m in dropouts), "total": len(dropouts), "differ": differ,
                           "dtypes": sorted({str(p.dtype) for p in pl_module.parameters()})})

    def on_train_end(self, trainer, pl_module):
        Path(self.out).write_text(json.dumps(self.steps))
