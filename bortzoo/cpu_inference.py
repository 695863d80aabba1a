"""CPU inference for BERT-family encoders: int8 linears, bf16 attention, fused epilogues.

Why each piece (measured by `bench/cpu_latency.py` on an AMD EPYC Zen 5 with 2 cores):
- torch's fp32 matmul (MKL) reaches ~100 GFLOP/s per core on this CPU, oneDNN's int8 (VNNI)
  ~900: the linears are quantised to int8 (weights per output channel, activations per tensor
  at run time) and run by oneDNN's `qlinear_pointwise`, which also applies the bias, the GELU
  and the residual add in the same pass over the output.
- torch's fp32 and bf16 flash attention reach ~80 GFLOP/s here; two bf16 matmuls around an fp32
  softmax reach ~200, so attention runs that way where the CPU has native bf16 (avx512_bf16 or
  AMX); elsewhere it uses SDPA.
- query, key and value are one matmul, so the activation is quantised once, not three times.
The residual stream and LayerNorm stay fp32. `guard` measures what this costs in accuracy
against the fp32 model on given inputs; `optimize(check=...)` refuses a model that disagrees.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from bortzoo.errors import BortzooError

__all__ = [
    "optimize",
    "guard",
    "GuardReport",
    "QuantizedLinear",
    "cpu_flags",
    "native_bf16",
    "auto_attention",
    "int8_backend",
    "PRECISIONS",
]

PRECISIONS = ("int8", "bf16", "fp32")
ATTENTIONS = ("auto", "bf16", "sdpa")
_SCORES_PER_CHUNK = 1 << 20  # attention scores computed at once: 2 MB of bf16
_PACKS_KEPT = 4  # packed weights kept per linear, one per recent input row count
_GELU_ALGORITHMS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


# -- what the CPU can do --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """True where bf16 matmuls run in hardware (avx512_bf16 or AMX), so bf16 is a speed-up, not an emulation."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def auto_attention() -> str:
    """What attention="auto" picks: bf16 score matmuls where bf16 is native, else torch's SDPA."""
    return "bf16" if native_bf16() else "sdpa"


@functools.lru_cache(maxsize=1)
def int8_backend() -> str:
    """'onednn' when torch has oneDNN's quantised linear (dequantise, bias and GELU fused); else 'int_mm'."""
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise"):
        try:
            QuantizedLinear(torch.ones(2, 4), torch.zeros(2), backend="onednn")(torch.ones(1, 4))
            return "onednn"
        except (RuntimeError, NotImplementedError):
            pass
    return "int_mm"


