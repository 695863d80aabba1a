"""The demo's handlers, called directly: settings, encoding, predictions, loading, latency, accuracy, evaluation."""

import json
import re
import threading

import pytest
import torch
from demo_support import GLUE_FIXTURES, demo_settings

from bortzoo.demo import accuracy, latency
from bortzoo.demo.handlers import Handlers
from bortzoo.demo.models import FAILED, MISSING, READY, ModelPool, describe, load_checkpoint
from bortzoo.demo.predict import encode, run_model, task_row
from bortzoo.demo.settings import build_settings, parse_assignments, zoo_checkpoints
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task


@pytest.fixture(scope="module")
def handlers(demo_folders):
    h = Handlers(demo_settings(demo_folders, threads=1, max_length=32))
    yield h
    h.pool.close()


def ready(h, task):
    assert h.pool.wait(task, timeout=120)
    return {side: h.pool.slot(side, task) for side in ("BERT-large", "Bort")}


# -- settings ------------------------------------------------------------------------------------------
def test_zoo_checkpoints_sort_task_entries_by_shape():
    zoo = zoo_checkpoints()
    assert zoo["BERT-large"]["rte"] == "bert-large-rte"
    assert set(zoo["BERT-large"]) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert zoo["Bort"] == {}  # no Bort fine-tune is published yet: the page says how to make one


def test_assignments_from_mapping_or_list_and_errors_name_the_option():
    assert parse_assignments({"SST-2": "a"}, "--bort") == {"sst2": "a"}
    assert parse_assignments(["rte=x=y", "mnli-m=z"], "--bort") == {"rte": "x=y", "mnli": "z"}
    with pytest.raises(BortzooError, match=r"--bort: expected TASK=VALUE .* got 'sst2'"):
        parse_assignments(["sst2"], "--bort")
    with pytest.raises(BortzooError, match="unknown task 'sts'"):
        parse_assignments(["sts=x"], "--bort")
    with pytest.raises(BortzooError, match="--bert_large: task 'rte' has an empty value"):
        parse_assignments({"rte": " "}, "--bert_large")


def test_superglue_pair_tasks_fit_the_boxes_the_others_are_refused():
    assert parse_assignments(["boolq=a", "CB=b", "superglue-rte=c"], "--bort") == {
        "boolq": "a", "cb": "b", "superglue-rte": "c"}
    for task in ("copa", "multirc", "record", "wic", "wsc.fixed"):
        with pytest.raises(BortzooError, match=r"--bort: the demo's input boxes take one text, a pair, or a passage "
                                               r"with a question and options; task \w+ reads"):
            parse_assignments([f"{task}=a"], "--bort")
    assert parse_assignments(["copa=x"], "--data") == {"copa": "x"}  # data and results are not input boxes


def test_build_settings_checks_every_value(tmp_path):
    settings = build_settings(bort=[f"sst2={tmp_path}"], threads=1)
    assert settings.checkpoint("Bort", "sst2") == str(tmp_path)
    assert settings.checkpoint("BERT-large", "sst2") == "bert-large-sst2"
    assert settings.tasks()[:2] == ["cola", "sst2"] and "race-all" not in settings.tasks()
    assert build_settings(zoo=False, bort=[f"rte={tmp_path}"]).tasks() == ["rte"]
    with pytest.raises(BortzooError, match="--bort sst2=runs/nope/x: no such folder, and not a zoo name"):
        build_settings(bort=["sst2=runs/nope/x"])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BortzooError, match="--bert_large rte=.*file.txt: is a file"):
        build_settings(bert_large=[f"rte={tmp_path / 'file.txt'}"])
    assert build_settings(bort=["sst2=some-org/some-model"]).checkpoint("Bort", "sst2") == "some-org/some-model"
    with pytest.raises(BortzooError, match="--data: sst2=.* is not a folder"):
        build_settings(data=["sst2=" + str(tmp_path / "nope")])
    with pytest.raises(BortzooError, match="--threads must be an integer from 1"):
        build_settings(threads=0)
    with pytest.raises(BortzooError, match="--results: side must be one of"):
        build_settings(results={"bort": ["x"]})
    with pytest.raises(BortzooError, match="--results: Bort: .* does not exist"):
        build_settings(results={"Bort": [str(tmp_path / "none.json")]})


# -- inputs and encoding -------------------------------------------------------------------------------
def test_empty_boxes_are_named():
    with pytest.raises(BortzooError, match="the 'sentence' box is empty"):
        task_row(get_task("sst2"), "  ")
    with pytest.raises(BortzooError, match="the 'sentence2' box is empty; this task reads a pair"):
        task_row(get_task("rte"), "a", "")
    with pytest.raises(BortzooError, match="give 2 to 8 options, one per line \\(got 1\\)"):
        task_row(get_task("race-all"), "passage", "question?", "only one\n\n")


