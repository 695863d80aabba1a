"""Pretraining end to end: distillation that transfers knowledge, exact resume after a kill, DDP, export."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from bortzoo.arch import Arch
from bortzoo.data.corpus import Corpus, Source
from bortzoo.data.tiny_corpus import CAPITALS
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR
from bortzoo.export import ExportTransformers
from bortzoo.modules import Student, Teacher
from bortzoo.modules.distill import distillation_loss
from bortzoo.modules.mlm import masked_logits

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "pretrain" / "bort-mlm-tiny.yaml"
TEACHER_ARCH = Arch(2, 2, 64, 128, vocab_size=512, max_positions=64)
STUDENT_ARCH = Arch(1, 4, 64, 128, vocab_size=512, max_positions=64)  # four heads: one layer reads context sooner
# Slots a model fills right only by reading the context (a unigram guess gives one token for all).
STRUCTURE = {"the<mask> of france is paris.": "capital", "the capital<mask> france is paris.": "of",
             "the capital of france<mask> paris.": "is"}
# The same slots after another fact, as every sentence of the corpus stands (six facts a line, packed into blocks):
# the one-layer student reads them reliably, while how it extrapolates to a lone sentence at the start of a padded
# batch turned on the CPU's rounding (one seed in sixteen missed a slot there, none here).
IN_CONTEXT = {f"the capital of italy is rome. {query}": token for query, token in STRUCTURE.items()}


@pytest.fixture(scope="module")
def capitals(tmp_path_factory) -> Path:
    """A memorisable corpus: the eight capital facts of the toy grammar, shuffled per line."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("capitals") / "capitals.txt"
    path.write_text("\n".join(" ".join(f"the capital of {c} is {CAPITALS[c]}." for c in rng.sample(sorted(CAPITALS), 6))
                              for _ in range(300)))
    return path


def corpus(path: Path) -> Corpus:
    return Corpus(TINY_TOKENIZER_DIR, [Source(str(path))], seq_len=32, batch_size=32, max_predictions=None,
                  val_fraction=0.05, seed=0)


def fit(module, data, steps, export=None):
    callbacks = [ExportTransformers(str(export))] if export else []
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=2,
                        val_check_interval=steps, check_val_every_n_epoch=None, num_sanity_val_steps=0,
                        callbacks=callbacks)
    trainer.fit(module, data)
    return trainer


