"""bench/cpu_latency.py: one tiny end-to-end run shared by the checks of its rows, tables and files (every engine
`candidates("auto")` lists, then auto), engines that cannot run reported as rows, and the pure parts (targets,
ratios, peak selection, budgeted interleaving, file names, argument checks).

No timing assertions: speed on a shared CI machine is not a property of the code.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os

import pytest
import torch
from conftest import dataset_folder, load_bench_script

from bortzoo.arch import get_arch
from bortzoo.errors import BortzooError
from bortzoo.serve.engines.base import EngineError
from bortzoo.serve.optimize import CandidateResult, candidates

TINY = "2,2,64,128"  # RoBERTa vocabulary: a realistic embedding, still a fast export

cl = load_bench_script("cpu_latency")


def tiny_args(*extra: str) -> list[str]:
    return ["--arch", TINY, "--large", TINY, "--threads", "1", "--repeats", "1", "--warmup", "0",
            "--peak-shape", "64", "64", "64", "--peak-warmup", "0", "--peak-repeats", "2", "--no-progress", *extra]


def expected_rows() -> list[str]:
    """The row names `engine_list` should give on this machine, from candidates() itself."""
    names = ["hf-fp32-bert-large", "hf-fp32-bort"]
    cands = [c.name for c in candidates("auto")]
    for name in cands:
        names.append(f"{name}-bort")
        if name == "torch-int8" and "torch-bf16" not in cands:
            names.append("torch-bf16-bort")
    return [*names, "auto-bort"]


# -- end to end: one run, several checks -----------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Every engine and auto at two settings (batch 1 and 2, seq 8, 1 thread), files written."""
    out = tmp_path_factory.mktemp("cpu-latency") / "results"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = cl.main(tiny_args("--batch", "1", "2", "--seq", "8", "--out", str(out)))
    return {**result, "text": stdout.getvalue(), "out": out}


def test_every_candidate_and_auto_is_a_row_at_every_setting(run):
    names = expected_rows()
    rows = run["rows"]
    assert [r["engine"] for r in rows] == names * 2
    assert [(r["batch"], r["seq"], r["threads"]) for r in rows] == [(1, 8, 1)] * len(names) + [(2, 8, 1)] * len(names)
    pending = {f"{c.name}-bort": c for c in candidates("auto") if c.status == "pending"}
    for r in rows:
        if r["engine"].startswith("hf-") or r["engine"] in pending or r["engine"] == "auto-bort":
            # everything that can run here was built, self-checked and timed
            assert r["status"] == "ok" and r["median_ms"] > 0 and r["achieved_gops"] > 0, (r["engine"], r["status"])
        else:  # not installed / not applicable here: said, never dropped
            assert r["median_ms"] is None and r["status"].startswith(("not installed (pip install 'bortzoo[serve]')",
                                                                      "not applicable: ")), r
    kinds = {r["engine"]: r["kind"] for r in rows}
    assert kinds["hf-fp32-bort"] == "hf" and kinds["torch-int8-bort"] == "torch" and kinds["auto-bort"] == "auto"
    assert {kinds[n] for n in names if n.split("-")[0] not in ("hf", "torch", "auto")} == {"peer"}
    dtypes = {r["engine"]: r["dtype"] for r in rows}
    assert dtypes["hf-fp32-bert-large"] == "fp32" and dtypes["torch-int8-bort"] == "int8"
    for name in names:
        if name.count("-") >= 2 and name.split("-")[0] not in ("hf", "auto"):
            assert dtypes[name] == name.split("-")[1]  # the scheme's precision: ort-int8-block-bort -> int8


def test_auto_row_names_its_choice_and_its_dtype(run):
    autos = [r for r in run["rows"] if r["engine"] == "auto-bort"]
    report = run["meta"]["auto"]["1"]["report"]
    chose = report["chosen"]
    assert all(r["chose"] == chose for r in autos) and run["meta"]["auto"]["1"]["chose"] == chose
    assert f"{chose}-bort" in {r["engine"] for r in run["rows"]}
    assert all(r["dtype"] == chose.split("-")[1] and r["pct_of_peak"] > 0 for r in autos)
    assert all(r["chose"] is None for r in run["rows"] if r["engine"] != "auto-bort")
    # auto measured at the grid's (batch, seq) pairs, every candidate in its report
    assert report["shapes"] == [[1, 8], [2, 8]] or report["shapes"] == [(1, 8), (2, 8)]
    assert [c["engine"] + "-" + c["scheme"] for c in report["candidates"]] == [c.name for c in candidates("auto")]
    assert report["threads"] == 1