def test_pair_is_encoded_with_the_template_and_both_texts(handlers):
    loaded = ready(handlers, "rte")["Bort"].loaded
    tokenizer = loaded.tokenizer
    encoded = encode(get_task("rte"), task_row(get_task("rte"), "the cat sat", "a dog ran"), tokenizer,
                     loaded.template, 32)
    ids = encoded.inputs["input_ids"][0].tolist()
    a = tokenizer("the cat sat", add_special_tokens=False)["input_ids"]
    b = tokenizer("a dog ran", add_special_tokens=False)["input_ids"]
    template = loaded.template
    assert ids == [*template.start, *a, *template.middle, *b, *template.end]
    assert encoded.cut == 0 and encoded.tokens == len(ids)


def test_truncation_says_exactly_how_many_tokens_were_cut(handlers):
    loaded = ready(handlers, "sst2")["Bort"].loaded
    text = " ".join(["wonderful film"] * 40)
    n = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
    encoded = encode(get_task("sst2"), {"sentence": text}, loaded.tokenizer, loaded.template, 32)
    assert encoded.tokens == 32
    assert encoded.cut == n + loaded.template.budget(False) - 32 > 0


def test_choice_rows_are_one_sequence_per_option(handlers):
    loaded = ready(handlers, "race-all")["Bort"].loaded
    tokenizer, template = loaded.tokenizer, loaded.template
    row = task_row(get_task("race-all"), "Tom walked home.", "Where did Tom go?", "home\nschool\nthe park")
    encoded = encode(get_task("race-all"), row, tokenizer, template, 64)
    assert encoded.inputs["input_ids"].shape[:2] == (1, 3) and encoded.cut == 0
    article = tokenizer("Tom walked home.", add_special_tokens=False)["input_ids"]
    for option, ids, mask in zip(("home", "school", "the park"), encoded.inputs["input_ids"][0],
                                 encoded.inputs["attention_mask"][0]):
        second = tokenizer(f"Where did Tom go? {option}", add_special_tokens=False)["input_ids"]
        assert ids[mask.bool()].tolist() == [*template.start, *article, *template.middle, *second, *template.end]


def test_prediction_is_the_softmax_of_the_models_own_logits(handlers):
    slots = ready(handlers, "sst2")
    for slot in slots.values():
        prediction = run_model(slot.loaded, get_task("sst2"), ("a fine film", "", ""))
        enc = slot.loaded.tokenizer("a fine film", return_tensors="pt")
        with torch.no_grad():
            expected = torch.softmax(slot.loaded.model(**enc).logits[0], -1).tolist()
        assert list(prediction.probabilities) == ["negative", "positive"]
        assert list(prediction.probabilities.values()) == pytest.approx(expected, abs=1e-5)
        assert prediction.forward_ms > 0 and prediction.cut == 0


def test_regression_gives_the_score(handlers):
    slot = ready(handlers, "stsb")["BERT-large"]
    prediction = run_model(slot.loaded, get_task("stsb"), ("a man sings", "a man is singing", ""))
    enc = slot.loaded.tokenizer("a man sings", "a man is singing", return_tensors="pt")
    with torch.no_grad():
        expected = float(slot.loaded.model(**enc).logits[0, 0])
    assert prediction.score == pytest.approx(expected, abs=1e-5)
    assert prediction.label_value() == f"{expected:.2f}"


# -- the handlers --------------------------------------------------------------------------------------
def test_predict_answers_on_both_sides_with_latency(handlers):
    bl_label, bl_note, bort_label, bort_note = handlers.predict("sst2", "a gripping film")
    assert set(bl_label) == set(bort_label) == {"negative", "positive"}
    assert sum(bl_label.values()) == pytest.approx(1.0) and bl_label != bort_label  # two different models
    for note in (bl_note, bort_note):
        assert "ms" in note and "1 thread" in note and "truncated" not in note


