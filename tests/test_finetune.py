"""Fine-tuning end to end through the CLI, on the project's tiny fixtures: it learns, it reports, it submits."""

import csv
import json
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import recipe_copy

from bortzoo.cli import main
from bortzoo.seed_sweep import pop_seeds
from bortzoo.tasks import get_task
from bortzoo.tasks.glue import NLI3
from bortzoo.tasks.leaderboard import glue_files

REPO = Path(__file__).resolve().parent.parent
FINETUNE = REPO / "recipes" / "finetune"


def local_recipe(name: str, tmp_path: Path, **overrides) -> Path:
    """The tiny recipe `name` with its outputs (everything under runs/) moved into tmp_path."""
    group = "race" if name.startswith("race") else "glue"
    return recipe_copy(FINETUNE / group / f"{name}.yaml", tmp_path, **overrides)


def out_dir(recipe: Path) -> Path:
    return Path(yaml.safe_load(recipe.read_text())["trainer"]["default_root_dir"])


def fit(recipe: Path, *extra: str) -> dict:
    main(["fit", "--config", str(recipe), *extra])
    return json.loads((out_dir(recipe) / "results.json").read_text())


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # recipes name the fixtures and tokenizer relative to the repository root


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory):
    """One tiny SST-2 fine-tune shared by the tests that read its outputs."""
    import os

    tmp = tmp_path_factory.mktemp("sst2")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        recipe = local_recipe("sst2-bort-tiny", tmp)
        results = fit(recipe)
    finally:
        os.chdir(cwd)
    return recipe, results


# -- it learns -----------------------------------------------------------------------------------------
def test_classification_learns_above_chance(sst2_run):
    _, results = sst2_run
    spec = get_task("sst2")
    assert results["task"] == "sst2" and results["stage"] == "fit" and results["split"] == "dev"
    assert results["epochs"] == 8 and results["seed"] == 0
    accuracy = results["final"]["splits"]["SST-2"]["accuracy"]
    assert accuracy >= spec.chance + 0.3, results["final"]
    assert results["final"]["score"] == pytest.approx(accuracy)
    assert len(results["config_sha256"]) == 64
    assert Path(results["best_checkpoint"]).is_file() and Path(results["last_checkpoint"]).is_file()


def test_regression_learns_positive_correlation(tmp_path):
    results = fit(local_recipe("stsb-bort-tiny", tmp_path))
    values = results["final"]["splits"]["STS-B"]
    assert set(values) == {"pearson", "spearman"}
    assert values["pearson"] > 0.5 and values["spearman"] > 0.5, values


def test_multiple_choice_learns_above_chance(tmp_path):
    results = fit(local_recipe("race-high-bort-tiny", tmp_path))
    accuracy = results["final"]["splits"]["RACE-h"]["accuracy"]
    assert accuracy >= get_task("race-high").chance + 0.3, results["final"]


def test_pooler_head_recipe_learns(tmp_path):
    """The BERT-large siblings: pretrained-pooler head (random here) and the tokenizer's own pair template."""
    results = fit(local_recipe("mrpc-bert-large-tiny", tmp_path))
    values = results["final"]["splits"]["MRPC"]
    assert list(values) == ["f1", "accuracy"]
    assert values["accuracy"] > 0.75, values


