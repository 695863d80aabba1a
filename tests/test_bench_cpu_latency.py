"""bench/cpu_latency.py: a tiny end-to-end run, the ONNX engines against torch, and the pure parts
(peak selection, targets, ratios, budgeted interleaving, argument checks).

No timing assertions: speed on a shared CI machine is not a property of the code.
"""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch
from conftest import dataset_folder, load_bench_script

from bortzoo.arch import get_arch
from bortzoo.serve.bench import build_model, make_inputs

TINY = "2,2,64,128"  # RoBERTa vocabulary: a realistic embedding, still a fast export

cl = load_bench_script("cpu_latency")


def tiny_args(*extra: str) -> list[str]:
    return ["--arch", TINY, "--large", TINY, "--batch", "1", "--threads", "1", "--repeats", "1",
            "--min-repeats", "1", "--warmup", "0", "--peak-shape", "64", "64", "64", "--peak-warmup", "0",
            "--peak-repeats", "2", "--no-progress", *extra]


# -- end to end -----------------------------------------------------------------------------------
def test_main_times_every_engine_and_setting_and_writes_files(tmp_path, capsys):
    """Needs bortzoo.optimize: the bortzoo-int8 and bortzoo-bf16 rows must be timed, not skipped."""
    out = tmp_path / "results"
    result = cl.main(tiny_args("--seq", "8", "16", "--precisions", "int8", "bf16", "--out", str(out)))
    text = capsys.readouterr().out

    engines = list(cl.ENGINES)  # --precisions int8 bf16: all six
    assert [r["engine"] for r in result["rows"]] == engines * 2
    assert all(r["status"] == "ok" for r in result["rows"]), [r["status"] for r in result["rows"]]

    assert text.startswith("CPU: ") and "onnxruntime 1." in text and "torch " in text
    for heading in ("GEMM peak: M=64 K=64 N=64", "Latency, median ms", "% of the GEMM peak",
                    "Speed-up of bortzoo = their median ms / ours", "TARGETS"):
        assert heading in text
    for label in ("hf-fp32 bert-large", "hf-fp32 bort", "ort-fp32 bort", "ort-int8 bort", "bortzoo-int8 bort",
                  "bortzoo-bf16 bort"):
        assert label in text
    assert "onnxruntime MatMulInteger u8s8 (MLAS)" in text and "torch._int_mm s8s8" in text
    # the grid has no batch 1 / seq 128 setting: every target says so instead of guessing
    verdicts = [line.split()[0] for line in text[text.index("TARGETS"):].splitlines()[1:9]]
    assert verdicts == ["not"] * 8 and text.count("not in the run's grid") == 8

    csv_files, json_files = sorted(out.glob("cpu_latency-*.csv")), sorted(out.glob("cpu_latency-*.json"))
    assert len(csv_files) == len(json_files) == 1
    assert "-torch" in csv_files[0].name and "-ort1." in csv_files[0].name
    assert sorted(result["files"]) == sorted(csv_files + json_files)
    rows = list(csv.DictReader(csv_files[0].open()))
    assert len(rows) == 6 * 2
    assert {(r["engine"], r["seq"]) for r in rows} == {(e, s) for e in engines for s in ("8", "16")}
    assert all(float(r["median_ms"]) > 0 and float(r["achieved_gops"]) > 0 for r in rows)
    assert all(float(r["pct_of_peak"]) > 0 and r["peak_backend"] for r in rows)
    assert {r["dtype"] for r in rows if r["engine"].startswith("bortzoo-int8")} == {"int8"}

    data = json.loads(json_files[0].read_text())
    meta = data["meta"]
    assert {"cpu", "cores", "torch", "transformers", "onnxruntime", "onnx"} <= set(meta)
    assert {p["dtype"] for p in meta["peaks"]} == {"fp32", "bf16", "int8"}
    assert meta["args"]["seq"] == [8, 16] and meta["args"]["engines"] == engines
    assert meta["optimize"]["bortzoo-int8-bort"]["precision"] == "int8"
    assert len(data["rows"]) == 12 and len(data["targets"]) == 8 + 2  # latency + accuracy targets
    assert all(t["status"] == "not measured" for t in data["targets"])
    assert "no --guard MODEL --guard-task TASK given" in text


