"""The `bortzoo` command as a user runs it: a subprocess, real recipes, real mistakes."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "pretrain" / "bort-mlm-tiny.yaml"


def bortzoo(*args, cwd=REPO):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "bortzoo.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def recipe_in(tmp_path, recipe=TINY, **replace):
    """A copy of `recipe` writing its logs, checkpoints and export under tmp_path (and other text replaced)."""
    text = recipe.read_text().replace("runs/pretrain/", f"{tmp_path}/")
    for old, new in replace.items():
        text = text.replace(old, new)
    copy = tmp_path / recipe.name
    copy.write_text(text)
    return copy


def assert_user_error(result, *words):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for word in words:
        assert word in result.stderr, (word, result.stderr[-2000:])


def test_usage_lists_every_verb():
    result = bortzoo()
    assert result.returncode == 0
    for verb in ("fit", "validate", "test", "predict", "bench"):
        assert verb in result.stdout


def test_unknown_verb():
    assert_user_error(bortzoo("train"), "unknown verb 'train'", "fit")


@pytest.mark.slow
def test_tiny_recipe_fits_and_saves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "bort-mlm-tiny"
    result = bortzoo("fit", "--config", recipe_in(tmp_path), "--trainer.max_steps", 6,
                     "--trainer.val_check_interval", 3, "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert (out / "version_0" / "config.yaml").is_file()  # the resolved recipe beside the checkpoint
    rows = list(csv.DictReader(open(out / "version_0" / "metrics.csv")))
    assert any(row.get("val/loss") for row in rows)
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 6
    from bortzoo.modules import Student

    student = Student.load_from_checkpoint(last, weights_only=True)
    assert student.arch.hidden == 64 and student.arch.vocab_size == 512
    assert (out / "model" / "model.safetensors").is_file()  # exported at the end of fit


def test_unknown_yaml_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = TINY.read_text()
    assert "    weight_decay: 0.01\n" in text
    bad.write_text(text.replace("    weight_decay: 0.01\n", "    weight_decay: 0.01\n    layers: 3\n"))
    result = bortzoo("fit", "--config", bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "layers" in result.stderr


def test_malformed_yaml_and_missing_recipe(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model: [unclosed\n")
    result = bortzoo("fit", "--config", bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = bortzoo("fit", "--config", tmp_path / "nope.yaml")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "nope.yaml" in result.stderr


def test_unknown_preset_is_one_clear_line():
    result = bortzoo("fit", "--config", TINY, "--model.init_args.arch", "bortt")
    assert_user_error(result, "unknown architecture 'bortt'", "Did you mean 'bort'")


def test_vocabulary_mismatch_stops_before_training(tmp_path):
    result = bortzoo("fit", "--config", recipe_in(tmp_path), "--model.init_args.arch", "1,2,64,64")
    assert_user_error(result, "model vocabulary (50265)", "tokenizer's (512 tokens)")
    assert not list(tmp_path.rglob("*.ckpt"))


def test_missing_model_folder_for_data(tmp_path):
    result = bortzoo("fit", "--config", TINY, "--data.init_args.tokenizer", tmp_path / "absent")
    assert_user_error(result, "absent", "does not exist")


def test_bench_through_the_cli(tmp_path):
    result = bortzoo("bench", "--models", "1,2,32,64", "2,2,32,64", "--seq", 8, 16, "--repeats", 2, "--warmup", 0,
                     "--threads", 1, "--out", tmp_path, "--progress", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "random weights" in result.stdout
    assert result.stdout.count("<2,2,32,64>") == 2  # one row per sequence length
    assert len(list(tmp_path.glob("latency-*.csv"))) == 1
    assert_user_error(bortzoo("bench", "--models", "bortt"), "unknown architecture 'bortt'")
    assert_user_error(bortzoo("bench", "--seq", 9999, "--models", "bort"), "9999")


@pytest.mark.slow
def test_validate_a_teacher_from_a_local_folder(tmp_path):
    """A frozen teacher in the amazon/bort layout is evaluated through the same CLI and recipe data."""
    from conftest import make_bort_layout

    folder = make_bort_layout(tmp_path / "teacher")
    result = bortzoo("validate", "--config", recipe_in(tmp_path), "--model", "bortzoo.modules.Teacher",
                     "--model.source", folder, "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/mlm_acc" in result.stdout and "val/mlm_loss" in result.stdout
