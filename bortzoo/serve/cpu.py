"""What this CPU can do, as the kernels will see it: its name, its feature flags, and the limits the
emulation variables put on them.

CPUs differ between the machines a model is served on (AVX2 only, AVX-512 with or without VNNI and bf16,
AMX, aarch64), and the fast int8 and bf16 paths are right or fast only on some. The flags come from
/proc/cpuinfo (x86 `flags`, aarch64 `Features`). The variable that makes oneDNN behave as on an older CPU
(`ONEDNN_MAX_CPU_ISA`) is honoured here too, so that under emulation bortzoo
picks what it would pick on the older CPU instead of a path the kernels can no longer take.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from typing import Optional

__all__ = ["cpu_name", "cpu_model", "cpu_flags", "isa_limit", "has_vnni", "native_bf16", "cpu_summary"]

# ONEDNN_MAX_CPU_ISA values (oneDNN's dnnl_cpu_isa names) -> what the kernels may still use
_ISA_FEATURES = {
    "SSE41": set(), "AVX": set(), "AVX2": set(),
    "AVX2_VNNI": {"vnni"}, "AVX2_VNNI_2": {"vnni"},
    "AVX512_CORE": set(), "AVX512_CORE_VNNI": {"vnni"},
    "AVX512_CORE_BF16": {"vnni", "bf16"}, "AVX512_CORE_FP16": {"vnni", "bf16"},
    "AVX10_1_512": {"vnni", "bf16"}, "AVX512_CORE_AMX": {"vnni", "bf16"}, "AVX10_1_512_AMX": {"vnni", "bf16"},
    "AVX512_CORE_AMX_FP16": {"vnni", "bf16"}, "AVX10_1_512_AMX_FP16": {"vnni", "bf16"},
    "AVX10_2_512": {"vnni", "bf16"}, "AVX10_2_512_AMX_2": {"vnni", "bf16"},
}
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    entries: dict[str, str] = {}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    if entries:
                        break  # the end of the first processor's block
                    continue
                entries.setdefault(key.strip(), value.strip())
    return entries


def cpu_name() -> str:
    """The marketing name of the CPU ("AMD EPYC 9R14"), or what platform knows where /proc/cpuinfo has none."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine() or "unknown-cpu"


def cpu_model() -> Optional[str]:
    """The core's generation where the name does not say it: "family 25 model 17" (x86; both Zen 4 and Zen 5
    call themselves "AMD EPYC" in a VM, with different int8 throughput), "implementer 0x41 part 0xd0c"
    (aarch64), or None."""
    info = _cpuinfo()
    if info.get("cpu family") and info.get("model"):
        return f"family {info['cpu family']} model {info['model']}"
    if info.get("CPU implementer") and info.get("CPU part"):
        return f"implementer {info['CPU implementer']} part {info['CPU part']}"
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the hardware reports them (x86 `flags`, aarch64 `Features`)."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def isa_limit() -> Optional[str]:
    """The instruction-set limit set on oneDNN (ONEDNN_MAX_CPU_ISA), which runs both the int8 and the bf16
    matmuls, if any (ATEN_CPU_CAPABILITY limits only torch's own elementwise kernels)."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    return limit if limit and limit not in ("ALL", "DEFAULT") else None


def _allowed(feature: str) -> bool:
    """Whether the kernels may use `feature` ('vnni', 'bf16') under the current limit (an unknown one allows
    nothing: the safe reading of a name this table does not know)."""
    limit = isa_limit()
    return limit is None or feature in _ISA_FEATURES.get(limit, set())


def has_vnni() -> bool:
    """int8 dot products that add into int32 exactly (AVX-512 VNNI, AVX-VNNI or AMX), as the kernels may use them."""
    return bool(cpu_flags() & _VNNI_FLAGS) and _allowed("vnni")


def native_bf16() -> bool:
    """bf16 matmuls in hardware (avx512_bf16 or AMX), so bf16 is a speed-up, not an emulation."""
    return bool(cpu_flags() & _BF16_FLAGS) and _allowed("bf16")


def cpu_summary() -> str:
    """One line for logs, cards and benchmark files: name, the flags that choose kernels, and any limit."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
              "asimddp", "i8mm", "bf16", "sve")
    flags = [f for f in wanted if f in cpu_flags()]
    limit = isa_limit()
    model = f"{cpu_model()}; " if cpu_model() else ""
    return (f"{cpu_name()} ({model}{platform.machine()}; {' '.join(flags) or 'no SIMD flags read'}"
            f"{f'; kernels limited to {limit}' if limit else ''})")
