"""bortzoo.optimize's choice among engines: the guard decides, the fastest that holds wins, the choice and the built
artefacts come back from the on-disk cache, and a cache entry that is corrupt or stale is rebuilt, never used.

A stand-in peer engine (exact torch, or torch with its weights disturbed) makes every outcome certain; the real
peers are tested in tests/test_engine_*.py and together in tests/test_optimize_engines.py."""

import copy
import json
import logging
import time

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification, BertModel

from bortzoo.errors import BortzooError
from bortzoo.serve import engine_cache
from bortzoo.serve import optimize as opt_mod
from bortzoo.serve.engines.base import EngineError
from bortzoo.serve.optimize import OptimizeReport, optimize
from tests.conftest import TINY_ARCH


class StandIn:
    """A peer engine that runs the exported weights in torch; `noise` disturbs its int8 scheme's weights."""

    packages = ()

    def __init__(self, name="standin", schemes=("int8", "fp32"), noise=0.0, refuse=None, slow_s=0.0, per_row_s=0.0):
        self.name, self.schemes, self.noise, self.refuse, self.slow_s = name, schemes, noise, refuse, slow_s
        self.per_row_s = per_row_s
        self.builds, self.calls = 0, []

    def missing(self):
        return None

    def build(self, source, scheme, folder, calibration):
        if self.refuse:
            raise EngineError(self.name, self.refuse)
        assert calibration and set(calibration[0]) == {"input_ids", "attention_mask", "token_type_ids"}
        self.builds += 1
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, folder / "weights.safetensors")
        (folder / "config.json").write_text(source.config.to_json_string())

    def load(self, folder, scheme, threads):
        model = BertModel(BertConfig.from_json_file(folder / "config.json"), add_pooling_layer=False).eval()
        state = load_file(folder / "weights.safetensors")
        if scheme == "int8" and self.noise:
            g = torch.Generator().manual_seed(0)
            state = {k: v + self.noise * v.std() * torch.randn(v.shape, generator=g) if v.dim() == 2 else v
                     for k, v in state.items()}
        model.load_state_dict(state)

        def run(input_ids, attention_mask, token_type_ids):
            self.calls.append(tuple(input_ids.shape))
            if self.slow_s or self.per_row_s:
                time.sleep(self.slow_s + self.per_row_s * input_ids.shape[0])
            with torch.inference_mode():
                return model(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state
        return run


@pytest.fixture
def engines(monkeypatch):
    """Replace the peers by stand-ins: {name: StandIn}; tests set them up before calling optimize."""
    registry = {}
    monkeypatch.setattr(opt_mod, "ENGINE_NAMES", ("torch", "standin", "slow"))
    monkeypatch.setattr(opt_mod, "ENGINES", ("auto", "torch", "standin", "slow"))
    monkeypatch.setattr(opt_mod, "peer", lambda name: registry[name])
    registry["standin"] = StandIn()
    registry["slow"] = StandIn("slow", schemes=("fp32",), slow_s=0.01)
    return registry


def _classifier(seed=0):
    torch.manual_seed(seed)  # two token types, as BERT has (Bort has one)
    return BertForSequenceClassification(TINY_ARCH.to_bert_config(num_labels=3, type_vocab_size=2)).eval()


def _batch(seed=1, batch=4, seq=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, TINY_ARCH.vocab_size, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    mask[-1, 9:] = 0  # right padding (the same row when there is one)
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def test_auto_takes_the_fastest_candidate_that_holds_and_reports_every_one(engines, tmp_path):
    engines["standin"].noise = 0.5  # its int8 is far off: the self-check refuses it
    model = _classifier()
    fast = optimize(model, shapes=[(1, 16)], cache_dir=tmp_path)
    report = fast.bortzoo_report
    status = {c.name: c.status for c in report.candidates}
    assert status["standin-int8"] == "failed guard" and "off the original's" in report.candidate("standin-int8").reason
    assert status["standin-fp32"] in ("chosen", "held") and status["slow-fp32"] in ("chosen", "held")
    held = [c for c in report.candidates if c.status in ("chosen", "held")]
    fastest = min(held, key=lambda c: c.total_ms).name  # the fastest that holds, unless others beat it everywhere
    assert report.chosen in set(report.routes.values()) and status[report.chosen] == "chosen"
    assert report.chosen == fastest or fastest not in set(report.routes.values())
    assert report.chosen != "slow-fp32"  # 10 ms a call slower than the exact stand-in
    assert all(set(c.ms) == {"1x16"} for c in held)
    assert not report.from_cache and report.seconds > 0
    assert "standin-int8" in report.summary() and report.chosen in report.summary().splitlines()[0]


def test_a_peer_is_called_exactly_like_the_original(engines, tmp_path):
    model = _classifier()
    fast = optimize(model, "standin", scheme="fp32", cache_dir=tmp_path)
    batch = _batch()
    with torch.inference_mode():
        expected = model(**batch).logits
        got = fast(**batch).logits
        as_tuple = fast(**batch, return_dict=False)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(as_tuple, expected, atol=1e-5, rtol=1e-4)
    assert fast.bortzoo_report.chosen == "standin-fp32"
    assert isinstance(model.bert, BertModel)  # the original is untouched
    with pytest.raises(BortzooError, match="cannot take inputs_embeds"):
        fast(inputs_embeds=torch.zeros(1, 4, TINY_ARCH.hidden))


def test_the_second_call_loads_the_choice_and_the_artefact_from_the_cache(engines, tmp_path):
    model = _classifier()
    first = optimize(model, shapes=[(1, 16)], cache_dir=tmp_path).bortzoo_report
    builds = engines["standin"].builds
    start = time.perf_counter()
    second = optimize(model, shapes=[(1, 16)], cache_dir=tmp_path)
    assert time.perf_counter() - start < 1.0
    assert second.bortzoo_report.from_cache and second.bortzoo_report.chosen == first.chosen
    assert engines["standin"].builds == builds  # nothing rebuilt
    other = optimize(_classifier(seed=1), shapes=[(1, 16)], cache_dir=tmp_path)  # other weights: measured anew
    assert not other.bortzoo_report.from_cache


def _artefacts(root, engine="standin", scheme="fp32"):
    found = []
    for manifest in root.glob("engines/*/*/manifest.json"):
        data = json.loads(manifest.read_text())
        keys = data["keys"]
        if keys["kind"] == "artefact" and keys["engine"] == engine and keys["scheme"] == scheme:
            found.append(manifest.parent)
    return found


def test_a_corrupt_artefact_is_rebuilt_not_used(engines, tmp_path, caplog):
    model = _classifier()
    optimize(model, "standin", scheme="fp32", cache_dir=tmp_path)
    (folder,) = _artefacts(tmp_path)
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\x00" * 8  # the last weights zeroed: still loadable, silently wrong
    weights.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="bortzoo"):
        fast = optimize(model, "standin", scheme="fp32", cache_dir=tmp_path)
    assert "files changed since it was written (weights.safetensors)" in caplog.text and "rebuilding" in caplog.text
    assert engines["standin"].builds == 2
    batch = _batch()
    with torch.inference_mode():
        torch.testing.assert_close(fast(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-4)


def test_a_corrupt_or_stale_choice_is_measured_again(engines, tmp_path, caplog, monkeypatch):
    model = _classifier()
    optimize(model, shapes=[(1, 8)], cache_dir=tmp_path)
    choices = [m for m in tmp_path.glob("engines/*/*/manifest.json") if json.loads(m.read_text())["keys"]["kind"] == "choice"]
    assert len(choices) == 1
    choices[0].write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="bortzoo"):
        again = optimize(model, shapes=[(1, 8)], cache_dir=tmp_path)
    assert "manifest.json is unreadable" in caplog.text and not again.bortzoo_report.from_cache
    # a new library version is another key: a fresh entry, never the old one
    versions = engine_cache.library_versions()
    monkeypatch.setattr(engine_cache, "library_versions", lambda: {**versions, "onnxruntime": "0.0.1"})
    builds = engines["standin"].builds
    later = optimize(model, shapes=[(1, 8)], cache_dir=tmp_path)
    assert not later.bortzoo_report.from_cache and engines["standin"].builds > builds


def test_an_entry_written_for_other_keys_is_refused(tmp_path):
    keys = {"kind": "artefact", "versions": {"onnxruntime": "1"}}
    engine_cache.write_entry(tmp_path / "entry", keys, {"x": 1}, build=lambda d: (d / "a.bin").write_bytes(b"1"))
    assert engine_cache.read_verified(tmp_path / "entry", keys) == {"x": 1}
    with pytest.raises(engine_cache.StaleEntry, match="built for other versions"):
        engine_cache.read_verified(tmp_path / "entry", {**keys, "versions": {"onnxruntime": "2"}})
    (tmp_path / "entry" / "a.bin").unlink()
    with pytest.raises(engine_cache.StaleEntry, match=r"files changed since it was written \(a.bin\)"):
        engine_cache.read_verified(tmp_path / "entry", keys)


def test_what_an_engine_compiles_when_it_loads_is_not_a_change_to_its_artefact(tmp_path):
    from bortzoo.serve.engines.base import RUNTIME_CACHE

    keys = {"kind": "artefact"}
    engine_cache.write_entry(tmp_path / "entry", keys, {}, build=lambda d: (d / "model.xml").write_text("<net/>"))
    (tmp_path / "entry" / RUNTIME_CACHE).mkdir()
    (tmp_path / "entry" / RUNTIME_CACHE / "kernels.blob").write_bytes(b"compiled at load time")
    assert engine_cache.read_verified(tmp_path / "entry", keys) == {}


def test_a_failed_build_leaves_no_entry_behind(tmp_path):
    def broken(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        engine_cache.write_entry(tmp_path / "entry", {"k": 1}, {}, build=broken)
    assert list(tmp_path.iterdir()) == []


def test_an_engine_that_cannot_export_is_named_with_the_fastest_that_works(engines, tmp_path):
    engines["standin"].refuse = "its exporter has no rule for aten::fft_fft (layer 0's activation)"
    model = _classifier()
    fast = optimize(model, shapes=[(1, 8)], cache_dir=tmp_path)  # auto: skipped, with the reason
    report = fast.bortzoo_report
    assert report.candidate("standin-int8").status == "cannot build"
    assert "aten::fft_fft" in report.candidate("standin-int8").reason
    with pytest.raises(BortzooError) as err:  # asked for by name: refused, and told what works
        optimize(model, "standin", cache_dir=tmp_path)
    message = str(err.value)
    assert "engine 'standin' cannot serve this model" in message and "aten::fft_fft" in message
    assert f"the fastest engine that does: {report.chosen}" in message or "the fastest engine that does: " in message


def test_a_model_without_a_bert_model_gets_the_own_path(engines, tmp_path):
    class EncoderOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = BertModel(TINY_ARCH.to_bert_config(), add_pooling_layer=False).encoder

        def forward(self, hidden_states):
            return self.encoder(hidden_states)

    fast = optimize(EncoderOnly(), shapes=[(1, 8)], cache_dir=tmp_path, precision="int8")
    report = fast.bortzoo_report
    assert report.engine == "torch"
    assert report.candidate("standin-int8").status == "not applicable"
    assert "export a transformers BertModel; this model has none" in report.candidate("standin-int8").reason


@pytest.mark.parametrize("bad, message", [
    ({"engine": "tensorrt"}, "engine must be one of"),
    ({"shapes": [(1, 0)]}, r"shapes\[0\] must be a \(batch, seq\) pair of positive integers, got \(1, 0\)"),
    ({"shapes": []}, "shapes is empty"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"engine": "standin", "scheme": "int4"}, "engine 'standin' has no scheme 'int4'; its schemes: int8, fp32"),
    ({"inplace": True}, "inplace=True is for engine='torch'"),
])
def test_bad_arguments_are_named(engines, tmp_path, bad, message):
    with pytest.raises(BortzooError, match=message):
        optimize(_classifier(), cache_dir=tmp_path, **bad)


def test_the_report_survives_its_json_round_trip(engines, tmp_path):
    report = optimize(_classifier(), shapes=[(2, 8)], cache_dir=tmp_path).bortzoo_report
    assert OptimizeReport.from_dict(json.loads(json.dumps(report.as_dict()))) == report


def test_each_shape_is_served_by_the_candidate_fastest_there(engines, tmp_path, monkeypatch):
    """'flat' costs 30 ms a call, 'rows' 5 ms per row: rows wins batch 1, flat wins batch 16 and the total (60
    against 85 ms), by far more than the routing margin. Each call goes to the one timed fastest at the nearest
    shape."""
    engines["flat"] = StandIn("flat", schemes=("fp32",), slow_s=0.03)
    engines["rows"] = StandIn("rows", schemes=("fp32",), per_row_s=0.005)
    monkeypatch.setattr(opt_mod, "ENGINE_NAMES", ("flat", "rows"))
    model = _classifier()
    fast = optimize(model, shapes=[(1, 16), (16, 16)], threads=1, cache_dir=tmp_path)
    report = fast.bortzoo_report
    assert report.routes == {"1x16": "rows-fp32", "16x16": "flat-fp32"}
    assert report.chosen == "flat-fp32"  # the less total time; rows serves what it is faster at
    assert {c.name: c.status for c in report.candidates} == {"flat-fp32": "chosen", "rows-fp32": "chosen"}
    engines["flat"].calls.clear(), engines["rows"].calls.clear()
    with torch.inference_mode():
        for batch in (_batch(batch=1, seq=12), _batch(batch=12, seq=16)):
            torch.testing.assert_close(fast(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-4)
    assert engines["rows"].calls == [(1, 12)] and engines["flat"].calls == [(12, 16)]
    again = optimize(model, shapes=[(1, 16), (16, 16)], threads=1, cache_dir=tmp_path)  # routes come back from the cache
    assert again.bortzoo_report.from_cache and again.bortzoo_report.routes == report.routes
    with pytest.raises(BortzooError, match="already served by bortzoo.optimize"):
        optimize(fast, cache_dir=tmp_path)


def test_a_route_to_the_bf16_own_path_hands_fp32_to_the_original_head():
    """The own path's bf16 casts its whole copy to bf16; routed beside another candidate, its encoder feeds the
    original's fp32 classifier, which must get fp32 (found by a publish run whose auto routed a shape to it)."""
    from bortzoo.serve.engines.wrapper import RoutedEncoder, find_bert, swap_bert
    from bortzoo.serve.own import native_bf16, optimize_torch

    model = _classifier()
    bf16 = find_bert(optimize_torch(model, precision="bf16" if native_bf16() else "fp32"))[2]
    fp32 = find_bert(optimize_torch(model, precision="fp32"))[2]
    routed = swap_bert(copy.deepcopy(model), RoutedEncoder({"torch-bf16": bf16, "torch-fp32": fp32},
                                                           {"1x12": "torch-bf16", "16x12": "torch-fp32"}))
    batch = _batch(batch=1, seq=12)
    with torch.inference_mode():
        logits = routed(**batch).logits
        first = routed(**batch, return_dict=False)[0]
    assert logits.dtype == first.dtype == torch.float32
    torch.testing.assert_close(logits, model(**batch).logits, atol=0.05, rtol=0.05)
