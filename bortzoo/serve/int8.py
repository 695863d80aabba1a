"""The int8 linear layer, and the check that this CPU's int8 arithmetic is exact before it is used.

Why the check: oneDNN's u8 x s8 kernels on x86 without VNNI (AVX2, AVX-512 without VNNI) multiply with
`vpmaddubsw`, which adds each pair of adjacent uint8*int8 products into int16 and saturates. With the full
uint8 range two products reach 2*255*127 = 64,770 and clip at 32,767: measured 5-22% relative error per
linear. With 7-bit activations (0..127) a pair is at most 2*127*128 = 32,512 and nothing clips, so the
arithmetic is exact again at the cost of one bit of activation resolution (FBGEMM's `reduce_range` for the
same reason). VNNI, AVX-VNNI and AMX add into int32 and are exact with the full range.

Which range a CPU needs is not guessed from its name: `int8_arithmetic()` runs each candidate on integer
inputs whose exact product is known (all codes at their maximum, and random ones, at 1, 7 and 64 rows) and
keeps the first that reproduces it bit for bit. The flags only narrow it: the full range is used only where
the CPU, as the kernels may use it (`bortzoo.serve.cpu.has_vnni`), has int32 dot products, or is not x86.
"""

from __future__ import annotations

import functools
import math
import platform
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from bortzoo.errors import BortzooError
from bortzoo.serve import cpu

__all__ = ["QuantizedLinear", "Int8Arithmetic", "int8_arithmetic", "exact_modes", "GELU_ALGORITHMS"]

BACKENDS = ("onednn", "int_mm")
ACTIVATION_BITS = (8, 7)
_PACKS_KEPT = 4  # packed weights kept per linear, one per recent input row count
GELU_ALGORITHMS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


@dataclass(frozen=True)
class Int8Arithmetic:
    """How int8 linears run on this CPU: the kernel and the activation range that keeps it exact."""

    backend: str  # "onednn" (qlinear_pointwise, epilogue fused) or "int_mm" (aten's int8 matmul)
    activation_bits: int  # 8: the full range; 7: half of it, where the kernel adds pairs into int16

    def describe(self) -> str:
        why = "exact with the full activation range" if self.activation_bits == 8 else (
            "7-bit activations, because this CPU's int8 kernel adds pairs of products into int16 (no VNNI)")
        return f"{self.backend}, {why}"


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _is_exact(backend: str, bits: int) -> bool:
    """Whether `backend` with `bits`-bit activations reproduces exactly known integer products."""
    g = torch.Generator().manual_seed(0)
    k, n = 256, 64
    weight = torch.randint(-127, 128, (n, k), generator=g).float()
    weight[:, 0] = 127  # each row's largest |w| is 127: a weight scale of exactly 1
    if backend == "onednn":  # asymmetric codes 0..top with zero point 0: an input of [0, top] is its own code
        top, low = 2 ** bits - 1, 0
    else:  # symmetric codes -top..top per row
        top = 2 ** (bits - 1) - 1
        low = -top
    try:
        layer = QuantizedLinear(weight, None, backend=backend, activation_bits=bits)
        for rows in (1, 7, 64):
            x = torch.randint(low, top + 1, (rows, k), generator=g).float()
            x[:, 0] = top  # the scale is exactly 1
            x[0] = top  # the worst case: every product at its largest
            if backend == "int_mm":
                x[-1, 1::2] = low
            want = (x.double() @ weight.double().T).float()  # below 2**24: exact in fp32
            with torch.inference_mode():
                if not torch.equal(layer(x), want):
                    return False
    except (RuntimeError, NotImplementedError, AttributeError):
        return False  # the kernel is missing from this torch build
    return True


@functools.lru_cache(maxsize=None)
def exact_modes(backend: str) -> tuple[int, ...]:
    """The activation widths with which `backend` is exact on this CPU (checked once per process)."""
    if backend not in BACKENDS:
        raise BortzooError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "onednn" and not (torch.backends.mkldnn.is_available()
                                    and hasattr(torch.ops.onednn, "qlinear_pointwise")):
        return ()
    trusted = cpu.has_vnni() or not _x86()  # where the flags say pairs add into int16, never trust 8 bits
    return tuple(bits for bits in ACTIVATION_BITS if (bits < 8 or trusted) and _is_exact(backend, bits))


