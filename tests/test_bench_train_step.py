"""bench/train_step.py: the report and files of a tiny run, and that both setups do the same work.

No timing assertions: throughput on a shared CI machine is not a property of the code.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import load_bench_script

from bortzoo.modules.optim import NO_DECAY
from bortzoo.serve.bench import alternating_orders

REPO = Path(__file__).resolve().parent.parent
STUDENT, TEACHER = "1,2,32,64", "1,2,64,128"


ts = load_bench_script("train_step")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    vocab = ts.load_vocab()
    arch = ts.parse_arch(TEACHER, vocab.size, 64)
    return ts.Teacher(str(ts.write_model_folder(tmp_path_factory.mktemp("teacher"), arch, seed=1)))


def test_main_prints_both_setups_and_writes_files(tmp_path, capsys):
    out = tmp_path / "results"
    result = ts.main(["--steps", "3", "--warmup", "1", "--rounds", "1", "--seq", "16", "--batch", "2",
                      "--student", STUDENT, "--teacher", TEACHER, "--threads", "1", "--out", str(out)])
    text = capsys.readouterr().out
    table = text[text.index("setup"):]
    assert any(line.startswith("lightning ") for line in table.splitlines())
    assert any(line.startswith("bare ") for line in table.splitlines())
    assert "Lightning overhead = (bare tokens/s / lightning tokens/s - 1) x 100" in text
    assert "(target <= 10%)" in text and ("PASS" in text or "MISS" in text)
    assert "FLOPs/step = 3 x student fwd + 1 x teacher fwd" in text
    assert "lightning 2." in text and "torch " in text

    csv_files, json_files = sorted(out.glob("train-step-*.csv")), sorted(out.glob("train-step-*.json"))
    assert len(csv_files) == len(json_files) == 1
    assert "-lightning" in csv_files[0].name and "-torch" in csv_files[0].name
    rows = list(csv.DictReader(csv_files[0].open()))
    assert [r["setup"] for r in rows] == ["lightning", "bare"]
    assert all(float(r["tokens_per_s"]) > 0 and float(r["ms_per_step"]) > 0 for r in rows)
    data = json.loads(json_files[0].read_text())
    assert [r["setup"] for r in data["rows"]] == ["lightning", "bare"]
    assert data["meta"]["verdict"] in ("PASS", "MISS")
    assert data["meta"]["overhead_pct"] == pytest.approx(result["meta"]["overhead_pct"])
    assert data["meta"]["student"]["short"] == "<1,2,32,64>" and data["meta"]["tokens_per_step"] == 32
    assert sorted(map(str, result["files"])) == sorted(map(str, csv_files + json_files))


def test_out_none_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result = ts.main(["--steps", "1", "--warmup", "0", "--rounds", "1", "--seq", "8", "--batch", "1",
                      "--student", STUDENT, "--teacher", TEACHER, "--threads", "1", "--out", "none"])
    assert result["files"] == [] and list(tmp_path.iterdir()) == []
    assert "wrote" not in capsys.readouterr().out


def test_bare_loop_and_lightning_follow_the_same_loss_trajectory(teacher):
    """Same init, batches, dropout seed, loss, optimiser and schedule: identical losses step by step.

    A larger learning rate and weight decay than the defaults make any difference in the update
    (param groups, schedule, zeroing) show up in the losses of the later steps: skipping the
    scheduler step or decaying biases and LayerNorm both move step 2's loss by more than 1e-5.
    """
    vocab = ts.load_vocab()
    arch = ts.parse_arch(STUDENT, vocab.size, 64)
    batches = ts.make_batches(4, batch=2, seq=16, vocab=vocab)
    losses = {}
    for name, runner in ts.RUNNERS.items():
        student = ts.build_student(arch, teacher, lr=1e-2, weight_decay=0.5, warmup_ratio=0.0)
        losses[name] = runner(student, batches).loss_values()
    assert len(losses["bare"]) == len(losses["lightning"]) == 4
    assert losses["bare"][:3] == pytest.approx(losses["lightning"][:3], abs=1e-5)
    assert losses["bare"] == pytest.approx(losses["lightning"], abs=1e-5)
    # the test would be vacuous if training did not move the loss
    assert abs(losses["bare"][3] - losses["bare"][0]) > 1e-3


def test_runs_start_from_the_same_weights(teacher):
    vocab = ts.load_vocab()
    arch = ts.parse_arch(STUDENT, vocab.size, 64)
    a, b = ts.build_student(arch, teacher), ts.build_student(arch, teacher)
    for (name, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(pa, pb), name


def test_bare_optimizer_matches_student_param_groups(teacher):
    """Decay on weights only, none on biases and LayerNorm, as `Student.configure_optimizers`."""
    vocab = ts.load_vocab()
    student = ts.build_student(ts.parse_arch(STUDENT, vocab.size, 64), teacher)
    optimizer, _ = ts.bare_optimizer(student, 10)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == student.hparams.weight_decay and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in student.model.named_parameters()}
    assert all(names[id(p)].endswith(NO_DECAY) for p in no_decay["params"])
    assert not any(names[id(p)].endswith(NO_DECAY) for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == sum(1 for _ in student.model.parameters())


def test_flops_formula_counts_training_as_three_forwards():
    s, t = ts.Arch(1, 2, 32, 64, vocab_size=512), ts.Arch(1, 2, 64, 128, vocab_size=512)
    rows = 4
    fwd_s = s.encoder_flops(16, 2) + rows * (2 * 32 * 32 + 2 * 32 * 512)
    fwd_t = t.encoder_flops(16, 2) + rows * (2 * 64 * 64 + 2 * 64 * 512)
    assert ts.step_flops(s, t, 2, 16, rows) == 3 * fwd_s + fwd_t


def test_rounds_alternate_which_setup_goes_first():
    assert alternating_orders(("lightning", "bare"), 3) == [("lightning", "bare"), ("bare", "lightning"), ("lightning", "bare")]


def test_bad_arguments_fail_before_building_anything(capsys):
    with pytest.raises(SystemExit):
        ts.parse_args(["--steps", "0"])
    assert "--steps must be at least 1" in capsys.readouterr().err
