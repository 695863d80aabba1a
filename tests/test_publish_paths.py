"""A published folder never carries a path of the machine it was built on.

Runs whose recipes name everything local by absolute paths (data_dir, tokenizer, corpus, a teacher folder, a
pretraining `.ckpt`, outputs) are published, and every text file of the folder (the card with its metadata,
every JSON, recipe.yaml, the tokenizer and config files) is scanned for any absolute path and for the names of
the folders involved, while the Hub ids the card must name are still there."""

import copy
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CORPUS, make_bort_layout, recipe_copy

from bortzoo.cli import main
from bortzoo.publish.build import build_folder
from bortzoo.publish.run_folder import read_run
from bortzoo.seed_sweep import move_paths

REPO = Path(__file__).resolve().parent.parent
SECRET = "alice"  # every local folder of these runs has it in its path (a user's name, say): it must never ship
# An absolute path (or ~/...) where a path can start: line start, blank, quote, backtick, bracket, = or comma.
# Hub ids (nyu-mll/glue), metric names (val/score), "</s>", "82.7/84.1" and URLs do not match.
ABSOLUTE = re.compile(r"(?:^|(?<=[\s\"'`(\[=,]))~?/[\w.~-]+(?:/[\w.~-]*)*")
RTE_DATA = "local data in the layout of nyu-mll/glue (GLUE RTE)"


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # recipes name the project's assets relative to the repository root


@pytest.fixture(scope="module")
def in_repo():
    cwd = os.getcwd()
    os.chdir(REPO)  # for the module's runs too
    yield
    os.chdir(cwd)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict:
    """Local copies of everything the runs read, under a folder that names the user, by absolute paths."""
    base = tmp_path_factory.mktemp("machine") / f"{SECRET}-private"
    data = base / "data" / "glue"
    shutil.copytree(REPO / "bortzoo" / "assets" / "tiny-tasks" / "glue", data)
    tokenizer = base / "tokenizers" / "tiny"
    shutil.copytree(REPO / "bortzoo" / "assets" / "tiny-tokenizer", tokenizer)
    corpus = base / "corpus" / "books.txt"
    corpus.parent.mkdir(parents=True)
    shutil.copyfile(TINY_CORPUS, corpus)
    teacher = make_bort_layout(base / "models" / "teacher", seed=3)
    return {"base": base, "temp": str(tmp_path_factory.getbasetemp()), "data": str(data),
            "tokenizer": str(tokenizer), "corpus": str(corpus), "teacher": str(teacher)}


def local_recipe(name: str, local: dict, run: str, **overrides) -> tuple[Path, Path]:
    """`recipes/<name>` with its outputs in `<base>/runs/<run>` (absolute) and `overrides`; returns (recipe, run)."""
    base = local["base"]
    path = recipe_copy(REPO / "recipes" / name, base, **overrides)
    config = yaml.safe_load(path.read_text())
    root = base / "runs" / run
    config = move_paths(config, config["trainer"]["default_root_dir"], str(root))
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, root


@pytest.fixture(scope="module")
def pretrain_run(local, in_repo) -> Path:
    """Distilled from a local teacher folder on a local text file, with a local tokenizer."""
    recipe, root = local_recipe("pretrain/bort-tiny.yaml", local, f"{SECRET}-pretrain", **{
        "trainer.max_steps": 10, "trainer.val_check_interval": 10, "trainer.limit_val_batches": 2,
        "model.init_args.teacher.init_args.source": local["teacher"],
        "data.init_args.sources": [{"path": local["corpus"]}], "data.init_args.tokenizer": local["tokenizer"]})
    main(["fit", "--config", str(recipe)])
    return root


def finetune(local: dict, run: str, model: str, seeds: str | None = None) -> Path:
    recipe, root = local_recipe("finetune/glue/rte-bort-tiny.yaml", local, run, **{
        "trainer.max_epochs": 1, "model.init_args.model": model, "model.init_args.arch": None,
        "model.init_args.tokenizer": local["tokenizer"], "data.init_args.data_dir": local["data"]})
    main(["fit", "--config", str(recipe)] + (["--seeds", seeds] if seeds else []))
    return root