def test_report_text_has_the_peaks_tables_ratios_and_targets(run):
    text = run["text"]
    assert text.startswith("CPU: ") and "torch " in text and "onnxruntime " in text and "ctranslate2 " in text
    for heading in ("GEMM peak: M=64 K=64 N=64", "Latency, median ms", "% of the GEMM peak",
                    "Speed-up of auto-bort = their median ms / auto's", "vs fastest peer", "TARGETS",
                    f"auto chose: 1 thread(s): {run['meta']['auto']['1']['chose']}",
                    f"bortzoo.optimize chose {run['meta']['auto']['1']['chose']}"):
        assert heading in text, heading
    assert "onnxruntime MatMulInteger u8s8 (MLAS)" in text and "torch._int_mm s8s8" in text
    header = text[text.index("Latency, median ms"):].splitlines()[1].split()
    assert header[:3] == ["batch", "seq", "threads"] and header[-1] == "auto" and "torch-int8" in header
    for row in run["rows"]:
        if row["status"] not in ("ok",):
            assert f"{row['engine']}: {row['status']}" in text  # the reason of every row not timed

    targets = run["targets"]
    # the grid has no seq 128: the four headline targets say so instead of guessing
    assert [t["status"] for t in targets[:4]] == ["not measured"] * 4
    assert all("not in the run's grid" in t["detail"] for t in targets[:4])
    assert all("int8-peak bound n/a" in t["target"] for t in targets[:2])  # the bound is in the line either way
    peer = targets[4:6]  # auto vs the fastest peer at each grid point
    assert [(t["batch"], t["seq"], t["threads"]) for t in peer] == [(1, 8, 1), (2, 8, 1)]
    for t in peer:
        if t["status"] == "not measured":
            assert t["detail"].startswith("no peer engine")
        else:
            assert t["status"] in ("PASS", "MISS") and t["reference"].endswith("-bort") and t["value"] > 0
            assert f"auto-bort vs the fastest peer ({t['reference']}) >= 1x at batch {t['batch']}" in text
    assert len(targets) == 4 + 2 + 2 and "no --guard MODEL --guard-task TASK given" in text


def test_files_are_named_after_cpu_flags_and_versions_and_hold_the_meta(run):
    out = run["out"]
    csv_files, json_files = sorted(out.glob("cpu_latency-*.csv")), sorted(out.glob("cpu_latency-*.json"))
    assert len(csv_files) == len(json_files) == 1 and sorted(run["files"]) == sorted(csv_files + json_files)
    meta = run["meta"]
    stem = csv_files[0].stem
    assert stem == cl.result_stem(meta)
    assert f"-torch{cl.slug(torch.__version__, keep='.')}" in stem
    for flag in meta["kernel_flags"]:
        assert f"-{flag}" in stem
    versions = meta["versions"]
    for lib, short in (("onnxruntime", "-ort"), ("openvino", "-ov"), ("ctranslate2", "-ct2-")):
        assert (f"{short}{versions[lib]}" in stem) == bool(versions.get(lib))

    rows = list(csv.DictReader(csv_files[0].open()))
    assert len(rows) == len(run["rows"]) and {"engine", "kind", "dtype", "chose", "status"} <= set(rows[0])
    assert all(float(r["median_ms"]) > 0 for r in rows if r["status"] == "ok")

    data = json.loads(json_files[0].read_text())
    meta = data["meta"]
    assert {"cpu", "cpu_summary", "kernel_flags", "versions", "has_vnni", "auto", "engine_status", "builds",
            "gemm", "peaks", "args"} <= set(meta)
    assert {"torch", "transformers", "onnxruntime", "openvino", "ctranslate2"} <= set(meta["versions"])
    assert meta["cpu_summary"].startswith(meta["cpu"])
    assert meta["auto"]["1"]["report"]["chosen"] == meta["auto"]["1"]["chose"]
    assert meta["args"]["engines"] == expected_rows() and meta["args"]["seq"] == [8]
    assert meta["engine_status"]["torch-int8-bort"] == {"1": "ok"}
    assert meta["builds"]["torch-int8-bort"]["1"]["self_check_error"] is not None
    assert {p["dtype"] for p in meta["peaks"]} == {"fp32", "bf16", "int8"}
    assert len(data["rows"]) == len(rows) and len(data["targets"]) == 4 + 2 + 2  # headline, per point, accuracy


