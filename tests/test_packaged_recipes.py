"""Recipes and card templates ship inside the package (bortzoo/resources.py): `--config` takes a recipe's name,
`bortzoo recipes` lists and prints them, cards read their templates from the package, and a built wheel holds
the same bytes as the repository's recipes/ and model_cards/."""

import contextlib
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from bortzoo import resources
from bortzoo.cli import main
from bortzoo.errors import BortzooError
from bortzoo.resources import config_args, project_path, recipe_file, recipe_names, resolve_recipe

REPO_RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
CARD_KINDS = ("task", "pretrained", "candidate")


def name_of(path: Path) -> str:
    return path.relative_to(REPO / "recipes").with_suffix("").as_posix()


def run_main(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code or 0
    return code, out.getvalue(), err.getvalue()


# -- the packaged files ----------------------------------------------------------------------------------------
def test_every_packaged_recipe_is_the_repository_file():
    assert REPO_RECIPES
    assert recipe_names() == sorted(name_of(p) for p in REPO_RECIPES)
    for path in REPO_RECIPES:
        for form in (name_of(path), name_of(path) + ".yaml"):
            assert recipe_file(form).read_bytes() == path.read_bytes(), form


def test_card_templates_come_from_the_package():
    import bortzoo.publish.cards as cards

    assert not hasattr(cards, "TEMPLATES")  # one lookup: bortzoo.resources.card_template
    assert cards.card_template is resources.card_template
    folder = resources.packaged_dir("model_cards")
    for kind in CARD_KINDS:
        template = resources.card_template(kind)
        assert template.parent == folder
        assert template.read_bytes() == (REPO / "model_cards" / f"{kind}.md").read_bytes()
    with pytest.raises(BortzooError, match="no card template for a 'nope' run"):
        resources.card_template("nope")


def test_the_package_links_to_the_top_level_folders():
    """One copy of each file: bortzoo/recipes and bortzoo/model_cards point at the repository's folders."""
    for name in ("recipes", "model_cards"):
        link = REPO / "bortzoo" / name
        assert link.is_symlink() and link.resolve() == (REPO / name).resolve(), link
        assert resources.packaged_dir(name) == (REPO / name).resolve()


# -- --config NAME ---------------------------------------------------------------------------------------------
def test_config_takes_a_name_a_name_with_yaml_and_a_path(tmp_path, monkeypatch):
    packaged = str(REPO / "recipes" / "pretrain" / "bort-mlm-tiny.yaml")
    monkeypatch.chdir(tmp_path)  # not the repository: names resolve to the package's files
    for value in ("pretrain/bort-mlm-tiny", "pretrain/bort-mlm-tiny.yaml", "recipes/pretrain/bort-mlm-tiny.yaml"):
        assert Path(config_args(["fit", "--config", value])[2]).resolve() == Path(packaged).resolve(), value
        assert Path(config_args(["fit", f"--config={value}"])[1][len("--config="):]).resolve() == \
            Path(packaged).resolve()
    assert config_args(["fit", "--config", packaged, "--trainer.max_steps", "2"]) == \
        ["fit", "--config", packaged, "--trainer.max_steps", "2"]
    mine = tmp_path / "pretrain" / "bort-mlm-tiny.yaml"  # a file of the user's with a recipe's name wins
    mine.parent.mkdir()
    mine.write_text("seed_everything: 1\n")
    assert config_args(["--config", "pretrain/bort-mlm-tiny.yaml"]) == ["--config", "pretrain/bort-mlm-tiny.yaml"]
    assert config_args(["--config", "{seed_everything: 1}"]) == ["--config", "{seed_everything: 1}"]  # inline YAML


def test_a_trainer_verb_parses_a_recipe_by_name(tmp_path, monkeypatch):
    from bortzoo.recipe import lightning_cli

    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["--config", "finetune/glue/sst2-bort-tiny"], run=False, parse_only=True)
    assert cli.config["model"]["init_args"]["task"] == "sst2"


def test_a_function_verb_parses_a_recipe_by_name(tmp_path, monkeypatch):
    import jsonargparse

    parsed = {}

    def parse_only(function, args=None, prog=None, as_positional=True, **kwargs):
        parsed["config"] = jsonargparse.auto_parser(function, prog=prog, as_positional=as_positional).parse_args(args)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jsonargparse, "auto_cli", parse_only)
    assert run_main(["agora", "--config", "agora/rte-bort-tiny"])[0] == 0
    assert parsed["config"].finetune == "recipes/finetune/glue/rte-bort-tiny.yaml"  # as written: read at run time
    # ...where a recipe it names resolves from any folder, as a path or a name
    expected = (REPO / "recipes" / "finetune" / "glue" / "rte-bort-tiny.yaml").resolve()
    assert Path(resolve_recipe(parsed["config"].finetune)).resolve() == expected
    assert Path(resolve_recipe("finetune/glue/rte-bort-tiny", "finetune recipe")).resolve() == expected


