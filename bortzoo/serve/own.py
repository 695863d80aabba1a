"""bortzoo's own torch engine ("torch" in `bortzoo.optimize`): int8 linears, bf16 attention, fused epilogues.

Why each piece (measured by `bench/cpu_latency.py` on an AMD EPYC Zen 5 with 2 cores):
- torch's fp32 matmul (MKL) reaches ~100 GFLOP/s per core on this CPU, oneDNN's int8 (VNNI)
  ~900: the linears are quantised to int8 (weights per output channel, activations per tensor
  at run time) and run by oneDNN's `qlinear_pointwise`, which also applies the bias, the GELU
  and the residual add in the same pass over the output (`bortzoo.serve.int8`, which also checks that
  this CPU's int8 arithmetic is exact, and narrows the activations to 7 bits where it needs that).
- torch's fp32 and bf16 flash attention reach ~80 GFLOP/s here; two bf16 matmuls around an fp32
  softmax reach ~200, so attention runs that way where the CPU has native bf16 (avx512_bf16 or
  AMX); elsewhere it uses SDPA.
- query, key and value are one matmul, so the activation is quantised once, not three times.
The residual stream and LayerNorm stay fp32. Before returning, `optimize_torch` runs the copy and the
original on a small batch and refuses a copy whose output is off; with `check=...` it also refuses a copy
that disagrees with the original (`bortzoo.serve.guard`).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bortzoo.errors import BortzooError
from bortzoo.serve.cpu import cpu_flags, cpu_summary, native_bf16
from bortzoo.serve.guard import compare, predictions
from bortzoo.serve.int8 import GELU_ALGORITHMS, QuantizedLinear, int8_arithmetic

__all__ = [
    "PRECISIONS",
    "SELF_CHECK_MAX_ERROR",
    "QuantizedLinear",
    "auto_attention",
    "cpu_flags",
    "int8_backend",
    "native_bf16",
    "optimize_torch",
    "relative_error",
    "self_check_batch",
]

PRECISIONS = ("int8", "bf16", "fp32")
ATTENTIONS = ("auto", "bf16", "sdpa")
_SCORES_PER_CHUNK = 1 << 20  # attention scores computed at once: 2 MB of bf16
# The self-check's bound on the copy's relative error in the encoder output, per precision (bf16 attention counts
# as bf16). Measured on the real all-MiniLM-L6-v2 encoder (tests/real): right int8 copies 0.058 (8-bit activations)
# and 0.094 (7-bit), saturating int8 arithmetic 0.157, bf16 0.014. The exactness probe of bortzoo.serve.int8 is what keeps
# int8 right; this bound is the backstop that refuses a copy that is wrong, not merely approximate.
SELF_CHECK_MAX_ERROR = {"int8": 0.15, "bf16": 0.05, "fp32": 1e-3}
_log = logging.getLogger("bortzoo")


# -- what the CPU can do --------------------------------------------------------------------------
def auto_attention() -> str:
    """What attention="auto" picks: bf16 score matmuls where bf16 is native, else torch's SDPA."""
    return "bf16" if native_bf16() else "sdpa"


def int8_backend() -> str | None:
    """The int8 kernel optimize() uses on this CPU ('onednn'), or None where no fast one is exact."""
    arithmetic = int8_arithmetic()
    return None if arithmetic is None else arithmetic.backend


# -- BERT's layer pieces, rebuilt around the int8 linear ------------------------------------------
def _linear(*linears: nn.Linear, precision: str, activation: str | None = None,
            out_dtype: torch.dtype = torch.float32) -> nn.Module:
    """The int8 linear, or (bf16/fp32) the same concatenation kept in floating point."""
    if precision == "int8":
        return QuantizedLinear.from_linear(*linears, activation=activation, out_dtype=out_dtype)
    return _FloatLinear(*linears, activation=activation)


