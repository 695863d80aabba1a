"""bortzoo.serve.bench: rows, ratios, files and validation on tiny random models (no timing assertions)."""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import json
import os
from itertools import count

import pytest
import torch

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError
from bortzoo.serve.bench import (
    RANDOM_WEIGHTS_NOTE,
    bench,
    format_ratios,
    format_table,
    hardware_info,
    percentile,
    result_stem,
    summarise,
    time_interleaved,
)

# The module itself (a package __init__ re-exporting the `bench` function would shadow the attribute).
bench_mod = importlib.import_module("bortzoo.serve.bench")

SMALL = Arch(1, 2, 32, 64, vocab_size=100, max_positions=64)
LARGER = Arch(2, 2, 64, 128, vocab_size=100, max_positions=64)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real (tiny) run shared by the tests that inspect its rows, table and files."""
    out = tmp_path_factory.mktemp("bench") / "results"
    threads = [1, 2] if (os.cpu_count() or 1) >= 2 else [1]
    before = torch.get_num_threads()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = bench(models=[SMALL, LARGER], batch=[1, 2], seq=[4, 8], threads=threads,
                     warmup=1, repeats=3, out=str(out), progress=False)
    return {"rows": rows, "out": out, "threads": threads, "text": printed.getvalue(),
            "threads_before": before, "threads_after": torch.get_num_threads()}


def test_one_row_per_model_and_setting(run):
    rows, threads = run["rows"], run["threads"]
    keys = sorted((r["model"], r["batch"], r["seq"], r["threads"]) for r in rows)
    expected = sorted((m.short(), b, s, t) for m in (SMALL, LARGER) for b in (1, 2) for s in (4, 8) for t in threads)
    assert keys == expected
    for row in rows:
        assert 0 < row["median_ms"] <= row["p90_ms"]
        assert row["gflops_per_s"] > 0
        arch = get_arch(SMALL if row["model"] == SMALL.short() else LARGER)
        assert row["arch"] == arch.short()
        assert row["params"] == arch.total_params(mlm_head=False)


def test_ratios_against_the_fastest_of_each_setting(run):
    settings: dict[tuple, list[dict]] = {}
    for row in run["rows"]:
        settings.setdefault((row["batch"], row["seq"], row["threads"]), []).append(row)
    archs = {SMALL.short(): SMALL, LARGER.short(): LARGER}
    for (batch, seq, _), rows in settings.items():
        fastest = min(rows, key=lambda r: r["median_ms"])
        assert fastest["vs_fastest"] == 1.0
        assert all(r["vs_fastest"] >= 1.0 for r in rows)
        for r in rows:
            flops = archs[r["model"]].encoder_flops(seq, batch)
            assert r["flop_ratio"] == pytest.approx(flops / archs[fastest["model"]].encoder_flops(seq, batch))
            assert r["gflops"] == pytest.approx(flops / 1e9)
            assert r["gflops_per_s"] == pytest.approx(flops / (r["median_ms"] / 1e3) / 1e9)


def test_thread_count_is_restored(run):
    assert run["threads_after"] == run["threads_before"]


def test_printed_report_names_models_hardware_and_random_weights(run):
    text = run["text"]
    assert RANDOM_WEIGHTS_NOTE in text
    assert SMALL.short() in text and LARGER.short() in text
    assert hardware_info()["cpu"] in text
    assert f"torch {torch.__version__}" in text
    assert "median ms" in text and "FLOP ratio" in text
    assert "bert-large / bort" not in text  # only when both presets are in the run
    assert "wrote " in text


def test_csv_and_json_are_stamped_and_complete(run):
    out, threads, rows = run["out"], run["threads"], run["rows"]
    info = hardware_info()
    stem = result_stem(info, threads)
    assert stem.startswith("latency-") and f"-t{'-'.join(map(str, threads))}-torch" in stem
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.csv", f"{stem}.json"]  # no temp files left
    with open(out / f"{stem}.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert [r["model"] for r in table] == [r["model"] for r in rows]
    assert float(table[0]["median_ms"]) == pytest.approx(rows[0]["median_ms"])
    data = json.loads((out / f"{stem}.json").read_text())
    assert data["rows"] == rows
    meta = data["meta"]
    for key in ("cpu", "cores", "threads", "torch", "transformers", "python", "date", "warmup", "repeats"):
        assert key in meta
    assert meta["random_weights"] is True
    assert meta["threads"] == threads and meta["warmup"] == 1 and meta["repeats"] == 3
    assert meta["torch"] == torch.__version__ and meta["cpu"] == info["cpu"]


def test_result_stem_slugifies():
    info = {"cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "torch": "2.5.1+cpu", "transformers": "4.46.0"}
    assert result_stem(info, [1, 4]) == (
        "latency-intel-r-xeon-r-platinum-8375c-cpu-2-90ghz-t1-4-torch2.5.1-cpu-transformers4.46.0"
    )


def test_time_interleaved_visits_every_model_once_per_round():
    calls: list[str] = []
    forwards = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    ticks = count()
    timed: list[str] = []
    times = time_interleaved(forwards, warmup=2, repeats=4, on_timed=timed.append, clock=lambda: float(next(ticks)))
    warm, rounds = calls[:6], calls[6:]
    assert sorted(warm) == ["a", "a", "b", "b", "c", "c"]
    assert [rounds[i:i + 3] for i in range(0, 12, 3)] == [["a", "b", "c"]] * 4
    assert timed == rounds
    assert times == {"a": [1.0] * 4, "b": [1.0] * 4, "c": [1.0] * 4}  # one clock tick per timed call


def test_time_interleaved_lead_in_runs_each_forward_once_untimed_right_before_its_timed_call(monkeypatch):
    import bortzoo.serve.timing as timing

    calls, pauses = [], []
    monkeypatch.setattr(timing.time, "sleep", pauses.append)
    forwards = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    ticks = count()
    times = time_interleaved(forwards, warmup=0, repeats=2, lead_in=True, clock=lambda: float(next(ticks)))
    assert calls == ["a", "a", "b", "b"] * 2 and pauses == [timing.SETTLE_S] * 4
    assert times == {"a": [1.0, 1.0], "b": [1.0, 1.0]}  # only the second call of each pair is timed


def test_time_interleaved_rejects_no_repeats():
    with pytest.raises(BortzooError, match="repeats"):
        time_interleaved({"a": lambda: None}, warmup=0, repeats=0)


def test_summarise_and_ratio_line_with_presets():
    archs = {"bort": get_arch("bort"), "bert-large": get_arch("bert-large")}
    rows = summarise(archs, {"bort": [0.010, 0.012, 0.011], "bert-large": [0.100, 0.120, 0.110]},
                     batch=1, seq=128, threads=2)
    by = {r["model"]: r for r in rows}
    assert by["bort"]["vs_fastest"] == 1.0
    assert by["bert-large"]["vs_fastest"] == pytest.approx(10.0)
    assert by["bort"]["p90_ms"] == pytest.approx(11.8)
    flop_ratio = archs["bert-large"].encoder_flops(128, 1) / archs["bort"].encoder_flops(128, 1)
    assert by["bert-large"]["flop_ratio"] == pytest.approx(flop_ratio)
    [line] = format_ratios(rows)
    assert line.startswith("batch 1, seq 128, threads 2: bert-large / bort: measured 10.0x, ")
    assert f"FLOP ratio {flop_ratio:.1f}x" in line
    assert line.endswith("claimed 20x (alexa/bort README)")
    table = format_table(rows).splitlines()
    assert table[0].split()[:2] == ["model", "arch"]
    assert len({len(line) for line in table[:2]}) == 1  # header and rule aligned
    assert "<24,16,1024,4096>" in table[3]


def test_percentile_interpolates():
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0], 90) == pytest.approx(10.0)
    assert percentile([1.0, 2.0], 90) == pytest.approx(1.9)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"models": ["bort", "bortt"]}, "unknown architecture 'bortt'"),
        ({"seq": [0]}, "seq must be positive integers, got 0"),
        ({"seq": [128, 513]}, "seq 513 is longer than the 512 position embeddings of bort"),
        ({"batch": [1, -2]}, "batch must be positive integers, got -2"),
        ({"threads": [(os.cpu_count() or 1) + 1]}, f"threads {(os.cpu_count() or 1) + 1} is more than"),
        ({"threads": [0]}, "threads must be positive integers, got 0"),
        ({"repeats": 0}, "repeats must be a positive integer, got 0"),
        ({"models": ["bort", "bort"]}, "model 'bort' is listed twice"),
    ],
)
def test_bad_inputs_fail_before_building_or_writing(kwargs, named, tmp_path, monkeypatch):
    built: list = []
    monkeypatch.setattr(bench_mod, "build_model", lambda arch: built.append(arch))
    out = tmp_path / "results"
    args = {"models": ["bort", "bert-large"], "out": str(out), "progress": False, **kwargs}
    with pytest.raises(BortzooError) as err:
        bench(**args)
    assert named in str(err.value)
    assert built == []
    assert not out.exists()


def test_seq_error_names_the_model():
    with pytest.raises(BortzooError, match=r"seq 65 .* 64 position embeddings of <1,2,32,64>"):
        bench(models=[SMALL], seq=[65], out=None, progress=False)


def test_out_must_be_a_folder(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(BortzooError, match="not a folder"):
        bench(models=["bort"], out=str(path), progress=False)


def test_cli_help_and_parsing():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_function_arguments(bench)
    help_text = parser.format_help()
    for option in ("--models", "--batch", "--seq", "--threads", "--warmup", "--repeats", "--out", "--progress"):
        assert option in help_text
    assert "Intra-op CPU thread counts" in help_text
    cfg = parser.parse_args(["--models", "[bort,bert-large]", "--batch", "[1,8]", "--seq", "32", "--out", "null"])
    assert list(cfg.models) == ["bort", "bert-large"] and list(cfg.batch) == [1, 8]
    assert cfg.seq == 32 and cfg.out is None and cfg.threads is None


@pytest.fixture
def own_engine_only(monkeypatch):
    """auto among the own path's schemes only: the peers are tested in tests/test_engine_*.py, and building
    them for full-size Bort here would cost a minute of CI."""
    from bortzoo.serve import optimize as opt_mod

    monkeypatch.setattr(opt_mod, "ENGINE_NAMES", ("torch",))


def test_optimized_adds_an_auto_twin_row_per_model_naming_its_engine(tmp_path, own_engine_only):
    printed = io.StringIO()
    small_bert_like = Arch(1, 2, 32, 64, vocab_size=100, max_positions=64)
    with contextlib.redirect_stdout(printed):
        rows = bench(models=["bort", small_bert_like], batch=[1], seq=[8], threads=[1], warmup=0,
                     repeats=1, out=str(tmp_path), progress=False, optimized=True)
    names = [r["model"] for r in rows]
    assert names == ["bort", "<1,2,32,64>", "bort optimized", "<1,2,32,64> optimized"]
    by_name = {r["model"]: r for r in rows}
    assert by_name["bort optimized"]["gflops"] == by_name["bort"]["gflops"]  # same shape, same work
    assert all(r["median_ms"] > 0 for r in rows)
    assert by_name["bort"]["engine"] == "transformers-fp32-sdpa"
    chosen = by_name["bort optimized"]["engine"]  # what bortzoo.optimize(engine="auto") chose here
    assert chosen.split("-")[0] in ("torch", "ort", "openvino", "ctranslate2")
    text = printed.getvalue()
    assert "bort / bort optimized: measured" in text and "issue 7 targets 3.5x" in text
    assert chosen in text  # the table's engine column names it
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())["meta"]
    assert meta["optimized"] == "auto"


def test_optimized_must_be_a_bool():
    with pytest.raises(BortzooError, match="optimized must be true or false"):
        bench(models=["bort"], out=None, progress=False, optimized="yes")


def test_cli_optimized_is_a_bare_flag(tmp_path, capsys, own_engine_only):
    from bortzoo.cli import main

    main(["bench", "--models", "1,2,32,64", "--seq", "8", "--threads", "1", "--warmup", "0", "--repeats", "1",
          "--out", str(tmp_path), "--progress", "false", "--optimized"])
    assert "1,2,32,64 optimized" in capsys.readouterr().out
