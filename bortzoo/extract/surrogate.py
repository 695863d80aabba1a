"""A candidate's surrogate error: a short, bounded distillation run on the cached batches.

The FPTAS ranks candidates from short training runs instead of full pretraining. Each run here
is the pretraining `Student` (same loss, same AdamW and schedule) trained for the step budget on
the cached teacher batches, then evaluated on held-out cached batches: the error is that
held-out distillation loss. Every hyperparameter set θ gets a run; the best one counts.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader

from bortzoo.arch import Arch
from bortzoo.modules import Student

ALLOWED_HPARAMS = {"lr", "weight_decay", "warmup_ratio", "betas", "eps", "alpha", "beta", "temperature"}


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """A Trainer that prints nothing: a search runs hundreds of them under one progress bar."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    num_sanity_val_steps=0)
    defaults.update(kwargs)
    return L.Trainer(**defaults)


def surrogate_error(arch: Arch, train: list[dict], evaluation: list[dict], steps: int, theta: dict[str, Any],
                    seed: int = 0, accelerator: str = "auto", precision: Optional[str] = None,
                    save_to: Optional[str] = None) -> dict[str, Any]:
    """Train `arch` for `steps` on `train` (cycled) with hyperparameters `theta`; return its held-out loss.
    `save_to` keeps the trained masked-LM there as a transformers folder (what `bortzoo publish` ships)."""
    L.seed_everything(seed, verbose=False)
    student = Student(arch, **theta)
    cycled = [train[i % len(train)] for i in range(steps)]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = quiet_trainer(max_steps=steps, accelerator=accelerator,
                                **({"precision": precision} if precision else {}))
        trainer.fit(student, train_dataloaders=DataLoader(cycled, batch_size=None))
        metrics = trainer.validate(student, dataloaders=DataLoader(evaluation, batch_size=None), verbose=False)[0]
    error = float(metrics["val/loss"])
    if save_to is not None:
        from bortzoo.export import save_quietly

        save_quietly(student.model, save_to)
    return {"theta": theta, "error": error if math.isfinite(error) else float("inf"),
            "mlm_loss": float(metrics.get("val/mlm_loss", float("nan"))), "kl": float(metrics.get("val/kl", float("nan"))),
            "seconds": round(time.perf_counter() - started, 3), "steps": steps}


def teacher_topk(teacher, top_k: int):
    """The function that turns a batch into the teacher's (values, indices) top-k at its masked positions."""
    device = next(teacher.parameters()).device

    @torch.no_grad()
    def compute(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        moved = {k: v.to(device) for k, v in batch.items()}
        logits, _ = teacher.masked_logits(moved)
        return logits.float().topk(min(top_k, logits.shape[-1]), dim=-1)

    return compute
