"""A peer engine put where the model's BertModel was, so the optimised model is called exactly like the original:
same inputs, same output object, the pooler and every task head still in torch (fp32) on top."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bortzoo.errors import BortzooError
from bortzoo.serve.engines.base import EncoderRunner

__all__ = ["EngineBertModel", "RoutedEncoder", "find_bert", "swap_bert"]


class EngineBertModel(nn.Module):
    """A transformers BertModel's call signature and outputs, its encoder run by an engine.

    Keeps the original's config, pooler and input embeddings (heads that tie weights, e.g. a masked-LM
    decoder, still find them). Inputs the engine cannot take (inputs_embeds, position_ids, head masks,
    attention or hidden-state outputs) are refused by name instead of being dropped.
    """

    def __init__(self, bert: nn.Module, runner: EncoderRunner, engine: str) -> None:
        super().__init__()
        self.config = bert.config
        self.engine = engine
        self.runner = runner
        self.pooler = None if bert.pooler is None else bert.pooler.float().eval()
        self.word_embeddings = bert.get_input_embeddings()
        self.max_positions = int(getattr(bert.config, "max_position_embeddings", 512))

    def get_input_embeddings(self) -> nn.Module:
        return self.word_embeddings

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, return_dict: bool | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

        refused = {"inputs_embeds": inputs_embeds, "position_ids": position_ids, **kwargs}
        refused = [k for k, v in refused.items() if v is not None and k not in ("use_cache", "cache_position")]
        if output_attentions or output_hidden_states:
            refused.append("output_attentions" if output_attentions else "output_hidden_states")
        if refused:
            raise BortzooError(f"the {self.engine} engine runs the encoder from token ids only; it cannot take "
                               f"{', '.join(refused)} (optimize(model, engine='torch') can)")
        if input_ids is None:
            raise BortzooError(f"the {self.engine} engine needs input_ids")
        if input_ids.dim() != 2:
            raise BortzooError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.max_positions:
            raise BortzooError(f"{input_ids.shape[1]} tokens is more than the model's {self.max_positions} positions")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        hidden = self.runner(input_ids.long(), mask.long(), types.long())
        pooled = None if self.pooler is None else self.pooler(hidden)
        if return_dict is False:
            return (hidden,) if pooled is None else (hidden, pooled)
        return BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=hidden, pooler_output=pooled)


class RoutedEncoder(nn.Module):
    """Several optimised encoders of one model, each call served by the one timed fastest at the nearest shape.

    routes: "BxS" -> encoder name. Nearest: the timed shape closest in tokens (batch x seq, on a log scale),
    then in sequence length; attention cost grows with the sequence, so the tie goes to the closer length.
    """

    def __init__(self, encoders: dict[str, nn.Module], routes: dict[str, str]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({name.replace(".", "_"): enc for name, enc in encoders.items()})
        self.names = {name: name.replace(".", "_") for name in encoders}
        self.routes = [(int(shape.split("x")[0]), int(shape.split("x")[1]), name) for shape, name in routes.items()]
        self.config = next(iter(encoders.values())).config

    def get_input_embeddings(self) -> nn.Module:
        return next(iter(self.encoders.values())).get_input_embeddings()

    def route(self, batch: int, seq: int) -> str:
        tokens = math.log(max(1, batch * seq))
        return min(self.routes, key=lambda r: (abs(math.log(r[0] * r[1]) - tokens), abs(r[1] - seq)))[2]

    def forward(self, input_ids: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        if input_ids is None:
            raise BortzooError("the routed encoder needs input_ids, to pick the engine for their shape")
        name = self.route(*input_ids.shape[:2]) if input_ids.dim() == 2 else self.routes[0][2]
        out = self.encoders[self.names[name]](input_ids, *args, **kwargs)
        # the heads around are the original's, fp32: an encoder served in bf16 (the own path's bf16) hands fp32 up
        if isinstance(out, tuple):
            return tuple(_fp32(value) for value in out)
        for key, value in out.items():
            out[key] = _fp32(value)
        return out


def _fp32(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


def find_bert(model: nn.Module) -> tuple[nn.Module | None, str, nn.Module]:
    """(parent, attribute, encoder) of the first transformers BertModel in `model`, or of the engine-served encoder
    that replaced it (parent None: it is `model`)."""
    from transformers import BertModel

    kinds = (BertModel, EngineBertModel, RoutedEncoder)
    if isinstance(model, kinds):
        return None, "", model
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if isinstance(child, kinds):
                return parent, name, child
    raise BortzooError(f"no transformers BertModel in {type(model).__name__}: the peer engines export one "
                       "(engine='torch' also handles a bare BertEncoder)")


def swap_bert(model: nn.Module, replacement: nn.Module) -> nn.Module:
    """`model` with its BertModel replaced (in place; the caller passes a copy), or `replacement` itself."""
    parent, name, _ = find_bert(model)
    if parent is None:
        return replacement
    setattr(parent, name, replacement)
    return model
