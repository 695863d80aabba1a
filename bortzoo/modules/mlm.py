"""Masked-LM logits at the masked positions only: at sequence 512 with ≤80 predictions the
vocabulary projection is the largest matmul, so running the head on every position wastes most of it."""

from __future__ import annotations

import torch
from torch import nn

IGNORE_INDEX = -100


def lm_head(model: nn.Module) -> nn.Module | None:
    """The head of a transformers `*ForMaskedLM` (BERT's `cls`, RoBERTa's `lm_head`): the one child
    that is not the base encoder. None when the model is not laid out that way."""
    prefix = getattr(model, "base_model_prefix", None)
    others = [child for name, child in model.named_children() if name != prefix]
    return others[0] if prefix and len(others) == 1 else None


def masked_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for the positions whose label is not -100; logits are (N, V)."""
    labels = batch["labels"]
    selected = labels != IGNORE_INDEX
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    head = lm_head(model)
    if head is None:
        return model(**inputs).logits[selected], labels[selected]
    hidden = model.base_model(**inputs).last_hidden_state
    return head(hidden[selected]), labels[selected]