# -- engines that cannot run are rows that say why ---------------------------------------------------
def test_engines_not_installed_are_rows_saying_so(tmp_path, monkeypatch, capsys):
    fake = [CandidateResult("torch", "int8"),
            CandidateResult("ort", "int8", status="not installed",
                            reason="not installed: pip install 'bortzoo[serve]'"),
            CandidateResult("openvino", "int8", status="not installed",
                            reason="No module named 'bortzoo.serve.engines.openvino'")]
    monkeypatch.setattr(cl, "candidates", lambda engine="auto": [CandidateResult(c.engine, c.scheme, c.status,
                                                                                   c.reason) for c in fake])
    monkeypatch.chdir(tmp_path)
    result = cl.main(tiny_args("--seq", "8", "--batch", "1", "--out", "none", "--engines", "hf-fp32-bort",
                               "torch-int8-bort", "ort-int8-bort", "openvino-int8-bort", "torch-bf16-bort"))
    text = capsys.readouterr().out
    status = {r["engine"]: r["status"] for r in result["rows"]}
    assert list(status) == ["hf-fp32-bort", "torch-int8-bort", "torch-bf16-bort", "ort-int8-bort",
                            "openvino-int8-bort"]
    assert status["hf-fp32-bort"] == status["torch-int8-bort"] == "ok"
    assert status["ort-int8-bort"] == "not installed (pip install 'bortzoo[serve]')"
    assert status["openvino-int8-bort"] == ("not installed (pip install 'bortzoo[serve]'): No module named "
                                            "'bortzoo.serve.engines.openvino'")
    assert status["torch-bf16-bort"].startswith("not applicable: no native bf16")  # not a candidate here
    assert "ort-int8-bort: not installed (pip install 'bortzoo[serve]')" in text
    # no auto-bort and no peer timed: the per-point target says why, not a number
    (peer,) = [t for t in result["targets"] if t["seq"] == 8]
    assert peer["status"] == "not measured" and "auto-bort not run (--engines)" in peer["detail"]
    assert result["files"] == [] and not list(tmp_path.rglob("cpu_latency-*"))  # --out none


def test_a_candidate_that_fails_says_cannot_build_or_failed_guard(monkeypatch, tmp_path):
    from bortzoo.serve.bench import build_model

    def fake_optimize(model, engine="auto", *, scheme=None, threads=None, shapes=None, cache_dir=None):
        if engine == "ort":
            raise EngineError("ort", "the exporter cannot trace this attention")
        if engine == "ctranslate2":
            raise BortzooError("engine 'ctranslate2' cannot serve this model on X: ctranslate2-int8: failed guard "
                               "(ctranslate2-int8's encoder output is 40.00% off the original's (at most 15.0% is "
                               "right for int8)); the fastest engine that does: torch-int8 (1.00 ms at 1x128)")
        raise AssertionError(f"not asked for {engine}")

    monkeypatch.setattr(cl, "optimize", fake_optimize)
    engines = cl.engine_list([CandidateResult("ort", "int8"), CandidateResult("ctranslate2", "int8"),
                              CandidateResult("openvino", "int8", status="cannot build", reason="no IR")])
    engines = [e for e in engines if e.kind == "peer"]
    built = cl.build_engines(engines, build_model(get_arch(TINY)), 1, [(1, 8)], tmp_path)
    assert built.models == {} and built.report is None
    assert built.status == {
        "ort-int8-bort": "cannot build: the exporter cannot trace this attention",
        "ctranslate2-int8-bort": "failed guard: ctranslate2-int8's encoder output is 40.00% off the original's "
                                 "(at most 15.0% is right for int8)",
        "openvino-int8-bort": "cannot build: no IR",
    }


