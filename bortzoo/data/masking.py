"""BERT's masking, seeded: which tokens are predicted, and what the model sees in their place.

Per sequence, k = min(max_predictions, max(1, round(probability · n))) of its n ordinary tokens
are chosen uniformly (BERT's `create_pretraining_data`), then 80% become <mask>, 10% a random
token and 10% stay. Everything comes from one `torch.Generator`, so a batch's masking is a
function of its seed alone, which is what makes an interrupted run resume identically.
"""

from __future__ import annotations

from typing import Optional

import torch

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: torch.Tensor,
    special_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    probability: float = 0.15,
    max_predictions: Optional[int] = None,
) -> dict[str, torch.Tensor]:
    """Masked inputs and labels (-100 where nothing is predicted) for a (batch, length) tensor."""
    ordinary = ~torch.isin(input_ids, special_ids)
    counts = ordinary.sum(dim=1)
    k = torch.clamp(torch.round(counts.float() * probability), min=1).long()
    if max_predictions is not None:
        k = torch.clamp(k, max=max_predictions)
    k = torch.minimum(k, counts)
    # A random score per token; special tokens score 2 and so are never among the k smallest.
    scores = torch.rand(input_ids.shape, generator=generator)
    scores[~ordinary] = 2.0
    ranks = scores.argsort(dim=1).argsort(dim=1)
    selected = ranks < k.unsqueeze(1)

    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (action < 0.8)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    masked = torch.where(to_random, random_tokens, masked)
    return {"input_ids": masked, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def seeded_generator(*parts: int) -> torch.Generator:
    """A generator whose seed is a fixed function of `parts` (seed, position, rank...)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)
