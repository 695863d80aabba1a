"""The released Bort's checkpoint layout at its true shape: what transformers' conversion script wrote
(BertForMaskedLM config keys, <4,8,1024,768> with 50,265 tokens and 512 positions, every weight in float16, the
masked-LM head at its initial values), with random values. Fine-tuning it must start from float32 master
weights with dropout on, in fp32 and in bf16-mixed on CPU; loading it must say its head is junk."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from bortzoo.arch import get_arch


def write_bort_release_layout(folder, seed: int = 0) -> Path:
    """`amazon/bort` as transformers' conversion script wrote it (models/deprecated/bort/
    convert_bort_original_gluonnlp_checkpoint_to_pytorch.py), with random values: BertForMaskedLM at the true
    shape <4,8,1024,768> (vocabulary 50,265, 512 positions, LayerNorm eps 1e-5, pad id 1, one token type whose
    embedding is zeroed), the masked-LM head at its initial values (only the encoder was copied), and every
    weight in float16 (`hf_bort_model.half()` before saving): bortzoo.full_shape's stand-in for it."""
    from bortzoo.full_shape import STAND_INS, write_stand_in

    return write_stand_in(folder, STAND_INS["amazon/bort"], seed=seed)


@pytest.fixture(scope="module")
def bort_release(tmp_path_factory) -> Path:
    return write_bort_release_layout(tmp_path_factory.mktemp("amazon-bort-copy") / "bort")


def test_the_layout_is_the_conversions(bort_release):
    from safetensors import safe_open

    config = json.loads((bort_release / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["model_type"] == "bert"
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["hidden_size"],
            config["intermediate_size"]) == (4, 8, 1024, 768)
    assert (config["vocab_size"], config["max_position_embeddings"], config["type_vocab_size"],
            config["pad_token_id"], config["layer_norm_eps"]) == (50265, 512, 1, 1, 1e-5)
    with safe_open(str(bort_release / "model.safetensors"), "pt") as handle:
        assert {str(handle.get_slice(k).get_dtype()) for k in handle.keys()} == {"F16"}
        assert handle.get_tensor("bert.embeddings.word_embeddings.weight").shape == (50265, 1024)
        assert not handle.get_tensor("bert.embeddings.token_type_embeddings.weight").any()
    encoder = get_arch("bort")
    assert encoder.total_params(mlm_head=False, pooler=False) > 70e6  # ~52M embeddings + ~23M encoder


def test_loading_it_warns_that_its_masked_lm_head_is_junk(bort_release):
    from transformers import BertModel

    import bortzoo

    with pytest.warns(UserWarning, match="masked-LM head is broken"):
        model, _ = bortzoo.load(str(bort_release))
    assert type(model) is BertModel and {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_one_fine_tuning_step_at_the_true_shape(bort_release, precision):
    from bortzoo.data import TaskData
    from bortzoo.modules import TaskModel
    from real.probes import TrainingProbe

    model = TaskModel(task="rte", model=str(bort_release), head="bort", warmup_ratio=0.0)  # step 1 moves weights
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    before = model.encoder.encoder.layer[3].output.dense.weight.detach().clone()
    data = TaskData(task="rte", data_dir=str(Path(__file__).resolve().parents[2] / "bortzoo" / "assets" /
                                              "tiny-tasks" / "glue"), max_length=64, batch_size=2, train_limit=4,
                    pair_encoding="bort")
    data.connect(model.tokenizer)  # what bortzoo fit does (bortzoo.recipe.connect)
    probe = TrainingProbe(out=str(bort_release.parent / f"probe-{precision}.json"))
    trainer = L.Trainer(accelerator="cpu", precision=precision, max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[probe])
    trainer.fit(model, data)
    step = probe.steps[0]
    assert step["active"] == step["total"] == 2 + 3 * 4 + 1 and step["differ"]
    assert step["dtypes"] == ["torch.float32"]
    assert not torch.equal(before, model.encoder.encoder.layer[3].output.dense.weight)
    assert torch.isfinite(torch.tensor(trainer.callback_metrics["val/score"])).all()
