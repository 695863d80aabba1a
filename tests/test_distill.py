"""The distillation loss against a hand computation in plain Python floats."""

import math

import pytest
import torch

from bortzoo.modules.distill import distillation_loss


def softmax(values, temperature=1.0):
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def by_hand(student, teacher, labels, alpha, beta, temperature):
    ce = sum(-math.log(softmax(s)[y]) for s, y in zip(student, labels)) / len(labels)
    kl = 0.0
    for s, t in zip(student, teacher):
        p_s, p_t = softmax(s, temperature), softmax(t, temperature)
        kl += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    kl /= len(labels)  # mean over masked positions, summed over the vocabulary
    return alpha * ce + beta * temperature**2 * kl, ce, kl


STUDENT = [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, -0.3, 1.5], [-2.0, 0.0, 3.0, 1.0]]
TEACHER = [[1.0, 0.0, 2.0, -1.0], [0.5, 0.5, 0.5, 3.0], [0.0, -1.0, 4.0, 0.0]]
LABELS = [0, 3, 2]


@pytest.mark.parametrize("alpha, beta, temperature", [(0.1, 0.5, 2.0), (1.0, 0.0, 1.0), (0.0, 1.0, 3.0)])
def test_matches_hand_computation(alpha, beta, temperature):
    total, ce, kl = by_hand(STUDENT, TEACHER, LABELS, alpha, beta, temperature)
    loss = distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS),
                             alpha=alpha, beta=beta, temperature=temperature)
    assert loss.mlm.item() == pytest.approx(ce, rel=1e-5)
    assert loss.kl.item() == pytest.approx(kl, rel=1e-5)
    assert loss.total.item() == pytest.approx(total, rel=1e-5)


def test_defaults_are_the_official_values():
    total, _, _ = by_hand(STUDENT, TEACHER, LABELS, 0.1, 0.5, 2.0)
    assert distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)).total.item() == \
        pytest.approx(total, rel=1e-5)


def test_kl_vanishes_when_student_equals_teacher_and_grows_otherwise():
    logits = torch.tensor(TEACHER)
    assert distillation_loss(logits, logits.clone(), torch.tensor(LABELS)).kl.item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_loss(torch.tensor(STUDENT), logits, torch.tensor(LABELS)).kl.item() > 0.05


def test_vocabulary_mismatch_is_named():
    with pytest.raises(ValueError, match="same vocabulary|one vocabulary"):
        distillation_loss(torch.zeros(2, 5), torch.zeros(2, 6), torch.zeros(2, dtype=torch.long))


def test_topk_loss_with_the_whole_vocabulary_equals_the_full_loss():
    from bortzoo.modules.distill import topk_distillation_loss

    student, teacher, labels = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)
    values, indices = teacher.topk(4, dim=-1)  # k = V = 4, in another order than the vocabulary
    full = distillation_loss(student, teacher, labels)
    cached = topk_distillation_loss(student, values, indices, labels)
    for a, b in zip(full, cached):
        assert a.item() == pytest.approx(b.item(), rel=1e-6)
    # a smaller k keeps the teacher's head only: renormalised over the top 2, by hand for position 0
    values2, indices2 = teacher.topk(2, dim=-1)
    kl = topk_distillation_loss(student, values2, indices2, labels, alpha=0.0, beta=1.0, temperature=1.0).kl.item()
    expected = 0.0
    for s, t, idx in zip(STUDENT, TEACHER, indices2.tolist()):
        p_t = softmax([t[j] for j in idx])
        log_p_s = [math.log(softmax(s)[j]) for j in idx]
        expected += sum(p * (math.log(p) - q) for p, q in zip(p_t, log_p_s))
    assert kl == pytest.approx(expected / 3, rel=1e-5)
