"""TaskModel: forward shapes, losses, heads, layer-wise LR decay, re-init, loading, and a tiny fine-tune.

Everything is offline and tiny: random <2,2,32,64> encoders, the project's tokenizer, the amazon/bort-layout
folder of conftest, a one-step Student checkpoint, and the SST-2 fixture of bortzoo/assets/tiny-tasks.
"""

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ARCH, TINY_CORPUS, make_bort_layout
from safetensors.torch import load_file
from torch import nn

from bortzoo.arch import Arch
from bortzoo.data import TaskData
from bortzoo.data.corpus import Corpus, Source
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR
from bortzoo.errors import BortzooError
from bortzoo.modules import Student, TaskModel
from bortzoo.modules.optim import encoder_depth, param_groups
from bortzoo.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
TINY_GLUE = str(REPO / "bortzoo" / "assets" / "tiny-tasks" / "glue")
H = TINY_ARCH.hidden


def tiny(task: str = "sst2", arch: Arch = TINY_ARCH, seed: int = 0, **kwargs) -> TaskModel:
    """A TaskModel on a randomly initialised tiny encoder, seeded so two calls build the same weights."""
    torch.manual_seed(seed)
    return TaskModel(task=task, model=None, arch=arch, tokenizer=TINY_TOKENIZER_DIR, **kwargs)


def batch(rows: int = 3, length: int = 7, options: int = 0, seed: int = 0) -> dict:
    """Random token ids (special ids 0-4 left out) with some right padding: [B, L] or [B, options, L]."""
    generator = torch.Generator().manual_seed(seed)
    shape = (rows, options, length) if options else (rows, length)
    input_ids = torch.randint(5, TINY_ARCH.vocab_size, shape, generator=generator)
    input_ids[..., 0] = 0  # <s>
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[..., length - 2:] = 0  # two padded positions at the end
    input_ids[..., length - 2:] = TINY_ARCH.pad_token_id
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def flat(inputs: dict) -> dict:
    return {key: value.reshape(-1, value.shape[-1]) for key, value in inputs.items()}


# -- forward -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, shape", [("sst2", (3, 2)), ("mnli", (3, 3)), ("stsb", (3,)), ("race-high", (3, 4))])
def test_forward_shapes(task, shape):
    model = tiny(task).eval()
    inputs = batch(options=4 if task == "race-high" else 0)
    with torch.no_grad():
        logits = model(**inputs)
    assert logits.shape == shape
    assert torch.isfinite(logits).all()


def test_choice_scores_each_option_independently():
    """A [B, 4, L] row is scored option by option: each score equals the score of that option alone."""
    model = tiny("race-high").eval()
    inputs = batch(rows=2, options=4)
    with torch.no_grad():
        scores = model(**inputs)
        for row in range(2):
            for option in range(4):
                alone = model(inputs["input_ids"][row:row + 1, option:option + 1],
                              inputs["attention_mask"][row:row + 1, option:option + 1])
                torch.testing.assert_close(alone[0, 0], scores[row, option], rtol=1e-5, atol=1e-6)


def test_token_types_are_ignored_with_one_type():
    model = tiny("sst2").eval()
    assert model.encoder.config.type_vocab_size == 1
    inputs = batch()
    ones = torch.ones_like(inputs["input_ids"])  # id 1 is outside a one-row token-type table
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs, token_type_ids=ones), model(**inputs))


def test_token_types_are_used_with_two_types():
    model = tiny("sst2", arch=TINY_ARCH.replace(type_vocab_size=2)).eval()
    assert model.encoder.config.type_vocab_size == 2
    inputs = batch()
    zeros = torch.zeros_like(inputs["input_ids"])
    second = zeros.clone()
    second[:, 3:] = 1
    with torch.no_grad():
        plain = model(**inputs)
        torch.testing.assert_close(model(**inputs, token_type_ids=zeros), plain)
        assert not torch.allclose(model(**inputs, token_type_ids=second), plain)


def test_token_types_reach_every_option_of_a_choice_row():
    model = tiny("race-high", arch=TINY_ARCH.replace(type_vocab_size=2)).eval()
    inputs = batch(rows=2, options=4)
    types = torch.zeros_like(inputs["input_ids"])
    types[1, 2, 3:] = 1  # only row 1, option 2 changes
    with torch.no_grad():
        plain, typed = model(**inputs), model(**inputs, token_type_ids=types)
    changed = ~torch.isclose(plain, typed)
    assert changed.tolist() == [[False] * 4, [False, False, True, False]]


