"""A frozen masked-LM teacher (RoBERTa-large for Bort; any BERT/RoBERTa checkpoint works)."""

from __future__ import annotations

from typing import Optional

import lightning as L
import torch

from bortzoo.hub import load_masked_lm
from bortzoo.modules.mlm import masked_logits


class Teacher(L.LightningModule):
    """Any masked-LM checkpoint (Hub id or local folder), frozen.

    No gradients, always in eval mode (dropout off even when the parent trains), never in an
    optimiser, and left out of student checkpoints by `Student`. `bortzoo validate` on it gives
    the teacher's own masked-LM loss and accuracy on a corpus.

    Args:
        source: Hub id (e.g. ``FacebookAI/roberta-large``) or local model folder.
        revision: Hub revision (branch, tag or commit) to load.
    """

    def __init__(self, source: str, revision: Optional[str] = None):
        super().__init__()
        self.save_hyperparameters()
        # float32 whatever the checkpoint stores (transformers 5 keeps its dtype): the trainer's precision decides
        # the compute dtype of teacher and student alike; eval mode on purpose (see `train`)
        self.model = load_masked_lm(source, revision, dtype=torch.float32)
        self.model.requires_grad_(False)
        self.model.eval()

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    def train(self, mode: bool = True) -> "Teacher":
        """Stay in eval mode whatever the parent module does."""
        return super().train(False)

    @torch.no_grad()
    def masked_logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_logits(self.model, batch)

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits, labels = self.masked_logits(batch)
        n = int(labels.numel())
        if n == 0:
            return logits.sum() * 0.0
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        self.log(f"{stage}/mlm_loss", loss, batch_size=n, prog_bar=True, sync_dist=True)
        self.log(f"{stage}/mlm_acc", (logits.argmax(-1) == labels).float().mean(), batch_size=n, prog_bar=True,
                 sync_dist=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")

    def configure_optimizers(self):
        return None
