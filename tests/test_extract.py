"""The search as a run: end to end through the CLI, resume after a kill, shards, corrupt files, conflicts."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CORPUS, make_bort_layout

from bortzoo.arch import Arch, get_arch
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR
from bortzoo.errors import BortzooError
from bortzoo.extract.report import report
from bortzoo.extract.scoring import Measures
from bortzoo.extract.search import CandidateLock, Space, extract, plan_partitions

REPO = Path(__file__).resolve().parent.parent
TINY_RECIPE = REPO / "recipes" / "extract" / "bort-tiny.yaml"
TEACHER_ARCH = Arch(2, 2, 64, 128, vocab_size=512, max_positions=64)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> str:
    return str(make_bort_layout(tmp_path_factory.mktemp("teacher"), TEACHER_ARCH, seed=3))


def search(teacher, out, **overrides):
    settings = dict(teacher=teacher, tokenizer=TINY_TOKENIZER_DIR, out=str(out),
                    data={"sources": [{"path": str(TINY_CORPUS)}], "val_fraction": 0.1, "seq_len": 32,
                          "batch_size": 8, "max_predictions": None},
                    space=Space(depths=[1, 2], heads=[2], hidden=[32, 64], intermediate=[64]),
                    max_steps=6, min_steps=1, hparams=[{"lr": 3e-3}], train_batches=4, eval_batches=2, top_k=512,
                    latency=dict(enabled=False), accelerator="cpu")
    settings.update(overrides)
    if isinstance(settings["latency"], dict):
        from bortzoo.extract.search import Latency

        settings["latency"] = Latency(**settings["latency"])
    return extract(**settings)


def table(out) -> list[dict]:
    rows = list(csv.DictReader(open(Path(out) / "candidates.csv")))
    for row in rows:
        row.pop("latency_ms")  # measured, so it differs between runs; scores here use FLOPs
    return rows


def test_partition_keeps_the_maximum_point_alone():
    archs = [Arch(1, 2, 32, 64), Arch(1, 2, 32, 65), Arch(2, 2, 64, 128)]
    measures = [Measures(a.total_params(), a.encoder_flops(32)) for a in archs]
    groups, top = plan_partitions(measures, archs, epsilon=100.0)  # huge ε would put all in one group
    assert top == 2 and groups == [[0, 1], [2]]


def test_tiny_recipe_end_to_end_through_the_cli(tmp_path, teacher):
    recipe = tmp_path / "extract.yaml"
    settings = yaml.safe_load(TINY_RECIPE.read_text())
    settings.update(teacher=teacher, out=str(tmp_path / "run"), min_steps=1, max_steps=5, train_batches=4)
    recipe.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "bortzoo.cli", "extract", "--config", str(recipe)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "candidates.csv")))
    assert len(rows) == 8 and [int(r["rank"]) for r in rows] == list(range(1, 9))
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    assert any(r["pareto"] == "True" for r in rows)
    best = get_arch(yaml.safe_load((run / "best.yaml").read_text()))
    assert best.short() == f"<{rows[0]['D']},{rows[0]['A']},{rows[0]['H']},{rows[0]['I']}>"
    text = (run / "report.md").read_text()
    assert "W = (p/p_T)^1" in text and "Pareto front" in text and "not in this search space" in text
    assert (run / "pareto.png").stat().st_size > 10_000
    assert "best <" in result.stdout


def test_sharded_then_merged_equals_unsharded(tmp_path, teacher):
    search(teacher, tmp_path / "whole")
    for shard in ("1/2", "2/2"):
        assert search(teacher, tmp_path / "sharded", shard=shard) is None  # a shard does not report alone
    report(str(tmp_path / "sharded"))
    assert table(tmp_path / "sharded") == table(tmp_path / "whole")


def test_report_names_missing_shards(tmp_path, teacher):
    search(teacher, tmp_path / "half", shard="1/2")
    with pytest.raises(BortzooError, match=r"result\(s\) missing .* Finish \(or resume\) every shard"):
        report(str(tmp_path / "half"))


def test_resume_recomputes_only_what_is_missing_or_corrupt(tmp_path, teacher, capsys):
    out = tmp_path / "run"
    search(teacher, out)
    results = sorted((out / "results").glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in results}
    before = table(out)
    results[0].unlink()
    results[1].write_text('{"error": 0.0, "settings"')  # torn write
    capsys.readouterr()
    search(teacher, out)
    assert "is corrupt" in capsys.readouterr().out
    assert (out / "results" / (results[1].name + ".corrupt")).exists()
    for path in results[2:]:
        assert path.stat().st_mtime_ns == stamps[path.name], path.name  # finished work is never redone
    assert results[0].exists() and json.loads(results[1].read_text())["error"] > 0
    assert table(out) == before


def test_kill_then_resume_redoes_nothing_finished(tmp_path, teacher):
    recipe = tmp_path / "extract.yaml"
    settings = yaml.safe_load(TINY_RECIPE.read_text())
    settings.update(teacher=teacher, out=str(tmp_path / "run"), max_steps=60, train_batches=4)
    settings["latency"]["enabled"] = False
    recipe.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "bortzoo.cli", "extract", "--config", str(recipe)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = tmp_path / "run" / "results"
    deadline = time.time() + 300
    while len(list(results.glob("*.json"))) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.name: p.read_bytes() for p in results.glob("*.json")}
    stamps = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 3 <= len(finished) < 8, "the search must be killed mid-way"
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]  # the dead process's lock was taken over
    for name, content in finished.items():
        assert (results / name).read_bytes() == content and (results / name).stat().st_mtime_ns == stamps[name]
    assert len(list(results.glob("*.json"))) == 8 and not list(results.glob("*.lock"))


def test_two_shards_claiming_one_candidate_is_an_error(tmp_path, teacher):
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"shard": "1/3", "pid": os.getpid(), "host": os.uname().nodename}))
    with pytest.raises(BortzooError, match=r"being computed by shard 1/3 .* two shards claim the same candidate"):
        with CandidateLock(lock, "1/2"):
            pass


def test_bad_searches(tmp_path, teacher):
    with pytest.raises(BortzooError, match="larger than the teacher"):
        search(teacher, tmp_path / "a", space=Space(candidates=["4,4,128,512"]))
    with pytest.raises(BortzooError, match="no depths"):
        search(teacher, tmp_path / "b", space=Space(depths=[]))
    with pytest.raises(BortzooError, match="empty"):
        search(teacher, tmp_path / "c", space=Space(depths=[1], heads=[3], hidden=[32], intermediate=[64]))
    with pytest.raises(BortzooError, match="k/N"):
        search(teacher, tmp_path / "d", shard="2")
    with pytest.raises(BortzooError, match=r"unknown key\(s\) \['learning_rate'\]"):
        search(teacher, tmp_path / "e", hparams=[{"learning_rate": 1e-3}])
    with pytest.raises(BortzooError, match="nope"):
        search(teacher, tmp_path / "f", score="nope.nothing")


def test_cache_is_checked_rebuilt_and_never_mixed(tmp_path, teacher, capsys):
    out = tmp_path / "run"
    search(teacher, out)
    cached = sorted((out / "cache").glob("train-*.safetensors"))
    cached[0].write_bytes(b"not a safetensors file")
    capsys.readouterr()
    search(teacher, out)
    assert "unreadable" in capsys.readouterr().out and cached[0].stat().st_size > 100
    with pytest.raises(BortzooError, match="other settings"):
        search(teacher, out, top_k=8)  # same folder, a different teacher cache