# -- loss ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["sst2", "mnli", "race-high"])
def test_cross_entropy_for_classes_and_choices(task):
    model = tiny(task).eval()
    inputs = batch(rows=4, options=4 if task == "race-high" else 0)
    labels = torch.tensor([0, 1, 1, 0]) if task == "sst2" else torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        logits = model(**inputs)
    loss = model.loss(logits, labels)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    by_hand = -torch.log_softmax(logits, -1)[torch.arange(4), labels].mean()
    torch.testing.assert_close(loss, by_hand)
    assert model.predictions(logits).tolist() == logits.argmax(-1).tolist()


def test_mse_for_regression():
    model = tiny("stsb").eval()
    labels = torch.tensor([0.0, 2.5, 5.0], dtype=torch.float64)  # STS-B labels may arrive as float64
    with torch.no_grad():
        scores = model(**batch())
    loss = model.loss(scores, labels)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    torch.testing.assert_close(loss, F.mse_loss(scores, labels.float()))
    torch.testing.assert_close(loss, ((scores - labels.float()) ** 2).mean())
    torch.testing.assert_close(model.predictions(scores), scores)


def test_loss_through_a_batch_dict_with_labels():
    """`_logits` reads a collated batch (token_type_ids included) and the loss back-propagates to every weight."""
    model = tiny("sst2")
    inputs = batch(rows=4)
    data = {**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"]), "labels": torch.tensor([0, 1, 0, 1])}
    loss = model.loss(model._logits(data), data["labels"])
    loss.backward()
    # every weight gets a gradient (BERT adds token-type row 0 even when the ids are not passed on)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


# -- heads -----------------------------------------------------------------------------------------
def test_bort_head_layout_and_output():
    model = tiny("mnli").eval()
    head = model.head
    assert [type(m) for m in head] == [nn.Dropout, nn.Linear, nn.Tanh, nn.Dropout, nn.Linear]
    assert (head[1].in_features, head[1].out_features) == (H, H)
    assert (head[4].in_features, head[4].out_features) == (H, 3)
    assert head[0].p == head[3].p == model.encoder.config.hidden_dropout_prob == 0.1
    assert model.encoder.pooler is None  # the bort head reads the first token: no pooler is built
    assert not any("pooler" in name for name, _ in model.named_parameters())
    inputs = batch()
    with torch.no_grad():
        first = model.encoder(**inputs).last_hidden_state[:, 0]
        expected = first @ head[1].weight.T + head[1].bias
        expected = torch.tanh(expected) @ head[4].weight.T + head[4].bias
        torch.testing.assert_close(model(**inputs), expected)


def test_head_initialisation_and_dropout_option():
    model = tiny("sst2", dropout=0.3)
    assert model.head[0].p == model.head[3].p == 0.3
    for linear in (model.head[1], model.head[4]):
        assert torch.all(linear.bias == 0)
        assert 0.01 < linear.weight.std().item() < 0.03  # N(0, initializer_range=0.02)
    inputs = batch()
    model.train()
    torch.manual_seed(0)
    a = model(**inputs)
    b = model(**inputs)
    assert not torch.allclose(a, b)  # dropout is on in training mode
    model.eval()
    torch.testing.assert_close(model(**inputs), model(**inputs))


def test_pooler_head_reads_the_pooler_output():
    model = tiny("sst2", head="pooler").eval()
    assert [type(m) for m in model.head] == [nn.Dropout, nn.Linear]
    assert (model.head[1].in_features, model.head[1].out_features) == (H, 2)
    assert model.encoder.pooler is not None
    inputs = batch()
    with torch.no_grad():
        out = model.encoder(**inputs)
        dense = model.encoder.pooler.dense
        pooled = torch.tanh(out.last_hidden_state[:, 0] @ dense.weight.T + dense.bias)
        torch.testing.assert_close(out.pooler_output, pooled)
        expected = pooled @ model.head[1].weight.T + model.head[1].bias
        torch.testing.assert_close(model(**inputs), expected)
        # and not what the bort-style path would give on the same weights
        assert not torch.allclose(model.head(out.last_hidden_state[:, 0]), expected)


def test_pooler_head_from_a_bort_layout_folder(bort_layout_dir):
    """amazon/bort ships no pooler: head 'pooler' then gets a freshly initialised one, the rest is loaded."""
    stored = load_file(str(bort_layout_dir / "model.safetensors"))
    assert not any("pooler" in key for key in stored)
    model = TaskModel(task="sst2", model=str(bort_layout_dir), head="pooler").eval()
    dense = model.encoder.pooler.dense
    assert torch.isfinite(dense.weight).all()
    assert 0.01 < dense.weight.std().item() < 0.03 and torch.all(dense.bias == 0)
    for name, value in model.encoder.state_dict().items():
        if not name.startswith("pooler."):
            torch.testing.assert_close(value, stored[f"bert.{name}"], rtol=0, atol=0, msg=name)
    inputs = batch()
    with torch.no_grad():
        expected = model.head[1](model.encoder(**inputs).pooler_output)
        torch.testing.assert_close(model(**inputs), expected)


def test_pooler_head_with_a_student_checkpoint_raises(student_checkpoint):
    path, _ = student_checkpoint
    with pytest.raises(BortzooError, match="no pooler"):
        TaskModel(task="sst2", model=str(path), head="pooler")


# -- layer-wise LR decay -------------------------------------------------------------------------------
def test_encoder_depth_of_bert_names():
    names = {
        "embeddings.word_embeddings.weight": 0,
        "embeddings.LayerNorm.bias": 0,
        "bert.embeddings.position_embeddings.weight": 0,
        "encoder.layer.0.attention.self.query.weight": 1,
        "encoder.layer.1.output.LayerNorm.weight": 2,
        "layer.3.intermediate.dense.bias": 4,
        "bert.encoder.layer.11.output.dense.weight": 12,
        "pooler.dense.weight": 13,
        "cls.predictions.bias": 13,
    }
    assert {name: encoder_depth(name, 12) for name in names} == names
    assert encoder_depth("encoder.player.0.weight", 2) == 3  # "layer." must start a name component


def attach_trainer(model: TaskModel, steps: int = 10) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    model.trainer = trainer
    return trainer


def expected_lr(name: str, lr: float, decay: float) -> float:
    if name.startswith("encoder.embeddings."):
        return lr * decay ** 3
    if name.startswith("encoder.encoder.layer.0."):
        return lr * decay ** 2
    if name.startswith("encoder.encoder.layer.1."):
        return lr * decay
    assert name.startswith(("head.", "encoder.pooler.")), name
    return lr


@pytest.mark.parametrize("head", ["bort", "pooler"])
def test_configure_optimizers_layer_decay(head):
    lr, decay, wd = 1e-3, 0.5, 0.01
    model = tiny("sst2", head=head, lr=lr, layer_decay=decay, weight_decay=wd, warmup_ratio=0.1)
    model.encoder.embeddings.token_type_embeddings.weight.requires_grad_(False)  # frozen: in no group
    attach_trainer(model, steps=10)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            seen.append(name)
            assert group["initial_lr"] == pytest.approx(expected_lr(name, lr, decay)), name
            no_decay = name.endswith(("bias", "LayerNorm.weight"))
            assert group["weight_decay"] == (0.0 if no_decay else wd), name
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable)  # every trainable parameter exactly once
    assert len(seen) == len(set(seen))
    assert "encoder.embeddings.token_type_embeddings.weight" not in seen
    assert sorted({group["initial_lr"] for group in optimizer.param_groups}) == pytest.approx(
        [lr * decay ** 3, lr * decay ** 2, lr * decay, lr])
    # one warm-up step of ten: the schedule scales every group alike, so the ratios hold at the peak
    assert all(group["lr"] == 0.0 for group in optimizer.param_groups)
    optimizer.step()
    scheduler.step()
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(group["initial_lr"])


