"""ONNX Runtime (`engine="ort"`): the encoder exported to ONNX by torch's TorchScript exporter and run by
onnxruntime's CPU execution provider (MLAS kernels), int8 or fp32.

Schemes, fastest first (measured on AMD EPYC with AVX-512 VNNI, onnxruntime 1.32, torch 2.13, transformers 5):

- "int8": `quantize_dynamic` on the MatMuls with constant weights: weights int8 per output channel, activations
  uint8 per tensor, their range measured at run time (DynamicQuantizeLinear + MatMulIntegerToFloat). The
  fastest, about 3x torch fp32; but one scale for every token of a batch is coarse where real checkpoints
  have outlier channels (all-MiniLM-L6-v2, 64 sentences: relative error 0.14-0.16, a sentence's mean-pooled
  cosine down to 0.96; with per-tensor weights 0.30 and 0.77, which is why they are per channel).
- "int8-block": every weight MatMul becomes a MatMulNBits with 8-bit weights in blocks of 128 input channels
  and accuracy_level 4, where MLAS quantises the activations at run time per row and per block of 128 (so
  each token has its own scale): about 2x torch fp32, 3x more accurate than "int8" on real weights
  (all-MiniLM-L6-v2: relative error 0.05, cosine >= 0.993), the fallback where "int8" fails the guard.
  The graph is written here, not by onnxruntime's MatMulNBitsQuantizer, which needs the `onnx_ir` package.
- "fp32": the exported graph as it is.

Traps found (each is why the code is as it is):

- `torch.onnx.export` restores the *wrapper's* training flag on exit, recursively: a freshly made wrapper is in
  training mode, so the source model came back with dropout on. The wrapper is put in eval mode first and the
  source's own flag restored after.
- transformers 5's models take keyword arguments, the TorchScript exporter positional tensors: hence the
  wrapper (dynamo=False: the exporter measured here; sdpa attention exports too, but engines get eager).
- the exporter, on a failure, prints the whole TorchScript graph to the process's stdout from C++ (its ONNX
  log is left switched on), so exports run with the file descriptors redirected.
- onnxruntime's transformer optimizer (fused Attention, SkipLayerNorm, BiasGelu) is not used: it made neither
  int8 nor fp32 faster here (int8 b1 s128: ~28 vs ~25 ms), and its BERT default mask format (MaskIndexEnd,
  a length per row) silently assumes right padding (left padding came out wrong unless
  `use_raw_attention_mask(True)`); quantize_dynamic on the fused graph also needs symbolic shape inference
  first and quantises the embedding tables.
- quantize_dynamic by default also quantises Gather (the embedding tables): only MatMul is quantised.
- on x86 CPUs without VNNI, MLAS's u8 x s8 kernels add pairs of products into int16 (vpmaddubsw) and saturate;
  `reduce_range` (7-bit weights) is onnxruntime's documented fix. So "int8" depends on the CPU it is built for
  (`bortzoo.serve.cpu.has_vnni()`): the choice is recorded in the artefact and `load` refuses a full-range
  artefact where the CPU lacks VNNI. onnxruntime picks its kernels from CPUID alone: ONEDNN_MAX_CPU_ISA, which
  has_vnni() honours, does not limit it.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bortzoo.serve import cpu
from bortzoo.serve.engines.base import (
    INPUT_NAMES,
    OUTPUT_NAME,
    Batch,
    EngineError,
    PositionalEncoder,
    error_line,
    example_batch,
    importable,
    quiet,
)

__all__ = ["BLOCK_SIZE", "ENGINE", "OPSET", "OrtEngine", "OrtRunner", "export_onnx", "session_options"]

OPSET = 17  # LayerNormalization is a single op from 17 on
BLOCK_SIZE = 128  # "int8-block": input channels per weight scale and per activation scale
MODEL_FILE = "encoder.onnx"
META_FILE = "ort.json"
_FORMAT = 1


def export_onnx(source: nn.Module, path: str | os.PathLike, *, engine: str = "ort") -> Path:
    """Export an `export_source` BertModel to the ONNX file `path` (fp32, opset 17) and return `path`.

    Inputs INPUT_NAMES (int64 [batch, seq]), output OUTPUT_NAME (fp32 [batch, seq, hidden]), batch and seq
    dynamic. TorchScript (legacy) exporter: see the module docstring for why. The example batch is padded, so
    the traced graph keeps the mask. Raises EngineError(engine, ...) when the model does not export (an operator
    without an ONNX form, ...); `engine` names the engine that asked (OpenVINO reuses this export).
    """
    path = Path(path)
    config = source.config
    seq = max(2, min(16, int(getattr(config, "max_position_embeddings", 16) or 16)))
    example = example_batch(config, batch=2, seq=seq)
    wrapper = PositionalEncoder(source).eval()  # see the module docstring: export restores the wrapper's flag
    was_training = source.training
    dynamic = {name: {0: "batch", 1: "seq"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    try:
        with quiet("onnxruntime", "torch.onnx", fds=True), torch.no_grad():
            torch.onnx.export(wrapper, tuple(example[name] for name in INPUT_NAMES), str(path),
                              input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
    except Exception as exc:  # any exporter failure means this engine cannot take the model
        raise EngineError(engine, f"the ONNX export failed: {error_line(exc)}") from exc
    finally:
        source.train(was_training)
    return path


def _quantize_dynamic(plain: Path, out: Path, reduce_range: bool) -> None:
    """"int8": weight MatMuls as dynamically quantised int8 (per-channel weights); nothing else quantised."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet("onnxruntime"):
        quantize_dynamic(str(plain), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul"],
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})