def test_without_onnxruntime_the_ort_parts_say_not_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cl, "ort", None)
    monkeypatch.chdir(tmp_path)
    result = cl.main(tiny_args("--seq", "8", "--engines", "hf-fp32-bort", "ort-fp32-bort", "ort-int8-bort",
                               "--out", "none"))
    captured = capsys.readouterr()
    assert "pip install bortzoo[bench]" in captured.err
    status = {r["engine"]: r["status"] for r in result["rows"]}
    assert status["hf-fp32-bort"] == "ok" and result["rows"][0]["median_ms"] > 0
    assert status["ort-fp32-bort"] == status["ort-int8-bort"] == "not installed (pip install bortzoo[bench])"
    assert all(r["gops"] is None for r in result["meta"]["gemm"] if r["backend"].startswith("onnxruntime"))
    assert "onnxruntime not installed (pip install bortzoo[bench])" in captured.out
    assert result["files"] == [] and not list(tmp_path.rglob("cpu_latency-*"))  # --out none
    assert cl.result_stem(result["meta"]).endswith("-no-ort")


# -- the onnxruntime engines ----------------------------------------------------------------------
def test_ort_engines_compute_what_the_torch_model_computes(tmp_path):
    arch = get_arch(TINY)
    model = build_model(arch)
    engines = cl.build_ort_engines(model, arch, tmp_path)
    assert set(engines) == {"ort-fp32-bort", "ort-int8-bort"}
    for batch, seq in ((1, 16), (3, 40)):  # neither is the export's example shape: the axes are dynamic
        inputs = make_inputs(arch, batch, seq)
        inputs["attention_mask"][0, -4:] = 0  # padding goes through the same mask
        with torch.inference_mode():
            reference = model(**inputs).last_hidden_state.numpy()
        fp32 = engines["ort-fp32-bort"](1, inputs)
        int8 = engines["ort-int8-bort"](1, inputs)
        assert fp32.shape == int8.shape == reference.shape == (batch, seq, arch.hidden)
        assert abs(fp32 - reference).max() < 1e-4
        err = abs(int8 - reference)
        assert err.max() < 0.25 and err.mean() < 0.05  # quantised: close, not equal
        assert err.max() > 1e-4  # ... and really quantised
    assert engines["ort-int8-bort"].path.stat().st_size < engines["ort-fp32-bort"].path.stat().st_size / 2
    assert set(engines["ort-fp32-bort"].sessions) == {1}  # one session per thread count, reused

    fused = cl.build_ort_engines(model, arch, tmp_path / "fused", fusion=True)  # --ort-fusion
    inputs = make_inputs(arch, 2, 24)
    with torch.inference_mode():
        reference = model(**inputs).last_hidden_state.numpy()
    assert fused["ort-fp32-bort"].path.name == "bort-fused.onnx"
    assert abs(fused["ort-fp32-bort"](1, inputs) - reference).max() < 1e-4
    assert abs(fused["ort-int8-bort"](1, inputs) - reference).max() < 0.25


# -- peaks ----------------------------------------------------------------------------------------
def backend_row(threads, dtype, backend, gops):
    return {"threads": threads, "dtype": dtype, "backend": backend, "gops": gops,
            "median_ms": None if gops is None else 1.0, "status": "ok" if gops else "not installed"}


