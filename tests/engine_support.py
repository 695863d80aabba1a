"""Shared by the engines' unit tests: the tiny random BERT every engine builds, and the error they are held to.

Weights are drawn at initializer_range 0.2 (not BERT's 0.02) unless a test asks otherwise: with tiny weights
the residual stream dominates and even a wrong int8 graph would look exact.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel

from bortzoo.serve.engines.base import export_source
from bortzoo.serve.own import relative_error


def tiny_config(**overrides) -> BertConfig:
    settings = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, type_vocab_size=2, max_position_embeddings=64, initializer_range=0.2)
    return BertConfig(**{**settings, **overrides})


def tiny_source(seed: int = 0, **overrides) -> torch.nn.Module:
    """An `export_source` model (what every engine gets) of a seeded tiny random BertModel."""
    torch.manual_seed(seed)
    return export_source(BertModel(tiny_config(**overrides), add_pooling_layer=False))


def masked_relative_error(out: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    """Relative error over real tokens only (what padded positions hold is unspecified)."""
    real = mask.bool()
    return relative_error(out[real], ref[real])