def test_optimized_bort_answers_like_bort_and_names_its_engine(demo_folders, two_engines):
    """--optimized_bort: Bort's box is served by bortzoo.optimize(engine="auto") with every installed engine."""
    plain = Handlers(demo_settings(demo_folders, threads=1, max_length=32))
    fast = Handlers(demo_settings(demo_folders, threads=1, max_length=32, optimized_bort=True))
    try:
        expected, got = plain.predict("sst2", "a gripping film"), fast.predict("sst2", "a gripping film")
        engine = fast.pool.slot("Bort", "sst2").loaded.engine
        assert engine and engine.split("-")[0] in ("torch", "ort", "openvino", "ctranslate2")
        assert f"optimised Bort: engine **{engine}**" in got[3] and "optimised" not in got[1]
        assert got[0] == expected[0]  # BERT-large as it was
        assert got[2] == pytest.approx(expected[2], abs=0.05)  # Bort's probabilities, int8 or not
        assert f"served by {engine}" in describe(fast.pool.slot("Bort", "sst2"))
    finally:
        plain.pool.close()
        fast.pool.close()
    with pytest.raises(BortzooError, match="--optimized_bort must be true or false"):
        demo_settings(demo_folders, optimized_bort="yes")


def test_predict_reports_empty_and_long_input(handlers):
    out = handlers.predict("rte", "a premise", "")
    assert out[0] is None and out[2] is None
    assert "the 'sentence2' box is empty" in out[1] and "the 'sentence2' box is empty" in out[3]
    out = handlers.predict("sst2", "great " * 200)
    assert out[0] is not None and out[2] is not None
    assert "input truncated: " in out[1] and "cut to fit 32" in out[1]