class _FloatLinear(nn.Module):
    """Floating-point twin of QuantizedLinear's interface (concatenated outputs, activation, residual)."""

    def __init__(self, *linears: nn.Linear, activation: str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.cat([lin.weight.detach() for lin in linears]), requires_grad=False)
        self.bias = None
        if any(lin.bias is not None for lin in linears):  # a linear without bias contributes zeros
            self.bias = nn.Parameter(torch.cat([lin.weight.new_zeros(lin.out_features) if lin.bias is None
                                                else lin.bias.detach() for lin in linears]), requires_grad=False)
        self.activation = activation

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        y = nn.functional.linear(x, self.weight, self.bias)
        if self.activation:
            y = nn.functional.gelu(y, approximate=GELU_ALGORITHMS[self.activation])
        return y if residual is None else y + residual


def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """transformers hands attention a bool mask (sdpa: True = attend) or an additive float one (eager)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:  # eager's additive mask: its dtype's min would be -inf in bf16
        mask = mask >= torch.finfo(mask.dtype).min / 2
    return torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, torch.finfo(dtype).min)


class OptimizedSelfAttention(nn.Module):
    """BERT self-attention with one query-key-value matmul and, on bf16 hardware, bf16 score matmuls.

    The 1/sqrt(head size) score scaling is folded into the query weights, so it costs nothing.
    """

    def __init__(self, attn: nn.Module, precision: str, attention: str) -> None:
        super().__init__()
        query = nn.Linear(attn.query.in_features, attn.query.out_features, bias=attn.query.bias is not None)
        with torch.no_grad():
            query.weight.copy_(attn.query.weight * attn.scaling)
            if query.bias is not None:
                query.bias.copy_(attn.query.bias * attn.scaling)
        # with bf16 attention the int8 QKV matmul writes bf16 directly (at 4096 rows its fp32 output is 50 MB)
        self.qkv = _linear(query, attn.key, attn.value, precision=precision,
                           out_dtype=torch.bfloat16 if attention == "bf16" else torch.float32)
        self.num_heads = attn.num_attention_heads
        self.head_size = attn.attention_head_size
        self.attention = attention

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                past_key_values: Any = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
        if past_key_values is not None or kwargs.get("encoder_hidden_states") is not None:
            raise BortzooError("optimize() handles encoders; this call uses a decoder cache or cross-attention")
        batch, seq, _ = hidden_states.shape
        heads, size = self.num_heads, self.head_size
        qkv = self.qkv(hidden_states).view(batch, seq, 3, heads, size).permute(2, 0, 3, 1, 4)
        if self.attention == "bf16":
            # one pass converts to bf16 and lays q, k, v out as (batch*heads, seq, size) for bmm
            q, k, v = torch.empty((3, batch, heads, seq, size), dtype=torch.bfloat16).copy_(qkv) \
                .view(3, batch * heads, seq, size).unbind(0)
            mask = _additive_mask(attention_mask, torch.bfloat16)
            context = torch.empty((batch * heads, seq, size), dtype=torch.bfloat16)
            # (batch*heads) slices of about _SCORES_PER_CHUNK scores, so the scores stay in cache between the
            # two matmuls and the softmax (at seq 512, one 32 MB score tensor made softmax 5x slower)
            step = max(1, _SCORES_PER_CHUNK // (seq * seq))
            for start in range(0, batch * heads, step):
                end = min(start + step, batch * heads)
                scores = torch.bmm(q[start:end], k[start:end].transpose(1, 2))
                if mask is not None:  # [batch, 1 or heads, seq or 1, seq]: this slice's (batch, head) rows
                    index = torch.arange(start, end)
                    scores = scores + mask.expand(batch, heads, -1, -1)[index // heads, index % heads]
                torch.bmm(scores.softmax(dim=-1), v[start:end], out=context[start:end])  # softmax accumulates in fp32
            context = context.view(batch, heads, seq, size)
        else:
            q, k, v = qkv.to(hidden_states.dtype).unbind(0)
            context = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=1.0)
        out = torch.empty((batch, seq, heads, size), dtype=hidden_states.dtype)
        return out.copy_(context.transpose(1, 2)).view(batch, seq, heads * size), None


class OptimizedResidualOutput(nn.Module):
    """BERT's `LayerNorm(dense(x) + residual)` (self-attention output and feed-forward output)."""

    def __init__(self, output: nn.Module, precision: str) -> None:
        super().__init__()
        self.dense = _linear(output.dense, precision=precision)
        self.LayerNorm = output.LayerNorm

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden_states, residual=input_tensor))