def test_failure_status_reads_optimize_errors():
    assert cl.failure_status("ort-fp32", EngineError("ort", "opset 99")) == "cannot build: opset 99"
    err = BortzooError("engine 'ort' cannot serve this model on CPU: ort-fp32: cannot build (no onnx (pip)); "
                       "the fastest engine that does: none")
    assert cl.failure_status("ort-fp32", err) == "cannot build: no onnx (pip)"
    assert cl.failure_status("ort-fp32", BortzooError("something else\nmore")) == "failed: something else"


def test_engine_list_follows_candidates_and_select_validates_names():
    cands = [CandidateResult("torch", "int8"), CandidateResult("ort", "int8-block"), CandidateResult("ort", "fp32")]
    engines = cl.engine_list(cands)
    assert [e.name for e in engines] == ["hf-fp32-bert-large", "hf-fp32-bort", "torch-int8-bort", "torch-bf16-bort",
                                         "ort-int8-block-bort", "ort-fp32-bort", "auto-bort"]
    assert [e.dtype for e in engines] == ["fp32", "fp32", "int8", "bf16", "int8", "fp32", None]
    assert [e.kind for e in engines] == ["hf", "hf", "torch", "torch", "peer", "peer", "auto"]
    assert engines[4].candidate == "ort-int8-block" and engines[3].status.startswith("not applicable")
    assert engines[2].status == "pending"
    chosen = cl.select_engines(engines, ["auto-bort", "hf-fp32-bort"])
    assert [e.name for e in chosen] == ["hf-fp32-bort", "auto-bort"]  # the list's order
    with pytest.raises(BortzooError, match="unknown engine 'ort-int4-bort'; the engines here are: hf-fp32-bert-large"):
        cl.select_engines(engines, ["ort-int4-bort"])
    both = cl.engine_list([CandidateResult("torch", "int8"), CandidateResult("torch", "bf16")])
    assert [e.name for e in both].count("torch-bf16-bort") == 1 and both[3].status == "pending"


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


def test_gemm_forwards_cover_every_backend_here_and_say_when_onnxruntime_is_missing(monkeypatch):
    forwards, missing = cl.gemm_forwards((32, 48, 16), threads=1)
    assert set(forwards) | set(missing) == {b.name for b in cl.GEMM_BACKENDS}
    assert {"torch.mm fp32 (MKL)", "onnxruntime MatMul fp32 (MLAS)",
            "onnxruntime MatMulInteger u8s8 (MLAS)"} <= set(forwards)
    assert cl.gemm_ops(32, 48, 16) == 2 * 32 * 48 * 16
    monkeypatch.setattr(cl, "ort", None)
    forwards, missing = cl.gemm_forwards((32, 48, 16), threads=1)
    assert missing["onnxruntime MatMulInteger u8s8 (MLAS)"] == "not installed (pip install 'bortzoo[serve]')"
    assert "torch.mm fp32 (MKL)" in forwards


# -- targets and ratios (hand-made rows) ------------------------------------------------------------
ARCHS = {"large": get_arch("bert-large"), "bort": get_arch("bort")}
ENGINES = cl.engine_list([CandidateResult("torch", "int8"), CandidateResult("torch", "bf16"),
                          CandidateResult("ort", "int8"), CandidateResult("ctranslate2", "int8")])
NOT_INSTALLED = "not installed (pip install 'bortzoo[serve]')"


def setting_rows(batch, seq, threads, ms, peaks=None, status=None, chose="torch-int8"):
    """Rows of one setting from median milliseconds per engine (one timed round each)."""
    times = {name: [value / 1e3] for name, value in ms.items()}
    return cl.model_rows(ENGINES, ARCHS, times, status or {}, peaks or {}, batch, seq, threads, chose=chose)


def by_key(results):
    return {(r["reference"], r["batch"], r["seq"], r["threads"]): r for r in results}


