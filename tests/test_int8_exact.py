"""int8 is right on every CPU: the exactness probe, the CPU's limits as the kernels see them, the fp32 fallback
and optimize()'s self-check (issue 20). CI runs these once natively and once under AVX2 emulation."""

import pickle
import warnings

import pytest
import torch
from torch import nn
from transformers import BertModel

from bortzoo.errors import BortzooError
from bortzoo.serve import cpu
from bortzoo.serve import int8 as int8_mod
from bortzoo.serve import own as opt_mod
from bortzoo.serve.int8 import Int8Arithmetic, QuantizedLinear
from tests.conftest import TINY_ARCH

pytestmark = pytest.mark.cpu_sensitive


def _bert(seed=0):
    torch.manual_seed(seed)
    return BertModel(TINY_ARCH.to_bert_config(), add_pooling_layer=False).eval()


def _saturating_kernel(self, x, residual):
    """What AVX2's vpmaddubsw does: adjacent uint8*int8 products added in pairs into int16, which clips."""
    q, scale, zero_point = int8_mod._quantize_unsigned(x, 2 ** self.bits - 1)
    products = q.int()[:, None, :] * self.weight_int8.int()[None]
    sums = products.view(*products.shape[:2], -1, 2).sum(-1).clamp(-32768, 32767).sum(-1)
    y = (sums - zero_point * self.weight_int8.int().sum(1)).float() * scale * self.weight_scale
    return y if self.bias is None else y + self.bias


def test_the_probe_catches_a_kernel_that_adds_pairs_into_int16(monkeypatch):
    monkeypatch.setattr(QuantizedLinear, "_onednn", _saturating_kernel)
    assert not int8_mod._is_exact("onednn", 8)  # 2 * 255 * 127 clips at 32,767
    assert int8_mod._is_exact("onednn", 7)  # 2 * 127 * 128 fits


def test_this_cpus_choice_is_exact_on_known_integer_products():
    arithmetic = int8_mod.int8_arithmetic()
    assert arithmetic is not None and arithmetic.backend == "onednn"  # x86 with oneDNN: 7 bits are always exact
    assert int8_mod._is_exact(arithmetic.backend, arithmetic.activation_bits)
    if not cpu.has_vnni():  # AVX2, or AVX-512 without VNNI (native or emulated): never the full range
        assert arithmetic.activation_bits == 7
    print(f"int8 on {cpu.cpu_summary()}: {arithmetic.describe()}; exact modes {int8_mod.exact_modes('onednn')}")


def test_the_full_range_is_never_trusted_where_the_flags_say_pairs_add_into_int16(monkeypatch):
    monkeypatch.setattr(cpu, "has_vnni", lambda: False)
    monkeypatch.setattr(int8_mod, "_x86", lambda: True)
    assert int8_mod.exact_modes.__wrapped__("onednn") == (7,)
    monkeypatch.setattr(int8_mod, "_is_exact", lambda backend, bits: False)
    assert int8_mod.exact_modes.__wrapped__("onednn") == ()


@pytest.mark.parametrize("limit, vnni, bf16", [
    (None, True, True), ("AVX2", False, False), ("avx512_core", False, False),
    ("AVX512_CORE_VNNI", True, False), ("AVX512_CORE_AMX", True, True), ("SOMETHING_NEW", False, False),
])
def test_the_onednn_limit_narrows_what_the_flags_offer(monkeypatch, limit, vnni, bf16):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if limit is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    assert (cpu.has_vnni(), cpu.native_bf16()) == (vnni, bf16)
    assert ("limited to" in cpu.cpu_summary()) == (limit is not None)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "fma"}))  # a Zen 3: nothing to narrow
    assert (cpu.has_vnni(), cpu.native_bf16()) == (False, False)


def test_without_exact_int8_optimize_says_so_and_returns_fp32(monkeypatch):
    monkeypatch.setattr(opt_mod, "int8_arithmetic", lambda: None)
    model = _bert()
    with pytest.warns(UserWarning, match="no fast int8 arithmetic is exact on this CPU"):
        fast = optimize_ = opt_mod.optimize_torch(model, attention="sdpa")
    assert fast.bortzoo_optimize["precision"] == "fp32"
    assert fast.bortzoo_optimize["requested_precision"] == "int8"
    assert not any(isinstance(m, QuantizedLinear) for m in optimize_.modules())
    x = {"input_ids": torch.randint(5, TINY_ARCH.vocab_size, (2, 9))}
    with torch.inference_mode():
        torch.testing.assert_close(fast(**x).last_hidden_state, model(**x).last_hidden_state, atol=1e-4, rtol=1e-4)