def test_one_side_failing_leaves_the_other_working(demo_folders, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    folders = {"BERT-large": {"sst2": str(broken)}, "Bort": dict(demo_folders["Bort"])}
    h = Handlers(demo_settings(folders, threads=1))
    try:
        slots = ready(h, "sst2")
        assert slots["BERT-large"].state == FAILED and "not valid JSON" in slots["BERT-large"].message
        assert slots["Bort"].state == READY
        label, note, bort_label, bort_note = h.predict("sst2", "fine")
        assert label is None and "failed to load" in note
        assert set(bort_label) == {"negative", "positive"} and "ms" in bort_note
        assert "failed to load" in h.status("sst2") and "ready" in h.status("sst2")
    finally:
        h.pool.close()


def test_a_task_without_a_checkpoint_says_what_to_fetch(demo_folders):
    h = Handlers(demo_settings({"BERT-large": {"rte": demo_folders["BERT-large"]["rte"]}, "Bort": {}}, threads=1))
    try:
        slot = h.pool.slot("Bort", "rte")
        assert slot.state == MISSING
        assert "recipes/finetune/glue/rte-bort.yaml" in slot.message and "--bort rte=FOLDER" in slot.message
        out = h.predict("rte", "a", "b")
        assert out[0] is not None and out[2] is None and "rte-bort.yaml" in out[3]
    finally:
        h.pool.close()


def test_pool_loads_in_the_background_and_keeps_only_recent_tasks(demo_folders):
    started, release = threading.Event(), threading.Event()

    def slow_loader(ref, task, settings):
        started.set()
        release.wait(10)
        return load_checkpoint(ref, task, settings)

    settings = demo_settings(demo_folders, threads=1, keep_tasks=1)
    pool = ModelPool(settings, loader=slow_loader, warm=False)
    try:
        pool.request("sst2")
        assert started.wait(10)
        assert "loading" in pool.status("sst2")  # the request returned while loading goes on
        release.set()
        assert pool.wait("sst2", timeout=60)
        assert pool.slot("Bort", "sst2").state == READY
        pool.request("rte")
        assert ("Bort", "sst2") not in pool._slots  # evicted: keep_tasks=1
        assert pool.wait("rte", timeout=60)
    finally:
        pool.close()


def test_loader_errors_of_any_kind_become_a_failed_slot(demo_folders):
    def crash(ref, task, settings):
        raise RuntimeError("disk on fire")

    pool = ModelPool(demo_settings(demo_folders, threads=1), loader=crash)
    try:
        assert pool.wait("sst2", timeout=30)
        slot = pool.slot("Bort", "sst2")
        assert slot.state == FAILED and slot.message == "RuntimeError: disk on fire"
    finally:
        pool.close()


def test_wrong_head_is_refused_with_the_reference(demo_folders):
    settings = demo_settings(demo_folders)
    with pytest.raises(BortzooError, match="tiny-random-bort-stsb has 1 outputs; sst2 has 2"):
        load_checkpoint(demo_folders["Bort"]["stsb"], "sst2", settings)


# -- latency -------------------------------------------------------------------------------------------
def test_benchmark_times_both_sides_at_each_length(handlers):
    summary, rows, figure = handlers.benchmark(1, [16, 32], 1, warmup=1, repeats=3)
    assert [(r[0], r[3]) for r in rows] == [("BERT-large", 16), ("Bort", 16), ("BERT-large", 32), ("Bort", 32)]
    medians = {(r[0], r[3]): r[5] for r in rows}
    assert all(r[5] > 0 and r[6] >= r[5] for r in rows)
    stated = float(re.search(r"seq 32: \*\*([\d.]+)×", summary).group(1))  # the summary states the ratio
    assert stated == pytest.approx(medians[("BERT-large", 32)] / medians[("Bort", 32)], abs=0.1)
    assert "random weights" in summary and "1 thread" in summary
    assert len(figure.axes[0].lines) >= 2


def test_benchmark_optimized_rows_and_bad_settings(handlers, monkeypatch):
    from bortzoo.serve import optimize as opt_mod

    monkeypatch.setattr(opt_mod, "ENGINE_NAMES", ("torch",))  # the peers: tests/test_engine_*.py
    summary, rows, _ = handlers.benchmark(1, [16], 1, warmup=0, repeats=1, int8=True)
    assert [r[0] for r in rows] == ["BERT-large", "Bort", "BERT-large optimized", "Bort optimized"]
    assert "Optimised Bort (`bortzoo.optimize`, engine **" in summary
    with pytest.raises(BortzooError, match="seq 1024 is longer than the 512 position embeddings"):
        handlers.benchmark(1, [1024], 1)
    with pytest.raises(BortzooError, match="threads 999 is more than"):
        handlers.benchmark(1, [16], 999)
    with pytest.raises(BortzooError, match="at least one sequence length"):
        handlers.benchmark(1, [], 1)


def test_speedups_are_ratios_of_medians_and_a_slowdown_is_not_called_a_speedup(handlers):
    rows = [{"model": "BERT-large", "seq": 32, "median_ms": 10.0}, {"model": "Bort", "seq": 32, "median_ms": 2.5},
            {"model": "Bort", "seq": 64, "median_ms": 1.0}]
    assert latency.speedups(rows) == {32: 4.0}
    plan = handlers.panel.plan(1, [32], 1, 0, 1)
    info = {"cpu": "X", "cores": 2, "torch": "2"}
    assert latency.summary(rows, plan, info).startswith("Bort is faster than BERT-large by seq 32: **4.0×**")
    rows[1]["median_ms"] = 20.0
    assert latency.summary(rows, plan, info).startswith("BERT-large's median latency over Bort's: seq 32: **0.5×**")


# -- accuracy ------------------------------------------------------------------------------------------
def test_reported_numbers_show_bort_losses_plainly():
    rows = {(r[0], r[1]): r for r in accuracy.table_rows(accuracy.reported_scores())}
    qqp, record, rte = rows[("GLUE", "QQP")], rows[("SuperGLUE", "ReCoRD")], rows[("GLUE", "RTE")]
    assert qqp[3:7] == ["72.1 / 89.3", "66.0 / 85.9", "-4.7", "LOSS: BERT-large better"]
    assert record[6].startswith("LOSS") and record[5] == "-22.3"
    assert rte[6] == "Bort better" and rte[5] == "+12.6"
    assert rows[("GLUE", "GLUE score")][3:5] == ["80.5", "83.6"]
    assert all(r[7] == accuracy.REPORTED for r in rows.values())


def test_results_json_and_model_card_are_read_as_zoo_runs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({
        "task": "mrpc", "best": {"epoch": 2, "splits": {"MRPC": {"f1": 0.9, "accuracy": 0.85}}}}))
    [score] = accuracy.results_scores(run, "Bort")
    assert (score.board, score.metrics, score.values, score.kind) == ("MRPC", ("f1", "accuracy"), (90.0, 85.0),
                                                                     accuracy.ZOO_RUN)
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    data = ModelCardData(model_name="x", eval_results=[
        EvalResult(task_type="text-classification", dataset_type="nyu-mll/glue", dataset_name="GLUE RTE",
                   metric_type="accuracy", metric_value=0.7, metric_name="accuracy (best)"),
        EvalResult(task_type="text-classification", dataset_type="nyu-mll/glue", dataset_name="GLUE RTE",
                   metric_type="accuracy", metric_value=0.6, metric_name="accuracy (mean of seeds)")])
    card = tmp_path / "card"
    card.mkdir()
    ModelCard(f"---\n{data.to_yaml()}\n---\n# x\n").save(card / "README.md")
    [score] = accuracy.local_scores(str(card), "BERT-large")
    assert (score.board, score.values, score.side) == ("RTE", (70.0,), "BERT-large")  # the first (best epoch)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(BortzooError, match="bad.json: not a bortzoo results.json"):
        accuracy.results_scores(bad, "Bort")


