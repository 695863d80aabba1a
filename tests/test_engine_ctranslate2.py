"""The CTranslate2 engine (bortzoo.serve.engines.ctranslate2): every scheme agrees with torch on real tokens
whatever the padding (right, left, holes), refuses what it cannot run by name, and leaves the source intact."""

import gc
import os

import pytest
import torch

from bortzoo.serve.engines import ctranslate2 as ct2_mod
from bortzoo.serve.engines.base import EngineError, example_batch
from engine_support import tiny_source


ENGINE = ct2_mod.ENGINE
BOUND = {"fp32": 1e-4, "int8": 0.05}  # relative error over real tokens; int8 measures ~0.005 on this model


@pytest.fixture(scope="module")
def source():
    return tiny_source(initializer_range=0.02)


@pytest.fixture(scope="module")
def runners(source, tmp_path_factory):
    out = {}
    for scheme in ENGINE.schemes:
        folder = tmp_path_factory.mktemp(f"ct2_{scheme}")
        ENGINE.build(source, scheme, folder, [])
        out[scheme] = ENGINE.load(folder, scheme, threads=1)
    return out


def _batches(config):
    """Right padding, left padding, holes in the middle and an empty row, with token types 0 and 1."""
    right = example_batch(config, batch=3, seq=20, seed=1)
    left = example_batch(config, batch=4, seq=11, seed=2, pad_left=True)
    left["attention_mask"][2, :5] = 0
    holes = example_batch(config, batch=3, seq=9, seed=3)
    holes["attention_mask"][1, 2:4] = 0
    holes["attention_mask"][2] = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 0])
    empty = example_batch(config, batch=2, seq=6, seed=4)
    empty["attention_mask"][1] = 0
    full = example_batch(config, batch=1, seq=config.max_position_embeddings, seed=5)
    full["attention_mask"][:] = 1
    return {"right": right, "left": left, "holes": holes, "empty_row": empty, "full_length": full}


def _rel_err(out, ref, mask):
    real = mask.bool()
    return float((out[real] - ref[real]).norm() / ref[real].norm())


def test_module_contract():
    assert ENGINE.name == "ctranslate2" and ENGINE.packages == ("ctranslate2",)
    assert ENGINE.schemes == ("int8", "fp32")
    assert ENGINE.missing() is None  # a dev dependency: absent must fail here, not skip


@pytest.mark.parametrize("scheme", ENGINE.schemes)
@pytest.mark.parametrize("layout", ["right", "left", "holes", "empty_row", "full_length"])
def test_every_real_token_matches_torch(source, runners, scheme, layout):
    batch = _batches(source.config)[layout]
    with torch.no_grad():
        ref = source(**batch).last_hidden_state
    out = runners[scheme](batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert torch.isfinite(out).all()  # padded positions are unspecified, but finite
    assert _rel_err(out, ref, batch["attention_mask"]) < BOUND[scheme]


def test_token_types_reach_the_model(source, runners):
    batch = example_batch(source.config, batch=2, seq=12, seed=6)
    ones = torch.ones_like(batch["token_type_ids"])
    a = runners["fp32"](batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    b = runners["fp32"](batch["input_ids"], batch["attention_mask"], ones)
    with torch.no_grad():
        ref = source(batch["input_ids"], batch["attention_mask"], ones).last_hidden_state
    assert (a - b).abs().max() > 1e-3
    assert _rel_err(b, ref, batch["attention_mask"]) < BOUND["fp32"]


def test_empty_batch(runners):
    ids = torch.zeros(0, 5, dtype=torch.long)
    assert runners["int8"](ids, ids, ids).shape == (0, 5, 32)


def test_refuses_inputs_it_cannot_run(runners):
    # ctranslate2 itself reads outside its tables (or segfaults) on ids out of range
    run = runners["fp32"]
    long = torch.ones(1, 65, dtype=torch.long)
    with pytest.raises(EngineError, match="ctranslate2.*65 tokens is more than the model's 64 positions"):
        run(long, torch.ones_like(long), torch.zeros_like(long))
    ids = torch.full((1, 4), 300)
    with pytest.raises(EngineError, match="ctranslate2.*token ids must lie in"):
        run(ids, torch.ones_like(ids), torch.zeros_like(ids))
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(EngineError, match="ctranslate2.*token type ids must lie in"):
        run(ids, torch.ones_like(ids), torch.full_like(ids, 2))


@pytest.mark.parametrize("overrides, reason", [
    ({"hidden_act": "mish"}, "hidden_act 'mish'"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
    ({"is_decoder": True}, "is_decoder"),
])
def test_unsupported_models_are_refused_by_name(tmp_path, overrides, reason):
    model = tiny_source(**overrides)
    with pytest.raises(EngineError) as info:
        ENGINE.build(model, "fp32", tmp_path, [])
    assert info.value.engine == "ctranslate2" and "'ctranslate2'" in str(info.value)
    assert reason in info.value.reason
    assert not list(tmp_path.iterdir())


def test_build_leaves_the_source_intact_and_only_ctranslate2_files(tmp_path):
    # int8 quantisation scales the spec's tensors in place: the engine converts a copy
    model = tiny_source(seed=1, initializer_range=0.02)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ENGINE.build(model, "int8", tmp_path, [])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.bin", "vocabulary.json"]


def test_unknown_scheme_and_unloadable_folder(tmp_path, source):
    with pytest.raises(EngineError, match="unknown scheme 'int4'"):
        ENGINE.build(source, "int4", tmp_path, [])
    with pytest.raises(EngineError, match="ctranslate2.*cannot load"):
        ENGINE.load(tmp_path, "fp32", threads=1)


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_threads_are_honoured(runners, tmp_path):
    """Each encoder adds one worker (inter_threads=1) and threads-1 OpenMP threads on its first batch."""
    ENGINE.build(tiny_source(seed=2, initializer_range=0.02), "fp32", tmp_path, [])
    added = {}
    for threads in (1, 2):
        gc.collect()
        start = _threads()
        runner = ENGINE.load(tmp_path, "fp32", threads=threads)
        runner.encoder.forward_batch([[5, 6, 7] * 8] * 4)
        added[threads] = _threads() - start
        assert runner.threads == threads and runner.encoder.num_encoders == 1
        del runner
    assert added[2] - added[1] == 1


def test_avx2_emulation_caps_ctranslate2_isa(monkeypatch):
    monkeypatch.delenv("CT2_FORCE_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    ct2_mod._limit_isa()
    assert "CT2_FORCE_CPU_ISA" not in os.environ
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    ct2_mod._limit_isa()
    assert os.environ["CT2_FORCE_CPU_ISA"] == "AVX2"
    monkeypatch.setenv("CT2_FORCE_CPU_ISA", "GENERIC")  # an explicit choice wins
    ct2_mod._limit_isa()
    assert os.environ["CT2_FORCE_CPU_ISA"] == "GENERIC"
