"""OpenVINO engine: the encoder converted by OpenVINO's PyTorch frontend to an IR, run by its CPU plugin.

Schemes, fastest first (measured on a Bort-shaped and a real MiniLM encoder, see the report in the PR):
- "int8": static int8 (nncf.quantize, TRANSFORMER model type) on the Q/K/V and FFN-input projections.
  The attention-output and FFN-output projections stay float: their inputs (attention context, GELU
  output) carry outlier channels that one static per-tensor range cannot hold (all-int8 measured cos 0.83
  against torch on real sentences, SmoothQuant or min-max ranges did not help; without those two, >= 0.99).
  The float remainder runs in bf16 where the CPU has it natively (no measurable loss next to int8's).
- "bf16": the fp32 IR run with bf16 matmuls; only on CPUs with native bf16.
- "int8-weights": int8 weights (nncf.compress_weights, INT8_ASYM), activations quantised in groups of 64
  at run time by the plugin where the CPU has VNNI; elsewhere the weights are only decompressed (slower
  than fp32 at batch 1). About as fast as bf16 and less accurate here: it is for VNNI CPUs without bf16.
- "fp32": the IR as converted, inference precision pinned to f32.

Traps found:
- The CPU plugin infers in bf16 by default on bf16 CPUs: every scheme sets INFERENCE_PRECISION_HINT.
- `save_model` writes fp16 weights by default: every save passes compress_to_fp16=False.
- Under ONEDNN_MAX_CPU_ISA=AVX2 (CI's emulation) the plugin half-honours the cap: a bf16 hint fails to
  compile and int8-weights' dynamic quantisation fails at inference, so both follow `bortzoo.serve.cpu`.
- OpenVINO's converter and nncf send usage telemetry unless the user opted out: it is cut while we build.
- Past max_position_embeddings the plugin fails (older releases returned empty output): checked first.
- An infer request reuses its output buffer, so the runner hands out a copy (`share_outputs=False`).
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bortzoo.errors import first_line
from bortzoo.serve import cpu
from bortzoo.serve.engines.base import (
    INPUT_NAMES,
    OUTPUT_NAME,
    RUNTIME_CACHE,
    Batch,
    EngineError,
    PositionalEncoder,
    example_batch,
    importable,
    quiet,
)

__all__ = ["ENGINE", "OpenVINOEngine", "missing", "name", "packages", "schemes"]

name = "openvino"
schemes = ("int8", "bf16", "int8-weights", "fp32")
packages = ("openvino", "nncf")

MODEL_FILE = "encoder.xml"  # with encoder.bin beside it
META_FILE = "bortzoo-openvino.json"
CACHE_FOLDER = RUNTIME_CACHE  # the plugin's compiled-model cache: a Bort int8 loads in ~0.07 s, not ~0.6-1.1 s
# the projections int8 leaves in float (OpenVINO names them after the traced module path)
FLOAT_LINEARS = r".*encoder\.layer\.\d+\.(attention\.)?output\.dense/.*"


def missing() -> str | None:
    if not importable("openvino", "nncf"):
        return "not installed: pip install 'bortzoo[serve]'"
    return None


@contextlib.contextmanager
def _offline_and_quiet():
    """While converting and quantising: no telemetry, no progress bars, no logging below errors, no warnings.

    Why telemetry: ovc and nncf build their telemetry with the opt-in dialog off, so without a consent file
    they send (Google Analytics). Every send goes through TelemetrySender.send, which is dropped here.
    Errors still raise: only printed chatter (nncf's rich progress bars), warnings and info logs go."""
    restore = []
    try:
        from openvino_telemetry.utils.sender import TelemetrySender
    except ImportError:
        TelemetrySender = None
    if TelemetrySender is not None:
        restore.append((TelemetrySender, "send", TelemetrySender.__dict__["send"]))
        TelemetrySender.send = lambda self, backend, message: None
    try:
        # nncf's info logs; transformers' loss_type warning, which tracing the module's attributes sets off
        with quiet("nncf", "transformers"):
            yield
    finally:
        for owner, attr, value in restore:
            setattr(owner, attr, value)


def _reason(err: BaseException) -> str:
    """The useful line of an OpenVINO error: its first line is often "Check 'false' failed at src/...";
    the frontend's summary ("No conversion rule found for operations: aten::mode") is what a user needs."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    summary = [line.lstrip("- ").strip() for line in lines if line.startswith("--")]
    if summary:
        return "; ".join(summary)
    useful = [line for line in lines
              if not re.match(r"(Check '.*' failed at|Exception from) src/", line)]
    return useful[-1] if useful else first_line(err)


def _convert(source: nn.Module):
    """The source as an OpenVINO model with dynamic batch and sequence, output named OUTPUT_NAME."""
    import openvino as ov

    # a padded row, so that no branch that skips the mask for unpadded batches is traced
    batch = example_batch(source.config, batch=2, seq=min(16, source.config.max_position_embeddings))
    example = tuple(batch[n] for n in INPUT_NAMES)
    inputs = [(n, ov.PartialShape([-1, -1]), ov.Type.i64) for n in INPUT_NAMES]
    try:
        with torch.inference_mode(False), torch.no_grad():
            model = ov.convert_model(PositionalEncoder(source).eval(), example_input=example, input=inputs)
    except Exception as err:  # the frontend raises OpConversionFailure, the tracer anything
        raise EngineError(name, f"OpenVINO cannot convert this model: {_reason(err)}") from err
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model


def _calibration_data(calibration: Sequence[Batch]):
    import nncf

    batches = list(calibration)
    if not batches:
        raise EngineError(name, "int8 needs at least one calibration batch to fix activation ranges")

    def to_numpy(batch):
        return {n: batch[n].to(torch.int64).contiguous().numpy() for n in INPUT_NAMES}

    return nncf.Dataset(batches, to_numpy), len(batches)


def _saturating_int8() -> bool:
    """Whether this CPU's u8 x s8 kernels add pairs of products into int16 and saturate (x86 without VNNI,
    as `bortzoo.serve.int8` explains). OpenVINO's CPU plugin runs them there (under ONEDNN_MAX_CPU_ISA=AVX2
    too): measured 4x the int8 error on a small model with large weights, until the weights keep 7 bits."""
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686") and not cpu.has_vnni()


def _int8(model, calibration: Sequence[Batch], seven_bit_weights: bool):
    import nncf

    data, size = _calibration_data(calibration)
    # MIXED: symmetric weights, asymmetric activations (GELU outputs are one-sided); SmoothQuant on
    # (TRANSFORMER's default); attention's softmax(QK)V stays float (quantising Q and K saved nothing).
    # 7-bit weights (nncf's overflow fix) only where the kernels saturate: elsewhere they only cost accuracy.
    ignored = nncf.IgnoredScope(patterns=[FLOAT_LINEARS], types=["ScaledDotProductAttention"])
    fix = nncf.OverflowFix.ENABLE if seven_bit_weights else nncf.OverflowFix.DISABLE
    try:
        return nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER,
                             preset=nncf.QuantizationPreset.MIXED, subset_size=size, ignored_scope=ignored,
                             advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=fix))
    except Exception as err:
        raise EngineError(name, f"nncf could not quantise the model: {_reason(err)}") from err


def _int8_weights(model):
    import nncf

    try:  # every MatMul, embeddings included; asymmetric: measured more accurate than INT8_SYM (0.034 vs 0.039)
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    except Exception as err:
        raise EngineError(name, f"nncf could not compress the weights: {_reason(err)}") from err


def _bf16_here() -> bool:
    return cpu.native_bf16()


def _compile_config(scheme: str, threads: int) -> dict[str, Any]:
    if scheme == "bf16" or (scheme == "int8" and _bf16_here()):
        precision = "bf16"
    else:
        precision = "f32"
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,  # one inference at a time, all `threads` on it: no inter-op parallelism
        "PERFORMANCE_HINT": "LATENCY",
        # pinning would tie each process's threads to the first cores: several single-thread servers
        # would then share one core; it measured no faster here
        "ENABLE_CPU_PINNING": False,
    }
    if scheme == "int8-weights":
        # the plugin's dynamic activation quantisation: groups of 64 measured 20% faster than its default 32
        # (Bort b8s128: 228 vs 279 ms; without it 524 ms) at cos >= 0.994 on MiniLM. It needs int32 dot
        # products: without VNNI (or under an AVX2 cap) oneDNN has no kernel for it and inference fails
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 64 if cpu.has_vnni() else 0
    else:
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0  # no silent int8 in the float schemes
    return config


class _Runner:
    """One compiled model and its infer request (not thread-safe: one runner per thread)."""

    def __init__(self, compiled, max_positions: int, threads: int) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.max_positions = max_positions
        self.threads = threads

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[-1]
        if seq > self.max_positions:
            raise EngineError(name, f"{seq} tokens is more than the model's {self.max_positions} positions")
        feed = [t.to(torch.int64).contiguous().numpy() for t in (input_ids, attention_mask, token_type_ids)]
        # share_outputs=False: a fresh array, since the request overwrites its output buffer on the next call
        out = self.request.infer(feed, share_inputs=True, share_outputs=False)[0]
        return torch.from_numpy(out)


class OpenVINOEngine:
    name = name
    schemes = schemes
    packages = packages
    calibrated = ("int8",)  # nncf fixes its activation ranges from the calibration batches

    def missing(self) -> str | None:
        return missing()

    def _check(self, scheme: str) -> None:
        why = missing()
        if why:
            raise EngineError(name, why)
        if scheme not in schemes:
            raise EngineError(name, f"unknown scheme {scheme!r}; OpenVINO offers {', '.join(schemes)}")
        if scheme == "bf16" and not _bf16_here():
            raise EngineError(name, "bf16 needs native bf16 matmuls (avx512_bf16 or AMX), which this CPU "
                                    f"lacks or ONEDNN_MAX_CPU_ISA={cpu.isa_limit()} hides")

    def build(self, source: nn.Module, scheme: str, folder: Path, calibration: Sequence[Batch]) -> None:
        self._check(scheme)
        folder = Path(folder)
        seven_bit_weights = scheme == "int8" and _saturating_int8()
        with _offline_and_quiet():
            import openvino as ov

            model = _convert(source)
            if scheme == "int8":
                model = _int8(model, calibration, seven_bit_weights)
            elif scheme == "int8-weights":
                model = _int8_weights(model)
            ov.save_model(model, folder / MODEL_FILE, compress_to_fp16=False)
        meta = {"scheme": scheme, "max_positions": int(source.config.max_position_embeddings),
                "hidden_size": int(source.config.hidden_size), "seven_bit_weights": seven_bit_weights}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))

    def load(self, folder: Path, scheme: str, threads: int) -> _Runner:
        self._check(scheme)
        import openvino as ov

        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError) as err:
            raise EngineError(name, f"no OpenVINO artefact in {folder}: {first_line(err)}") from err
        if meta.get("scheme") != scheme:
            raise EngineError(name, f"{folder} holds scheme {meta.get('scheme')!r}, not {scheme!r}")
        if scheme == "int8" and _saturating_int8() and not meta.get("seven_bit_weights"):
            raise EngineError(name, "this int8 artefact was built for a CPU with VNNI: its 8-bit weights "
                                    "saturate this CPU's int8 kernels; build it again here")
        config = _compile_config(scheme, threads)
        cache = folder / CACHE_FOLDER
        try:
            cache.mkdir(exist_ok=True)
            config["CACHE_DIR"] = str(cache)
        except OSError:
            pass  # a read-only folder: compile every time
        try:
            compiled = ov.Core().compile_model(str(folder / MODEL_FILE), "CPU", config)
        except Exception as err:
            raise EngineError(name, f"the CPU plugin cannot compile {scheme}: {_reason(err)}") from err
        return _Runner(compiled, int(meta["max_positions"]), threads)


ENGINE = OpenVINOEngine()