def test_peak_is_the_fastest_backend_per_dtype_and_thread_count():
    rows = [
        backend_row(1, "fp32", "torch.mm fp32 (MKL)", 93.0),
        backend_row(1, "fp32", "onnxruntime MatMul fp32 (MLAS)", 163.0),
        backend_row(1, "int8", "torch._int_mm s8s8", 160.0),
        backend_row(1, "int8", "oneDNN qlinear u8s8 (torch)", 476.0),
        backend_row(1, "int8", "onnxruntime MatMulInteger u8s8 (MLAS)", 794.0),
        backend_row(1, "bf16", "torch.mm bf16 (oneDNN)", 420.0),
        backend_row(2, "int8", "torch._int_mm s8s8", 900.0),
        backend_row(2, "int8", "onnxruntime MatMulInteger u8s8 (MLAS)", None),  # missing: ignored
        backend_row(2, "fp32", "onnxruntime MatMul fp32 (MLAS)", None),
    ]
    peaks = cl.select_peaks(rows)
    assert peaks[(1, "fp32")] == {"threads": 1, "dtype": "fp32", "gops": 163.0,
                                  "backend": "onnxruntime MatMul fp32 (MLAS)"}
    assert peaks[(1, "int8")]["backend"] == "onnxruntime MatMulInteger u8s8 (MLAS)"
    assert peaks[(1, "bf16")]["gops"] == 420.0
    assert peaks[(2, "int8")] == {"threads": 2, "dtype": "int8", "gops": 900.0, "backend": "torch._int_mm s8s8"}
    assert (2, "fp32") not in peaks  # no backend measured: no peak, rather than a zero
    table = cl.format_peak_table(rows)
    starred = [line for line in table.splitlines() if line.rstrip().endswith("*")]
    assert len(starred) == 4 and all("torch.mm fp32" not in line for line in starred)
    assert "not installed" in table


def test_gemm_forwards_cover_every_backend_here():
    forwards, missing = cl.gemm_forwards((32, 48, 16), threads=1)
    assert set(forwards) | set(missing) == {b.name for b in cl.GEMM_BACKENDS}
    assert {"torch.mm fp32 (MKL)", "onnxruntime MatMul fp32 (MLAS)",
            "onnxruntime MatMulInteger u8s8 (MLAS)"} <= set(forwards)
    assert cl.gemm_ops(32, 48, 16) == 2 * 32 * 48 * 16


# -- targets and ratios ---------------------------------------------------------------------------
ARCHS = {"large": get_arch("bert-large"), "bort": get_arch("bort")}
ENGINES = ["hf-fp32-bert-large", "hf-fp32-bort", "ort-fp32-bort", "ort-int8-bort", "bortzoo-int8-bort"]


def setting_rows(batch, seq, threads, ms, peaks=None, missing=None):
    """Rows of one setting from median milliseconds per engine (one timed round each)."""
    times = {name: [value / 1e3] for name, value in ms.items()}
    return cl.model_rows(ENGINES, ARCHS, times, missing or {}, peaks or {}, batch, seq, threads)


def by_key(results):
    return {(r["reference"], r["batch"], r["seq"], r["threads"]): r for r in results}