def test_auto_is_checked_against_the_fastest_peer_at_every_grid_point():
    rows = (setting_rows(1, 32, 1, {"auto-bort": 10.0, "ort-int8-bort": 12.0, "ctranslate2-int8-bort": 11.0,
                                    "torch-int8-bort": 9.0})  # torch is not a peer: the fastest peer is ct2
            + setting_rows(1, 32, 2, {"auto-bort": 10.0, "ort-int8-bort": 9.0, "ctranslate2-int8-bort": 20.0})
            + setting_rows(8, 32, 1, {"auto-bort": 10.0}, status={"ort-int8-bort": NOT_INSTALLED,
                                                                  "ctranslate2-int8-bort": "cannot build: no"})
            + setting_rows(8, 32, 2, {"ort-int8-bort": 9.0}, status={"auto-bort": "failed: nothing held"}))
    results = [r for r in cl.evaluate_targets(rows, {}, vnni=True) if r["seq"] == 32]
    assert [(r["batch"], r["threads"]) for r in results] == [(1, 1), (1, 2), (8, 1), (8, 2)]
    held, miss, none, failed = results
    assert held["status"] == "PASS" and held["reference"] == "ctranslate2-int8-bort"
    assert held["value"] == pytest.approx(1.1) and "(ctranslate2-int8-bort) >= 1x" in held["target"]
    assert miss["status"] == "MISS" and miss["reference"] == "ort-int8-bort" and miss["value"] == pytest.approx(0.9)
    assert "short by 0.1x (ort-int8-bort 9.00 ms); auto-bort needs to be 10.0% faster: 10.00 -> <= 9.00 ms" \
        in miss["detail"]
    assert none["status"] == "not measured" and none["detail"] == (
        f"no peer engine held its self-check here: ort-int8-bort {NOT_INSTALLED}; ctranslate2-int8-bort cannot "
        "build: no")
    assert failed["status"] == "not measured" and failed["detail"] == "auto-bort failed: nothing held"
    text = cl.format_targets(results)
    assert "PASS          auto-bort vs the fastest peer (ctranslate2-int8-bort) >= 1x at batch 1, seq 32, " \
           "threads 1: measured 1.10x" in text
    exact = setting_rows(1, 32, 1, {"auto-bort": 12.0, "ort-int8-bort": 12.0})
    assert cl.peer_target(exact, 1, 32, 1)["status"] == "PASS"  # >= 1.0, not > 1.0
    itself = cl.peer_target(setting_rows(1, 32, 1, {"auto-bort": 12.5, "ort-int8-bort": 12.0}, chose="ort-int8"),
                            1, 32, 1)
    assert itself["status"] == "MISS" and itself["detail"].endswith(
        "; auto runs ort-int8 itself, so the gap is between two copies of one engine")


def test_a_calibrated_peer_is_timed_but_not_the_peer_auto_is_held_to():
    """openvino-int8 is calibrated on the bench's random tokens; auto, given no check= batches, may not choose it."""
    engines = cl.engine_list([CandidateResult("ort", "int8"), CandidateResult("openvino", "int8")])
    assert {e.name: e.calibrated for e in engines if e.kind == "peer"} == {"ort-int8-bort": False,
                                                                           "openvino-int8-bort": True}
    times = {"auto-bort": [0.010], "ort-int8-bort": [0.011], "openvino-int8-bort": [0.008]}
    rows = cl.model_rows(engines, ARCHS, times, {}, {}, 1, 32, 1, chose="ort-int8")
    assert next(r for r in rows if r["engine"] == "openvino-int8-bort")["median_ms"] == pytest.approx(8.0)
    target = cl.peer_target(rows, 1, 32, 1)
    assert target["status"] == "PASS" and target["reference"] == "ort-int8-bort"
    alone = cl.model_rows([e for e in engines if e.name != "ort-int8-bort"], ARCHS, times, {}, {}, 1, 32, 1)
    assert cl.fastest_peer(alone, 1, 32, 1) == (
        None, "only calibrated peers ran, which auto does not consider without check= batches")


