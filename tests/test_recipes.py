"""Every recipe YAML parses against the code (as litgpt checks its config hub), so no recipe can rot.

Tiny recipes are also built for real: trainer, model and data objects, nothing run.
"""

from pathlib import Path

import pytest

from bortzoo.cli import lightning_cli

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


def is_tiny(path: Path) -> bool:
    return "tiny" in path.parts or path.stem.endswith("-tiny")


def test_there_are_recipes():
    assert any(is_tiny(p) for p in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_recipe_parses(recipe, monkeypatch):
    monkeypatch.chdir(REPO)  # recipes name their files relative to the repository root
    cli = lightning_cli(["--config", str(recipe)], run=False, parse_only=not is_tiny(recipe))
    assert cli.config["model"]["class_path"].startswith("bortzoo.")
    if is_tiny(recipe):
        assert cli.trainer is not None and cli.model is not None and cli.datamodule is not None
        assert cli.trainer.max_steps > 0 or cli.trainer.max_epochs