@pytest.fixture(scope="module")
def ckpt_run(local, pretrain_run) -> Path:
    """Fine-tuned from the pretraining run's `.ckpt`, on a local data_dir."""
    return finetune(local, f"{SECRET}-rte-from-ckpt", str(pretrain_run / "checkpoints" / "last.ckpt"))


@pytest.fixture(scope="module")
def sweep_run(local, in_repo) -> Path:
    """A one-seed sweep fine-tuned from a local transformers folder (seeds.json ships too)."""
    return finetune(local, f"{SECRET}-rte-from-folder", local["teacher"], seeds="0")


@pytest.fixture(scope="module")
def search_run(local) -> Path:
    from bortzoo.extract.search import Latency, Space, extract

    out = local["base"] / "runs" / f"{SECRET}-search"
    extract(teacher=local["teacher"], tokenizer=local["tokenizer"], out=str(out),
            data={"sources": [{"path": local["corpus"]}], "val_fraction": 0.1, "seq_len": 32, "batch_size": 8,
                  "max_predictions": None},
            space=Space(depths=[1], heads=[2], hidden=[16, 32], intermediate=[32]), max_steps=4, min_steps=1,
            hparams=[{"lr": 3e-3}, {"lr": 1e-3}], train_batches=4, eval_batches=2, top_k=512,
            latency=Latency(enabled=False), accelerator="cpu")
    return out


def leaks(folder: Path, run_dir: Path, local: dict) -> list[str]:
    """Every place a text file of `folder` names this machine: an absolute path, the temp or home folder, `runs/`,
    the project's asset paths, the run folder's name, or the user name every local folder here carries."""
    names = [local["temp"], str(Path.home()), os.getcwd(), "runs/", "bortzoo/assets", SECRET,
             Path(run_dir).name]
    found = []
    for path in sorted(folder.rglob("*")):
        data = path.read_bytes() if path.is_file() else b"\0"
        if b"\0" in data:
            continue  # weights, the Agora plot
        for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
            hits = ABSOLUTE.findall(line) + [name for name in names if name in line]
            found += [f"{path.name}:{number}: {hit!r} in {line.strip()[:160]!r}" for hit in hits]
    return found