def test_against_bert_large_50x_with_vnni_and_the_int8_bound_without(monkeypatch):
    flops = ARCHS["bort"].encoder_flops(128, 1)
    peak_gops = flops / 0.010 / 1e9  # at the int8 peak, Bort takes 10 ms
    peaks = {(1, "int8"): {"gops": peak_gops, "backend": "x"}, (2, "int8"): {"gops": peak_gops, "backend": "x"}}
    rows = (setting_rows(1, 128, 1, {"hf-fp32-bert-large": 930.0, "auto-bort": 12.0}, peaks)
            + setting_rows(1, 128, 2, {"hf-fp32-bert-large": 600.0, "auto-bort": 14.0}, peaks))

    monkeypatch.setattr(cl, "has_vnni", lambda: True)
    got = by_key(cl.evaluate_targets(rows, peaks))
    one, two = got[("hf-fp32-bert-large", 1, 128, 1)], got[("hf-fp32-bert-large", 1, 128, 2)]
    assert one["status"] == "PASS" and one["value"] == pytest.approx(930 / 12) and one["threshold"] == 50
    assert one["bound"] == pytest.approx(93.0) and "int8-peak bound 93.0x" in one["target"]
    assert two["status"] == "MISS" and two["value"] == pytest.approx(600 / 14) and two["needed_ms"] == pytest.approx(12)
    assert "short by 7.14x; auto-bort needs to be 14.3% faster: 14.00 -> <= 12.00 ms" in two["detail"]
    assert two["bound"] == pytest.approx(60.0)

    monkeypatch.setattr(cl, "has_vnni", lambda: False)
    got = by_key(cl.evaluate_targets(rows, peaks))
    one, two = got[("hf-fp32-bert-large", 1, 128, 1)], got[("hf-fp32-bert-large", 1, 128, 2)]
    # bound = bert-large ms / Bort's ms at the int8 peak: 930 / 10 = 93x, pass at >= 69.75x
    assert one["threshold"] == pytest.approx(0.75 * 93) and one["status"] == "PASS" and one["vnni"] is False
    assert "75% of the int8-peak bound 93.0x = 69.8x (CPU without VNNI/AMX)" in one["target"]
    assert two["threshold"] == pytest.approx(45.0) and two["status"] == "MISS"  # 42.9x < 0.75 * 60x
    assert two["needed_ms"] == pytest.approx(600 / 45)
    text = cl.format_targets([one, two])
    assert "PASS          auto-bort vs hf-fp32-bert-large >= 75% of the int8-peak bound 93.0x = 69.8x (CPU " \
           "without VNNI/AMX) at batch 1, seq 128, threads 1: measured 77.50x" in text

    # without an int8 peak there is no bound: a measurement with VNNI, "not measured" without
    assert cl.large_target(rows, {}, 1, vnni=True)["status"] == "PASS"
    assert "int8-peak bound n/a" in cl.large_target(rows, {}, 1, vnni=True)["target"]
    no_bound = cl.large_target(rows, {}, 1, vnni=False)
    assert no_bound["status"] == "not measured" and "no int8 GEMM peak at 1 threads" in no_bound["detail"]
    missing_large = setting_rows(1, 128, 1, {"auto-bort": 12.0}, peaks,
                                 status={"hf-fp32-bert-large": "not measured"})
    assert "hf-fp32-bert-large not measured" in cl.large_target(missing_large, peaks, 1, vnni=True)["detail"]


def test_auto_against_70_percent_of_the_int8_peak_whatever_it_chose():
    flops = ARCHS["bort"].encoder_flops(128, 8)
    int8_peak = flops / 0.100 / 1e9 / 0.6  # auto at 100 ms reaches exactly 60% of it
    peaks = {(1, "int8"): {"gops": int8_peak, "backend": "x"}, (1, "bf16"): {"gops": 50.0, "backend": "y"},
             (2, "int8"): {"gops": int8_peak, "backend": "x"}}
    rows = (setting_rows(8, 128, 1, {"auto-bort": 100.0}, peaks, chose="torch-bf16")
            + setting_rows(8, 128, 2, {"auto-bort": 80.0}, peaks, chose="ort-int8"))
    got = by_key(cl.evaluate_targets(rows, peaks, vnni=True))
    one, two = got[("int8 peak", 8, 128, 1)], got[("int8 peak", 8, 128, 2)]
    assert rows[-1]["dtype"] == "int8" and rows[len(ENGINES) - 1]["dtype"] == "bf16"  # auto: its choice's dtype
    assert one["status"] == "MISS" and one["value"] == pytest.approx(60.0) and one["unit"] == "%"  # the int8 peak
    assert "short by 10.0 points" in one["detail"] and one["needed_ms"] == pytest.approx(100 * 60 / 70)
    assert two["status"] == "PASS" and two["value"] == pytest.approx(75.0)
    assert cl.peak_target(rows, {}, 1)["detail"] == "no int8 GEMM peak at 1 threads"
    absent = cl.peak_target(rows[:len(ENGINES)], peaks, 2)
    assert absent["status"] == "not measured" and "not in the run's grid" in absent["detail"]


