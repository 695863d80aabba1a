"""The optimiser every bortzoo module uses: AdamW with decoupled decay, linear warm-up then linear decay.

Biases and LayerNorm weights get no decay. Fine-tuning can scale each layer's learning rate by its depth
(layer-wise LR decay): the layer nearest the output learns at the full rate, each one below it at `decay`
times the rate of the one above, the embeddings slowest.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Iterable, Optional

import torch
from transformers import get_linear_schedule_with_warmup

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")
_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def encoder_depth(name: str, num_layers: int) -> int:
    """Depth of a parameter in a BERT-style encoder: 0 embeddings, i+1 for layer i, num_layers+1 above it."""
    if "embeddings." in name:
        return 0
    match = _LAYER.search(name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def param_groups(named_parameters: Iterable[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float,
                 depth: Optional[Callable[[str], int]] = None, max_depth: int = 0,
                 layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: decay vs no decay, and with `depth`, one lr per depth: lr · layer_decay^(max_depth − depth)."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        level = depth(name) if depth is not None else max_depth
        decays = not name.endswith(NO_DECAY)
        group = groups.setdefault((level, decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0,
            "lr": lr * layer_decay ** (max_depth - level), "depth": level,
        })
        group["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], not k[1]))]  # per depth: decay first


def adamw_with_warmup(groups: list[dict], lr: float, betas, eps: float, warmup_ratio: float,
                      total_steps: int) -> dict:
    """The `configure_optimizers` answer: AdamW over `groups` and a per-step linear warm-up/decay schedule."""
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)
    total = max(int(total_steps), 1)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * total), total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