@functools.lru_cache(maxsize=1)
def int8_arithmetic() -> Optional[Int8Arithmetic]:
    """The fast int8 arithmetic that is exact on this CPU: oneDNN with the widest exact activation range,
    or None where oneDNN has none. aten's `_int_mm` is never chosen here: where oneDNN is not exact it is
    either not exact either or far slower than fp32 (measured 1-2 GOP/s on an AVX2 EPYC)."""
    modes = exact_modes("onednn")
    return Int8Arithmetic("onednn", modes[0]) if modes else None


def _quantize_unsigned(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, float, int]:
    """Asymmetric per-tensor quantisation to codes 0..levels (scale, zero point from this tensor's range;
    0 always exact)."""
    low, high = torch.aminmax(x)
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / levels
    if scale == 0.0 or not math.isfinite(scale):
        if not math.isfinite(scale):
            raise BortzooError("cannot quantise an activation that holds inf or nan; the model's fp32 output is broken too")
        scale = 1.0
    zero_point = min(levels, max(0, round(-low / scale)))
    q = torch.mul(x, 1.0 / scale).add_(zero_point).round_().clamp_(0, levels).to(torch.uint8)
    return q, scale, zero_point


class QuantizedLinear(nn.Module):
    """`activation(x @ W.T + b) + residual` with W int8 (one scale per output channel) and x quantised at
    run time, each row (token) with its own scale and zero point (`per_row=False`: one for the whole tensor,
    which oneDNN fuses fully but which a few large tokens of a real encoder make coarse for all the others).

    The int8 weight and its scales are buffers (they save and load with the state dict); oneDNN's
    packed copy is built on first use, for this CPU, and never saved. `activation_bits=None` takes the
    widest range that is exact on the CPU the layer runs on (checked there, so a layer saved on one
    machine is right on another); 8 or 7 forces one.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str] = None,
                 backend: Optional[str] = None, out_dtype: torch.dtype = torch.float32,
                 activation_bits: Optional[int] = None, per_row: bool = True) -> None:
        super().__init__()
        if backend not in (None, *BACKENDS):
            raise BortzooError(f"backend must be 'onednn', 'int_mm' or None (the exact fast one on this CPU), got {backend!r}")
        if activation is not None and activation not in GELU_ALGORITHMS:
            raise BortzooError(f"activation must be one of {sorted(GELU_ALGORITHMS)} or None, got {activation!r}")
        if activation_bits not in (None, *ACTIVATION_BITS):
            raise BortzooError(f"activation_bits must be 8, 7 or None (what this CPU needs), got {activation_bits!r}")
        if backend is None:
            arithmetic = int8_arithmetic()
            if arithmetic is None:
                raise BortzooError(f"no fast int8 arithmetic is exact on this CPU ({cpu.cpu_summary()}); "
                                   "use fp32 (bortzoo.optimize does so by itself)")
            backend = arithmetic.backend
        w = weight.detach().to(torch.float32)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())
        self.activation = activation
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.backend = backend
        self.activation_bits = activation_bits
        self.out_dtype = out_dtype  # bf16 where the next op reads bf16: half the bytes written
        self._packs: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._w_zero: Optional[torch.Tensor] = None
        self._w_sum: Optional[torch.Tensor] = None
        self.per_row = per_row

    @classmethod
    def from_linear(cls, *linears: nn.Linear, activation: Optional[str] = None, backend: Optional[str] = None,
                    out_dtype: torch.dtype = torch.float32, activation_bits: Optional[int] = None,
                    per_row: bool = True) -> "QuantizedLinear":
        """One int8 linear from one nn.Linear, or from several sharing an input (their outputs concatenated)."""
        weight = torch.cat([lin.weight for lin in linears], dim=0)
        bias = None
        if any(lin.bias is not None for lin in linears):  # a linear without bias contributes zeros, not a drop
            bias = torch.cat([lin.weight.new_zeros(lin.out_features) if lin.bias is None else lin.bias
                              for lin in linears])
        return cls(weight, bias, activation, backend, out_dtype, activation_bits, per_row)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"activation={self.activation}, backend={self.backend}, activation_bits={self.bits}")

    @property
    def bits(self) -> int:
        """The activation width this layer runs with on this CPU."""
        if self.activation_bits is not None:
            return self.activation_bits
        modes = exact_modes(self.backend)
        if not modes:
            raise BortzooError(f"int8 backend {self.backend!r} is not exact on this CPU ({cpu.cpu_summary()}) with "
                               "any activation range; use fp32 (bortzoo.optimize does so by itself)")
        return modes[0]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_packs"] = OrderedDict()  # oneDNN's packed tensors cannot be copied or pickled; rebuilt on use
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("activation_bits", None)  # layers pickled before the width was a setting
        state.setdefault("per_row", False)
        state.setdefault("_w_sum", None)
        self.__dict__.update(state)

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
        levels = 2 ** self.bits - 1
        w_zero, bias = self._epilogue()
        if self.per_row:
            return self._onednn_per_row(x, residual, packed, levels, w_zero)
        qx, scale, zero_point = _quantize_unsigned(x, levels)
        unary = "gelu" if self.activation else "none"
        algorithm = GELU_ALGORITHMS[self.activation] if self.activation else ""
        y = torch.ops.onednn.qlinear_pointwise.default(
            qx, scale, zero_point, packed, self.weight_scale, w_zero, bias,
            1.0, 0, self.out_dtype, unary, [], algorithm)
        # oneDNN's fused residual add (qlinear_pointwise.binary) measured 15% slower than adding after
        return y if residual is None else y.add_(residual)

    def _onednn_per_row(self, x: torch.Tensor, residual: Optional[torch.Tensor], packed: torch.Tensor,
                        levels: int, w_zero: torch.Tensor) -> torch.Tensor:
        """Each row (token) quantised with its own scale and zero point. oneDNN takes one scale and zero
        point per tensor, so it computes the raw sums q @ W.T (zero point 0, scale 1) and the row's scale
        and zero point are applied after: y = s_r * (raw - z_r * sum_k W[n, k]) + b."""
        low, high = torch.aminmax(x, dim=1, keepdim=True)
        if not bool(torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise BortzooError("cannot quantise an activation that holds inf or nan; the model's fp32 output is broken too")
        low.clamp_(max=0.0)
        scale = high.clamp_(min=0.0).sub_(low).div_(levels).clamp_(min=1e-12)
        zero_point = low.div_(scale).neg_().round_()
        qx = torch.div(x, scale).add_(zero_point).round_().clamp_(0, levels).to(torch.uint8)
        raw = torch.ops.onednn.qlinear_pointwise.default(
            qx, 1.0, 0, packed, self.weight_scale, w_zero, None, 1.0, 0, torch.float32, "none", [], "")
        if self._w_sum is None:  # the dequantised weight's row sums, for the zero points' share
            self._w_sum = self.weight_int8.sum(dim=1, dtype=torch.int64).to(torch.float32).mul_(self.weight_scale)
        # two passes over the output: the zero points' share plus the bias, then the scaled sums added to it
        offset = zero_point.mul_(scale).neg_()
        base = self.bias if self.bias is not None else torch.zeros_like(self._w_sum)
        y = torch.addmm(base.expand(x.shape[0], -1), offset, self._w_sum[None, :]).addcmul_(raw, scale)
        if self.activation:
            y = nn.functional.gelu(y, approximate=GELU_ALGORITHMS[self.activation])
        if residual is not None:
            y.add_(residual)
        return y.to(self.out_dtype)

    def _epilogue(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Weight zero points (all 0: the weights are symmetric), made once, and the bias in the output dtype."""
        if self._w_zero is None:
            self._w_zero = torch.zeros(self.out_features, dtype=torch.int64)
        bias = self.bias if self.bias is None or self.out_dtype == torch.float32 else self.bias.to(self.out_dtype)
        return self._w_zero, bias

    def _int_mm(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        """Portable path: symmetric per-row int8 activations and aten's int8 matmul."""
        top = 2 ** (self.bits - 1) - 1
        scale = torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True).clamp(min=1e-12) / top
        qx = torch.round(x / scale).clamp_(-top, top).to(torch.int8)
        if qx.shape[0] <= 16:  # _int_mm wants more than 16 rows on some builds; pad, then drop
            qx = torch.cat([qx, qx.new_zeros(17 - qx.shape[0], qx.shape[1])])
        y = torch._int_mm(qx, self.weight_int8.t())[: x.shape[0]].to(torch.float32)
        y.mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            y.add_(self.bias)
        if self.activation:
            y = nn.functional.gelu(y, approximate=GELU_ALGORITHMS[self.activation])
        if residual is not None:
            y.add_(residual)
        return y.to(self.out_dtype)
