"""Publishing: every kind of run becomes a Hub folder that loads back, with a card whose numbers are the run's,
uploaded by the real huggingface_hub client to a local fake Hub; bad input fails before anything is built."""

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CORPUS, make_bort_layout, recipe_copy
from hub_server import FakeHub, hub_env

from bortzoo.cli import main
from bortzoo.errors import BortzooError
from bortzoo.publish.build import build_folder
from bortzoo.publish.run_folder import read_run
from bortzoo.publish.upload import publish
from bortzoo.seed_sweep import move_paths

REPO = Path(__file__).resolve().parent.parent
TASK_FILES = {"README.md", "config.json", "model.safetensors", "recipe.yaml", "results.json", "tokenizer.json",
              "tokenizer_config.json"}


def tiny_recipe(name: str, tmp: Path, **overrides) -> Path:
    return recipe_copy(REPO / "recipes" / name, tmp, **overrides)


def root_of(recipe: Path) -> Path:
    return Path(yaml.safe_load(recipe.read_text())["trainer"]["default_root_dir"])


@pytest.fixture(scope="module")
def in_repo():
    cwd = os.getcwd()
    os.chdir(REPO)  # recipes name the fixtures and the tokenizer relative to the repository root
    yield
    os.chdir(cwd)


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, in_repo) -> Path:
    """A two-seed sweep of the tiny RTE recipe; each seed's folder is also a plain fine-tune run."""
    recipe = tiny_recipe("finetune/glue/rte-bort-tiny.yaml", tmp_path_factory.mktemp("sweep"), **{"trainer.max_epochs": 2})
    main(["fit", "--config", str(recipe), "--seeds", "0,1"])
    return root_of(recipe)