def test_no_layer_decay_gives_one_rate():
    model = tiny("sst2", lr=3e-4)
    attach_trainer(model)
    optimizer = model.configure_optimizers()["optimizer"]
    assert {group["initial_lr"] for group in optimizer.param_groups} == {3e-4}
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))


def test_param_groups_with_the_task_model_depth():
    model = tiny("sst2")
    top = model.num_layers + 1

    def depth(name: str) -> int:
        return encoder_depth(name[len("encoder."):], model.num_layers) if name.startswith("encoder.") else top

    groups = param_groups(model.named_parameters(), 1.0, 0.1, depth=depth, max_depth=top, layer_decay=0.5)
    assert [(g["depth"], g["weight_decay"]) for g in groups] == [(d, w) for d in range(4) for w in (0.1, 0.0)]
    assert [g["lr"] for g in groups] == [0.125, 0.125, 0.25, 0.25, 0.5, 0.5, 1.0, 1.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


# -- re-initialisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["bort", "pooler"])
def test_reinit_changes_only_the_top_layer(head):
    plain = tiny("sst2", head=head, seed=7)
    reinit = tiny("sst2", head=head, seed=7, reinit_layers=1)
    before, after = plain.state_dict(), reinit.state_dict()
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    top = [n for n in before if n.startswith("encoder.encoder.layer.1.")]
    top_weights = {n for n in top if n.endswith("weight") and "LayerNorm" not in n}
    assert top_weights <= changed  # every dense weight of the top layer is drawn anew
    for name in top_weights:
        assert 0.01 < after[name].std().item() < 0.03, name
    allowed = set(top) | {n for n in before if n.startswith("encoder.pooler.")}
    assert changed <= allowed, changed - allowed  # embeddings, layer 0 and the head untouched
    assert any(n.startswith("encoder.embeddings.") for n in before)
    if head == "pooler":
        assert "encoder.pooler.dense.weight" in changed


@pytest.mark.parametrize("count", [3, -1])
def test_reinit_out_of_range_raises(count):
    with pytest.raises(BortzooError, match="reinit_layers"):
        tiny("sst2", reinit_layers=count)


# -- loading -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory):
    """A Student checkpoint written by Lightning after one step on the tiny corpus, and the student's encoder."""
    L.seed_everything(0, verbose=False)
    student = Student(arch=TINY_ARCH, lr=1e-3, warmup_ratio=0.0)  # no warm-up: the one step moves the weights
    data = Corpus(TINY_TOKENIZER_DIR, [Source(str(TINY_CORPUS))], seq_len=32, batch_size=8, max_predictions=None,
                  val_fraction=0.05, seed=0)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    initial = {k: v.clone() for k, v in student.model.bert.state_dict().items()}
    trainer.fit(student, data)
    path = tmp_path_factory.mktemp("student") / "student.ckpt"
    trainer.save_checkpoint(path)
    state = {k: v.detach().clone() for k, v in student.model.bert.state_dict().items()}
    assert any(not torch.equal(initial[k], state[k]) for k in state)  # the step moved the weights
    return path, state


def test_load_from_a_bort_layout_folder(tmp_path):
    from transformers import BertForMaskedLM

    folder = make_bort_layout(tmp_path / "bort", seed=3)
    model = TaskModel(task="sst2", model=str(folder))
    reference = BertForMaskedLM.from_pretrained(folder).bert.state_dict()
    encoder = model.encoder.state_dict()
    assert encoder.keys() <= reference.keys() and model.encoder.pooler is None
    for name, value in encoder.items():
        assert torch.equal(value, reference[name]), name
    assert model.tokenizer_ref == str(folder)  # the tokenizer comes from the folder
    assert len(model.tokenizer) == TINY_ARCH.vocab_size
    assert model.tokenizer("the capital")["input_ids"][0] == 0  # RoBERTa's <s>
    assert model.num_layers == TINY_ARCH.depth


def test_load_from_a_student_checkpoint(student_checkpoint):
    path, state = student_checkpoint
    model = TaskModel(task="sst2", model=str(path))
    encoder = model.encoder.state_dict()
    assert encoder.keys() == state.keys()
    for name, value in encoder.items():
        assert torch.equal(value, state[name]), name
    # without `tokenizer`, the one the pretraining data used
    assert Path(model.tokenizer_ref).resolve() == Path(TINY_TOKENIZER_DIR).resolve()
    assert len(model.tokenizer) == TINY_ARCH.vocab_size
    with torch.no_grad():
        assert model.eval()(**batch()).shape == (3, 2)


def test_student_checkpoint_with_an_explicit_tokenizer(student_checkpoint, bort_layout_dir):
    path, _ = student_checkpoint
    model = TaskModel(task="stsb", model=str(path), tokenizer=str(bort_layout_dir))
    assert model.tokenizer_ref == str(bort_layout_dir)


def test_missing_checkpoint_raises(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(BortzooError, match="nope.ckpt"):
        TaskModel(task="sst2", model=str(missing))


def test_a_checkpoint_that_is_not_a_student_raises(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, path)
    with pytest.raises(BortzooError, match="not a bortzoo pretraining checkpoint"):
        TaskModel(task="sst2", model=str(path))


@pytest.mark.parametrize("kwargs, match", [
    ({"model": "some/model", "arch": TINY_ARCH}, "exactly one of model"),
    ({"model": None}, "exactly one of model"),
    ({"model": None, "arch": TINY_ARCH, "head": "cls"}, "head must be one of"),
    ({"model": None, "arch": TINY_ARCH, "layer_decay": 0.0}, "layer_decay"),
    ({"model": None, "arch": TINY_ARCH, "layer_decay": 1.5}, "layer_decay"),
    ({"model": None, "arch": TINY_ARCH, "warmup_ratio": 1.5}, "warmup_ratio"),
    ({"model": None, "arch": TINY_ARCH, "task": "ax"}, "no training data"),
    ({"model": None, "arch": TINY_ARCH, "task": "glue-nope"}, "unknown task"),
])
def test_bad_arguments_raise(kwargs, match):
    kwargs = {"task": "sst2", "tokenizer": TINY_TOKENIZER_DIR, **kwargs}
    with pytest.raises(BortzooError, match=match):
        TaskModel(**kwargs)


def test_arch_is_saved_resolved():
    model = tiny("sst2")
    assert model.hparams.arch == TINY_ARCH.as_dict()
    assert model.hparams.model is None


def test_metrics_follow_the_task_spec():
    model = tiny("mnli")
    assert set(model.metrics) == {"validate_0", "validate_1", "test_0", "test_1"}
    assert len(get_task("mnli").validation) == 2


# -- fine-tuning -------------------------------------------------------------------------------------
def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


def test_tiny_sst2_fine_tune_learns_and_reloads(tmp_path):
    L.seed_everything(0, verbose=False)
    model = TaskModel(task="sst2", model=None, arch=TINY_ARCH, tokenizer=TINY_TOKENIZER_DIR, lr=3e-3)
    data = TaskData(task="sst2", data_dir=TINY_GLUE, max_length=64, batch_size=32)
    data.connect(model.tokenizer)  # what bortzoo fit does (bortzoo.recipe.connect)
    fitted = trainer(max_epochs=6)
    fitted.fit(model, data)
    results = model.last_results
    assert results["stage"] == "validate"
    accuracy = results["splits"]["SST-2"]["accuracy"]
    assert accuracy > 0.75, results  # chance is 0.5
    assert results["score"] == pytest.approx(accuracy)
    # the checkpoint loads weights-only and rebuilds the same model (arch saved as plain fields)
    fitted.save_checkpoint(tmp_path / "sst2.ckpt")
    again = TaskModel.load_from_checkpoint(tmp_path / "sst2.ckpt", weights_only=True)
    assert again.hparams.arch == TINY_ARCH.as_dict()
    state = again.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_task_mismatch_between_model_and_data_raises():
    model = tiny("sst2")
    data = TaskData(task="cola", data_dir=TINY_GLUE, max_length=64, batch_size=32)
    data.connect(model.tokenizer)  # what bortzoo fit does (bortzoo.recipe.connect)
    with pytest.raises(BortzooError) as info:
        trainer(max_epochs=1).fit(model, data)
    assert "sst2" in str(info.value) and "cola" in str(info.value)


def test_max_length_beyond_the_positions_raises():
    model = tiny("sst2")
    data = TaskData(task="sst2", data_dir=TINY_GLUE, max_length=TINY_ARCH.max_positions + 1, batch_size=32)
    data.connect(model.tokenizer)  # what bortzoo fit does (bortzoo.recipe.connect)
    with pytest.raises(BortzooError, match="positions"):
        trainer(max_epochs=1).fit(model, data)


# -- starting from a checkpoint: train mode and float32 master weights -----------------------------------------
class TrainingModes(L.Callback):
    """Records, at each training step, how many dropout modules are active and whether two forwards of the
    step's batch differ (they must: dropout is random)."""

    def __init__(self):
        self.active, self.total, self.differ, self.dtypes = [], 0, [], set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        dropouts = [m for m in pl_module.modules() if isinstance(m, nn.Dropout)]
        self.total = len(dropouts)
        self.active.append(sum(m.training for m in dropouts))
        self.dtypes |= {p.dtype for p in pl_module.parameters()}
        with torch.no_grad():
            self.differ.append(not torch.equal(pl_module._logits(batch), pl_module._logits(batch)))


def fit_steps(model: TaskModel, steps: int = 2, **kwargs) -> TrainingModes:
    modes = TrainingModes()
    data = TaskData(task=model.spec.name, data_dir=TINY_GLUE, max_length=32, batch_size=8, train_limit=16)
    data.connect(model.tokenizer)  # what bortzoo fit does (bortzoo.recipe.connect)
    trainer(max_steps=steps, callbacks=[modes], num_sanity_val_steps=0, limit_val_batches=0, **kwargs).fit(model, data)
    return modes


def test_fine_tuning_from_a_folder_trains_with_dropout(bort_layout_dir):
    """`from_pretrained` returns eval mode and Lightning keeps it: every dropout must be on in the training step."""
    model = TaskModel(task="sst2", model=str(bort_layout_dir))
    modes = fit_steps(model)
    assert modes.total == 2 + 3 * TINY_ARCH.depth + 1  # head, per layer (attention probs, attention out, ffn out), embeddings
    assert modes.active == [modes.total, modes.total], modes.active
    assert all(modes.differ)


def test_fine_tuning_from_a_student_checkpoint_trains_with_dropout(student_checkpoint):
    path, _ = student_checkpoint
    modes = fit_steps(TaskModel(task="sst2", model=str(path)))
    assert modes.active == [modes.total] * 2 and all(modes.differ)


def test_resuming_a_fine_tune_keeps_dropout_on(bort_layout_dir, tmp_path):
    model = TaskModel(task="sst2", model=str(bort_layout_dir))
    data = TaskData(task="sst2", data_dir=TINY_GLUE, max_length=32, batch_size=8, train_limit=16)
    data.connect(model.tokenizer)  # what bortzoo fit does (bortzoo.recipe.connect)
    first = trainer(max_steps=1, num_sanity_val_steps=0, limit_val_batches=0)
    first.fit(model, data)
    first.save_checkpoint(tmp_path / "last.ckpt")
    again, modes = TaskModel(task="sst2", model=str(bort_layout_dir)), TrainingModes()
    trainer(max_steps=3, callbacks=[modes], num_sanity_val_steps=0, limit_val_batches=0).fit(
        again, data, ckpt_path=str(tmp_path / "last.ckpt"))
    assert modes.active and all(active == modes.total for active in modes.active)


@pytest.fixture(scope="module")
def half_bort_layout(tmp_path_factory) -> Path:
    """A tiny folder stored in float16, as amazon/bort (`.half()` before saving)."""
    from bortzoo.export import write_random_masked_lm

    return write_random_masked_lm(tmp_path_factory.mktemp("half"), TINY_ARCH, seed=4, trained_head=False,
                                  dtype=torch.float16)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_float16_checkpoint_fine_tunes_from_float32_master_weights(half_bort_layout, precision):
    from bortzoo.hub import stored_dtype

    assert stored_dtype(half_bort_layout) == "float16"
    stored = load_file(str(half_bort_layout / "model.safetensors"))
    model = TaskModel(task="rte", model=str(half_bort_layout))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # the conversion is exact: every float16 value is a float32 value
    torch.testing.assert_close(model.encoder.embeddings.word_embeddings.weight,
                               stored["bert.embeddings.word_embeddings.weight"].float(), rtol=0, atol=0)
    before = model.encoder.encoder.layer[0].attention.self.query.weight.detach().clone()
    modes = fit_steps(model, precision=precision)
    assert modes.dtypes == {torch.float32} and all(modes.differ)
    assert not torch.equal(before, model.encoder.encoder.layer[0].attention.self.query.weight)


def test_head_pooler_on_an_encoder_without_a_pooler_says_so(bort_layout_dir):
    with pytest.warns(UserWarning, match="no pretrained pooler"):
        TaskModel(task="sst2", model=str(bort_layout_dir), head="pooler")


def test_results_callback_names_what_it_needs_from_the_module():
    """TaskResults reads a declared interface (`bortzoo.results.TaskRun`), and says so on a module without it."""
    from bortzoo.results import TaskResults, TaskRun

    assert isinstance(tiny("sst2"), TaskRun)
    with pytest.raises(BortzooError, match="spec, last_results, run_facts"):
        TaskResults().setup(None, L.LightningModule(), "fit")
    facts = tiny("sst2").run_facts()
    assert facts["arch"] == TINY_ARCH.as_dict() and facts["model"].startswith("random")


def test_task_data_without_a_tokenizer_says_how_to_connect_one():
    data = TaskData(task="sst2", data_dir=TINY_GLUE, max_length=32, batch_size=8)
    with pytest.raises(BortzooError, match=r"data.connect\(model.tokenizer\)"):
        data.setup("fit")
        data.train_dataloader()