# -- the int8 linear ------------------------------------------------------------------------------
def _quantize_uint8(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """Asymmetric per-tensor uint8 quantisation (scale, zero point from this tensor's range; 0 always exact)."""
    low, high = torch.aminmax(x)
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / 255.0
    if scale == 0.0 or not math.isfinite(scale):
        if not math.isfinite(scale):
            raise BortzooError("cannot quantise an activation that holds inf or nan; the model's fp32 output is broken too")
        scale = 1.0
    zero_point = min(255, max(0, round(-low / scale)))
    q = torch.mul(x, 1.0 / scale).add_(zero_point).round_().clamp_(0, 255).to(torch.uint8)
    return q, scale, zero_point


class QuantizedLinear(nn.Module):
    """`activation(x @ W.T + b) + residual` with W int8 (one scale per output channel) and x quantised
    per tensor at run time.

    The int8 weight and its scales are buffers (they save and load with the state dict); oneDNN's
    packed copy is built on first use, for this CPU, and never saved.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str] = None,
                 backend: Optional[str] = None, out_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if backend not in (None, "onednn", "int_mm"):
            raise BortzooError(f"backend must be 'onednn', 'int_mm' or None (the best this torch has), got {backend!r}")
        if activation is not None and activation not in _GELU_ALGORITHMS:
            raise BortzooError(f"activation must be one of {sorted(_GELU_ALGORITHMS)} or None, got {activation!r}")
        w = weight.detach().to(torch.float32)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())
        self.activation = activation
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.backend = backend or int8_backend()
        self.out_dtype = out_dtype  # bf16 where the next op reads bf16: half the bytes written
        self._packs: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._w_zero: Optional[torch.Tensor] = None

    @classmethod
    def from_linear(cls, *linears: nn.Linear, activation: Optional[str] = None, backend: Optional[str] = None,
                    out_dtype: torch.dtype = torch.float32) -> "QuantizedLinear":
        """One int8 linear from one nn.Linear, or from several sharing an input (their outputs concatenated)."""
        weight = torch.cat([lin.weight for lin in linears], dim=0)
        bias = None
        if any(lin.bias is not None for lin in linears):  # a linear without bias contributes zeros, not a drop
            bias = torch.cat([lin.weight.new_zeros(lin.out_features) if lin.bias is None else lin.bias
                              for lin in linears])
        return cls(weight, bias, activation, backend, out_dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"activation={self.activation}, backend={self.backend}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_packs"] = OrderedDict()  # oneDNN's packed tensors cannot be copied or pickled; rebuilt on use
        return state

    def _apply(self, fn: Callable, recurse: bool = True) -> "QuantizedLinear":
        self._packs = OrderedDict()
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(torch.float32).contiguous()
        r2 = None if residual is None else residual.reshape(-1, self.out_features).to(torch.float32).contiguous()
        y = self._onednn(x2, r2) if self.backend == "onednn" else self._int_mm(x2, r2)
        return y.reshape(*shape[:-1], self.out_features)

    def _onednn(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        packed = self._packs.get(x.shape[0])
        if packed is None:
            packed = torch.ops.onednn.qlinear_prepack(self.weight_int8, list(x.shape))
            self._packs[x.shape[0]] = packed
            while len(self._packs) > _PACKS_KEPT:
                self._packs.popitem(last=False)
        else:
            self._packs.move_to_end(x.shape[0])
        qx, scale, zero_point = _quantize_uint8(x)
        w_zero, bias = self._epilogue()
        unary = "gelu" if self.activation else "none"
        algorithm = _GELU_ALGORITHMS[self.activation] if self.activation else ""
        y = torch.ops.onednn.qlinear_pointwise.default(
            qx, scale, zero_point, packed, self.weight_scale, w_zero, bias,
            1.0, 0, self.out_dtype, unary, [], algorithm)
        # oneDNN's fused residual add (qlinear_pointwise.binary) measured 15% slower than adding after
        return y if residual is None else y.add_(residual)

    def _epilogue(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Weight zero points (all 0: the weights are symmetric), made once, and the bias in the output dtype."""
        if self._w_zero is None:
            self._w_zero = torch.zeros(self.out_features, dtype=torch.int64)
        bias = self.bias if self.bias is None or self.out_dtype == torch.float32 else self.bias.to(self.out_dtype)
        return self._w_zero, bias

    def _int_mm(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        """Portable fallback: symmetric per-row int8 activations and aten's int8 matmul."""
        scale = torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        qx = torch.round(x / scale).clamp_(-127, 127).to(torch.int8)
        if qx.shape[0] <= 16:  # _int_mm wants more than 16 rows on some builds; pad, then drop
            qx = torch.cat([qx, qx.new_zeros(17 - qx.shape[0], qx.shape[1])])
        y = torch._int_mm(qx, self.weight_int8.t())[: x.shape[0]].to(torch.float32)
        y.mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            y.add_(self.bias)
        if self.activation:
            y = nn.functional.gelu(y, approximate=_GELU_ALGORITHMS[self.activation])
        if residual is not None:
            y.add_(residual)
        return y.to(self.out_dtype)


# -- BERT's layer pieces, rebuilt around the int8 linear ------------------------------------------
def _linear(*linears: nn.Linear, precision: str, activation: Optional[str] = None,
            out_dtype: torch.dtype = torch.float32) -> nn.Module:
    """The int8 linear, or (bf16/fp32) the same concatenation kept in floating point."""
    if precision == "int8":
        return QuantizedLinear.from_linear(*linears, activation=activation, out_dtype=out_dtype)
    return _FloatLinear(*linears, activation=activation)


class _FloatLinear(nn.Module):
    """Floating-point twin of QuantizedLinear's interface (concatenated outputs, activation, residual)."""

    def __init__(self, *linears: nn.Linear, activation: Optional[str] = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.cat([lin.weight.detach() for lin in linears]), requires_grad=False)
        self.bias = None
        if any(lin.bias is not None for lin in linears):  # a linear without bias contributes zeros
            self.bias = nn.Parameter(torch.cat([lin.weight.new_zeros(lin.out_features) if lin.bias is None
                                                else lin.bias.detach() for lin in linears]), requires_grad=False)
        self.activation = activation

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = nn.functional.linear(x, self.weight, self.bias)
        if self.activation:
            y = nn.functional.gelu(y, approximate=_GELU_ALGORITHMS[self.activation])
        return y if residual is None else y + residual


def _additive_mask(mask: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
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

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
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
    if act not in _GELU_ALGORITHMS:
        raise BortzooError(
            f"optimize() fuses GELU into the int8 linear and knows {sorted(_GELU_ALGORITHMS)}; "
            f"this model's hidden_act is {act!r}")
    return act


def optimize(
    model: nn.Module,
    *,
    precision: str = "int8",
    attention: str = "auto",
    threads: Optional[int] = None,
    inplace: bool = False,
    check: Optional[Iterable[Mapping[str, torch.Tensor]]] = None,
    labels: Optional[Sequence[Any]] = None,
    metric: Optional[Callable[[torch.Tensor, torch.Tensor], float]] = None,
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
    optimized.bortzoo_optimize = {"precision": precision, "attention": attention,
                                  "int8_backend": int8_backend() if precision == "int8" else None}
    if threads is not None:
        torch.set_num_threads(threads)
    if check is not None:
        report = guard(model, optimized, check, labels=labels, metric=metric)
        optimized.bortzoo_guard = report
        report.enforce(min_agreement, max_metric_drop)
    return optimized


# -- the accuracy guard ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GuardReport:
    """How an optimised model's predictions compare with the fp32 model's on the same inputs.

    agreement: share of examples whose predicted class is the same (None for regression heads
    and bare encoders, which predict no class). output_correlation: Pearson correlation of all
    outputs (logits, or hidden states). metric_*: in points (0-100) when labels and a metric
    were given.
    """

    examples: int
    agreement: Optional[float]
    output_correlation: float
    max_abs_diff: float
    metric_fp32: Optional[float] = None
    metric_optimized: Optional[float] = None

    @property
    def metric_change(self) -> Optional[float]:
        if self.metric_fp32 is None or self.metric_optimized is None:
            return None
        return self.metric_optimized - self.metric_fp32

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metric_change": self.metric_change}

    def enforce(self, min_agreement: float = 0.99, max_metric_drop: float = 0.5) -> None:
        """Raise BortzooError naming the number that misses the bar."""
        if self.agreement is not None and self.agreement < min_agreement:
            raise BortzooError(
                f"the optimised model agrees with fp32 on {self.agreement:.2%} of {self.examples} examples, "
                f"below the {min_agreement:.0%} required; keep the fp32 model, or try precision='bf16'")
        change = self.metric_change
        if change is not None and change < -max_metric_drop:
            raise BortzooError(
                f"the optimised model's metric is {self.metric_optimized:.2f} against {self.metric_fp32:.2f} "
                f"in fp32 ({change:+.2f} points, more than the {max_metric_drop} allowed)")

    def summary(self) -> str:
        parts = [f"{self.examples} examples"]
        if self.agreement is not None:
            parts.append(f"agreement {self.agreement:.2%}")
        parts.append(f"output correlation {self.output_correlation:.5f}")
        if self.metric_change is not None:
            parts.append(f"metric {self.metric_fp32:.2f} -> {self.metric_optimized:.2f} ({self.metric_change:+.2f})")
        return ", ".join(parts)


def _outputs(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Predictions as fp32 rows: logits [B, C], regression scores [B, 1], or hidden states [B*T, H]."""
    out = model(**batch)
    value = out if isinstance(out, torch.Tensor) else None
    for name in ("logits", "last_hidden_state"):
        if value is None:
            value = out.get(name) if isinstance(out, Mapping) else getattr(out, name, None)
    if value is None:
        raise BortzooError(f"cannot read predictions from a {type(out).__name__}; expected logits or last_hidden_state")
    value = value.to(torch.float32)
    if value.dim() == 1:
        return value[:, None]
    return value if value.dim() == 2 else value.reshape(-1, value.shape[-1])


@torch.inference_mode()
def guard(
    reference: nn.Module,
    optimized: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    labels: Optional[Sequence[Any]] = None,
    metric: Optional[Callable[[torch.Tensor, torch.Tensor], float]] = None,
) -> GuardReport:
    """Run both models on the same batches and compare predictions (and the metric, given labels).

    `metric(predictions, labels)` gets class ids (or regression values) and returns points (0-100).
    """
    reference.eval()
    optimized.eval()
    ref_out, opt_out = [], []
    batches = list(batches)
    for i, batch in enumerate(batches):
        if not isinstance(batch, Mapping):
            raise BortzooError(f"check batch {i} is a {type(batch).__name__}; give dicts of model inputs")
        ref_out.append(_outputs(reference, batch))
        opt_out.append(_outputs(optimized, batch))
    if not ref_out:
        raise BortzooError("the accuracy check got no batches")
    ref, opt = torch.cat(ref_out), torch.cat(opt_out)
    examples = sum(len(next(iter(b.values()))) for b in batches)
    hidden = ref.shape[0] != examples  # a bare encoder: one row per token
    classes = not hidden and ref.shape[-1] > 1
    agreement = float((ref.argmax(-1) == opt.argmax(-1)).float().mean()) if classes else None
    corr = float(torch.corrcoef(torch.stack([ref.flatten(), opt.flatten()]))[0, 1])
    metric_ref = metric_opt = None
    if labels is not None or metric is not None:
        if labels is None or metric is None:
            raise BortzooError("the accuracy check needs both labels and metric, or neither")
        target = torch.as_tensor(list(labels))
        if target.shape[0] != examples:
            raise BortzooError(f"got {target.shape[0]} labels for {examples} checked examples")
        if hidden:
            raise BortzooError("labels need a model with a task head; this model returns hidden states")
        to_pred = (lambda t: t.argmax(-1)) if classes else (lambda t: t.reshape(-1))
        metric_ref, metric_opt = float(metric(to_pred(ref), target)), float(metric(to_pred(opt), target))
    return GuardReport(examples, agreement, corr, float((ref - opt).abs().max()), metric_ref, metric_opt)