def fills(folder: Path, queries: dict[str, str] = STRUCTURE) -> list[str]:
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    model = AutoModelForMaskedLM.from_pretrained(folder)  # plain transformers, no bortzoo code
    fill = pipeline("fill-mask", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    return [fill(query)[0]["token_str"].strip() for query in queries]


@pytest.fixture(scope="module")
def teacher_folder(capitals, tmp_path_factory) -> Path:
    """A tiny teacher trained by masked-LM on the capitals until it reads context (~30 s on 2 cores)."""
    L.seed_everything(0, verbose=False)
    folder = tmp_path_factory.mktemp("teacher") / "model"
    fit(Student(TEACHER_ARCH, lr=3e-3, warmup_ratio=0.05, betas=(0.9, 0.98)), corpus(capitals), 1500, export=folder)
    return folder


@pytest.mark.cpu_sensitive
def test_exported_teacher_fills_masks_with_transformers_alone(teacher_folder):
    assert fills(teacher_folder) == list(STRUCTURE.values())


@pytest.mark.cpu_sensitive
def test_distilled_student_moves_towards_the_teacher_and_fills_the_pattern(teacher_folder, capitals, tmp_path):
    """Margins on sixteen seeds (a wider spread than any CPU's rounding): every slot filled right with a log-prob gap
    of at least 5.7 over the next token, KL at most 0.08 of its start; a student that reads no context stays above
    0.24 of it. The student trains in train mode, as a recipe does: measuring it in eval mode before `fit` once left
    it there (Lightning keeps submodule modes), and without dropout three seeds in eight settled on wrong fills."""
    L.seed_everything(0, verbose=False)
    data = corpus(capitals)
    data.setup()
    probe = next(iter(data.val_dataloader()))
    teacher = Teacher(str(teacher_folder))
    student = Student(STUDENT_ARCH, teacher=teacher, lr=3e-3, warmup_ratio=0.05, betas=(0.9, 0.98))

    def kl() -> float:
        training = student.model.training
        with torch.no_grad():
            logits, labels = masked_logits(student.model.eval(), probe)
            value = distillation_loss(logits, teacher.masked_logits(probe)[0], labels).kl.item()
        student.model.train(training)
        return value

    before = kl()
    assert student.model.training
    fit(student, data, 1000, export=tmp_path / "student")
    after = kl()
    assert after < 0.15 * before, (before, after)
    assert fills(tmp_path / "student", IN_CONTEXT) == list(IN_CONTEXT.values())


def cli(*args, **popen):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "bortzoo.cli", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, **popen)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def tiny_recipe(out: Path, steps: int) -> Path:
    """The tiny MLM recipe writing under `out`, `steps` long, logging every step, no validation."""
    text = TINY.read_text().replace("runs/pretrain/", f"{out}/")
    for old, new in {"  max_steps: 1000": f"  max_steps: {steps}", "  limit_val_batches: 4": "  limit_val_batches: 0",
                     "every_n_train_steps: 100": "every_n_train_steps: 10"}.items():
        assert old in text, old
        text = text.replace(old, new)
    path = out / "recipe.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def losses(run: Path) -> dict[int, float]:
    """step → training loss, from every metrics.csv under `run` (a resumed run writes a new version)."""
    result = {}
    for metrics in sorted(run.rglob("metrics.csv")):
        for row in csv.DictReader(open(metrics)):
            if row.get("train/loss"):
                result[int(row["step"])] = float(row["train/loss"])
    return result


def test_kill_and_resume_continues_the_same_run(tmp_path):
    steps = 200
    full = tmp_path / "full"
    result = cli("fit", "--config", tiny_recipe(full, steps), "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    recipe = tiny_recipe(killed, steps)
    process = cli("fit", "--config", recipe, "--trainer.enable_progress_bar", "false",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "bort-mlm-tiny" / "checkpoints" / "epoch=0-step=20.ckpt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    size = -1
    while checkpoint.exists() and checkpoint.stat().st_size != size:  # written completely
        size = checkpoint.stat().st_size
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (killed / "bort-mlm-tiny" / "model").exists()  # really died mid-run

    result = cli("fit", "--config", recipe, "--ckpt_path", checkpoint, "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    reference, resumed = losses(full), losses(killed)
    later = [step for step in reference if step >= 20]
    assert later and all(step in resumed for step in later)
    for step in later:
        assert resumed[step] == pytest.approx(reference[step], rel=1e-4, abs=1e-5), step
    final = torch.load(killed / "bort-mlm-tiny" / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == steps


def test_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    result = cli("fit", "--config", tiny_recipe(out, 6), "--trainer.strategy", "ddp", "--trainer.devices", 2,
                 "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(out / "bort-mlm-tiny" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
    assert "gloo" in result.stderr + result.stdout or "world_size=2" in result.stderr + result.stdout \
        or "MEMBER: 2/2" in result.stderr + result.stdout
    assert (out / "bort-mlm-tiny" / "model" / "model.safetensors").is_file()


def test_export_verb_round_trips_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = cli("fit", "--config", tiny_recipe(out, 4), "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = out / "bort-mlm-tiny" / "checkpoints" / "last.ckpt"
    result = cli("export", "--checkpoint", checkpoint, "--out", tmp_path / "exported", "--tokenizer", TINY_TOKENIZER_DIR)
    assert result.returncode == 0, result.stderr[-3000:]
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "exported")
    student = Student.load_from_checkpoint(checkpoint, weights_only=True)
    for key, value in student.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    bad = cli("export", "--checkpoint", tmp_path / "missing.ckpt", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
