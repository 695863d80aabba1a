"""The distillation loss of Bort's pretraining, written correctly.

    loss = α · CE(student, labels) + β · T² · KL(softmax(teacher/T) ‖ softmax(student/T))

on the masked positions only, α = 0.1, β = 0.5, T = 2 (the official code's values). The official
code passed the student's *probabilities* to a loss that applied log-softmax again, and averaged
the KL over the vocabulary; here the KL is summed over the vocabulary and averaged over masked
positions, on temperature-scaled logits, as in Hinton et al.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class DistillLoss(NamedTuple):
    total: torch.Tensor
    mlm: torch.Tensor
    kl: torch.Tensor


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.1,
    beta: float = 0.5,
    temperature: float = 2.0,
) -> DistillLoss:
    """Loss over masked positions. Logits are (N, V) for the N masked positions; labels are (N,).

    Callers select the masked positions first (the heads then run on those rows only).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "differ: teacher and student must share one vocabulary"
        )
    mlm = F.cross_entropy(student_logits.float(), labels)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return DistillLoss(alpha * mlm + beta * temperature**2 * kl, mlm, kl)


def topk_distillation_loss(
    student_logits: torch.Tensor,
    teacher_values: torch.Tensor,
    teacher_indices: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.1,
    beta: float = 0.5,
    temperature: float = 2.0,
) -> DistillLoss:
    """The same loss against a teacher stored as its top-k logits per masked position (N, k).

    The teacher's distribution is its softmax over the k kept logits (renormalised); the student's
    log-probabilities come from its full softmax, read at those k tokens. The KL term is then exactly
    KL(truncated teacher ‖ student). With k = vocabulary size this equals `distillation_loss`; a
    smaller k drops the teacher's long tail (so the values are not comparable with full-vocabulary
    losses, though candidates compared on one cache are), which is what lets the architecture
    search cache the teacher once for every candidate.
    """
    if teacher_values.shape != teacher_indices.shape or teacher_values.shape[0] != student_logits.shape[0]:
        raise ValueError(f"cached teacher {tuple(teacher_values.shape)} does not match the student's "
                         f"{tuple(student_logits.shape)} masked positions")
    mlm = F.cross_entropy(student_logits.float(), labels)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(1, teacher_indices.long())
    log_p_teacher = F.log_softmax(teacher_values.float() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    return DistillLoss(alpha * mlm + beta * temperature**2 * kl, mlm, kl)