def card_of(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# -- the scan ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ckpt_run", "sweep_run", "pretrain_run", "search_run"])
def test_no_published_file_names_a_path_of_this_machine(kind, request, local, tmp_path):
    run_dir = request.getfixturevalue(kind)
    run = read_run(run_dir)
    folder = build_folder(run, tmp_path / "hub", repo_id="tester/model")
    assert leaks(folder, run_dir, local) == []
    assert (folder / "recipe.yaml").read_text().startswith("# The resolved recipe of this model's run")
    text = (folder / "README.md").read_text()
    assert "a local checkpoint" in text
    use = 'from_pretrained("tester/model")'
    hub_ids = {"task": [use, "type: nyu-mll/glue", "`nyu-mll/glue`"], "pretrained": [use, "`amazon/bort`"],
               "candidate": ["name: model"]}
    for hub_id in hub_ids[run.kind]:  # Hub ids are named as they are
        assert hub_id in text


def test_the_scan_finds_what_was_shipped_before(ckpt_run, local, tmp_path):
    """The check itself: the run folder's own files are full of this machine's paths."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in ("results.json",):
        shutil.copyfile(ckpt_run / name, folder / name)
    shutil.copyfile(read_run(ckpt_run).recipe, folder / "recipe.yaml")
    found = leaks(folder, ckpt_run, local)
    assert any("results.json" in f and "best.ckpt" in f for f in found)
    assert any("recipe.yaml" in f and "/data/glue" in f for f in found)


# -- what each file says instead -----------------------------------------------------------------------
def test_the_task_card_names_the_official_dataset_and_says_the_data_and_model_were_local(ckpt_run, tmp_path):
    folder = build_folder(read_run(ckpt_run), tmp_path / "hub", repo_id="tester/rte")
    card = card_of(folder)
    assert card.data.datasets is None and card.data.base_model is None  # neither is on the Hub
    for result in card.data.eval_results:
        assert (result.dataset_type, result.dataset_name, result.dataset_config) == ("nyu-mll/glue", "GLUE RTE", "rte")
        assert result.dataset_args == {"data": f"{RTE_DATA}, not the Hub dataset itself"}
    assert ("1. a local checkpoint (a bortzoo pretraining checkpoint, `.ckpt`), distilled as its recipe says"
            in card.text)
    results = json.loads((folder / "results.json").read_text())
    original = json.loads((ckpt_run / "results.json").read_text())
    assert results["model"] == "a local checkpoint (a bortzoo pretraining checkpoint, .ckpt)"
    assert results["best_checkpoint"] == results["last_checkpoint"] == "a local checkpoint (.ckpt)"
    changed = {k for k in original if results[k] != original[k]}
    assert changed == {"model", "best_checkpoint", "last_checkpoint"}  # the numbers ship as the run wrote them


def test_recipe_yaml_keeps_what_re_running_needs_with_placeholders_for_local_paths(ckpt_run, tmp_path):
    run = read_run(ckpt_run)
    folder = build_folder(run, tmp_path / "hub", repo_id="tester/rte")
    text = (folder / "recipe.yaml").read_text()
    assert text.startswith("# The resolved recipe") and "<run folder>" in text.split("\n\n")[0]
    published = yaml.safe_load(text)
    trainer, model, data = published["trainer"], published["model"]["init_args"], published["data"]["init_args"]
    assert trainer["default_root_dir"] == trainer["logger"]["init_args"]["save_dir"] == "<run folder>"
    assert trainer["callbacks"][0]["init_args"]["dirpath"] == "<run folder>/checkpoints"
    assert trainer["callbacks"][0]["init_args"]["monitor"] == "val/score"  # shaped like a Hub id, not a path
    assert (model["model"], model["tokenizer"], data["data_dir"]) == ("<local: last.ckpt>", "<local: tiny>",
                                                                     "<local: glue>")
    # everything else is the run's recipe as it was
    def strip(config):
        config = copy.deepcopy(config)
        trainer = config["trainer"]
        for key in ("default_root_dir",):
            trainer.pop(key)
        trainer["logger"]["init_args"].pop("save_dir")
        for callback in trainer["callbacks"]:
            (callback.get("init_args") or {}).pop("dirpath", None)
        for key in ("model", "tokenizer"):
            config["model"]["init_args"].pop(key)
        config["data"]["init_args"].pop("data_dir")
        return config

    assert strip(published) == strip(run.config)


def test_repo_relative_recipe_paths_and_hub_ids_stay(ckpt_run, tmp_path):
    """A recipe naming the project's assets (relative to the repository) and Hub ids keeps them; the card still
    says neither path."""
    from bortzoo.publish.build import _write_recipe
    from bortzoo.publish.cards import render

    run = read_run(ckpt_run)
    run.config = copy.deepcopy(run.config)
    run.config["model"]["init_args"].update(model="amazon/bort", tokenizer="bortzoo/assets/tiny-tokenizer")
    run.config["data"]["init_args"]["data_dir"] = "bortzoo/assets/tiny-tasks/glue"
    _write_recipe(run, tmp_path)
    published = yaml.safe_load((tmp_path / "recipe.yaml").read_text())["model"]["init_args"]
    assert (published["model"], published["tokenizer"]) == ("amazon/bort", "bortzoo/assets/tiny-tokenizer")
    card = render(run, "rte", repo_id="tester/rte")
    assert card.data.base_model == "amazon/bort" and "`amazon/bort`" in card.text
    assert "bortzoo/assets" not in str(card) and RTE_DATA.split(" (")[0] in str(card)


def test_the_pretrained_card_names_hub_sources_and_hides_local_ones(pretrain_run, tmp_path):
    from bortzoo.publish.cards import render

    run = read_run(pretrain_run)
    card = card_of(build_folder(run, tmp_path / "hub", repo_id="tester/bort"))
    assert "by knowledge distillation from a local checkpoint (a transformers model folder)" in card.text
    assert "on local text files, from its recipe" in card.text and card.data.base_model is None
    assert {(r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {
        ("text", "held-out split of local text files")}
    run.config = copy.deepcopy(run.config)
    run.config["model"]["init_args"]["teacher"]["init_args"]["source"] = "FacebookAI/roberta-large"
    run.config["data"]["init_args"]["sources"].append({"path": "wikimedia/wikipedia", "name": "20231101.en"})
    card = render(run, "bort", repo_id="tester/bort")
    assert "by knowledge distillation from `FacebookAI/roberta-large`" in card.text
    assert card.data.base_model == "FacebookAI/roberta-large"
    assert "on local text files, wikimedia/wikipedia, from its recipe" in card.text


def test_the_candidate_card_names_neither_the_teacher_folder_nor_the_search_folder(search_run, local, tmp_path):
    folder = build_folder(read_run(search_run), tmp_path / "hub", repo_id="tester/candidate")
    card = card_of(folder)
    assert "distillation from a local checkpoint (a transformers model folder)" in card.text
    (result,) = card.data.eval_results
    assert result.dataset_name == "held-out surrogate batches of the search"
    assert json.loads((folder / "results.json").read_text())["teacher"] == (
        "a local checkpoint (a transformers model folder)")
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert recipe["result_settings"]["teacher"] == "<local: teacher>"
    assert recipe["result_settings"]["data"]["sources"] == [{"path": "<local: books.txt>"}]


def test_a_card_without_a_repo_id_shows_a_placeholder_not_a_path(ckpt_run):
    from bortzoo.publish.cards import render

    text = render(read_run(ckpt_run), "rte-tiny").text
    assert 'from_pretrained("<org>/rte-tiny")' in text and "path/to" not in text


def test_publishing_stays_deterministic(sweep_run, tmp_path):
    first = digest(build_folder(read_run(sweep_run), tmp_path / "a", repo_id="tester/x"))
    second = digest(build_folder(read_run(sweep_run), tmp_path / "b", repo_id="tester/x"))
    assert first == second and {"recipe.yaml", "results.json", "seeds.json", "README.md"} <= set(first)


@pytest.mark.slow
def test_an_agora_run_ships_its_reports_without_paths(agora_tiny_run, local, tmp_path):
    run_dir = agora_tiny_run["out"]
    folder = build_folder(read_run(run_dir), tmp_path / "hub", repo_id="tester/rte-agora")
    assert (folder / "agora.json").is_file() and (folder / "agora.png").is_file()
    kept = "tokenizer: bortzoo/assets/tiny-tokenizer"  # the recipe keeps the repository's own tokenizer
    assert [f for f in leaks(folder, run_dir, local) if not (f.startswith("recipe.yaml:") and kept in f)] == []
    report, original = (json.loads((f / "agora.json").read_text()) for f in (folder, run_dir))
    assert report["best"]["checkpoint"] == report["weak_model"]["checkpoint"] == "a local checkpoint (.ckpt)"
    assert report["final"] == original["final"] and report["split"] == original["split"]
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert recipe["data"]["init_args"]["data_dir"].startswith("<run folder>/")  # Agora's own data, in the run
    assert recipe["model"]["init_args"]["tokenizer"] == "bortzoo/assets/tiny-tokenizer"  # the repo's: kept


# -- the one rule ----------------------------------------------------------------------------------------
def test_public_ref_shows_a_hub_id_as_itself_and_anything_local_in_words(tmp_path, monkeypatch):
    from bortzoo.publish.cards import public_ref

    assert public_ref("amazon/bort", "model") == "amazon/bort"
    assert public_ref("amazon/bort", "model", markdown=True) == "`amazon/bort`"
    assert public_ref("wikimedia/wikipedia", "corpus") == "wikimedia/wikipedia"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "acme" / "bort").mkdir(parents=True)  # shaped like a Hub id, but a folder here
    for ref in ("acme/bort", str(tmp_path / "model"), "runs/pretrain/bort/model", "bortzoo/assets/tiny-tokenizer",
                "~/models/bort"):
        assert public_ref(ref, "model") == "a local checkpoint (a transformers model folder)", ref
    for ref in ("last.ckpt", "checkpoints/last.ckpt", "/home/someone/runs/x/checkpoints/last.ckpt"):
        assert public_ref(ref, "model") == "a local checkpoint (a bortzoo pretraining checkpoint, .ckpt)", ref
    assert public_ref("/data/corpus/*.txt", "corpus") == "local text files"
    assert public_ref("/data/glue", "data", "sst2", markdown=True) == (
        "local data in the layout of `nyu-mll/glue` (GLUE SST-2)")
    assert public_ref("nyu-mll/glue", "data", "rte") == RTE_DATA  # a data_dir is always a local folder
