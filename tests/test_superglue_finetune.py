"""SuperGLUE end to end through the CLI on the tiny fixtures: COPA, MultiRC and ReCoRD learn from a random
start, and `predict` writes leaderboard files that validate against the test splits' ids.

Each fixture's labels follow a keyword cue (see the fixtures card), so a working pipeline goes from chance
to near-perfect in the tiny recipe's epochs; a broken encoding, loss or metric does not.
"""

import json
from pathlib import Path

import pytest
import yaml
from conftest import dataset_folder, recipe_copy

from bortzoo.cli import main
from bortzoo.tasks import get_task
from bortzoo.tasks.superglue_leaderboard import SUPERGLUE_ZIP, expected_ids_from, validate_submission

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes" / "finetune" / "superglue"


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # recipes name the fixtures and tokenizer relative to the repository root


def settings(recipe: Path) -> dict:
    return yaml.safe_load(recipe.read_text())


def run_folder(recipe: Path) -> Path:
    return Path(settings(recipe)["trainer"]["default_root_dir"])


def submission_folder(recipe: Path) -> Path:
    return Path(settings(recipe)["trainer"]["callbacks"][-1]["init_args"]["dirpath"])


def split_ids(task: str) -> list:
    import datasets

    spec = get_task(task)
    return expected_ids_from(datasets.load_dataset(dataset_folder(spec), spec.config, split="test"), spec)


def validate_then_fit(name: str, tmp_path: Path) -> tuple[Path, dict, dict]:
    """Dev scores of the recipe's random start (`bortzoo validate`), then of the fine-tuned model."""
    recipe = recipe_copy(RECIPES / f"{name}.yaml", tmp_path)
    main(["validate", "--config", str(recipe)])
    before = json.loads((run_folder(recipe) / "results-validate.json").read_text())
    main(["fit", "--config", str(recipe)])
    after = json.loads((run_folder(recipe) / "results.json").read_text())
    return recipe, before["final"], after


def predict_and_validate(recipe: Path, results: dict, boards: dict[str, str]) -> None:
    main(["predict", "--config", str(recipe), "--ckpt_path", results["best_checkpoint"]])
    folder = submission_folder(recipe)
    expected = {board: split_ids(task) for board, task in boards.items()}
    assert sorted(p.name for p in folder.glob("*.jsonl")) == sorted(f"{b}.jsonl" for b in boards)
    assert validate_submission(folder, expected_ids=expected) == []
    assert validate_submission(folder / SUPERGLUE_ZIP, expected_ids=expected) == []


def test_copa_learns_and_submits(tmp_path):
    recipe, before, after = validate_then_fit("copa-bort-tiny", tmp_path)
    assert before["splits"]["COPA"]["accuracy"] <= 0.65  # two options: chance is one half
    assert after["final"]["splits"]["COPA"]["accuracy"] >= 0.9
    predict_and_validate(recipe, after, {"COPA": "copa"})
    lines = [json.loads(line) for line in (submission_folder(recipe) / "COPA.jsonl").read_text().splitlines()]
    assert {line["label"] for line in lines} == {0, 1}  # both options chosen, as integers


def test_multirc_learns_per_answer_and_per_question(tmp_path):
    recipe, before, after = validate_then_fit("multirc-bort-tiny", tmp_path)
    assert before["splits"]["MultiRC"]["em"] <= 0.3  # every answer of a question right by chance: rare
    final = after["final"]["splits"]["MultiRC"]
    assert final["f1a"] >= 0.9 and final["em"] >= 0.8
    predict_and_validate(recipe, after, {"MultiRC": "multirc"})
    first = json.loads((submission_folder(recipe) / "MultiRC.jsonl").read_text().splitlines()[0])
    assert first["passage"]["questions"][0]["answers"][0]["label"] in (0, 1)


def test_record_learns_to_rank_and_writes_entity_answers(tmp_path):
    recipe, before, after = validate_then_fit("record-bort-tiny", tmp_path)
    assert before["splits"]["ReCoRD"]["em"] <= 0.5  # 3 to 6 candidates per query
    final = after["final"]["splits"]["ReCoRD"]
    assert final["em"] >= 0.85 and final["f1"] >= final["em"]
    assert after["noted"] == {}  # the shipped fixtures have no imperfect rows
    predict_and_validate(recipe, after, {"ReCoRD": "record"})
    import datasets

    test = datasets.load_dataset(dataset_folder(get_task("record")), "record", split="test")
    entities = {row["idx"]["query"]: set(row["entities"]) for row in test}
    for line in (submission_folder(recipe) / "ReCoRD.jsonl").read_text().splitlines():
        answer = json.loads(line)
        assert answer["label"] in entities[answer["idx"]]  # the answer is one of the query's own candidates


def test_superglue_rte_scores_and_predicts_the_diagnostics(tmp_path):
    recipe = recipe_copy(RECIPES / "rte-bort-tiny.yaml", tmp_path)
    main(["fit", "--config", str(recipe)])
    results = json.loads((run_folder(recipe) / "results.json").read_text())
    main(["test", "--config", str(recipe), "--ckpt_path", results["best_checkpoint"]])
    tested = json.loads((run_folder(recipe) / "results-test.json").read_text())["final"]
    assert set(tested["splits"]) == {"RTE", "AX-b", "AX-g"}
    assert set(tested["splits"]["AX-g"]) == {"parity", "accuracy"} and set(tested["splits"]["AX-b"]) == {"mcc"}
    assert tested["score"] == pytest.approx(tested["splits"]["RTE"]["accuracy"])  # diagnostics are not scored
    predict_and_validate(recipe, results, {"RTE": "superglue-rte", "AX-b": "axb", "AX-g": "axg"})