def test_speedups_name_the_fastest_peer_and_tables_show_every_engine():
    peaks = {(1, "int8"): {"gops": 800.0, "backend": "x"}}
    rows = setting_rows(1, 128, 1, {"hf-fp32-bert-large": 900.0, "hf-fp32-bort": 60.0, "torch-int8-bort": 10.0,
                                    "torch-bf16-bort": 20.0, "ort-int8-bort": 15.0, "ctranslate2-int8-bort": 12.0,
                                    "auto-bort": 10.0}, peaks)
    (s,) = cl.speedups(rows)
    assert s["vs_hf-fp32-bert-large"] == pytest.approx(90.0) and s["vs_hf-fp32-bort"] == pytest.approx(6.0)
    assert s["fastest_peer"] == "ctranslate2-int8-bort" and s["vs_fastest_peer"] == pytest.approx(1.2)
    assert s["chose"] == "torch-int8"
    assert s["pct_of_peak"] == pytest.approx(ARCHS["bort"].encoder_flops(128, 1) / 0.010 / 1e9 / 800 * 100)
    table = cl.format_ratio_table(rows)
    assert "90.0x" in table and "6.00x" in table and "1.20x ctranslate2-int8-bort" in table and "% int8" in table
    assert "torch-int8" in table.splitlines()[2]
    latency = cl.format_latency_table(rows)
    assert latency.splitlines()[0].split()[3:] == ["hf-fp32", "bert-large", "hf-fp32", "torch-int8", "torch-bf16",
                                                   "ort-int8", "ctranslate2-int8", "auto"]
    assert latency.splitlines()[2].split() == ["1", "128", "1", "900.0", "60.0", "10.0", "20.0", "15.0", "12.0",
                                               "10.0"]
    lonely = setting_rows(1, 128, 1, {"auto-bort": 10.0}, peaks, status={"ort-int8-bort": NOT_INSTALLED})
    (s,) = cl.speedups(lonely)
    assert s["fastest_peer"] is None and "- (none held)" in cl.format_ratio_table(lonely)


# -- files ----------------------------------------------------------------------------------------
def test_result_stem_has_cpu_kernel_flags_limit_and_installed_versions():
    meta = {"cpu": "Intel(R) Xeon(R) Platinum 8488C", "kernel_flags": ["avx512", "avx512_vnni", "avx512_bf16", "amx"],
            "isa_limit": None, "versions": {"torch": "2.13.0+cpu", "onnxruntime": "1.32.0", "openvino": None,
                                            "ctranslate2": "4.8.5", "transformers": "5.24.0"}}
    assert cl.result_stem(meta) == ("cpu_latency-intel-r-xeon-r-platinum-8488c-avx512-avx512_vnni-avx512_bf16-amx-"
                                    "torch2.13.0-cpu-ort1.32.0-ct2-4.8.5")
    meta.update(isa_limit="AVX2", versions={"torch": "2.13.0"})
    assert cl.result_stem(meta).endswith("-amx-limit-avx2-torch2.13.0")
    # two generations behind one name (Zen 4 and Zen 5 are both "AMD EPYC" in a VM): the core's family and model
    meta.update(cpu="AMD EPYC", cpu_model="family 25 model 17", isa_limit=None)
    assert cl.result_stem(meta).startswith("cpu_latency-amd-epyc-f25m17-avx512-")
    assert cl.kernel_flags({"avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_bf16", "amx_tile"}) == \
        ["avx512", "avx512_vnni", "amx"]
    assert cl.kernel_flags({"avx2", "avx_vnni"}) == ["avx2", "avx_vnni"]


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
    (["--engines", "ort-int4-bort"], "--engines: unknown engine 'ort-int4-bort'; the engines here are: "
                                     "hf-fp32-bert-large, hf-fp32-bort, torch-int8-bort"),
    (["--precisions", "int8"], "unrecognized arguments: --precisions"),
    (["--ort-fusion"], "unrecognized arguments: --ort-fusion"),
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