def test_targets_pass_miss_with_margin_and_not_measured():
    flops_b8 = ARCHS["bort"].encoder_flops(128, 8)
    int8_peak = flops_b8 / 0.100 / 1e9 / 0.6  # bortzoo-int8 at 100 ms reaches exactly 60% of it
    peaks = {(1, "int8"): {"gops": int8_peak, "backend": "x"}, (1, "fp32"): {"gops": 100.0, "backend": "y"}}
    rows = (
        setting_rows(1, 128, 1, {"hf-fp32-bert-large": 930.0, "hf-fp32-bort": 70.0, "ort-fp32-bort": 33.0,
                                 "ort-int8-bort": 13.3, "bortzoo-int8-bort": 12.0}, peaks)
        + setting_rows(1, 128, 2, {"hf-fp32-bert-large": 600.0, "hf-fp32-bort": 40.0, "ort-fp32-bort": 20.0,
                                   "bortzoo-int8-bort": 14.0}, peaks,
                       missing={"ort-int8-bort": cl.NOT_INSTALLED})
        + setting_rows(8, 128, 1, {"bortzoo-int8-bort": 100.0}, peaks)
    )
    results = cl.evaluate_targets(rows)
    assert len(results) == 8
    got = by_key(results)

    large = got[("hf-fp32-bert-large", 1, 128, 1)]
    assert large["status"] == "PASS" and large["value"] == pytest.approx(930 / 12)
    assert got[("hf-fp32-bort", 1, 128, 1)]["value"] == pytest.approx(70 / 12)
    assert got[("ort-int8-bort", 1, 128, 1)]["status"] == "PASS"

    miss = got[("hf-fp32-bert-large", 1, 128, 2)]  # 600 / 14 = 42.9x < 50x
    assert miss["status"] == "MISS" and miss["value"] == pytest.approx(600 / 14)
    assert miss["shortfall"] == pytest.approx(50 - 600 / 14)
    assert miss["needed_ms"] == pytest.approx(12.0)  # 600 ms / 50
    assert "short by 7.14x; bortzoo-int8 bort needs to be 14.3% faster: 14.00 -> <= 12.00 ms" in miss["detail"]

    peak = got[("peak", 8, 128, 1)]
    assert peak["status"] == "MISS" and peak["value"] == pytest.approx(60.0) and peak["unit"] == "%"
    assert "short by 10.0 points" in peak["detail"] and peak["needed_ms"] == pytest.approx(100 * 60 / 70)

    not_installed = got[("ort-int8-bort", 1, 128, 2)]
    assert not_installed["status"] == "not measured" and not_installed["value"] is None
    assert "ort-int8-bort not installed (pip install bortzoo[bench])" in not_installed["detail"]
    absent = got[("peak", 8, 128, 2)]
    assert absent["status"] == "not measured" and "not in the run's grid" in absent["detail"]

    text = cl.format_targets(results)
    assert "PASS          bortzoo-int8 bort vs hf-fp32 bert-large >= 50x at batch 1, seq 128, threads 1: " \
           "measured 77.50x" in text
    assert "MISS          bortzoo-int8 bort vs hf-fp32 bert-large >= 50x at batch 1, seq 128, threads 2: " \
           "measured 42.86x (short by 7.14x" in text
    assert "MISS          bortzoo-int8 bort % of the int8 peak >= 70% at batch 8, seq 128, threads 1: " \
           "measured 60.0%" in text
    assert text.count("not measured") == 2


def test_target_exactly_met_passes_and_the_peak_needs_a_peak():
    rows = setting_rows(1, 128, 1, {"ort-int8-bort": 12.0, "bortzoo-int8-bort": 12.0})
    rows += setting_rows(8, 128, 1, {"bortzoo-int8-bort": 50.0})  # no peaks given
    got = by_key(cl.evaluate_targets(rows))
    assert got[("ort-int8-bort", 1, 128, 1)]["status"] == "PASS"  # >= 1.0, not > 1.0
    assert got[("hf-fp32-bort", 1, 128, 1)]["status"] == "not measured"
    assert "hf-fp32-bort not measured" in got[("hf-fp32-bort", 1, 128, 1)]["detail"]
    assert "no int8 GEMM peak at 1 threads" in got[("peak", 8, 128, 1)]["detail"]


def test_speedups_are_their_ms_over_ours_and_tables_show_every_engine():
    peaks = {(1, "int8"): {"gops": 800.0, "backend": "x"}}
    rows = setting_rows(1, 128, 1, {"hf-fp32-bert-large": 900.0, "hf-fp32-bort": 60.0, "ort-fp32-bort": 30.0,
                                    "ort-int8-bort": 15.0, "bortzoo-int8-bort": 10.0}, peaks)
    (s,) = cl.speedups(rows)
    assert s["vs_hf-fp32-bert-large"] == pytest.approx(90.0)
    assert s["vs_hf-fp32-bort"] == pytest.approx(6.0) and s["vs_ort-int8-bort"] == pytest.approx(1.5)
    assert s["pct_of_peak"] == pytest.approx(ARCHS["bort"].encoder_flops(128, 1) / 0.010 / 1e9 / 800 * 100)
    table = cl.format_ratio_table(rows)
    assert "90.0x" in table and "6.00x" in table and "1.50x" in table and "% int8" in table
    latency = cl.format_latency_table(rows)
    assert latency.splitlines()[2].split() == ["1", "128", "1", "900.0", "60.0", "30.0", "15.0", "10.0"]