def test_optimize_refuses_a_copy_that_is_off_and_names_the_error(monkeypatch):
    real_forward = QuantizedLinear.forward  # a kernel that writes zeros
    monkeypatch.setattr(QuantizedLinear, "forward", lambda self, x, residual=None: real_forward(self, x, residual) * 0)
    with pytest.raises(BortzooError, match=r"the int8 copy is off: its encoder output differs .* by \d+\.\d\d%"):
        opt_mod.optimize_torch(_bert())


def test_a_right_copy_records_its_self_check():
    fast = opt_mod.optimize_torch(_bert(), attention="sdpa")
    info = fast.bortzoo_optimize
    assert info["int8_backend"] == "onednn" and info["activation_bits"] in (7, 8)
    assert 0 < info["self_check_error"] <= opt_mod.SELF_CHECK_MAX_ERROR["int8"]
    assert info["cpu"] == cpu.cpu_summary()


def test_inplace_with_check_compares_with_the_model_as_it_was():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(TINY_ARCH.to_bert_config(num_labels=3)).eval()
    batches = [{"input_ids": torch.randint(5, TINY_ARCH.vocab_size, (4, 10))}]
    fast = opt_mod.optimize_torch(model, inplace=True, check=batches, min_agreement=0.0)
    assert fast is model
    assert fast.bortzoo_guard.max_abs_diff > 0  # int8 against the fp32 model, not the copy against itself


def test_per_row_scales_keep_a_token_outlier_from_costing_the_other_tokens():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    x = torch.randn(16, 64)
    x[3] *= 40  # one token far larger than the rest, as real encoders have ([SEP], punctuation)
    with torch.inference_mode():
        ref = lin(x)
        errors = {}
        for per_row in (True, False):
            y = QuantizedLinear.from_linear(lin, per_row=per_row)(x)
            errors[per_row] = float((y - ref)[[i for i in range(16) if i != 3]].norm() / ref.norm())
    assert errors[True] < 0.02 < errors[False], errors


def test_a_pickled_layer_takes_the_range_of_the_cpu_it_runs_on(monkeypatch):
    layer = QuantizedLinear.from_linear(nn.Linear(32, 16))
    clone = pickle.loads(pickle.dumps(layer))
    assert clone.activation_bits is None and clone.bits == int8_mod.exact_modes("onednn")[0]
    monkeypatch.setattr(int8_mod, "exact_modes", lambda backend: (7,))  # as on a CPU without VNNI
    assert clone.bits == 7
    monkeypatch.setattr(int8_mod, "exact_modes", lambda backend: ())
    with pytest.raises(BortzooError, match="not exact on this CPU"):
        clone(torch.randn(2, 32))
    assert isinstance(Int8Arithmetic("onednn", 7).describe(), str)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert QuantizedLinear.from_linear(nn.Linear(32, 16), activation_bits=8).bits == 8


@pytest.mark.parametrize("entries, model", [
    ({"model name": "AMD EPYC", "cpu family": "25", "model": "17", "flags": "avx2"}, "family 25 model 17"),
    ({"Features": "asimd", "CPU implementer": "0x41", "CPU part": "0xd0c"}, "implementer 0x41 part 0xd0c"),
    ({"model name": "unknown"}, None),
])
def test_the_cpu_summary_names_the_cores_generation(monkeypatch, entries, model):
    """Zen 4 and Zen 5 both read "AMD EPYC" in a VM, with twice the int8 rate apart: the summary (in every
    card and benchmark file) and the engine cache's machine key tell them apart by family and model."""
    from bortzoo.serve import engine_cache

    monkeypatch.setattr(cpu, "_cpuinfo", lambda: entries)
    assert cpu.cpu_model() == model
    assert (model in cpu.cpu_summary()) if model else ("model" not in cpu.cpu_summary())
    assert engine_cache.machine_key()["model"] == model
