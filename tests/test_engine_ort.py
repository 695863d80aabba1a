"""The ONNX Runtime engine on a tiny random BERT: every scheme against torch, with right and left padding and token
types at shapes other than the export's example, the length limit, an unexportable model, threads, artefact checks.

Weights are drawn at initializer_range 0.2 (not BERT's 0.02): with tiny weights the residual stream dominates
and even a wrong int8 graph would look exact.
"""

import json
import os
from pathlib import Path

import pytest
import torch

from bortzoo.serve.engines import ort as ort_engine
from bortzoo.serve.engines.base import INPUT_NAMES, OUTPUT_NAME, EngineError, example_batch
from bortzoo.serve.engines.ort import ENGINE, export_onnx
from engine_support import masked_relative_error, tiny_source

# relative error over real tokens; int8 measured at ~0.02 here (fp32 ~4e-7)
TOLERANCE = {"fp32": 1e-4, "int8": 0.08, "int8-block": 0.08}
QUANTIZED_OP = {"int8": "MatMulInteger", "int8-block": "MatMulNBits"}


@pytest.fixture(scope="module")
def source():
    return tiny_source()


@pytest.fixture(scope="module")
def built(source, tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for scheme in ENGINE.schemes:
        folder = tmp_path_factory.mktemp(f"ort-{scheme}")
        ENGINE.build(source, scheme, folder, [example_batch(source.config)])
        folders[scheme] = folder
    return folders


def test_engine_attributes():
    assert ENGINE.name == "ort" and ENGINE.packages == ("onnxruntime", "onnx")
    assert ENGINE.schemes[0] == "int8" and "fp32" in ENGINE.schemes
    assert ENGINE.missing() is None  # a dev dependency: absent must fail, not skip


@pytest.mark.parametrize("scheme", ["int8", "int8-block", "fp32"])
@pytest.mark.parametrize("pad_left", [False, True], ids=["right-padded", "left-padded"])
def test_scheme_matches_torch(source, built, scheme, pad_left):
    runner = ENGINE.load(built[scheme], scheme, threads=1)
    for batch_size, seq in ((3, 23), (1, 5)):  # the export's example was 2 x 16
        batch = example_batch(source.config, batch_size, seq, seed=1, pad_left=pad_left)
        assert batch["token_type_ids"].max() == 1
        with torch.no_grad():
            ref = source(**batch).last_hidden_state
        out = runner(**batch)
        assert out.dtype == torch.float32 and out.shape == ref.shape
        assert masked_relative_error(out, ref, batch["attention_mask"]) < TOLERANCE[scheme]


@pytest.mark.parametrize("scheme", ["int8", "int8-block"])
def test_int8_schemes_are_quantized(built, scheme):
    import onnx

    graph = onnx.load(str(built[scheme] / ort_engine.MODEL_FILE)).graph
    weights = {t.name for t in graph.initializer}
    assert QUANTIZED_OP[scheme] in {node.op_type for node in graph.node}
    # no fp32 weight product left (the activation x activation ones of attention stay fp32)
    assert not [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    meta = json.loads((built[scheme] / ort_engine.META_FILE).read_text())
    if scheme == "int8":  # decided from this CPU (and any emulation limit) at build time
        assert meta["reduce_range"] == ort_engine._reduce_range()


def test_export_signature(built):
    import onnx

    graph = onnx.load(str(built["fp32"] / ort_engine.MODEL_FILE)).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES)
    assert [o.name for o in graph.output] == [OUTPUT_NAME]
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims[:2]] == ["batch", "seq"]


def test_longest_and_too_long_sequences(source, built):
    runner = ENGINE.load(built["fp32"], "fp32", threads=1)
    longest = example_batch(source.config, 1, source.config.max_position_embeddings)
    with torch.no_grad():
        ref = source(**longest).last_hidden_state
    assert masked_relative_error(runner(**longest), ref, longest["attention_mask"]) < 1e-4
    too_long = example_batch(source.config, 1, source.config.max_position_embeddings + 1)
    with pytest.raises(EngineError, match="max_position_embeddings") as err:
        runner(**too_long)
    assert err.value.engine == "ort"


class _BesselAct(torch.nn.Module):
    """An activation with no ONNX form (aten::i0 has no symbolic at opset 17)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(x)


def test_unexportable_model_raises(tmp_path, capfd):
    model = tiny_source()
    model.encoder.layer[1].intermediate.intermediate_act_fn = _BesselAct()
    with pytest.raises(EngineError) as err:
        ENGINE.build(model, "int8", tmp_path, [])
    assert err.value.engine == "ort"
    assert "ONNX export failed" in err.value.reason and "aten::i0" in err.value.reason
    assert not model.training  # the exporter would have left it in training mode (dropout on)
    out, errs = capfd.readouterr()
    assert "Torch IR graph" not in out + errs  # the exporter's C++ graph dump is silenced


def test_export_onnx_names_the_asking_engine(tmp_path):
    model = tiny_source()
    model.encoder.layer[0].intermediate.intermediate_act_fn = _BesselAct()
    with pytest.raises(EngineError) as err:
        export_onnx(model, tmp_path / "x.onnx", engine="openvino")
    assert err.value.engine == "openvino"


def test_threads_honoured(built):
    warm = ENGINE.load(built["fp32"], "fp32", threads=1)  # onnxruntime's one-off thread, made by the first session
    before = len(os.listdir("/proc/self/task"))
    runner = ENGINE.load(built["fp32"], "fp32", threads=3)
    after = len(os.listdir("/proc/self/task"))
    options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert after - before == 2  # the caller's thread plus a pool of two
    del warm


def test_load_rejects_wrong_or_unsafe_artefacts(built, monkeypatch):
    with pytest.raises(EngineError, match="holds scheme 'fp32'"):
        ENGINE.load(built["fp32"], "int8", threads=1)
    with pytest.raises(EngineError, match="ort.json"):
        ENGINE.load(built["fp32"] / "nowhere", "fp32", threads=1)
    with pytest.raises(EngineError, match="unknown scheme"):
        ENGINE.build(tiny_source(), "int4", built["fp32"], [])
    meta = json.loads((built["int8"] / ort_engine.META_FILE).read_text())
    if meta["reduce_range"] is False:  # built with VNNI: refused where int8 pairs would saturate
        monkeypatch.setattr(ort_engine, "_reduce_range", lambda: True)
        with pytest.raises(EngineError, match="VNNI"):
            ENGINE.load(built["int8"], "int8", threads=1)


def test_reduce_range_follows_vnni(monkeypatch):
    monkeypatch.setattr(ort_engine, "_x86", lambda: True)
    monkeypatch.setattr(ort_engine.cpu, "has_vnni", lambda: False)
    assert ort_engine._reduce_range() is True
    monkeypatch.setattr(ort_engine.cpu, "has_vnni", lambda: True)
    assert ort_engine._reduce_range() is False
    monkeypatch.setattr(ort_engine, "_x86", lambda: False)  # arm64: no vpmaddubsw, no reduced range
    monkeypatch.setattr(ort_engine.cpu, "has_vnni", lambda: False)
    assert ort_engine._reduce_range() is False