@pytest.mark.parametrize("verb", ["fit", "agora"])
def test_an_unknown_name_is_one_line_with_close_matches(verb, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main([verb, "--config", "finetune/glue/sst2-bort-tny"])
    assert code == 2 and "Traceback" not in err, err
    assert "--config 'finetune/glue/sst2-bort-tny' is neither a file nor a packaged recipe" in err
    assert "close matches: finetune/glue/sst2-bort-tiny" in err and "bortzoo recipes" in err
    code, _, err = run_main(["fit", "--config", "sst2-bort-tiny.yaml"])  # the last part alone still finds it
    assert code == 2 and "finetune/glue/sst2-bort-tiny" in err


# -- bortzoo recipes -------------------------------------------------------------------------------------------
def test_recipes_lists_every_recipe_with_its_first_comment_line():
    code, out, _ = run_main(["recipes"])
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip() and not line[0].isspace()}
    for path in REPO_RECIPES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# "), path  # every recipe starts with what it does
        assert lines[name_of(path)].endswith(first[2:].strip()), name_of(path)
    assert f"{len(REPO_RECIPES)} recipes" in out


def test_recipes_prints_one_recipe_and_lists_a_folder():
    recipe = REPO / "recipes" / "finetune" / "glue" / "sst2-bort-tiny.yaml"
    for args in (["recipes", "finetune/glue/sst2-bort-tiny"], ["recipes", "--name", "finetune/glue/sst2-bort-tiny.yaml"]):
        code, out, _ = run_main(args)
        assert code == 0 and out == recipe.read_text(), args
    code, out, _ = run_main(["recipes", "agora"])
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("agora/")]
    assert code == 0 and listed == sorted(name_of(p) for p in REPO_RECIPES if p.parent.name == "agora")
    assert "finetune/" not in out
    code, _, err = run_main(["recipes", "finetune/glue/sst2-bort-tny"])
    assert code == 2 and "close matches: finetune/glue/sst2-bort-tiny" in err


def test_recipes_is_a_verb_of_the_help():
    code, out, _ = run_main(["--help"])
    assert code == 0 and "\n  recipes " in out
    code, out, _ = run_main(["recipes", "--help"])
    assert code == 0 and "usage: bortzoo recipes" in out and "--config" in out


# -- files recipes name ----------------------------------------------------------------------------------------
def test_files_recipes_name_are_found_from_any_folder(tmp_path, monkeypatch):
    from bortzoo.hub import resolve

    package = Path(resources.__file__).resolve().parent
    monkeypatch.chdir(tmp_path)
    assert project_path("bortzoo/assets/tiny-tokenizer") == str(package / "assets" / "tiny-tokenizer")
    assert resolve("bortzoo/assets/tiny-tokenizer", need_config=False) == package / "assets" / "tiny-tokenizer"
    assert project_path("bortzoo/assets/nothing-here") == "bortzoo/assets/nothing-here"
    assert project_path("runs/x") == "runs/x"
    (tmp_path / "bortzoo" / "assets" / "tiny-tokenizer").mkdir(parents=True)  # a folder of the user's wins
    assert project_path("bortzoo/assets/tiny-tokenizer") == "bortzoo/assets/tiny-tokenizer"


# -- the wheel -------------------------------------------------------------------------------------------------
def source_copy(target: Path) -> Path:
    """What a build reads: pyproject.toml, README.md, the package (its links kept) and the folders they name."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, target / name)
    for name in ("bortzoo", "recipes", "model_cards"):
        shutil.copytree(REPO / name, target / name, symlinks=True, ignore=ignore)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # offline, so no build isolation: the environment's setuptools builds (the dev extra pins 77+, which reads
    # pyproject's license string); .ci/wheel-smoke builds with isolation, as users do
    root = tmp_path_factory.mktemp("wheel")
    source = source_copy(root / "src")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-q", "-w", str(root / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (root / "dist").glob("bortzoo-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_holds_the_recipes_and_card_templates(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path in REPO_RECIPES:
            member = f"bortzoo/recipes/{path.relative_to(REPO / 'recipes').as_posix()}"
            assert member in names and archive.read(member) == path.read_bytes(), member
        for kind in CARD_KINDS:
            member = f"bortzoo/model_cards/{kind}.md"
            assert archive.read(member) == (REPO / "model_cards" / f"{kind}.md").read_bytes()
        archive.extractall(tmp_path / "site")
    # the installed layout (real folders, no links) is what bortzoo.resources and cards read, from any folder
    site = tmp_path / "site"
    assert not (site / "bortzoo" / "recipes").is_symlink()
    code = ("import bortzoo, bortzoo.publish.cards as c, bortzoo.resources as r; "
            "print(bortzoo.__file__); print(r.card_template('task')); "
            "print(r.resolve_recipe('finetune/glue/sst2-bort-tiny')); print(r.project_path('bortzoo/assets/tiny-tokenizer')); "
            "print(c.REPO_ROOT); print(len(r.recipe_names()))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split("\n")
    package = (site / "bortzoo").resolve()
    assert Path(lines[0]).resolve().parent == package
    assert Path(lines[1]) == package / "model_cards" / "task.md"
    assert Path(lines[2]) == package / "recipes" / "finetune" / "glue" / "sst2-bort-tiny.yaml"
    assert Path(lines[3]) == package / "assets" / "tiny-tokenizer"
    assert Path(lines[4]) == site.resolve()
    assert int(lines[5]) == len(REPO_RECIPES)
