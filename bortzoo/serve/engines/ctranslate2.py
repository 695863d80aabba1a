"""CTranslate2 (`engine="ctranslate2"`): the encoder converted by ctranslate2's own BERT loader and run by its
C++ Encoder, int8 weights with dynamically quantised activations, or fp32.

Why it is built the way it is (traps found on ctranslate2 4.8 with transformers 5):

- Conversion runs ctranslate2's `BertLoader` on the in-memory model and saves the spec directly, instead of
  `TransformersConverter` on a `save_pretrained` copy: that round trip needs a tokenizer on disk (only its
  vocabulary is read), a `position_embedding_type` that transformers 5's BertConfig no longer has (the loader
  asserts it), a pooler it would initialise at random, and a temporary copy of the weights to clean up.
- ctranslate2 numbers positions 0..length-1 from the left of every row and masks by `lengths` (right padding
  only), while torch's BertModel numbers positions by column whatever the mask. So the artefact folds the
  position table into the token-type table (row `type * max_positions + position`, ctranslate2's own position
  table left at zero) and the runner passes each token's column as its position: any padding (right, left,
  even holes) is packed to the right and the output is put back, every real token as torch computes it.
- The spec holds the loader's tensors and int8 quantisation scales them in place: converting the caller's
  own modules corrupted its weights, so a copy is converted.
- ctranslate2 does not bounds-check token or token-type ids (out of range: garbage or a segfault): the runner
  checks them.
- `ctranslate2.Encoder` takes token types only as Python lists (`tolist()` per call, a few microseconds) and
  returns a StorageView that `np.asarray` views without a copy (the array keeps it alive).
- On x86 ctranslate2 chooses its own kernels' ISA once per process, at the first model load (AVX2 on AMD CPUs
  even with AVX-512), from CT2_FORCE_CPU_ISA; its matrix products are oneDNN's, which honours
  ONEDNN_MAX_CPU_ISA by itself. Under that emulation variable `load` caps ctranslate2's ISA to match, if no
  model was loaded before in the process.

Schemes: "int8" (weights int8 per output channel, activations quantised per token at run time, compute type
int8_float32; every linear and embedding is int8, ctranslate2 quantises at load any weight saved in float, so
no layer can be kept fp32; on all-MiniLM-L6-v2 it loses most on very short sentences), "fp32" (exact to 1e-7).
Not offered: int8_bfloat16/bfloat16 (this CPU build of ctranslate2 refuses them), int16 (needs CT2_USE_MKL=1,
and MKL on AMD is slower than torch fp32). Forcing CT2_FORCE_CPU_ISA=AVX512 measured no gain (the matrix
products, oneDNN's, pick AVX-512 VNNI anyway).
"""

from __future__ import annotations

import copy
import json
import os
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bortzoo.serve import cpu
from bortzoo.serve.engines.base import Batch, EngineError, error_line, importable, quiet

__all__ = ["ENGINE", "CTranslate2Engine", "CTranslate2Runner"]

# scheme -> (the weights' quantization at conversion, the compute type at load)
_SCHEMES = {"int8": ("int8", "int8_float32"), "fp32": ("float32", "float32")}
# ONEDNN_MAX_CPU_ISA limits -> the CT2_FORCE_CPU_ISA that keeps ctranslate2's own kernels inside them
_CT2_ISA = {"SSE41": "GENERIC", "AVX": "AVX", "AVX2": "AVX2", "AVX2_VNNI": "AVX2", "AVX2_VNNI_2": "AVX2"}
_META = "bortzoo"  # the key of what the runner needs in ctranslate2's config.json