# -- it reports -----------------------------------------------------------------------------------------
def test_seeds_report_mean_and_std_and_resume(tmp_path, capsys):
    recipe = local_recipe("sst2-bort-tiny", tmp_path, **{"trainer.max_epochs": 1})
    main(["fit", "--config", str(recipe), "--seeds", "0,1"])
    root = out_dir(recipe)
    summary = json.loads((root / "seeds.json").read_text())
    runs = [json.loads((root / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1] == summary["seeds"]
    assert runs[0]["config_sha256"] == runs[1]["config_sha256"] == summary["config_sha256"]
    values = [r["final"]["splits"]["SST-2"]["accuracy"] for r in runs]
    stats = summary["splits"]["SST-2"]["accuracy"]
    assert stats["mean"] == pytest.approx(sum(values) / 2)
    assert stats["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert (root / "seed-1" / "checkpoints" / "last.ckpt").is_file()  # each seed in its own folder
    printed = capsys.readouterr().out
    assert "SST-2" in printed and "± std" in printed
    before = (root / "seed-0" / "results.json").stat().st_mtime_ns
    main(["fit", "--config", str(recipe), "--seeds", "0", "1"])  # finished seeds are not run again
    assert capsys.readouterr().out.count("not run again") == 2
    assert (root / "seed-0" / "results.json").stat().st_mtime_ns == before


def test_pop_seeds_forms_and_errors():
    assert pop_seeds(["--config", "r.yaml", "--seeds", "0,1,2"]) == (["--config", "r.yaml"], [0, 1, 2])
    assert pop_seeds(["--seeds=3,4", "--x", "1"]) == (["--x", "1"], [3, 4])
    assert pop_seeds(["--seeds", "0", "1", "--x", "1"]) == (["--x", "1"], [0, 1])
    assert pop_seeds(["--x", "1"]) == (["--x", "1"], None)
    from bortzoo.errors import BortzooError

    with pytest.raises(BortzooError, match="integers"):
        pop_seeds(["--seeds", "a,b"])
    with pytest.raises(BortzooError, match="distinct"):
        pop_seeds(["--seeds", "1,1"])


def test_glue_test_verb_scores_dev_and_race_scores_test(sst2_run, tmp_path):
    recipe, results = sst2_run
    main(["test", "--config", str(recipe), "--ckpt_path", results["best_checkpoint"]])
    tested = json.loads((out_dir(recipe) / "results-test.json").read_text())
    assert tested["split"] == "dev" and "SST-2" in tested["final"]["splits"]  # GLUE test labels are hidden
    race = local_recipe("race-high-bort-tiny", tmp_path, **{"trainer.max_epochs": 1})
    main(["fit", "--config", str(race)])
    main(["test", "--config", str(race), "--ckpt_path", "last"])
    tested = json.loads((out_dir(race) / "results-test.json").read_text())
    assert tested["split"] == "test" and "RACE-h" in tested["final"]["splits"]


# -- it submits -----------------------------------------------------------------------------------------
def read_tsv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def fixture_ids(task: str, split: str) -> list:
    import datasets

    spec = get_task(task)
    folder = REPO / "bortzoo" / "assets" / "tiny-tasks" / spec.benchmark
    return sorted(datasets.load_dataset(str(folder), spec.config, split=split)[spec.id_column])


def test_sst2_submission_file(sst2_run):
    recipe, results = sst2_run
    main(["predict", "--config", str(recipe), "--ckpt_path", results["best_checkpoint"]])
    folder = Path(yaml.safe_load(recipe.read_text())["trainer"]["callbacks"][-1]["init_args"]["dirpath"])
    rows = read_tsv(folder / "SST-2.tsv")
    assert rows[0] == ["index", "prediction"]
    assert [int(r[0]) for r in rows[1:]] == fixture_ids("sst2", "test")
    assert {r[1] for r in rows[1:]} <= {"0", "1"}
    with zipfile.ZipFile(folder / "glue-submission.zip") as archive:
        assert "SST-2.tsv" in archive.namelist()


def test_mnli_predict_writes_matched_mismatched_and_ax(tmp_path):
    recipe = local_recipe("mnli-bort-tiny", tmp_path, **{"trainer.max_epochs": 1})
    main(["fit", "--config", str(recipe)])
    main(["predict", "--config", str(recipe), "--ckpt_path", "last"])
    folder = Path(yaml.safe_load(recipe.read_text())["trainer"]["callbacks"][-1]["init_args"]["dirpath"])
    for board, task, split in (("MNLI-m", "mnli", "test_matched"), ("MNLI-mm", "mnli", "test_mismatched"),
                               ("AX", "ax", "test")):
        rows = read_tsv(folder / f"{board}.tsv")
        assert rows[0] == ["index", "prediction"]
        assert [int(r[0]) for r in rows[1:]] == fixture_ids(task, split)
        assert {r[1] for r in rows[1:]} <= set(NLI3)
    with zipfile.ZipFile(folder / "glue-submission.zip") as archive:
        assert {"MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"} <= set(archive.namelist())


def test_stsb_submission_scores_are_clipped_with_three_decimals(tmp_path):
    from bortzoo.tasks.leaderboard import write_split_file

    path = write_split_file(get_task("stsb"), "STS-B", [2, 0, 1], [5.7, -0.2, 2.34567], tmp_path)
    assert read_tsv(path) == [["index", "prediction"], ["0", "0.000"], ["1", "2.346"], ["2", "5.000"]]


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_stsb_submission_refuses_a_score_that_is_not_finite(tmp_path, score):
    # A diverged regression head must not leave "nan" (or a clipped infinity) in a file the server would reject
    # or score as a real prediction.
    from bortzoo.errors import BortzooError
    from bortzoo.tasks.leaderboard import write_split_file

    with pytest.raises(BortzooError, match=r"STS-B, index 1: score (nan|inf) is not a finite number"):
        write_split_file(get_task("stsb"), "STS-B", [0, 1], [1.0, score], tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary sibling


# Each GLUE file's prediction strings, by label id of the nyu-mll/glue ClassLabel, as jiant writes them
# (jiant: jiant/tasks/core.py GlueMixin.get_glue_preds, str(LABELS[pred]).lower(), with each task's LABELS in
# jiant/tasks/lib/<task>.py; jiant 1.x: jiant/evaluate.py _write_glue_preds). STS-B: a float, see above.
JIANT_GLUE_LABELS = {"CoLA": ("0", "1"), "SST-2": ("0", "1"), "MRPC": ("0", "1"), "QQP": ("0", "1"),
                     "MNLI-m": NLI3, "MNLI-mm": NLI3, "AX": NLI3, "QNLI": ("entailment", "not_entailment"),
                     "RTE": ("entailment", "not_entailment"), "WNLI": ("0", "1")}


def test_glue_label_strings_are_jiants(tmp_path):
    from bortzoo.tasks import tasks_of
    from bortzoo.tasks.leaderboard import write_split_file

    assert NLI3 == ("entailment", "neutral", "contradiction")
    written = {}
    for spec in tasks_of("glue"):
        for item in spec.test:
            task = get_task(item.task) if item.task else spec
            if task.kind != "classes":
                continue
            labels = range(len(task.label_names))
            rows = read_tsv(write_split_file(task, item.board, list(labels), list(labels), tmp_path))
            assert rows[0] == ["index", "prediction"]
            written[item.board] = tuple(r[1] for r in rows[1:])
    assert written == JIANT_GLUE_LABELS


def test_submission_rejects_a_short_prediction_set(tmp_path):
    from bortzoo.errors import BortzooError
    from bortzoo.tasks.leaderboard import write_split_file

    with pytest.raises(BortzooError, match="2 predictions for 3 test rows"):
        write_split_file(get_task("cola"), "CoLA", [0, 1], [1, 0], tmp_path, expected_rows=3)
    with pytest.raises(BortzooError, match="duplicate"):
        write_split_file(get_task("cola"), "CoLA", [0, 0], [1, 0], tmp_path)


def test_glue_files_are_the_leaderboard_names():
    assert sorted(glue_files()) == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv",
                                           "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"])


# -- bad input ----------------------------------------------------------------------------------------
def test_model_and_data_of_different_tasks_is_a_clear_error(tmp_path, capsys):
    recipe = local_recipe("sst2-bort-tiny", tmp_path, **{"data.init_args.task": "cola"})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "bortzoo: error:" in err and "sst2" in err and "cola" in err