# -- timing ---------------------------------------------------------------------------------------
def test_rounds_rotate_and_stop_once_the_budget_is_used():
    calls = []
    forwards = {name: (lambda n=name: calls.append(n)) for name in ("a", "b")}
    ticks = iter(range(10_000))
    times = cl.time_setting(forwards, warmup=1, repeats=10, min_repeats=2, max_seconds=5.0, lead_in=False,
                            clock=lambda: float(next(ticks)))  # every timed call takes 1 "second"
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warmup, then rotating rounds
    assert times == {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}  # 6 s used after 3 rounds >= 5 s

    ticks = iter(range(10_000))
    few = cl.time_setting(forwards, warmup=0, repeats=10, min_repeats=4, max_seconds=1.0, lead_in=False,
                          clock=lambda: float(next(ticks)))
    assert len(few["a"]) == 4  # the minimum holds even when the budget is spent at once


def test_lead_in_pauses_then_runs_an_untimed_call_of_the_same_engine(monkeypatch):
    events = []
    monkeypatch.setattr(cl.time, "sleep", lambda s: events.append(("sleep", s)))
    fast = {name: (lambda n=name: events.append(n)) for name in ("a", "b")}
    ticks = iter(range(10_000))
    times = cl.time_setting(fast, warmup=0, repeats=2, min_repeats=2, max_seconds=1e9,
                            clock=lambda: next(ticks) * 0.001)  # every call takes 1 ms
    pause = ("sleep", cl.SETTLE_S)
    # each timed call: pause (other runtime's threads sleep), untimed call, timed call
    assert events == [pause, "a", "a", pause, "b", "b", pause, "b", "b", pause, "a", "a"]
    assert times["a"] == pytest.approx([0.001, 0.001])

    events.clear()
    ticks = iter(range(10_000))
    cl.time_setting(fast, warmup=0, repeats=2, min_repeats=2, max_seconds=1e9,
                    clock=lambda: float(next(ticks)))  # every call takes 1 s: no untimed call after the first
    assert events == [pause, "a", "a", pause, "b", "b", pause, "b", pause, "a"]


# -- arguments ------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--threads", str((os.cpu_count() or 1) + 1)], "--threads"),
    (["--batch", "0"], "--batch must be positive"),
    (["--seq", "16", "-3"], "--seq must be positive"),
    (["--engines", "ort-int4-bort"], "--engines: invalid choice: 'ort-int4-bort'"),
    (["--precisions", "fp8"], "--precisions: invalid choice"),
    (["--min-repeats", "5", "--repeats", "3"], "--min-repeats 5 is more than --repeats 3"),
    (["--max-seconds", "0"], "--max-seconds must be positive"),
    (["--arch", "bortt"], "--arch: unknown architecture 'bortt'"),
    (["--seq", "600"], "--seq 600 is longer than the 512 position embeddings"),
    (["--warmup", "-1"], "--warmup must be at least 0"),
    (["--peak-shape", "0", "8", "8"], "--peak-shape must be positive"),
])
def test_bad_arguments_exit_naming_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cl.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    if "--threads" in message:
        assert f"more than the {os.cpu_count()} CPUs" in err