def _unsupported(config: Any) -> str | None:
    """Why ctranslate2 cannot run this BertConfig exactly as torch does, or None."""
    import ctranslate2.converters.transformers as converter

    # the loader's own table (a KeyError there otherwise); the fallback is ctranslate2 4.8's list
    supported = getattr(converter, "_SUPPORTED_ACTIVATIONS", None) or (
        "gelu", "gelu_fast", "gelu_new", "gelu_python", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu", "swish")
    act = getattr(config, "hidden_act", "gelu")
    if not isinstance(act, str) or act not in supported:
        return f"ctranslate2 cannot run hidden_act {act!r} (it runs {', '.join(sorted(supported))})"
    position = getattr(config, "position_embedding_type", "absolute") or "absolute"
    if position != "absolute":
        return f"ctranslate2 runs absolute position embeddings only, not position_embedding_type {position!r}"
    if getattr(config, "is_decoder", False):
        return "ctranslate2's encoder attends both ways; this BertModel is a decoder (is_decoder=True, causal)"
    if getattr(config, "pruned_heads", None):
        return "ctranslate2 needs every layer to have all its attention heads; this model has pruned heads"
    return None


class CTranslate2Runner:
    """The encoder's last hidden state from a ctranslate2.Encoder, for any padding.

    Rows padded on the right go straight in; otherwise the real tokens are packed to the front of their row
    (a stable argsort of the mask), keep their column as position, and the output is gathered back."""

    def __init__(self, encoder: Any, storage_view: Any, meta: dict, threads: int, compute_type: str) -> None:
        self.encoder = encoder
        self.threads = threads
        self.compute_type = compute_type
        self._view = storage_view.from_array
        self.max_positions = int(meta["max_positions"])
        self.vocab_size = int(meta["vocab_size"])
        self.type_vocab_size = int(meta["type_vocab_size"])
        self.hidden_size = int(meta["hidden_size"])
        self._columns = torch.arange(self.max_positions)

    def _refuse(self, reason: str) -> EngineError:
        return EngineError("ctranslate2", reason)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor) -> torch.Tensor:
        batch, seq = input_ids.shape
        if seq > self.max_positions:
            raise self._refuse(f"{seq} tokens is more than the model's {self.max_positions} positions")
        if batch == 0 or seq == 0:
            return torch.zeros(batch, seq, self.hidden_size)
        # ctranslate2 does not check indices: an id past its tables reads outside them (garbage or a segfault)
        low, high = torch.aminmax(input_ids)
        if low < 0 or high >= self.vocab_size:
            raise self._refuse(f"token ids must lie in [0, {self.vocab_size}), got {int(low)}..{int(high)}")
        low, high = torch.aminmax(token_type_ids)
        if low < 0 or high >= self.type_vocab_size:
            raise self._refuse(f"token type ids must lie in [0, {self.type_vocab_size}), got {int(low)}..{int(high)}")

        real = attention_mask != 0
        lengths = real.sum(1)
        columns = self._columns[:seq]
        if torch.equal(real, columns < lengths[:, None]):  # right padding (or none): as it comes
            order = None
            ids, kinds = input_ids, token_type_ids * self.max_positions + columns
        else:  # real tokens to the front of each row, in order, each keeping its column as position
            order = torch.argsort(real.logical_not().to(torch.uint8), dim=1, stable=True)
            ids = input_ids.gather(1, order)
            kinds = token_type_ids.gather(1, order) * self.max_positions + order
        # a row with no token at all is run on its first one, so its (unspecified) output stays finite
        lengths = lengths.clamp_(min=1).to(torch.int32)
        out = self.encoder.forward_batch(self._view(ids.to(torch.int32).contiguous().numpy()),
                                         self._view(lengths.numpy()), token_type_ids=kinds.tolist())
        hidden = torch.from_numpy(np.asarray(out.last_hidden_state))  # no copy: the array holds the StorageView
        if order is not None:
            back = torch.empty_like(order).scatter_(1, order, columns.expand(batch, seq))
            hidden = hidden.gather(1, back[:, :, None].expand(-1, -1, hidden.shape[-1]))
        return hidden


