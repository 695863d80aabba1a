"""bench/extract.py: the report and files of a tiny run, and that the cached and uncached setups do the same work.

No timing assertions: speed on a shared CI machine is not a property of the code.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from conftest import load_bench_script

from bortzoo.serve.bench import alternating_orders

REPO = Path(__file__).resolve().parent.parent
STUDENT, TEACHER = "1,2,32,64", "1,2,64,128"


ex = load_bench_script("extract")


def test_main_prints_measures_both_setups_and_writes_files(tmp_path, capsys):
    out = tmp_path / "results"
    result = ex.main(["--steps", "2", "--rounds", "2", "--seq", "16", "--batch", "2", "--student", STUDENT,
                      "--teacher", TEACHER, "--threads", "1", "--eval-batches", "1", "--latency-sample", "1",
                      "--latency-seq", "8", "--latency-repeats", "1", "--out", str(out)])
    text = capsys.readouterr().out

    assert "300 candidates: p (total_params) " in text and "i (encoder_flops(128)) " in text
    assert "latency for all 300 candidates, EXTRAPOLATED from the 1 sampled" in text
    assert "CPU used by other processes while timing:" in text
    assert "cache build (once per search):" in text
    table = text[text.index("setup "):]
    assert any(line.startswith("cached ") for line in table.splitlines())
    assert any(line.startswith("uncached ") for line in table.splitlines())
    assert "speed-up = uncached / cached = " in text
    assert "(target >= 2x with a teacher 10x the student's size" in text
    assert ("PASS" in text) != ("MISS" in text)
    assert "teacher's share of an uncached run = (uncached - cached) / uncached = " in text

    assert result["meta"]["cheap"]["candidates"] == 300
    csv_files, json_files = sorted(out.glob("extract-*.csv")), sorted(out.glob("extract-*.json"))
    assert len(csv_files) == len(json_files) == 1
    assert "-t1-torch" in csv_files[0].name
    assert sorted(result["files"]) == sorted(csv_files + json_files)
    rows = list(csv.DictReader(csv_files[0].open()))
    assert [r["setup"] for r in rows] == ["cached", "uncached"]
    assert all(float(r["s_per_step"]) > 0 and float(r["steps_per_s"]) > 0 for r in rows)
    assert all(float(r["speedup"]) > 0 for r in rows)
    data = json.loads(json_files[0].read_text())
    assert [r["setup"] for r in data["rows"]] == ["cached", "uncached"]
    assert data["meta"]["verdict"] in ("PASS", "MISS")
    assert len(data["meta"]["runs"]["cached"]) == len(data["meta"]["runs"]["uncached"]) == 2


def test_out_none_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ex.main(["--steps", "1", "--rounds", "1", "--seq", "8", "--batch", "1", "--student", STUDENT,
                      "--teacher", TEACHER, "--threads", "1", "--eval-batches", "1", "--latency-sample", "1",
                      "--latency-seq", "8", "--latency-repeats", "1", "--out", "none"])
    assert result["files"] == [] and not list(tmp_path.rglob("extract-*"))
    assert "wrote " not in capsys.readouterr().out


def test_bad_arguments_fail_before_any_model(capsys):
    with pytest.raises(SystemExit):
        ex.main(["--steps", "0"])
    assert "--steps must be at least 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def setup_pair(tmp_path_factory):
    """A teacher folder, plain masked batches and the same batches cached with top_k = the whole vocabulary."""
    vocab = ex.tiny_vocab()[0]
    student = ex.parse_arch(STUDENT, vocab, 64)
    teacher = ex.Teacher(str(ex.write_random_masked_lm(tmp_path_factory.mktemp("teacher"),
                                                       ex.parse_arch(TEACHER, vocab, 64), seed=1)))
    batches = ex.masked_batches(3, 2, 16)
    cached = ex.build_cache(teacher, batches[:2], batches[2:], vocab, tmp_path_factory.mktemp("cache"))
    plain = (ex.without_cache(cached[0]), ex.without_cache(cached[1]))
    return student, teacher, cached, plain, vocab


def test_cache_has_full_vocab_and_uncached_batches_lack_it(setup_pair):
    _, _, cached, plain, vocab = setup_pair
    assert cached[0][0]["teacher_values"].shape[-1] == vocab
    assert all(not set(ex.CACHED_FIELDS) & set(b) for b in plain[0] + plain[1])
    for c, p in zip(cached[0], plain[0]):
        assert set(p) == {"input_ids", "attention_mask", "labels"}
        assert (c["input_ids"] == p["input_ids"]).all() and (c["labels"] == p["labels"]).all()


def test_cached_and_uncached_compute_the_same_first_step_loss(setup_pair):
    """With top_k = vocab the cached loss is the full distillation loss: same init and batch give the same loss."""
    student, teacher, cached, plain, _ = setup_pair
    theta = {"lr": 1e-4}
    with_cache = ex.run_student(student, cached[0], cached[1], 1, theta, seed=0, teacher=None, record_losses=True)
    live = ex.run_student(student, plain[0], plain[1], 1, theta, seed=0, teacher=teacher, record_losses=True)
    assert len(with_cache["losses"]) == len(live["losses"]) == 1
    assert math.isfinite(live["losses"][0])
    assert with_cache["losses"][0] == pytest.approx(live["losses"][0], abs=1e-5)
    # and the timed cached path, surrogate_error itself, lands on the same held-out loss as the uncached run
    surrogate = ex.surrogate_error(student, cached[0], cached[1], 1, theta, 0, accelerator="cpu")
    assert surrogate["error"] == pytest.approx(live["error"], abs=1e-5)
    assert surrogate["error"] == pytest.approx(with_cache["error"], abs=1e-6)


def test_latency_sample_spans_the_flop_range():
    space = ex.search_space()
    sample = ex.latency_sample(space, 3)
    flops = sorted(a.encoder_flops(128) for a in space)
    assert len(sample) == 3
    assert sample[0].encoder_flops(128) == flops[0] and sample[-1].encoder_flops(128) == flops[-1]
    assert alternating_orders(("cached", "uncached"), 3) == [("cached", "uncached"), ("uncached", "cached"), ("cached", "uncached")]