def test_defaults_and_engine_selection():
    assert cl.build_parser().get_default("threads") == [1, 2]
    args = cl.parse_args(["--threads", "1"])  # the default 2 would not validate on a one-CPU runner
    assert (args.batch, args.seq, args.threads) == ([1, 8], [32, 128, 512], [1])
    assert args.engines == ["hf-fp32-bert-large", "hf-fp32-bort", "ort-fp32-bort", "ort-int8-bort",
                            "bortzoo-int8-bort"]
    assert (args.repeats, args.min_repeats, args.max_seconds, args.warmup) == (10, 3, 20.0, 2)
    assert args.peak_shape == [1024, 1024, 1024] and args.out == "bench/results"
    assert cl.parse_args(["--precisions", "int8", "bf16"]).engines[-1] == "bortzoo-bf16-bort"
    assert cl.parse_args(["--engines", "ort-int8-bort", "ort-int8-bort"]).engines == ["ort-int8-bort"]


# -- the accuracy guard ---------------------------------------------------------------------------
def test_guard_targets_pass_miss_and_not_measured():
    ok = cl.guard_targets({"agreement": 0.995, "metric_change": -0.2, "metric_fp32": 90.0,
                           "metric_optimized": 89.8}, "m on sst2")
    assert [t["status"] for t in ok] == ["PASS", "PASS"] and ok[0]["value"] == pytest.approx(99.5)
    bad = cl.guard_targets({"agreement": 0.98, "metric_change": 0.7, "metric_fp32": 90.0,
                            "metric_optimized": 90.7}, "m on sst2")
    assert [t["status"] for t in bad] == ["MISS", "MISS"]
    assert "short by 1.00 points" in bad[0]["detail"] and "0.20 points beyond" in bad[1]["detail"]
    regression = cl.guard_targets({"agreement": None, "metric_change": 0.1, "metric_fp32": 80.0,
                                   "metric_optimized": 80.1}, "m on stsb")
    assert [t["status"] for t in regression] == ["not measured", "PASS"]
    text = cl.format_targets(bad + cl.guard_targets(None, "a dev sample", "no model"))
    assert "MISS          bortzoo-int8 prediction agreement with fp32 >= 99% at m on sst2: measured 98.0%" in text
    assert "measured +0.70 points" in text and "not measured  bortzoo-int8 metric within 0.5 points" in text


def test_main_runs_the_guard_on_a_fine_tuned_folder(tmp_path, capsys):
    from test_convert import save_task_folder, tiny

    from bortzoo.tasks import get_task

    folder = save_task_folder(tiny("sst2", "bort"), tmp_path / "sst2")
    result = cl.main(tiny_args("--seq", "8", "--engines", "bortzoo-int8-bort", "--out", "none",
                               "--guard", str(folder), "--guard-task", "sst2",
                               "--guard-data", dataset_folder(get_task("sst2")), "--guard-examples", "16"))
    guard = [t for t in result["targets"] if t["reference"] == "fp32"]
    assert len(guard) == 2 and all(t["status"] in ("PASS", "MISS") for t in guard)
    assert "(16 checked)" in guard[0]["where"]
    assert "prediction agreement with fp32" in capsys.readouterr().out


def test_guard_that_cannot_run_keeps_the_latency_results(tmp_path):
    result = cl.main(tiny_args("--seq", "8", "--engines", "bortzoo-int8-bort", "--out", "none",
                               "--guard", str(tmp_path / "missing"), "--guard-task", "sst2"))
    assert result["rows"][0]["status"] == "ok"
    assert all(t["status"] == "not measured" and "could not run" in t["detail"]
               for t in result["targets"] if t["reference"] == "fp32")


@pytest.mark.parametrize("args, named", [
    (["--guard", "m"], "--guard and --guard-task go together"),
    (["--guard-task", "sst2"], "--guard and --guard-task go together"),
    (["--guard", "m", "--guard-task", "nope"], "--guard-task: unknown task 'nope'"),
    (["--guard-examples", "0"], "--guard-examples must be at least 1"),
])
def test_bad_guard_args_are_named(args, named, capsys):
    with pytest.raises(SystemExit) as exit_:
        cl.parse_args(args)
    assert exit_.value.code == 2 and named in capsys.readouterr().err