class OptimizedIntermediate(nn.Module):
    """BERT's `gelu(dense(x))`, the GELU applied by the linear itself."""

    def __init__(self, intermediate: nn.Module, precision: str, activation: str) -> None:
        super().__init__()
        self.dense = _linear(intermediate.dense, precision=precision, activation=activation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense(hidden_states)


# -- the entry point ------------------------------------------------------------------------------
def _bert_layers(model: nn.Module) -> list[nn.Module]:
    from transformers.models.bert.modeling_bert import BertLayer

    return [m for m in model.modules() if isinstance(m, BertLayer)]


def _activation_name(config: Any) -> str:
    act = getattr(config, "hidden_act", None)
    if act not in GELU_ALGORITHMS:
        raise BortzooError(
            f"optimize() fuses GELU into the int8 linear and knows {sorted(GELU_ALGORITHMS)}; "
            f"this model's hidden_act is {act!r}")
    return act


def optimize_torch(
    model: nn.Module,
    *,
    precision: str = "int8",
    attention: str = "auto",
    threads: int | None = None,
    inplace: bool = False,
    check: Iterable[Mapping[str, torch.Tensor]] | None = None,
    labels: Sequence[Any] | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    min_agreement: float = 0.99,
    max_metric_drop: float = 0.5,
) -> nn.Module:
    """A copy of a BERT-family model made fast for CPU inference, called exactly like the original.

    Args:
        model: a transformers BERT model (BertModel, BertForSequenceClassification, ...) or a module
            holding one (bortzoo's TaskModel, Student). Pooler and task heads stay fp32.
        precision: "int8" (linears int8, see the module docstring), "bf16" (the whole model in
            bf16; needs native bf16 to be fast) or "fp32" (only the fused attention).
        attention: "bf16" (bf16 score matmuls, fp32 softmax), "sdpa" (torch's fused attention),
            or "auto": bf16 where the CPU has native bf16, else sdpa.
        threads: intra-op threads for torch (torch.set_num_threads); None leaves torch's setting.
        inplace: modify `model` itself instead of a copy (saves memory; the original model is gone).
            A bf16 or fp16 model comes back fp32 with precision int8 or fp32 (its residual stream).
        check: batches of model inputs; when given, the optimised model is compared with the
            fp32 model on them (`guard`) and refused (BortzooError) below `min_agreement`, or,
            when `labels` and `metric` are given too, when the metric drops by more than
            `max_metric_drop` points. The report is kept as `optimized.bortzoo_guard`.
    """
    if precision not in PRECISIONS:
        raise BortzooError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if attention not in ATTENTIONS:
        raise BortzooError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise BortzooError(f"threads must be a positive integer, got {threads!r}")
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if threads > cpus:
            raise BortzooError(f"threads {threads} is more than the {cpus} CPUs this process may use")
    if not isinstance(model, nn.Module):
        raise BortzooError(f"optimize() takes a torch nn.Module, got {type(model).__name__}")
    layers = _bert_layers(model)
    if not layers:
        raise BortzooError(
            f"no BERT encoder layers (transformers BertLayer) in {type(model).__name__}; "
            "optimize() handles BERT-family models such as Bort")
    if attention == "auto":
        attention = auto_attention()
    check = None if check is None else list(check)
    settings: dict[str, Any] = {"precision": precision, "attention": attention, "int8_backend": None,
                                "activation_bits": None, "cpu": cpu_summary()}
    if precision == "int8":
        arithmetic = int8_arithmetic()
        if arithmetic is None:
            reason = (f"no fast int8 arithmetic is exact on this CPU ({cpu_summary()}): oneDNN's int8 kernel "
                      "is missing or saturates even with 7-bit activations, so optimize() returns fp32 (emulated "
                      "bf16 would be slower still)")
            warnings.warn(reason, stacklevel=2)
            _log.warning(reason)
            settings.update(precision="fp32", requested_precision="int8", fallback=reason)
            precision = "fp32"
        else:
            settings.update(int8_backend=arithmetic.backend, activation_bits=arithmetic.activation_bits)
    # what the original computes, before anything changes (with inplace=True it is gone afterwards)
    probe = self_check_batch(model)
    expected_dtype = next(_encoder(model)[0].parameters()).dtype
    expected = _encoder_output(model, probe)
    reference = None if check is None else predictions(model, check)

    optimized = model if inplace else copy.deepcopy(model)
    optimized.eval()
    if precision != "bf16":
        optimized.to(torch.float32)  # the residual stream and LayerNorm run in fp32, whatever the model was saved in
    for layer in _bert_layers(optimized):
        if layer.attention.self.__class__.__name__ != "BertSelfAttention":
            raise BortzooError(f"optimize() rebuilds BertSelfAttention; this layer has {type(layer.attention.self).__name__}")
        activation = _activation_name(layer.attention.self.config)
        layer.attention.self = OptimizedSelfAttention(layer.attention.self, precision, attention)
        layer.attention.output = OptimizedResidualOutput(layer.attention.output, precision)
        layer.intermediate = OptimizedIntermediate(layer.intermediate, precision, activation)
        layer.output = OptimizedResidualOutput(layer.output, precision)
    if precision == "bf16":
        optimized.to(torch.bfloat16)
    optimized.requires_grad_(False)
    if threads is not None:
        torch.set_num_threads(threads)
    error = relative_error(_encoder_output(optimized, probe), expected)
    low_precision = attention == "bf16" or expected_dtype != torch.float32  # the copy, or the original, in bf16/fp16
    bound = max(SELF_CHECK_MAX_ERROR[precision], SELF_CHECK_MAX_ERROR["bf16"] if low_precision else 0.0)
    settings["self_check_error"] = round(error, 6)
    optimized.bortzoo_optimize = settings
    if not error <= bound:
        raise BortzooError(
            f"the {precision} copy is off: its encoder output differs from the original's by {error:.2%} "
            f"(relative error on a {probe['input_ids'].shape[0]}x{probe['input_ids'].shape[1]} check batch; "
            f"at most {bound:.1%} is right for {precision}) on this CPU "
            f"({cpu_summary()}); optimize(precision='fp32') is exact everywhere")
    if check is not None:
        report = compare(reference, predictions(optimized, check), check, labels=labels, metric=metric)
        optimized.bortzoo_guard = report
        report.enforce(min_agreement, max_metric_drop)
    return optimized


# -- the self-check: is the copy right at all? ---------------------------------------------------
def _encoder(model: nn.Module) -> tuple[nn.Module, bool]:
    """The module the self-check runs: the BertModel inside `model` (True), or else its BertEncoder (False)."""
    from transformers.models.bert.modeling_bert import BertEncoder, BertModel

    for cls, full in ((BertModel, True), (BertEncoder, False)):
        found = next((m for m in model.modules() if isinstance(m, cls)), None)
        if found is not None:
            return found, full
    raise BortzooError(f"no BertModel or BertEncoder in {type(model).__name__} to check the optimised copy on")


def self_check_batch(model: nn.Module) -> dict[str, torch.Tensor]:
    """Two sequences of 24 fixed random tokens, the second padded after 16: what the copy must reproduce."""
    encoder, full = _encoder(model)
    config = encoder.config
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(2, 24, dtype=torch.long)
    mask[1, 16:] = 0
    if full:
        low = min(1000, config.vocab_size // 2)  # past the special and unused tokens of a WordPiece vocabulary
        return {"input_ids": torch.randint(low, config.vocab_size, (2, 24), generator=g), "attention_mask": mask}
    return {"hidden_states": torch.randn(2, 24, config.hidden_size, generator=g), "attention_mask": mask}


@torch.inference_mode()
def _encoder_output(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The encoder's last hidden state at the real (unpadded) tokens, as fp32 rows."""
    encoder, full = _encoder(model)
    was_training = encoder.training
    encoder.eval()
    try:
        if full:
            out = encoder(**batch).last_hidden_state
        else:
            dtype = next(encoder.parameters()).dtype
            out = encoder(batch["hidden_states"].to(dtype))[0]
    finally:
        encoder.train(was_training)
    return out.float()[batch["attention_mask"].bool()]


def relative_error(output: torch.Tensor, expected: torch.Tensor) -> float:
    return float((output - expected).norm() / expected.norm().clamp(min=1e-12))


