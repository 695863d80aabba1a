"""Every recipe YAML parses against the code (as litgpt checks its config hub), so no recipe can rot.

Tiny recipes are also built for real: trainer, model and data objects, nothing run.
"""

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_ARCH

from bortzoo.recipe import lightning_cli

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


def is_tiny(path: Path) -> bool:
    return "tiny" in path.parts or path.stem.endswith("-tiny")


def test_there_are_recipes():
    assert any(is_tiny(p) for p in RECIPES)


def verb_function(recipe: Path):
    """Recipes of the verbs that are not Trainer methods are the options of a function."""
    from bortzoo.agora.loop import agora
    from bortzoo.extract.search import extract

    return {"extract": extract, "agora": agora}.get(recipe.parent.name)


def teacher_source(recipe: Path) -> str | None:
    teacher = yaml.safe_load(recipe.read_text()).get("model", {}).get("init_args", {}).get("teacher")
    return teacher["init_args"]["source"] if teacher else None


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    from conftest import make_bort_layout

    return make_bort_layout(tmp_path_factory.mktemp("teacher"), TINY_ARCH.replace(depth=4, hidden=128, intermediate=512))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_recipe_parses(recipe, monkeypatch, tiny_teacher):
    monkeypatch.chdir(REPO)  # recipes name their files relative to the repository root
    function = verb_function(recipe)
    if function is not None:
        from jsonargparse import ArgumentParser

        parser = ArgumentParser(exit_on_error=False)
        parser.add_argument("--config", action="config")
        parser.add_function_arguments(function)
        config = parser.parse_args(["--config", str(recipe)])  # unknown keys and wrong types raise
        assert config.out
        if recipe.parent.name == "agora":  # the recipes it runs are recipes too, checked by this same test
            assert (REPO / config.finetune).is_file() and (REPO / config.weak_model).is_file()
            assert is_tiny(REPO / config.finetune) == is_tiny(recipe) == is_tiny(REPO / config.weak_model)
            if not is_tiny(recipe):
                parser.instantiate_classes(config)  # the transformation is built (its model loads lazily)
        else:
            assert config.teacher
        return
    args = ["--config", str(recipe)]
    source = teacher_source(recipe)
    if is_tiny(recipe) and source and not (REPO / source).exists():
        # the tiny teacher is another recipe's output: stand in a model folder of the same kind
        args += ["--model.init_args.teacher.init_args.source", str(tiny_teacher)]
    cli = lightning_cli(args, run=False, parse_only=not is_tiny(recipe))
    assert cli.config["model"]["class_path"].startswith("bortzoo.")
    if is_tiny(recipe):
        assert cli.trainer is not None and cli.model is not None and cli.datamodule is not None
        # a CPU run of minutes at most (README gives the wall times): bounded steps, or a few epochs of a fixture
        assert 0 < cli.trainer.max_steps <= 2000 or (cli.trainer.max_steps == -1 and 0 < cli.trainer.max_epochs <= 30)


def test_every_gpu_recipe_has_a_tiny_sibling():
    gpu = [p for p in RECIPES if not is_tiny(p)]
    assert gpu
    for recipe in gpu:
        assert recipe.with_name(recipe.stem + "-tiny.yaml").is_file(), recipe


PUBLISHED_BEFORE_RELAYOUT = REPO / "tests" / "published" / "rte-bort-tiny-recipe.yaml"


def test_a_recipe_published_before_the_package_was_re_laid_still_loads(tmp_path, monkeypatch):
    """`bortzoo publish` of the tiny RTE run, by the code before tasks/, serve/ and publish/ existed (commit 4d232a4):
    its class_paths (bortzoo.submission.SubmissionWriter, bortzoo.results.TaskResults, bortzoo.data.TaskData,
    bortzoo.modules.TaskModel) build the same objects today, once its placeholders name local folders."""
    from bortzoo.data import TaskData
    from bortzoo.modules import TaskModel
    from bortzoo.results import TaskResults
    from bortzoo.tasks.leaderboard import SubmissionWriter

    text = PUBLISHED_BEFORE_RELAYOUT.read_text()
    assert "class_path: bortzoo.submission.SubmissionWriter" in text
    text = (text.replace("<run folder>", str(tmp_path / "run"))
            .replace("<local: checkpoints>", str(tmp_path / "run" / "checkpoints"))
            .replace("<local: submission-tiny>", str(tmp_path / "submission")))
    assert "<" not in "".join(line.split("#")[0] for line in text.splitlines())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    monkeypatch.chdir(REPO)  # its data and tokenizer are paths inside the repository
    cli = lightning_cli(["fit", "--config", str(recipe), "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                         "--trainer.enable_progress_bar", "false"])
    assert isinstance(cli.model, TaskModel) and isinstance(cli.datamodule, TaskData)
    assert cli.datamodule.tokenizer is cli.model.tokenizer  # handed over by bortzoo.recipe.connect
    assert {TaskResults, SubmissionWriter} <= {type(c) for c in cli.trainer.callbacks}
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["task"] == "rte" and results["pair_encoding"] == "bort" and len(results["config_sha256"]) == 64


GPU_TRAINER_RECIPES = [p for p in RECIPES if not is_tiny(p) and verb_function(p) is None]


@pytest.mark.parametrize("nodes", [2, 4])
def test_every_gpu_recipe_resolves_on_many_machines(nodes, monkeypatch):
    """Every GPU Trainer recipe parses with `--trainer.num_nodes N`, as a torchrun or SLURM launch gives it
    (docs/pretrain.md, "Many machines"), and keeps its per-device batch: the global batch grows with the nodes."""
    monkeypatch.chdir(REPO)
    assert len(GPU_TRAINER_RECIPES) >= 42
    for recipe in GPU_TRAINER_RECIPES:
        cli = lightning_cli(["--config", str(recipe), "--trainer.num_nodes", str(nodes)], run=False, parse_only=True)
        assert cli.config["trainer"]["num_nodes"] == nodes, recipe
        data = cli.config["data"]["init_args"]
        assert data["batch_size"] == yaml.safe_load(recipe.read_text())["data"]["init_args"]["batch_size"], recipe
