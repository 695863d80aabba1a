"""A masked-LM student built from any `Arch`: a search candidate, Bort (the `bort` preset), or BERT-large."""

from __future__ import annotations

from typing import Any, Optional, Union

import lightning as L
import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError
from bortzoo.modules.distill import distillation_loss, topk_distillation_loss
from bortzoo.modules.mlm import masked_logits
from bortzoo.modules.optim import adamw_with_warmup, param_groups
from bortzoo.modules.teacher import Teacher


class Student(L.LightningModule):
    """A BERT masked-LM of shape ⟨D,A,H,I⟩, initialised N(0, 0.02), trained by masked-LM or distillation.

    Without a teacher the loss is plain masked-LM cross-entropy (the paper's baseline). With a
    teacher it is `α·CE + β·T²·KL(teacher‖student)` on the masked positions (`bortzoo.modules.distill`);
    the teacher is frozen and not saved in this module's checkpoints. Batches that carry a cached
    teacher (`teacher_values`, `teacher_indices`: its top-k logits) get the same loss without one.

    Args:
        arch: Preset name (``bort``, ``bert-large``, ``bert-base``, ``roberta-large``), ``"D,A,H,I"``,
            or the fields of an `Arch`. Its vocab_size must equal the tokenizer's.
        teacher: Optional frozen `Teacher` to distil from; its vocabulary must equal the student's.
        alpha: Weight of the masked-LM cross-entropy in distillation.
        beta: Weight of the T²-scaled KL term in distillation.
        temperature: Softmax temperature T of the KL term.
        lr: Peak learning rate of AdamW.
        weight_decay: Decoupled weight decay (none on biases and LayerNorm weights).
        warmup_ratio: Share of the training steps with linear warm-up; linear decay to 0 after it.
        betas: AdamW betas.
        eps: AdamW epsilon.
    """

    def __init__(
        self,
        arch: Union[str, Arch] = "bort",
        teacher: Optional[Teacher] = None,
        alpha: float = 0.1,
        beta: float = 0.5,
        temperature: float = 2.0,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
    ):
        super().__init__()
        self.arch = get_arch(arch)
        if not 0.0 <= warmup_ratio <= 1.0:
            raise BortzooError(f"warmup_ratio must be within [0, 1], got {warmup_ratio}")
        if temperature <= 0:
            raise BortzooError(f"temperature must be positive, got {temperature}")
        self.save_hyperparameters(ignore=["teacher"])
        self.hparams["arch"] = self.arch.as_dict()  # the resolved shape, not the alias
        self.model = BertForMaskedLM(self.arch.to_bert_config())
        self.teacher = teacher
        if teacher is not None and teacher.vocab_size != self.arch.vocab_size:
            raise BortzooError(
                f"teacher vocabulary ({teacher.vocab_size} tokens, {teacher.hparams.source}) differs from the "
                f"student's ({self.arch.vocab_size}, {self.arch.short()}): distillation compares token "
                "distributions, so both must use the same tokenizer"
            )

    # -- steps -------------------------------------------------------------------------------
    def forward(self, **inputs: torch.Tensor):
        return self.model(**inputs)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits, labels = masked_logits(self.model, batch)
        n = int(labels.numel())
        if n == 0:  # no position was masked in this batch: nothing to learn, keep the graph valid
            return logits.sum() * 0.0
        metrics: dict[str, torch.Tensor] = {}
        if "teacher_values" in batch:  # a cached teacher (the architecture search): top-k logits per masked position
            loss, mlm, kl = topk_distillation_loss(logits, batch["teacher_values"], batch["teacher_indices"], labels,
                                                   self.hparams.alpha, self.hparams.beta, self.hparams.temperature)
            metrics.update(mlm_loss=mlm, kl=kl,
                           teacher_agreement=(logits.argmax(-1) == batch["teacher_indices"][:, 0]).float().mean())
        elif self.teacher is None:
            loss = F.cross_entropy(logits.float(), labels)
            metrics["mlm_loss"] = loss
        else:
            teacher_logits, _ = self.teacher.masked_logits(batch)
            loss, mlm, kl = distillation_loss(logits, teacher_logits, labels, self.hparams.alpha,
                                              self.hparams.beta, self.hparams.temperature)
            metrics.update(mlm_loss=mlm, kl=kl,
                           teacher_agreement=(logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean())
        metrics["loss"] = loss
        metrics["mlm_acc"] = (logits.argmax(-1) == labels).float().mean()
        on_step = stage == "train"
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, batch_size=n, on_step=on_step, on_epoch=not on_step,
                     prog_bar=name in ("loss", "mlm_acc"), sync_dist=not on_step)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with decoupled decay except on biases and LayerNorm; linear warm-up then linear decay."""
        hp = self.hparams
        groups = param_groups(self.model.named_parameters(), hp.lr, hp.weight_decay)
        return adamw_with_warmup(groups, hp.lr, hp.betas, hp.eps, hp.warmup_ratio, self.trainer.estimated_stepping_batches)

    # -- checkpoints: the teacher is not part of the student -------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, before any step, to resume a run of another shape; keep the saved RNG state for later."""
        saved = checkpoint.get("hyper_parameters", {}).get("arch")
        if saved is not None and get_arch(saved) != self.arch:
            raise BortzooError(f"the checkpoint holds a {get_arch(saved).short()} student (vocabulary "
                               f"{get_arch(saved).vocab_size}) but this run builds {self.arch.short()} (vocabulary "
                               f"{self.arch.vocab_size}): resume with the recipe that wrote it")
        self._rng_to_restore = checkpoint.get("bortzoo_rng")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
        # Dropout draws from torch's global generator: saving it makes a resumed run continue the same run.
        checkpoint["bortzoo_rng"] = {"cpu": torch.get_rng_state(),
                                     "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Restore the saved RNG state at the first step after a resume (after the loaders, which draw from it)."""
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            self._rng_to_restore = None
            torch.set_rng_state(rng["cpu"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Accept student-only checkpoints: the attached teacher keeps its own weights."""
        if self.teacher is not None:
            state_dict = dict(state_dict)
            for key, value in self.teacher.state_dict().items():
                state_dict.setdefault(f"teacher.{key}", value)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
