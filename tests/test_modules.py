"""Student and Teacher: shapes from Arch, a frozen teacher that never trains or gets saved, distillation."""

import lightning as L
import pytest
import torch
from conftest import TINY_ARCH, TINY_CORPUS, make_bort_layout

from bortzoo.arch import PRESETS
from bortzoo.data.corpus import Corpus, Source
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR
from bortzoo.errors import BortzooError
from bortzoo.modules import Student, Teacher
from bortzoo.modules.distill import distillation_loss
from bortzoo.modules.mlm import masked_logits


def test_bort_student_has_the_released_shape():
    student = Student("bort")
    assert student.arch == PRESETS["bort"]
    assert sum(p.numel() for p in student.parameters()) == PRESETS["bort"].total_params()
    assert student.hparams.arch["hidden"] == 1024  # resolved shape saved, not the alias
    assert student.model.config.layer_norm_eps == 1e-5 and student.model.config.type_vocab_size == 1


@pytest.mark.parametrize("spec", ["2,2,32,64", TINY_ARCH, TINY_ARCH.as_dict()])
def test_student_from_any_arch_form(spec):
    assert Student(spec).model.config.num_hidden_layers == 2


def test_bad_student_arguments():
    with pytest.raises(BortzooError, match="Did you mean 'bort'"):
        Student("bortt")
    with pytest.raises(BortzooError, match="warmup_ratio"):
        Student(TINY_ARCH, warmup_ratio=1.5)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return make_bort_layout(tmp_path_factory.mktemp("teacher"), seed=7)


def test_teacher_is_frozen_and_stays_in_eval(teacher_dir):
    teacher = Teacher(str(teacher_dir))
    student = Student(TINY_ARCH, teacher=teacher)
    student.train()
    assert not teacher.training and not teacher.model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert teacher.vocab_size == TINY_ARCH.vocab_size


def test_vocab_mismatch_with_teacher_is_refused(teacher_dir):
    with pytest.raises(BortzooError, match=r"teacher vocabulary \(512 tokens.*\(50265"):
        Student("2,2,32,64", teacher=Teacher(str(teacher_dir)))


def corpus(**kwargs):
    return Corpus(TINY_TOKENIZER_DIR, [Source(str(TINY_CORPUS))], seq_len=32, batch_size=16, max_predictions=5,
                  val_fraction=0.05, **kwargs)


def trainer(tmp_path, steps):
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1,
                     val_check_interval=steps, check_val_every_n_epoch=None, num_sanity_val_steps=0)


def test_distillation_fits_the_teacher_and_leaves_it_out_of_checkpoints(tmp_path, teacher_dir):
    L.seed_everything(0)
    teacher = Teacher(str(teacher_dir))
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = Student(TINY_ARCH, teacher=teacher, alpha=0.0, beta=1.0, lr=3e-3, warmup_ratio=0.0)
    data = corpus()
    data.setup()
    probe = next(iter(data.val_dataloader()))

    def kl() -> float:
        with torch.no_grad():
            s, labels = masked_logits(student.model.eval(), probe)
            t, _ = teacher.masked_logits(probe)
            return distillation_loss(s, t, labels, alpha=0.0, beta=1.0).kl.item()

    before = kl()
    fit = trainer(tmp_path, 40)
    fit.fit(student, data)
    after = kl()
    assert after < 0.5 * before, (before, after)
    for key, value in teacher.state_dict().items():  # the teacher never moved
        assert torch.equal(value, teacher_state[key]), key

    optimizer = fit.optimizers[0]
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert optimised == {id(p) for p in student.model.parameters()}

    path = tmp_path / "student.ckpt"
    fit.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert saved and not any(k.startswith("teacher.") for k in saved)
    restored = Student.load_from_checkpoint(path, teacher=Teacher(str(teacher_dir)), weights_only=True)
    for key, value in student.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[key], value), key
    assert "teacher_agreement" in " ".join(fit.callback_metrics)


def test_resuming_another_shape_is_refused_before_training(tmp_path):
    fit = trainer(tmp_path, 2)
    fit.fit(Student(TINY_ARCH), corpus())
    fit.save_checkpoint(tmp_path / "small.ckpt")
    other = Student(TINY_ARCH.replace(hidden=64, intermediate=128))
    with pytest.raises(BortzooError, match=r"holds a <2,2,32,64> student .* builds <2,2,64,128>"):
        trainer(tmp_path, 4).fit(other, corpus(), ckpt_path=tmp_path / "small.ckpt")
    assert other.global_step == 0


def test_no_weight_decay_on_bias_and_layernorm_and_linear_schedule(tmp_path):
    student = Student(TINY_ARCH, weight_decay=0.01, warmup_ratio=0.25, lr=1e-3)
    fit = trainer(tmp_path, 8)
    fit.fit(student, corpus())
    decay, no_decay = fit.optimizers[0].param_groups
    names = {id(p): n for n, p in student.model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert all(p.dim() == 2 for p in decay["params"])
    scheduler = fit.lr_scheduler_configs[0].scheduler
    lrs = []
    for step in range(9):  # replay the schedule: warm-up over 2 of 8 steps, then linear decay to 0
        scheduler.last_epoch = step - 1
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(1e-3) and lrs[8] == pytest.approx(0.0)
    assert lrs[1] == pytest.approx(5e-4) and lrs[5] == pytest.approx(5e-4)


def test_bf16_mixed_with_gradient_accumulation(tmp_path):
    """bf16 autocast and accumulation run; a resume would start after every batch consumed (steps × accumulation)."""
    data = corpus()
    student = Student(TINY_ARCH)
    fit = L.Trainer(max_steps=3, accelerator="cpu", precision="bf16-mixed", accumulate_grad_batches=2, logger=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                    limit_val_batches=0, enable_checkpointing=False)
    fit.fit(student, data)
    assert fit.global_step == 3
    assert torch.isfinite(fit.callback_metrics["train/loss"])
    assert data._position_and_rank() == (6, 0, 1)


class Modes(L.Callback):
    """At each training step: active dropouts of the student, of the teacher, and the teacher's dtypes."""

    def __init__(self):
        self.student, self.teacher, self.teacher_dtypes = [], [], set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        def active(module):
            return [m.training for m in module.modules() if isinstance(m, torch.nn.Dropout)]

        self.student.append(active(pl_module.model))
        self.teacher.append(active(pl_module.teacher))
        self.teacher_dtypes |= {p.dtype for p in pl_module.teacher.parameters()}


def test_distillation_trains_the_student_with_dropout_and_keeps_the_teacher_in_eval(tmp_path):
    """Also when resumed from a checkpoint, and with a teacher stored in float16 (run in float32)."""
    from bortzoo.export import write_random_masked_lm

    half_teacher = write_random_masked_lm(tmp_path / "half-teacher", TINY_ARCH, seed=2, dtype=torch.float16)
    student = Student(TINY_ARCH, teacher=Teacher(str(half_teacher)))
    fit, modes = trainer(tmp_path, 2), Modes()
    fit.callbacks.append(modes)
    fit.fit(student, corpus())
    fit.save_checkpoint(tmp_path / "last.ckpt")
    resumed, again = Student(TINY_ARCH, teacher=Teacher(str(half_teacher))), trainer(tmp_path, 4)
    again.callbacks.append(modes)
    again.fit(resumed, corpus(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert len(modes.student) == 4
    assert all(all(step) and len(step) == 1 + 3 * TINY_ARCH.depth for step in modes.student), modes.student
    assert all(not any(step) and step for step in modes.teacher), modes.teacher
    assert modes.teacher_dtypes == {torch.float32}