def test_defaults_and_engine_selection(capsys):
    assert cl.build_parser().get_default("threads") == [1, 2]
    args = cl.parse_args(["--threads", "1"])  # the default 2 would not validate on a one-CPU runner
    assert (args.batch, args.seq, args.threads) == ([1, 8], [32, 128, 512], [1])
    assert args.engines == expected_rows()  # every row by default
    assert (args.repeats, args.min_repeats, args.max_seconds, args.warmup) == (10, 3, 20.0, 2)
    assert args.peak_shape == [1024, 1024, 1024] and args.out == "bench/results" and args.cache_dir is None
    assert cl.parse_args(["--threads", "1", "--repeats", "2"]).min_repeats == 2  # the default never exceeds it
    picked = cl.parse_args(["--threads", "1", "--engines", "auto-bort", "torch-int8-bort", "auto-bort"])
    assert picked.engines == ["torch-int8-bort", "auto-bort"]
    with pytest.raises(SystemExit):
        cl.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert "auto-bort" in help_text and "torch-int8-bort" in help_text and "--cache-dir" in help_text


# -- the accuracy guard ---------------------------------------------------------------------------
def test_guard_targets_name_the_engine_auto_chose():
    ok = cl.guard_targets({"agreement": 0.995, "metric_change": -0.2, "metric_fp32": 90.0,
                           "metric_optimized": 89.8, "engine": "ort-int8"}, "m on sst2")
    assert [t["status"] for t in ok] == ["PASS", "PASS"] and ok[0]["value"] == pytest.approx(99.5)
    assert all(t["engine"] == "ort-int8" and "auto's choice ort-int8" in t["target"] for t in ok)
    bad = cl.guard_targets({"agreement": 0.98, "metric_change": 0.7, "metric_fp32": 90.0,
                            "metric_optimized": 90.7, "engine": "torch-int8"}, "m on sst2")
    assert [t["status"] for t in bad] == ["MISS", "MISS"]
    assert "short by 1.00 points" in bad[0]["detail"] and "0.20 points beyond" in bad[1]["detail"]
    assert "torch-int8 90.70" in bad[1]["detail"]
    regression = cl.guard_targets({"agreement": None, "metric_change": 0.1, "metric_fp32": 80.0,
                                   "metric_optimized": 80.1, "engine": "torch-int8"}, "m on stsb")
    assert [t["status"] for t in regression] == ["not measured", "PASS"]
    text = cl.format_targets(bad + cl.guard_targets(None, "a dev sample", "no model"))
    assert "MISS          auto's choice torch-int8: prediction agreement with fp32 >= 99% at m on sst2: " \
           "measured 98.0%" in text
    assert "measured +0.70 points" in text and "not measured  auto's choice: metric within 0.5 points" in text


def test_main_runs_the_guard_through_auto_on_a_fine_tuned_folder(tmp_path, capsys, two_engines):
    from test_convert import save_task_folder, tiny

    from bortzoo.tasks import get_task

    folder = save_task_folder(tiny("sst2", "bort"), tmp_path / "sst2")
    result = cl.main(tiny_args("--batch", "1", "--seq", "8", "--engines", "hf-fp32-bort", "--out", "none",
                               "--guard", str(folder), "--guard-task", "sst2",
                               "--guard-data", dataset_folder(get_task("sst2")), "--guard-examples", "16"))
    guard = [t for t in result["targets"] if t["reference"] == "fp32"]
    record = result["meta"]["guard"]
    chosen = record["optimize"]["chosen"]
    assert record["guard"]["engine"] == chosen and record["task"] == "sst2"
    assert len(guard) == 2 and all(t["status"] in ("PASS", "MISS") for t in guard)
    assert all(t["engine"] == chosen and chosen in t["target"] for t in guard)
    assert "(16 checked)" in guard[0]["where"]
    assert f"auto's choice {chosen}: prediction agreement with fp32" in capsys.readouterr().out


def test_guard_that_cannot_run_keeps_the_latency_results(tmp_path):
    result = cl.main(tiny_args("--batch", "1", "--seq", "8", "--engines", "hf-fp32-bort", "--out", "none",
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