class CTranslate2Engine:
    """bortzoo's CTranslate2 engine (see the module docstring for the traps it works around)."""

    name = "ctranslate2"
    schemes = ("int8", "fp32")
    packages = ("ctranslate2",)

    def missing(self) -> str | None:
        if not importable("ctranslate2"):
            return "not installed: pip install 'bortzoo[serve]'"
        return None

    def _scheme(self, scheme: str) -> tuple[str, str]:
        if scheme not in _SCHEMES:
            raise EngineError(self.name, f"unknown scheme {scheme!r}; it has {', '.join(self.schemes)}")
        return _SCHEMES[scheme]

    def _import(self):
        reason = self.missing()
        if reason:
            raise EngineError(self.name, reason)
        import ctranslate2

        return ctranslate2

    def build(self, source: nn.Module, scheme: str, folder: Path, calibration: Sequence[Batch]) -> None:
        """Convert `source` into `folder` (model.bin, config.json, vocabulary.json). `calibration` is unused:
        ctranslate2 quantises activations at run time, per row."""
        quantization, _ = self._scheme(scheme)
        self._import()
        reason = _unsupported(source.config)
        if reason:
            raise EngineError(self.name, reason)
        try:
            with quiet(), torch.no_grad():
                spec = _spec(source)
                spec.validate()
                spec.optimize(quantization=quantization)
                spec.save(str(folder))
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(self.name, f"conversion failed: {error_line(exc)}") from exc

    def load(self, folder: Path, scheme: str, threads: int) -> CTranslate2Runner:
        _, compute_type = self._scheme(scheme)
        _limit_isa()
        ct2 = self._import()
        try:
            meta = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))[_META]
            encoder = ct2.Encoder(str(folder), device="cpu", compute_type=compute_type,
                                  intra_threads=int(threads), inter_threads=1)
        except Exception as exc:
            raise EngineError(self.name, f"cannot load {folder}: {error_line(exc)}") from exc
        return CTranslate2Runner(encoder, ct2.StorageView, meta, int(threads), compute_type)


def _limit_isa() -> None:
    """Under ONEDNN_MAX_CPU_ISA emulation, keep ctranslate2's own kernels within the same ISA. ctranslate2
    reads CT2_FORCE_CPU_ISA once, at its first model load in the process; an explicit setting wins."""
    limit = cpu.isa_limit()
    if limit in _CT2_ISA and "CT2_FORCE_CPU_ISA" not in os.environ:
        os.environ["CT2_FORCE_CPU_ISA"] = _CT2_ISA[limit]


class _Vocabulary:
    """What ctranslate2's BertLoader reads of a tokenizer: the runner feeds ids, so the tokens are numbers."""

    unk_token = "0"

    def __init__(self, size: int) -> None:
        self.size = size

    def get_vocab(self) -> dict[str, int]:
        return {str(i): i for i in range(self.size)}


def _spec(source: nn.Module):
    """ctranslate2's spec for `source`, with positions moved into the token-type table (see the module doc)."""
    from ctranslate2.converters.transformers import BertLoader

    config = copy.copy(source.config)
    config.position_embedding_type = "absolute"  # checked by _unsupported; transformers 5 dropped the field
    hidden = config.hidden_size
    # the loader reads a pooler; a zero one, dropped from the spec right after
    pooler = types.SimpleNamespace(dense=types.SimpleNamespace(weight=torch.zeros(hidden, hidden),
                                                               bias=torch.zeros(hidden)))
    # a copy: the spec holds the loader's tensors and int8 quantisation scales them in place (as numpy views),
    # which would corrupt the caller's model (TransformersConverter gets away with it by loading its own copy)
    embeddings, encoder = copy.deepcopy(source.embeddings), copy.deepcopy(source.encoder)
    view = types.SimpleNamespace(config=config, embeddings=embeddings, encoder=encoder, pooler=pooler)
    spec = BertLoader()(view, _Vocabulary(config.vocab_size))
    del spec.pooler_dense, spec.pooler_activation

    emb = embeddings
    positions = emb.position_embeddings.weight.detach().float()  # [P, H]
    kinds = emb.token_type_embeddings.weight.detach().float()  # [T, H]
    spec.encoder.embeddings[1].weight = (kinds[:, None, :] + positions[None, :, :]).reshape(-1, hidden).contiguous()
    spec.encoder.position_encodings.encodings = torch.zeros_like(positions)
    spec.config.add_attribute(_META, {"max_positions": positions.shape[0], "type_vocab_size": kinds.shape[0],
                                      "vocab_size": config.vocab_size, "hidden_size": hidden})
    return spec


ENGINE = CTranslate2Engine()
