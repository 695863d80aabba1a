"""BERT masking: how many tokens, which ones, what replaces them, and that a seed fixes it all."""

import pytest
import torch

from bortzoo.data.masking import IGNORE_INDEX, mask_tokens, seeded_generator

SPECIAL = torch.tensor([0, 1, 2, 3, 4])
MASK = 4


def blocks(batch=64, length=64, vocab=512, seed=0):
    ids = torch.randint(5, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    return ids


def test_exactly_k_predictions_per_block_and_the_cap():
    ids = blocks()
    out = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(1), probability=0.15)
    assert ((out["labels"] != IGNORE_INDEX).sum(1) == round(0.15 * 62)).all()  # 62 ordinary tokens → 9
    capped = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(1), probability=0.15, max_predictions=4)
    assert ((capped["labels"] != IGNORE_INDEX).sum(1) == 4).all()


def test_special_tokens_are_never_predicted_and_labels_are_the_originals():
    ids = blocks()
    out = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(2))
    selected = out["labels"] != IGNORE_INDEX
    assert not selected[:, 0].any() and not selected[:, -1].any()
    assert torch.equal(out["labels"][selected], ids[selected])
    assert torch.equal(out["input_ids"][~selected], ids[~selected])  # unselected tokens untouched


def test_eighty_ten_ten():
    ids = blocks(batch=2000)
    out = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(3))
    selected = out["labels"] != IGNORE_INDEX
    seen = out["input_ids"][selected]
    original = ids[selected]
    masked = (seen == MASK).float().mean().item()
    kept = (seen == original).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1 + 0.1 / 512, abs=0.01)  # 10% kept, plus random draws of the same token
    replaced_at_random = 1 - masked - kept
    assert replaced_at_random == pytest.approx(0.1, abs=0.01)


def test_seed_fixes_the_masking():
    ids = blocks()
    first = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(0, 5, 1))
    again = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(0, 5, 1))
    other = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(0, 6, 1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["labels"], other["labels"])


def test_short_rows_predict_at_least_one_and_never_more_than_they_have():
    ids = torch.tensor([[0, 9, 2, 1, 1], [0, 9, 10, 11, 2]])  # padding (1) is special too
    out = mask_tokens(ids, SPECIAL, MASK, 512, seeded_generator(4), probability=0.15)
    assert (out["labels"] != IGNORE_INDEX).sum(1).tolist() == [1, 1]