@pytest.fixture(scope="module")
def task_run(sweep_run) -> Path:
    return sweep_run / "seed-0"


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory, in_repo) -> Path:
    recipe = tiny_recipe("pretrain/bort-mlm-tiny.yaml", tmp_path_factory.mktemp("pretrain"),
                         **{"trainer.max_steps": 20, "trainer.val_check_interval": 20, "trainer.limit_val_batches": 2})
    main(["fit", "--config", str(recipe)])
    return root_of(recipe)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR
    from bortzoo.extract.search import Latency, Space, extract

    tmp = tmp_path_factory.mktemp("search")
    teacher = make_bort_layout(tmp / "teacher", seed=3)
    out = tmp / "search"
    extract(teacher=str(teacher), tokenizer=TINY_TOKENIZER_DIR, out=str(out),
            data={"sources": [{"path": str(TINY_CORPUS)}], "val_fraction": 0.1, "seq_len": 32, "batch_size": 8,
                  "max_predictions": None},
            space=Space(depths=[1], heads=[2], hidden=[16, 32], intermediate=[32]), max_steps=4, min_steps=1,
            hparams=[{"lr": 3e-3}, {"lr": 1e-3}], train_batches=4, eval_batches=2, top_k=512,
            latency=Latency(enabled=False), accelerator="cpu")
    return out


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def card_of(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


# -- task models ---------------------------------------------------------------------------------------
def test_task_folder_loads_with_transformers_bortzoo_and_taskmodel(task_run, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import bortzoo
    from bortzoo.data.encoding import Template
    from bortzoo.modules import TaskModel

    run = read_run(task_run)
    assert run.kind == "task" and run.checkpoint.name == "best.ckpt"
    folder = build_folder(run, tmp_path / "hub")
    assert {p.name for p in folder.iterdir()} == TASK_FILES
    original = TaskModel.load_from_checkpoint(str(run.checkpoint), map_location="cpu", weights_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert Template.of(tokenizer, "tokenizer") == Template.of(original.tokenizer, "bort")  # the recipe's pairs
    batch = tokenizer(["the cat sat", "a dog ran on the mat"], ["the cat", "a dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = original(batch["input_ids"], batch["attention_mask"])
        hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        torch.testing.assert_close(hf(**batch).logits, expected, atol=1e-5, rtol=1e-4)
        assert hf.config.id2label == {0: "entailment", 1: "not_entailment"}
        model, _ = bortzoo.load(str(folder))
        assert type(model).__name__ == "BertForSequenceClassification" and not model.training
        restored = TaskModel(task="rte", model=str(folder), head="bort").eval()
        assert restored.restored_head
        torch.testing.assert_close(restored(batch["input_ids"], batch["attention_mask"]), expected, atol=1e-5,
                                   rtol=1e-4)


def test_the_run_records_its_arch_and_pair_template_and_publishing_reads_them(task_run, tmp_path):
    """results.json says what the run was (the encoder's shape, Bort's pair template as token ids); publish reads
    those, not the recipe; a results.json from before they were recorded still publishes, from the recipe."""
    from bortzoo.arch import get_arch
    from bortzoo.data.encoding import Template
    from bortzoo.hub import load_tokenizer

    results = json.loads((task_run / "results.json").read_text())
    recipe_args = read_run(task_run).model_args()
    assert get_arch(results["arch"]) == get_arch(recipe_args["arch"])
    tokenizer = load_tokenizer(recipe_args["tokenizer"])
    assert results["pair_encoding"] == "bort"
    assert Template.from_dict(results["pair_template"]) == Template.of(tokenizer, "bort") != Template.of(tokenizer)

    edited = tmp_path / "run"
    shutil.copytree(task_run, edited)
    changed = dict(results, arch=get_arch("bert-base").as_dict(),
                   pair_template=dataclasses.asdict(Template.of(tokenizer, "tokenizer")))
    (edited / "results.json").write_text(json.dumps(changed))
    run = read_run(edited)
    assert run.arch == get_arch("bert-base")  # read from results.json
    folder = build_folder(run, tmp_path / "hub")
    assert Template.of(load_tokenizer(str(folder)), "tokenizer") == Template.of(tokenizer, "tokenizer")

    older = {k: v for k, v in results.items() if k not in ("arch", "pair_template", "pair_encoding")}
    (edited / "results.json").write_text(json.dumps(older))
    run = read_run(edited)
    assert run.arch == get_arch(recipe_args["arch"])  # through the recipe's model reference
    folder = build_folder(run, tmp_path / "hub-older")
    assert Template.of(load_tokenizer(str(folder)), "tokenizer") == Template.of(tokenizer, "bort")


def test_task_card_metadata_round_trips_to_the_run_numbers(task_run, tmp_path):
    run = read_run(task_run)
    card = card_of(build_folder(run, tmp_path / "hub", repo_id="tester/rte-tiny"))
    data = card.data
    assert data.license == "apache-2.0" and data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification" and {"bort", "bortzoo", "glue", "rte"} <= set(data.tags)
    assert data.base_model is None  # a random encoder has no parent on the Hub
    assert data.datasets is None  # trained on the local fixtures, not the Hub dataset: the card must not claim it
    best = run.results["best"]
    (result,) = data.eval_results
    assert result.metric_value == pytest.approx(best["splits"]["RTE"]["accuracy"], abs=1e-6)
    assert (result.task_type, result.dataset_config, result.dataset_split, result.metric_type) == (
        "text-classification", "rte", "validation", "accuracy")
    # the task's own Hub dataset, and the local fixtures it really read said in words, never by their path
    assert result.dataset_type == "nyu-mll/glue" and result.dataset_name == "GLUE RTE"
    assert result.dataset_args == {"data": "local data in the layout of nyu-mll/glue (GLUE RTE), not the Hub dataset "
                                           "itself"}
    assert f"best epoch {best['epoch'] + 1}, seed 0" in result.metric_name
    text = card.text
    assert "pipeline check, not a model to use" in text and "tester/rte-tiny" in text
    assert "Reported by the authors (not produced by this run)" in text and "| RTE | Bort | 82.7 |" in text
    assert "QQP" in text and "ReCoRD" in text and "Dev numbers are not test numbers" in text
    for arxiv in ("2010.10499", "2010.08512", "2010.07990"):
        assert arxiv in text
    assert "⟨2,2,64,128⟩" in text and "108,096" in text  # exact size from Arch: 41,152 embedding + 66,944 layers
    assert "bortzoo/assets" not in str(card) and "trained and evaluated on local data in the layout of" in text
    # the run's numbers as it wrote them; its checkpoints' paths in words
    local_checkpoint = "a local checkpoint (.ckpt)"
    assert json.loads((tmp_path / "hub" / "results.json").read_text()) == {
        **run.results, "best_checkpoint": local_checkpoint, "last_checkpoint": local_checkpoint}
    # the run's recipe, its output folders as placeholders; the repository's assets it read stay as they are
    recipe = (tmp_path / "hub" / "recipe.yaml").read_text()
    assert recipe.startswith("# The resolved recipe of this model's run")
    expected = move_paths(run.config, str(task_run), "<run folder>")
    for callback in expected["trainer"]["callbacks"]:
        if callback["class_path"].endswith("SubmissionWriter"):
            callback["init_args"]["dirpath"] = "<local: submission-tiny>"
    assert yaml.safe_load(recipe) == expected
    assert expected["data"]["init_args"]["data_dir"] == "bortzoo/assets/tiny-tasks/glue"


def test_the_same_run_builds_the_same_bytes(task_run, tmp_path):
    run = read_run(task_run)
    first = digest(build_folder(run, tmp_path / "a", repo_id="tester/x", latency=None))
    second = digest(build_folder(read_run(task_run), tmp_path / "b", repo_id="tester/x", latency=None))
    assert first == second and set(first) == TASK_FILES


def test_a_sweep_publishes_its_best_seed_with_the_mean_over_seeds(sweep_run, tmp_path):
    summary = json.loads((sweep_run / "seeds.json").read_text())
    scores = {s: json.loads((sweep_run / f"seed-{s}" / "results.json").read_text())["best"]["score"] for s in (0, 1)}
    run = read_run(sweep_run)
    assert run.results["seed"] == max(scores, key=scores.get)
    folder = build_folder(run, tmp_path / "hub")
    assert json.loads((folder / "seeds.json").read_text()) == summary
    means = [r for r in card_of(folder).data.eval_results if "mean of 2 seeds" in r.metric_name]
    assert [r.metric_value for r in means] == [pytest.approx(summary["splits"]["RTE"]["accuracy"]["mean"], abs=1e-6)]
    assert read_run(sweep_run, seed=1).results["seed"] == 1
    with pytest.raises(BortzooError, match="no finished seed 7"):
        read_run(sweep_run, seed=7)


# -- pretrained encoders and search candidates ---------------------------------------------------------
def test_pretrained_folder_loads_as_masked_lm_and_reports_the_logged_validation(pretrain_run, tmp_path):
    import csv

    from transformers import AutoModelForMaskedLM

    import bortzoo

    run = read_run(pretrain_run)
    assert run.kind == "pretrained" and run.model_folder is not None
    folder = build_folder(run, tmp_path / "hub")
    assert {"README.md", "config.json", "model.safetensors", "recipe.yaml", "results.json"} <= {p.name for p in
                                                                                                folder.iterdir()}
    model = AutoModelForMaskedLM.from_pretrained(folder)
    exported = AutoModelForMaskedLM.from_pretrained(run.model_folder)
    for (name, a), (_, b) in zip(model.state_dict().items(), exported.state_dict().items()):
        assert torch.equal(a, b), name
    loaded, tokenizer = bortzoo.load(str(folder))
    assert type(loaded).__name__ == "BertForMaskedLM" and len(tokenizer) == 512
    rows = [r for r in csv.DictReader(open(next(pretrain_run.glob("version_*/metrics.csv")))) if r["val/loss"]]
    card = card_of(folder)
    by_name = {r.metric_name.split(",")[0]: r.metric_value for r in card.data.eval_results}
    assert by_name["masked-token accuracy (held-out)"] == pytest.approx(float(rows[-1]["val/mlm_acc"]), abs=1e-6)
    assert by_name["distillation loss (held-out)"] == pytest.approx(float(rows[-1]["val/loss"]), abs=1e-6)
    assert card.data.pipeline_tag == "fill-mask" and "plain masked-language modelling" in card.text


def test_candidate_folder_carries_the_surrogate_weights_and_its_place_in_the_search(search_run, tmp_path):
    import csv

    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    winner = min(csv.DictReader(open(search_run / "candidates.csv")), key=lambda r: int(r["rank"]))
    run = read_run(search_run)
    assert run.kind == "candidate" and run.results["rank"] == 1
    folder = build_folder(run, tmp_path / "hub")
    model = AutoModelForMaskedLM.from_pretrained(folder)
    saved = load_file(str(search_run / "weights" / winner["representative"] / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    card = card_of(folder)
    (result,) = card.data.eval_results
    stored = json.loads((search_run / "results" / f"{winner['representative']}.json").read_text())
    assert result.metric_value == pytest.approx(stored["error"], abs=1e-6)
    assert "surrogate" in card.text and "| 1 | 2 |" in card.text  # rank 1 of 2
    other = read_run(search_run, candidate="1,2,32,32" if winner["H"] == "16" else "1,2,16,32")
    assert other.results["rank"] == 2
    with pytest.raises(BortzooError, match="not in"):
        read_run(search_run, candidate="2,2,64,128")


def test_a_search_without_kept_weights_cannot_publish_a_candidate(search_run, tmp_path):
    copy = tmp_path / "search"
    shutil.copytree(search_run, copy, ignore=shutil.ignore_patterns("weights", "cache"))
    with pytest.raises(BortzooError, match="save_weights"):
        read_run(copy)


# -- missing and bad run files -------------------------------------------------------------------------
def test_missing_run_files_are_named(task_run, tmp_path):
    with pytest.raises(BortzooError, match="empty run folder"):
        read_run("  ")
    with pytest.raises(BortzooError, match="does not exist"):
        read_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BortzooError, match="not a run folder"):
        read_run(tmp_path / "empty")
    copy = tmp_path / "run"
    shutil.copytree(task_run, copy, ignore=shutil.ignore_patterns("*.ckpt"))
    results = json.loads((copy / "results.json").read_text())
    results["best_checkpoint"] = str(copy / "checkpoints" / "best.ckpt")
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(BortzooError, match="missing run file: checkpoint .*best.ckpt"):
        read_run(copy)
    shutil.rmtree(copy)
    shutil.copytree(task_run, copy, ignore=shutil.ignore_patterns("config.yaml"))
    with pytest.raises(BortzooError, match="config.yaml"):
        read_run(copy)
    (copy / "results.json").write_text("{not json")
    with pytest.raises(BortzooError, match="not valid JSON"):
        read_run(copy)


def test_a_failed_build_keeps_the_previous_folder(task_run, tmp_path, monkeypatch):
    run = read_run(task_run)
    folder = build_folder(run, tmp_path / "hub")
    before = digest(folder)
    monkeypatch.setattr("bortzoo.publish.cards.render", lambda *a, **k: (_ for _ in ()).throw(BortzooError("boom")))
    with pytest.raises(BortzooError, match="boom"):
        build_folder(run, tmp_path / "hub")
    assert digest(folder) == before and [p.name for p in tmp_path.iterdir()] == ["hub"]


# -- latency in the card -------------------------------------------------------------------------------
def test_latency_comes_from_a_bench_file_with_its_hardware(task_run, tmp_path):
    from bortzoo.publish.build import resolve_latency
    from bortzoo.serve.bench import bench

    run = read_run(task_run)
    bench(models=[run.arch], batch=1, seq=32, threads=1, warmup=1, repeats=3, out=str(tmp_path / "bench"),
          progress=False)
    (path,) = (tmp_path / "bench").glob("latency-*.json")
    data = resolve_latency(str(path), run)
    text = card_of(build_folder(run, tmp_path / "hub", latency=data)).text
    row = data["rows"][0]
    assert f"| 1 | 32 | 1 | {row['median_ms']:.1f} |" in text and data["meta"]["cpu"] in text
    with pytest.raises(BortzooError, match="no rows for"):
        build_folder(read_run(task_run), tmp_path / "other", latency={"meta": data["meta"], "rows": [
            {**row, "arch": "<9,9,9,9>"}]})
    with pytest.raises(BortzooError, match="does not exist"):
        resolve_latency(str(tmp_path / "missing.json"), run)


@pytest.mark.slow
def test_auto_latency_measures_once_beside_bert_large_and_then_reuses(task_run, tmp_path, capsys):
    from bortzoo.publish.build import resolve_latency

    copy = tmp_path / "run"
    shutil.copytree(task_run, copy)
    run = read_run(copy)
    first = resolve_latency("auto", run)
    assert "measuring CPU latency" in capsys.readouterr().out
    assert {r["arch"] for r in first["rows"]} == {"<2,2,64,128>", "<24,16,1024,4096>"}
    again = resolve_latency("auto", read_run(copy))
    assert again == first and "measuring" not in capsys.readouterr().out
    text = card_of(build_folder(run, tmp_path / "hub", latency=first)).text
    assert "BERT-large / this" in text


# -- the optimised model (--optimized) -----------------------------------------------------------------
FAST = "## Fast CPU inference"


@pytest.fixture(scope="module")
def stsb_run(tmp_path_factory, in_repo) -> Path:
    """One epoch of the tiny STS-B recipe: a regression head, which predicts no class to agree on."""
    recipe = tiny_recipe("finetune/glue/stsb-bort-tiny.yaml", tmp_path_factory.mktemp("stsb"),
                         **{"trainer.max_epochs": 1})
    main(["fit", "--config", str(recipe)])
    return root_of(recipe)


def without_fast_section(text: str) -> str:
    return text[:text.index(FAST)] + text[text.index("## Limitations"):]


def test_optimized_measures_the_built_folder_and_quotes_it_in_the_card(task_run, tmp_path, monkeypatch, capsys,
                                                                      two_engines):
    import bortzoo.serve.task_guard

    plain = build_folder(read_run(task_run), tmp_path / "plain", repo_id="tester/rte-tiny", latency=None)
    main(["publish", str(task_run), "--repo-id", "tester/rte-tiny", "--dry-run", "--optimized",
          "--optimized-examples", "40", "--latency", "none", "--out", str(tmp_path / "hub")])
    out = capsys.readouterr().out
    folder = tmp_path / "hub"
    info = json.loads((folder / "optimized.json").read_text())
    guard, engine = info["guard"], info["engine"]
    assert "dry run: nothing sent" in out and "optimized.json" in out and f"{engine} against fp32 on rte validation" in out
    assert (info["task"], info["split"], info["metric"]) == ("rte", "validation", "accuracy")
    names = [c["name"] for c in info["candidates"]]  # every engine considered, the chosen one among them
    assert engine in names and guard["engine"] == engine and "torch-int8" in names
    assert next(c for c in info["candidates"] if c["name"] == engine)["status"] == "chosen"
    assert info["threads"] >= 1 and info["versions"]["torch"] == torch.__version__
    assert "/" not in json.dumps([c["reason"] for c in info["candidates"]])  # no paths of this machine
    assert info["examples"] == guard["examples"] == 40 and info["max_length"] == 64
    assert info["data"] == "local data in the layout of nyu-mll/glue (GLUE RTE)"  # the run's own, not the Hub's
    assert info["torch"] == torch.__version__ and info["cpu"]
    assert 0 <= guard["agreement"] <= 1
    assert guard["metric_change"] == pytest.approx(guard["metric_optimized"] - guard["metric_fp32"])

    card = card_of(folder)
    text = card.text
    assert FAST in text and 'model, tokenizer = bortzoo.load("tester/rte-tiny")' in text
    assert 'fast = bortzoo.optimize(model)  # engine="auto"' in text
    assert (f"On the first 40 rows of RTE validation, {engine} agreed with fp32 on "
            f"{100 * guard['agreement']:.2f}% of predictions; accuracy {guard['metric_fp32']:.2f} (fp32) vs "
            f"{guard['metric_optimized']:.2f} ({engine}), change {guard['metric_change']:+.2f} points.") in text
    assert f"On **{info['cpu']}** it chose **{engine}**" in text and f"on {info['cpu']}, torch {info['torch']}" in text
    assert f"| {engine} | chosen |" in text  # the table of every engine considered
    assert "No optimised weights are stored in this repo" in text and "not a gate" in text
    # without --optimized: no section, and the same card otherwise; the model-index reports fp32 either way
    plain_text = card_of(plain).text
    assert FAST not in plain_text and without_fast_section(text) == plain_text
    assert card.data.to_dict() == card_of(plain).data.to_dict()
    files, before = digest(folder), digest(plain)
    assert set(files) == TASK_FILES | {"optimized.json"}  # no int8 weights: optimize derives them at load time
    assert {k: v for k, v in files.items() if k not in ("README.md", "optimized.json")} == {
        k: v for k, v in before.items() if k != "README.md"}

    calls = []
    original = bortzoo.serve.task_guard.optimize_for_task

    def spy(model, task, **kwargs):
        calls.append((model, task, kwargs))
        return original(model, task, **kwargs)

    monkeypatch.setattr(bortzoo.serve.task_guard, "optimize_for_task", spy)
    result = publish(str(task_run), repo_id="tester/rte-tiny", dry_run=True, optimized=True, optimized_examples=40,
                     latency="none", out=str(tmp_path / "again"))
    assert calls == [(str(tmp_path / "again"), "rte", {"data_dir": "bortzoo/assets/tiny-tasks/glue", "examples": 40,
                                                       "max_length": 64, "engine": "auto",
                                                       "pair_encoding": "tokenizer"})]
    # same run, same bytes: the second choice comes from bortzoo.optimize's cache, measurements and all
    assert digest(tmp_path / "again") == files and result["optimized"] == info


def test_a_regression_card_quotes_the_metric_without_agreement(stsb_run, tmp_path, two_engines):
    result = publish(str(stsb_run), dry_run=True, optimized=True, optimized_examples=30, latency="none",
                     out=str(tmp_path / "hub"))
    info = result["optimized"]
    guard = info["guard"]
    assert guard["agreement"] is None and info["metric"] == "score (mean of pearson and spearman)"
    assert json.loads((tmp_path / "hub" / "optimized.json").read_text()) == info
    text = card_of(tmp_path / "hub").text
    assert "agreed with fp32" not in text
    assert (f"On the first 30 rows of STS-B validation (a regression task: there are no predicted classes to agree "
            f"on), score (mean of pearson and spearman) {guard['metric_fp32']:.2f} (fp32) vs "
            f"{guard['metric_optimized']:.2f} ({info['engine']}), change {guard['metric_change']:+.2f} points.") in text
    from bortzoo.publish.cards import fast_cpu_section

    assert info["examples_requested"] == 30
    whole_split = fast_cpu_section({**info, "examples_requested": 1000}, "tester/stsb")  # asked more than it had
    assert "On all 30 rows of STS-B validation" in whole_split and 'bortzoo.load("tester/stsb")' in whole_split


def test_optimized_needs_a_fine_tune_run(pretrain_run, search_run, tmp_path):
    for run_dir, kind in ((pretrain_run, "pretrained"), (search_run, "candidate")):
        with pytest.raises(BortzooError, match=f"is a {kind} run, which has no task"):
            publish(str(run_dir), dry_run=True, optimized=True, latency="none", out=str(tmp_path / kind))
        assert not (tmp_path / kind).exists()  # refused before anything was built


def test_bad_optimized_examples_fail_before_any_work(task_run, tmp_path, capsys):
    for bad in (0, -3, True, 2.5):
        with pytest.raises(BortzooError, match="--optimized-examples must be a positive number"):
            publish(str(task_run), dry_run=True, optimized=True, optimized_examples=bad, latency="none",
                    out=str(tmp_path / "hub"))
    with pytest.raises(SystemExit) as exit_info:
        main(["publish", str(task_run), "--dry-run", "--optimized", "--optimized-examples", "0", "--latency", "none",
              "--out", str(tmp_path / "hub")])
    assert exit_info.value.code == 2
    assert "--optimized-examples must be a positive number of dev rows, got 0" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()


@pytest.mark.parametrize("failure", [
    BortzooError("task rte: cannot load nyu-mll/glue (config 'rte'): Couldn't reach the Hub\nsecond line"),
    RuntimeError("could not create a primitive\nsecond line")])
def test_a_failed_accuracy_check_is_one_clear_error_and_keeps_the_built_folder(task_run, tmp_path, monkeypatch,
                                                                                capsys, failure):
    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr("bortzoo.serve.task_guard.optimize_for_task", fail)
    with pytest.raises(SystemExit) as exit_info:
        main(["publish", str(task_run), "--dry-run", "--optimized", "--latency", "none", "--out",
              str(tmp_path / "hub")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "second line" not in err
    assert "--optimized: the accuracy check failed" in err and str(failure).splitlines()[0] in err
    assert f"the folder is built at {tmp_path / 'hub'} without optimized.json" in err
    folder = tmp_path / "hub"
    assert {p.name for p in folder.iterdir()} == TASK_FILES and FAST not in card_of(folder).text


def test_a_run_on_hub_data_measures_on_the_hub_and_offline_says_so_in_one_line(task_run, tmp_path, monkeypatch,
                                                                               capsys):
    import datasets
    from huggingface_hub import constants

    copy = tmp_path / "run"
    shutil.copytree(task_run, copy, ignore=shutil.ignore_patterns("hub", "optimized*"))
    for path in copy.glob("version_*/config.yaml"):  # as if the run had read nyu-mll/glue from the Hub
        config = yaml.safe_load(path.read_text())
        config["data"]["init_args"]["data_dir"] = None
        path.write_text(yaml.safe_dump(config))
    hub_env(monkeypatch, tmp_path / "hf-home")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-home" / "datasets"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    with pytest.raises(SystemExit) as exit_info:
        main(["publish", str(copy), "--dry-run", "--optimized", "--latency", "none", "--out", str(tmp_path / "hub")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "bortzoo: error" in line]  # (transformers draws progress bars)
    assert err.endswith(line + "\n") and "the accuracy check failed: task rte: cannot load nyu-mll/glue" in line
    assert {p.name for p in (tmp_path / "hub").iterdir()} == TASK_FILES


def test_a_run_whose_local_data_is_not_reachable_from_here_says_so(task_run, tmp_path, monkeypatch):
    from bortzoo.publish.build import measure_optimized

    run = read_run(task_run)
    folder = build_folder(run, tmp_path / "hub")
    # a data folder of the user's (the package's own fixtures, bortzoo/assets/..., are found from any folder)
    run.config["data"]["init_args"]["data_dir"] = "my-data/glue"
    monkeypatch.chdir(tmp_path)  # the recipe's data_dir is relative to where the run was started
    with pytest.raises(BortzooError, match="data_dir 'my-data/glue', which is not a folder from"):
        measure_optimized(run, folder)
    assert {p.name for p in folder.iterdir()} == TASK_FILES


# -- the Hub -------------------------------------------------------------------------------------------
@pytest.fixture
def hub(tmp_path, monkeypatch):
    with FakeHub() as server:
        hub_env(monkeypatch, tmp_path / "hf-home", server.url)
        monkeypatch.setenv("HF_TOKEN", server.token)
        yield server


def test_upload_sends_exactly_the_folder_and_republishing_is_a_no_op(task_run, hub, tmp_path, capsys):
    out = tmp_path / "hub-folder"
    result = publish(str(task_run), repo_id="tester/rte-tiny", out=str(out), latency="none", endpoint=hub.url,
                     collection="tester/bortzoo-0123")
    stored = hub.files("tester/rte-tiny")
    assert stored == {name: (out / name).read_bytes() for name in digest(out)}
    assert len(hub.repos["tester/rte-tiny"]["commits"]) == 1 and result["commit"]
    assert hub.collections == {"tester/bortzoo-0123": [("tester/rte-tiny", "model")]}
    printed = capsys.readouterr()
    assert "register(ZooEntry('rte-tiny', 'tester/rte-tiny', 'task'" in printed.out
    publish(str(task_run), repo_id="tester/rte-tiny", out=str(out), latency="none", endpoint=hub.url,
            collection="tester/bortzoo-0123")
    assert len(hub.repos["tester/rte-tiny"]["commits"]) == 1  # nothing changed, nothing committed
    printed = printed.out + printed.err + "".join(capsys.readouterr())
    assert hub.token not in printed


def test_private_repo_branch_and_pull_request(task_run, hub, tmp_path):
    publish(str(task_run), repo_id="tester/rte-branch", out=str(tmp_path / "a"), latency="none", endpoint=hub.url,
            private=True, revision="tiny")
    repo = hub.repos["tester/rte-branch"]
    assert repo["private"] and repo["refs"]["main"] == {} and "README.md" in repo["refs"]["tiny"]
    result = publish(str(task_run), repo_id="tester/rte-pr", out=str(tmp_path / "b"), latency="none",
                     endpoint=hub.url, create_pr=True)
    repo = hub.repos["tester/rte-pr"]
    assert repo["refs"]["main"] == {} and "model.safetensors" in repo["refs"]["refs/pr/1"]
    assert result["pr_url"].endswith("/discussions/1")


def test_dry_run_needs_no_token_and_sends_nothing(task_run, tmp_path, monkeypatch, capsys):
    with FakeHub() as server:
        hub_env(monkeypatch, tmp_path / "hf-home", server.url)
        main(["publish", str(task_run), "--dry-run", "--latency", "none", "--out", str(tmp_path / "hub")])
        assert server.requests == []
    out = capsys.readouterr().out
    assert "dry run: nothing sent" in out and "model.safetensors" in out and "README.md" in out
    assert (tmp_path / "hub" / "README.md").is_file()


def test_missing_token_wrong_token_unreachable_and_offline_fail_before_any_work(task_run, tmp_path, monkeypatch,
                                                                                 capsys):
    def attempt(endpoint):
        with pytest.raises(SystemExit) as exit_info:
            main(["publish", str(task_run), "--repo-id", "tester/x", "--latency", "none", "--out",
                  str(tmp_path / "hub"), "--endpoint", endpoint])
        assert exit_info.value.code == 2
        assert not (tmp_path / "hub").exists()
        return capsys.readouterr().err

    with FakeHub() as server:
        hub_env(monkeypatch, tmp_path / "hf-home", server.url)
        assert "no Hugging Face token" in attempt(server.url) and server.requests == []
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_secret")
        err = attempt(server.url)
        assert "rejected the token (401)" in err and "hf_wrong_secret" not in err
        assert all(method == "GET" for method, _ in server.requests)  # only the token check
        assert server.repos == {}
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    err = attempt(closed)
    assert "cannot reach" in err and "hf_wrong_secret" not in err
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE is set" in attempt(closed)


def test_bad_publish_arguments(task_run, tmp_path):
    with pytest.raises(BortzooError, match="--repo_id ORG/NAME"):
        publish(str(task_run))
    with pytest.raises(BortzooError, match="not a Hub repo id"):
        publish(str(task_run), repo_id="no-slash")
    with pytest.raises(BortzooError, match="cannot be combined with --revision"):
        publish(str(task_run), repo_id="tester/x", revision="dev", create_pr=True)
    with pytest.raises(BortzooError, match="not a seed sweep"):
        publish(str(task_run), dry_run=True, seed=1, latency="none", out=str(tmp_path / "x"))


def test_a_refused_upload_is_one_clear_error_and_keeps_the_built_folder(task_run, hub, tmp_path, capsys):
    from hub_server import HubError

    def refuse(**_):
        raise HubError(403, "You don't have the rights to create a model under the namespace 'acme'")

    hub._routes = [(m, p, refuse if p == r"/api/repos/create" else f, t) for m, p, f, t in hub._routes]
    with pytest.raises(SystemExit) as exit_info:
        main(["publish", str(task_run), "--repo-id", "acme/rte", "--latency", "none", "--out", str(tmp_path / "hub")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "refused the upload to acme/rte (403" in err and "the folder is built at" in err
    assert hub.token not in err and (tmp_path / "hub" / "model.safetensors").is_file() and hub.repos == {}