def _block_weight(weight: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """A MatMul weight [K, N] as MatMulNBits' 8-bit layout: codes uint8 [N, blocks, block] (symmetric, stored
    +128: the op's default zero point for 8 bits, so no zero points are written) and scales fp32 [N * blocks].
    K is zero-padded to whole blocks, as the op expects."""
    k, n = weight.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), dtype=np.float32)
    padded[:, :k] = weight.T
    grouped = padded.reshape(n, blocks, block)
    scale = np.abs(grouped).max(axis=-1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.clip(np.rint(grouped / scale[..., None]), -127, 127) + 128
    return codes.astype(np.uint8), scale.reshape(-1)


def _to_blockwise(plain: Path, out: Path, block: int) -> int:
    """"int8-block": every MatMul whose second input is a 2-D constant becomes a com.microsoft MatMulNBits
    (8 bits, `block`, accuracy_level 4: int8 compute with activations quantised per row and block). Returns
    how many were replaced."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(plain))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes, replaced = [], set()
    for node in graph.node:
        w = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if w is None or len(w.dims) != 2:
            nodes.append(node)
            continue
        array = numpy_helper.to_array(w).astype(np.float32)
        k, n = array.shape
        codes, scales = _block_weight(array, block)
        stem = f"{node.name or node.output[0]}_q8"
        graph.initializer.extend([numpy_helper.from_array(codes, f"{stem}_codes"),
                                  numpy_helper.from_array(scales, f"{stem}_scales")])
        nodes.append(helper.make_node("MatMulNBits", [node.input[0], f"{stem}_codes", f"{stem}_scales"],
                                      list(node.output), name=stem, domain="com.microsoft",
                                      K=k, N=n, bits=8, block_size=block, accuracy_level=4))
        replaced.add(w.name)
    still_used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name not in replaced or t.name in still_used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out))
    return len(replaced)


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _reduce_range() -> bool:
    """Whether "int8" needs 7-bit weights here: x86 without VNNI (vpmaddubsw saturates); never elsewhere."""
    return _x86() and not cpu.has_vnni()


def session_options(threads: int) -> Any:
    """onnxruntime options: `threads` intra-op threads, one inter-op thread, sequential execution, every graph
    optimisation, errors-only logging. Spinning is left at onnxruntime's default (on): it saves the wake-up of
    the pool's threads at each of the many parallel sections of a call."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


class OrtRunner:
    """A loaded artefact: feeds int64 numpy views of the inputs to the session and wraps its output (no copy)."""

    def __init__(self, session: Any, threads: int, max_positions: int, scheme: str) -> None:
        self.session = session
        self.threads = threads
        self.max_positions = max_positions
        self.scheme = scheme
        self._outputs = [OUTPUT_NAME]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[-1]
        if seq > self.max_positions:
            raise EngineError("ort", f"a sequence of {seq} tokens is longer than the model's "
                                     f"max_position_embeddings ({self.max_positions})")
        feed = {INPUT_NAMES[0]: np.ascontiguousarray(input_ids.detach().cpu().numpy(), dtype=np.int64),
                INPUT_NAMES[1]: np.ascontiguousarray(attention_mask.detach().cpu().numpy(), dtype=np.int64),
                INPUT_NAMES[2]: np.ascontiguousarray(token_type_ids.detach().cpu().numpy(), dtype=np.int64)}
        try:
            out = self.session.run(self._outputs, feed)[0]
        except Exception as exc:  # onnxruntime's own error types, reported under the engine's name
            raise EngineError("ort", f"onnxruntime failed to run the encoder: {error_line(exc)}") from exc
        return torch.from_numpy(out)


class OrtEngine:
    """The ONNX Runtime engine (see the module docstring for the schemes and why)."""

    name = "ort"
    schemes = ("int8", "int8-block", "fp32")
    packages = ("onnxruntime", "onnx")

    def missing(self) -> str | None:
        if not importable("onnxruntime", "onnx"):
            return "not installed: pip install 'bortzoo[serve]'"
        return None

    def build(self, source: nn.Module, scheme: str, folder: Path, calibration: Sequence[Batch] = ()) -> None:
        """Export `source` and write `scheme`'s ONNX file and its metadata into `folder`. `calibration` is not
        used: both int8 schemes measure activation ranges at run time."""
        if scheme not in self.schemes:
            raise EngineError(self.name, f"unknown scheme {scheme!r}; ort offers {', '.join(self.schemes)}")
        reason = self.missing()
        if reason:
            raise EngineError(self.name, reason)
        folder = Path(folder)
        target = folder / MODEL_FILE
        meta: dict[str, Any] = {"format": _FORMAT, "scheme": scheme, "opset": OPSET,
                                "max_position_embeddings": int(source.config.max_position_embeddings),
                                "hidden_size": int(source.config.hidden_size)}
        if scheme == "fp32":
            export_onnx(source, target)
        else:
            plain = folder / "exported.onnx"
            export_onnx(source, plain)
            try:
                if scheme == "int8":
                    meta["reduce_range"] = _reduce_range()
                    meta["per_channel"] = True
                    _quantize_dynamic(plain, target, meta["reduce_range"])
                else:
                    meta["block_size"] = BLOCK_SIZE
                    meta["matmuls"] = _to_blockwise(plain, target, BLOCK_SIZE)
            except EngineError:
                raise
            except Exception as exc:  # the quantizer's failure is this scheme's failure
                raise EngineError(self.name, f"{scheme} quantisation failed: {error_line(exc)}") from exc
            finally:
                plain.unlink(missing_ok=True)
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))

    def load(self, folder: Path, scheme: str, threads: int) -> OrtRunner:
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise EngineError(self.name, f"no readable {META_FILE} in {folder}: {error_line(exc)}") from exc
        if meta.get("format") != _FORMAT or meta.get("scheme") != scheme:
            raise EngineError(self.name, f"{folder} holds scheme {meta.get('scheme')!r} (format "
                                         f"{meta.get('format')}), not {scheme!r}")
        if meta.get("reduce_range") is False and _reduce_range():
            raise EngineError(self.name, "this int8 artefact was built for a CPU with VNNI; without VNNI its "
                                         "full-range int8 products saturate (rebuild it on this CPU)")
        reason = self.missing()
        if reason:
            raise EngineError(self.name, reason)
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(folder / MODEL_FILE), session_options(threads),
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # a missing kernel or a corrupt file: the artefact cannot run here
            raise EngineError(self.name, f"onnxruntime cannot load {scheme}: {error_line(exc)}") from exc
        return OrtRunner(session, int(threads), int(meta["max_position_embeddings"]), scheme)


ENGINE = OrtEngine()