def test_collect_pairs_sources_and_reports_unreadable_ones(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"task": "rte", "best": {"splits": {"RTE": {"accuracy": 0.61}}}}))
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    settings = build_settings(zoo=False, results={"Bort": [str(good), str(bad)]})
    scores, problems = accuracy.collect(settings)
    rows = [r for r in accuracy.table_rows(scores, "glue") if r[1] == "RTE"]
    assert [r[4] for r in rows] == ["82.7", "61.0"]  # reported first, then the zoo run
    assert rows[1][3] == "—" and rows[1][6] == "—" and str(good) in rows[1][7]
    assert len(problems) == 1 and "bad.json" in problems[0]


def test_accuracy_handler_and_chart(handlers):
    rows, figure, notes = handlers.accuracy("SuperGLUE")
    assert {r[0] for r in rows} == {"SuperGLUE"} and any(r[1] == "ReCoRD" for r in rows)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert "loss -22.3" in texts
    assert "reported" in notes
    with pytest.raises(BortzooError, match="unknown benchmark"):
        handlers.accuracy("SQuAD")


# -- evaluate now --------------------------------------------------------------------------------------
def test_evaluate_now_scores_match_one_by_one_predictions(handlers):
    from bortzoo.demo.evaluate import sample_split

    progress = []
    message = handlers.evaluate("sst2", 40, progress=lambda f, text: progress.append(f))
    assert "**BERT-large** on SST-2: accuracy" in message and "**Bort** on SST-2" in message
    assert progress[-1] == pytest.approx(1.0)
    sample, size = sample_split("sst2", "validation", 40, 0, GLUE_FIXTURES)
    assert len(sample) == 40 and size == 96
    for side in ("BERT-large", "Bort"):
        loaded = handlers.pool.slot(side, "sst2").loaded
        hits = [max(p := run_model(loaded, get_task("sst2"), (row["sentence"], "", "")).probabilities,
                    key=p.get) == ("negative", "positive")[row["label"]] for row in sample]
        expected = 100 * sum(hits) / len(hits)
        [score] = [s for s in handlers.evaluated if s.side == side and s.board == "SST-2"]
        assert score.values[0] == pytest.approx(expected)
        assert score.kind == accuracy.NOW and "40 of 96 validation rows" in score.where
    rows, _, _ = handlers.accuracy("glue")
    assert any(r[1] == "SST-2" and r[7].startswith(accuracy.NOW) for r in rows)


def test_evaluate_without_data_says_where_to_get_it(demo_folders):
    h = Handlers(demo_settings(demo_folders, threads=1, data={}))
    try:
        message = h.evaluate("rte", 10)
        assert "RTE: no data" in message and "--data rte=FOLDER" in message
    finally:
        h.pool.close()


# -- the verb ------------------------------------------------------------------------------------------
def test_demo_verb_help_and_config(tmp_path, capsys):
    from bortzoo.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0 and "127.0.0.1" in capsys.readouterr().out
    config = tmp_path / "demo.yaml"
    config.write_text("bort:\n  sst2: runs/publish/sst2\nthreads: 1\n")
    with pytest.raises(SystemExit):
        main(["demo", "--config", str(config), "--print_config"])
    printed = capsys.readouterr().out
    assert "sst2: runs/publish/sst2" in printed and "threads: 1" in printed


def test_demo_verb_bad_option_fails_before_serving(capsys):
    from bortzoo.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--bort", "sst2", "--zoo", "false"])
    assert exit_.value.code == 2
    assert "--bort: expected TASK=VALUE" in capsys.readouterr().err


def test_a_float16_checkpoint_runs_in_float32_and_the_status_says_so(demo_folders, tmp_path):
    """Checkpoints converted with `.half()` (amazon/bort) are loaded in float32, and the status line names both."""
    import shutil

    from safetensors.torch import load_file, save_file

    from bortzoo.demo.models import Slot, describe

    half = tmp_path / "tiny-random-bort-sst2-fp16"
    shutil.copytree(demo_folders["Bort"]["sst2"], half)
    state = load_file(str(half / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(half / "model.safetensors"),
              metadata={"format": "pt"})
    loaded = load_checkpoint(str(half), "sst2", demo_settings(demo_folders))
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    assert (loaded.dtype, loaded.stored_dtype) == ("float32", "float16")
    line = describe(Slot("Bort", "sst2", str(half), READY, loaded=loaded))
    assert "runs in float32, stored as float16" in line
    full = load_checkpoint(demo_folders["Bort"]["sst2"], "sst2", demo_settings(demo_folders))
    assert "stored as" not in describe(Slot("Bort", "sst2", "x", READY, loaded=full))
