"""bortzoo.serve.own (bortzoo.optimize(engine="torch")): int8 linears and bf16 attention agree with fp32, keep the original intact, and refuse what they cannot do."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from transformers import BertForSequenceClassification, BertModel
from transformers.models.bert.modeling_bert import BertSelfAttention

from bortzoo.errors import BortzooError
from bortzoo.serve import cpu as cpu_mod
from bortzoo.serve import int8 as int8_mod
from bortzoo.serve import own as opt_mod
from bortzoo.serve.guard import GuardReport, guard
from bortzoo.serve.own import QuantizedLinear, int8_backend
from bortzoo.serve.own import optimize_torch as optimize
from tests.conftest import TINY_ARCH

pytestmark = pytest.mark.cpu_sensitive  # int8 and bf16 kernels: CI runs this file again under AVX2 emulation

BACKENDS = ["onednn", "int_mm"]


def _linear(inp=48, out=40, seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(inp, out, bias=bias)


def _rel_err(a, b):
    return float((a - b).detach().norm() / b.detach().norm())


def _inputs(arch=TINY_ARCH, batch=3, seq=12, pad_from=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, arch.vocab_size, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    if pad_from is not None:
        mask[0, pad_from:] = 0  # one padded row, so the mask path is exercised
    return {"input_ids": ids, "attention_mask": mask}


def _bert(attn="sdpa", seed=0, cls=BertModel, **config):
    torch.manual_seed(seed)
    cfg = TINY_ARCH.to_bert_config(attn_implementation=attn, **config)
    model = cls(cfg) if cls is not BertModel else cls(cfg, add_pooling_layer=False)
    return model.eval()


def test_this_machine_has_the_onednn_int8_path():
    # CI runs on x86 with torch's oneDNN, which is exact everywhere there with 7-bit activations at least
    assert int8_backend() == "onednn"
    assert int8_mod.int8_arithmetic().activation_bits in int8_mod.exact_modes("onednn")


def _exact_here(backend):
    """Whether `backend` has an exact mode on this CPU; where it has none, building one must say so."""
    if int8_mod.exact_modes(backend):
        return True
    with pytest.raises(BortzooError, match="not exact on this CPU"):
        QuantizedLinear.from_linear(_linear(), backend=backend)(torch.randn(2, 48))
    return False


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_new"])
@pytest.mark.parametrize("residual", [False, True])
def test_quantized_linear_matches_fp32(backend, activation, residual):
    lin = _linear()
    x = torch.randn(5, 7, 48)
    res = torch.randn(5, 7, 40) if residual else None
    ref = lin(x)
    if activation:
        ref = nn.functional.gelu(ref, approximate="none" if activation == "gelu" else "tanh")
    if residual:
        ref = ref + res
    if not _exact_here(backend):
        return
    q = QuantizedLinear.from_linear(lin, activation=activation, backend=backend)
    with torch.inference_mode():
        out = q(x, residual=res)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert _rel_err(out, ref) < 0.02  # int8 weights and activations: about 1% error, not garbage


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantized_linear_without_bias_and_a_single_row(backend):
    lin = _linear(bias=False)
    if not _exact_here(backend):
        return
    q = QuantizedLinear.from_linear(lin, backend=backend)
    x = torch.randn(1, 48)
    with torch.inference_mode():
        assert _rel_err(q(x), lin(x)) < 0.02


def test_concatenated_linears_equal_each_linear():
    a, b, c = _linear(seed=1), _linear(seed=2), _linear(seed=3)
    q = QuantizedLinear.from_linear(a, b, c)
    x = torch.randn(6, 48)
    with torch.inference_mode():
        out = q(x)
    assert out.shape == (6, 120)
    for i, lin in enumerate((a, b, c)):
        assert _rel_err(out[:, 40 * i: 40 * (i + 1)], lin(x)) < 0.02


def test_quantized_linear_packs_per_row_count_and_keeps_a_few():
    q = QuantizedLinear.from_linear(_linear(), backend="onednn")
    with torch.inference_mode():
        for rows in range(1, 8):
            q(torch.randn(rows, 48))
    assert list(q._packs) == [4, 5, 6, 7]  # the last _PACKS_KEPT row counts
    with torch.inference_mode():
        q(torch.randn(5, 48))
    assert list(q._packs)[-1] == 5


def test_quantized_linear_saves_copies_and_pickles_without_the_packed_weight():
    lin = _linear()
    q = QuantizedLinear.from_linear(lin)
    x = torch.randn(4, 48)
    with torch.inference_mode():
        want = q(x)
    state = q.state_dict()
    assert set(state) == {"weight_int8", "weight_scale", "bias"}
    assert state["weight_int8"].dtype == torch.int8
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = QuantizedLinear.from_linear(_linear(seed=9))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for clone in (fresh, copy.deepcopy(q), pickle.loads(pickle.dumps(q))):
        with torch.inference_mode():
            assert torch.equal(clone(x), want)


def test_quantized_linear_rejects_unknown_activation_and_backend():
    with pytest.raises(BortzooError, match="activation"):
        QuantizedLinear.from_linear(_linear(), activation="relu")
    with pytest.raises(BortzooError, match="backend"):
        QuantizedLinear.from_linear(_linear(), backend="cuda")


def test_quantisation_of_a_broken_activation_is_named():
    q = QuantizedLinear.from_linear(_linear(), backend="onednn")
    with pytest.raises(BortzooError, match="inf or nan"):
        q(torch.full((2, 48), float("inf")))


# -- whole models --------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["int8", "bf16", "fp32"])
@pytest.mark.parametrize("attention", ["bf16", "sdpa"])
@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])  # bool mask vs additive float mask
def test_optimized_encoder_agrees_with_fp32_and_respects_padding(precision, attention, attn_impl):
    model = _bert(attn_impl)
    x = _inputs()
    fast = optimize(model, precision=precision, attention=attention)
    with torch.inference_mode():
        ref = model(**x).last_hidden_state
        out = fast(**x).last_hidden_state.float()
        # the padded row's real tokens must not see the padding: change what is padded, same output
        y = {k: v.clone() for k, v in x.items()}
        y["input_ids"][0, 7:] = 6
        out_repadded = fast(**y).last_hidden_state.float()
    tol = 1e-4 if (precision, attention) == ("fp32", "sdpa") else 0.06
    assert _rel_err(out, ref) < tol
    if precision == "int8":  # the activation range is per tensor, so padding moves it a little
        assert _rel_err(out_repadded[0, :7], ref[0, :7]) < tol
    else:
        assert torch.allclose(out_repadded[0, :7], out[0, :7], atol=1e-5)
    assert fast.bortzoo_optimize["precision"] == precision


def test_optimize_leaves_the_original_alone_unless_inplace():
    model = _bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize(model)
    assert fast is not model
    assert isinstance(model.encoder.layer[0].attention.self, BertSelfAttention)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(fast.encoder.layer[0].attention.self.qkv, QuantizedLinear)
    same = optimize(model, inplace=True)
    assert same is model and isinstance(model.encoder.layer[0].attention.self.qkv, QuantizedLinear)


def test_optimized_model_has_no_fp32_encoder_linears_left_but_keeps_the_head_fp32():
    model = _bert(cls=BertForSequenceClassification, num_labels=3)
    fast = optimize(model)
    encoder_linears = [n for n, m in fast.bert.encoder.named_modules() if isinstance(m, nn.Linear)]
    assert encoder_linears == []
    assert isinstance(fast.classifier, nn.Linear) and isinstance(fast.bert.pooler.dense, nn.Linear)
    assert sum(isinstance(m, QuantizedLinear) for m in fast.modules()) == 4 * TINY_ARCH.depth


def test_optimize_applies_threads():
    before = torch.get_num_threads()
    try:
        optimize(_bert(), threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_auto_attention_follows_the_cpu(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # the flags below are the whole story
    monkeypatch.setattr(cpu_mod, "cpu_flags", lambda: frozenset({"avx2"}))
    assert optimize(_bert()).bortzoo_optimize["attention"] == "sdpa"
    monkeypatch.setattr(cpu_mod, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert optimize(_bert()).bortzoo_optimize["attention"] == "bf16"


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int4"}, "precision"),
    ({"attention": "flash"}, "attention"),
    ({"threads": 0}, "threads"),
    ({"threads": 10_000}, "more than"),
])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(BortzooError, match=match):
        optimize(_bert(), **kwargs)


def test_non_bert_models_and_unknown_activations_are_refused():
    with pytest.raises(BortzooError, match="no BERT encoder layers"):
        optimize(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(BortzooError, match="nn.Module"):
        optimize("bort")
    with pytest.raises(BortzooError, match="hidden_act is 'relu'"):
        optimize(_bert(hidden_act="relu"))


def test_decoder_use_is_refused():
    fast = optimize(_bert())
    attn = fast.encoder.layer[0].attention.self
    with pytest.raises(BortzooError, match="encoders"):
        attn(torch.randn(1, 3, TINY_ARCH.hidden), past_key_values=object())


def test_task_model_is_optimized_and_agrees(tiny_tokenizer_dir, bort_layout_dir):
    from bortzoo.modules.task_model import TaskModel

    torch.manual_seed(0)
    model = TaskModel(model=str(bort_layout_dir), task="mnli", tokenizer=tiny_tokenizer_dir).eval()
    batches = [_inputs(seed=s, pad_from=None) for s in range(4)]
    fast = optimize(model, check=batches)
    report = fast.bortzoo_guard
    assert report.examples == 12 and report.agreement is not None
    assert report.output_correlation > 0.99


# -- the accuracy guard --------------------------------------------------------------------------
def _accuracy(pred, target):
    return float((pred == target).float().mean() * 100)


def test_guard_reports_agreement_and_metric_change():
    model = _bert(cls=BertForSequenceClassification, num_labels=3)
    batches = [_inputs(seed=s) for s in range(3)]
    with torch.inference_mode():
        labels = torch.cat([model(**b).logits.argmax(-1) for b in batches]).tolist()
    report = guard(model, optimize(model), batches, labels=labels, metric=_accuracy)
    assert report.examples == 9
    assert report.metric_fp32 == 100.0  # labels are fp32's own predictions
    assert report.metric_change == pytest.approx(report.metric_optimized - 100.0)
    assert report.agreement == pytest.approx(report.metric_optimized / 100)
    assert "agreement" in report.summary() and "metric" in report.summary()


def test_guard_on_an_identical_model_is_perfect_and_on_a_different_one_is_not():
    model = _bert(cls=BertForSequenceClassification, num_labels=3)
    batches = [_inputs(seed=s, batch=8) for s in range(4)]
    same = guard(model, copy.deepcopy(model), batches)
    assert same.agreement == 1.0 and same.max_abs_diff == 0.0
    other = guard(model, _bert(cls=BertForSequenceClassification, num_labels=3, seed=5), batches)
    assert other.agreement < 1.0 and other.output_correlation < 0.99


def test_guard_handles_regression_heads_and_bare_encoders():
    reg = _bert(cls=BertForSequenceClassification, num_labels=1)
    batches = [_inputs()]
    report = guard(reg, optimize(reg), batches)
    assert report.agreement is None and report.examples == 3
    enc = _bert()
    report = guard(enc, optimize(enc), batches)
    assert report.agreement is None and report.output_correlation > 0.99
    with pytest.raises(BortzooError, match="task head"):
        guard(enc, optimize(enc), batches, labels=[0, 1, 0], metric=_accuracy)


def test_guard_input_errors_are_named():
    model = _bert(cls=BertForSequenceClassification, num_labels=3)
    with pytest.raises(BortzooError, match="no batches"):
        guard(model, model, [])
    with pytest.raises(BortzooError, match="batch 0"):
        guard(model, model, [torch.ones(2, 3)])
    with pytest.raises(BortzooError, match="both labels and metric"):
        guard(model, model, [_inputs()], labels=[0, 1, 2])
    with pytest.raises(BortzooError, match="2 labels for 3"):
        guard(model, model, [_inputs()], labels=[0, 1], metric=_accuracy)


def test_enforce_names_the_number_that_misses():
    GuardReport(100, 0.995, 0.999, 0.1, 80.0, 79.8).enforce()
    with pytest.raises(BortzooError, match=r"98.00% of 100 examples"):
        GuardReport(100, 0.98, 0.999, 0.1).enforce()
    with pytest.raises(BortzooError, match=r"-0.80 points"):
        GuardReport(100, 0.995, 0.999, 0.1, 80.0, 79.2).enforce()


def test_optimize_refuses_a_model_that_fails_its_check(monkeypatch):
    model = _bert(cls=BertForSequenceClassification, num_labels=3)
    bad = GuardReport(10, 0.5, 0.9, 1.0)
    monkeypatch.setattr(opt_mod, "compare", lambda *a, **k: bad)
    with pytest.raises(BortzooError, match="agrees with fp32 on 50.00%"):
        optimize(model, check=[_inputs()])


def test_package_level_optimize_is_the_function():
    import bortzoo

    from bortzoo.serve.optimize import optimize as entry

    assert bortzoo.optimize is entry
    fast = bortzoo.optimize(_bert(), engine="torch")  # the own path as asked: int8 unless told otherwise
    assert fast.bortzoo_optimize["precision"] == "int8"


def test_concatenating_a_linear_without_bias_keeps_the_others_biases():
    with_bias, without = _linear(seed=1), _linear(seed=2, bias=False)
    x = torch.randn(6, 48)
    for fused in (QuantizedLinear.from_linear(with_bias, without), opt_mod._FloatLinear(with_bias, without)):
        with torch.inference_mode():
            out = fused(x)
        assert _rel_err(out[:, :40], with_bias(x)) < 0.02 and _rel_err(out[:, 40:], without(x)) < 0.02


@pytest.mark.parametrize("precision", ["int8", "fp32", "bf16"])
def test_a_model_saved_in_bf16_is_optimized_too(precision):
    model = _bert()
    x = _inputs()
    with torch.inference_mode():
        ref = model(**x).last_hidden_state
    fast = optimize(copy.deepcopy(model).to(torch.bfloat16), precision=precision)
    with torch.inference_mode():
        out = fast(**x).last_hidden_state
    assert out.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert _rel_err(out.float(), ref) < 0.06
