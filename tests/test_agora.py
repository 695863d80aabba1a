"""Agora: pruning, provenance of new rows, the held-out split, and the tiny recipe end to end (with a kill)."""

import json
import os
from pathlib import Path

import pytest
import yaml

from bortzoo.agora.dev_split import check_task, split_dev
from bortzoo.agora.examples import collect_mistakes, generate_examples, label_with
from bortzoo.agora.loop import prune
from bortzoo.agora.transforms import TokenEdit, Transform
from bortzoo.agora.trials import expand_sets, trial_config
from bortzoo.cli import main
from bortzoo.errors import BortzooError
from bortzoo.recipe import apply_overrides
from bortzoo.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "agora" / "rte-bort-tiny.yaml"


# -- pruning ----------------------------------------------------------------------------------------------
def test_prune_drops_the_worst_share_and_breaks_ties_by_set_number():
    scores = {0: 0.5, 1: 0.9, 2: 0.7, 3: 0.9, 4: 0.6}
    kept, dropped = prune([0, 1, 2, 3, 4], scores, 0.5)
    assert kept == [1, 3] and dropped == [2, 4, 0]  # ceil(2.5) = 3 dropped, worst last
    assert prune([1, 3], scores, 0.5) == ([1], [3])  # a tie: the lower set number ranks first
    assert prune([1], scores, 0.5) == ([], [1])  # at least one is dropped, so the loop ends
    assert prune([0, 1, 2, 3], scores, 0.1) == ([1, 3, 2], [0])


def test_pruning_always_ends():
    alive, rounds = list(range(37)), 0
    while alive:
        alive, _ = prune(alive, {s: float(s % 5) for s in alive}, 0.01)
        rounds += 1
    assert rounds == 37


# -- the dev split ----------------------------------------------------------------------------------------
def test_split_is_seeded_stratified_and_disjoint():
    labels = [0] * 30 + [1] * 10 + [2] * 3
    ids = list(range(100, 143))
    agora, held = split_dev(labels, ids, 0.5, seed=0)
    assert sorted(agora + held) == ids and not set(agora) & set(held)
    by_id = dict(zip(ids, labels))
    assert [sum(by_id[i] == k for i in agora) for k in (0, 1, 2)] == [15, 5, 2]  # round(1.5) = 2, one stays held out
    assert split_dev(labels, ids, 0.5, seed=0) == (agora, held)
    assert split_dev(labels, ids, 0.5, seed=1) != (agora, held)
    with pytest.raises(BortzooError, match="duplicate ids"):
        split_dev([0, 1], [5, 5], 0.5, 0)
    with pytest.raises(BortzooError, match="agora_fraction"):
        split_dev(labels, ids, 1.0, 0)


def test_unsupported_tasks_are_refused_with_the_reason():
    for name, reason in [("stsb", "regression"), ("multirc", "groups"), ("record", "ranking"), ("wic", "offsets"),
                         ("wsc", "offsets"), ("mnli", "exactly one dev split")]:
        with pytest.raises(BortzooError, match=reason):
            check_task(get_task(name))
    for name in ("rte", "mrpc", "cola", "cb", "copa", "boolq", "superglue-rte"):
        check_task(get_task(name))
    assert get_task("copa").rewritable_fields == ("premise", "choice1", "choice2")


# -- sets, overrides and trial recipes --------------------------------------------------------------------
def test_sets_from_a_grid_a_sample_or_a_list():
    grid = {"seed": [0, 1], "lr": [1e-5, 2e-5, 3e-5]}
    every = expand_sets(grid, None, None, 0)
    assert len(every) == 6 and every[0] == {"seed": 0, "lr": 1e-5} and every[-1] == {"seed": 1, "lr": 3e-5}
    sample = expand_sets(grid, None, 4, 0)
    assert len(sample) == 4 and all(s in every for s in sample) and sample == expand_sets(grid, None, 4, 0)
    assert expand_sets(None, [{"lr": 1e-3, "batch_size": 8}], None, 0) == [{"lr": 1e-3, "batch_size": 8}]
    with pytest.raises(BortzooError, match="unknown key.*'lrr'"):
        expand_sets(None, [{"lrr": 1e-3}], None, 0)
    with pytest.raises(BortzooError, match="exactly one of grid"):
        expand_sets(grid, [{}], None, 0)


def test_trial_recipe_gets_the_set_the_data_and_its_own_folders(tmp_path):
    base = apply_overrides(yaml.safe_load((REPO / "recipes/finetune/glue/rte-bort-tiny.yaml").read_text()),
                           {"data.init_args.train_limit": 96, "trainer.callbacks.1.init_args.logging_interval": "epoch"},
                           "test")
    assert base["trainer"]["callbacks"][1]["init_args"]["logging_interval"] == "epoch"
    config = trial_config(base, {"seed": 7, "lr": 5e-4, "batch_size": 4}, tmp_path / "t", tmp_path / "data")
    assert config["seed_everything"] == 7 and config["model"]["init_args"]["lr"] == 5e-4
    assert config["data"]["init_args"]["batch_size"] == 4
    assert config["data"]["init_args"]["data_dir"] == str(tmp_path / "data")
    assert "train_limit" not in config["data"]["init_args"]  # the folder holds exactly the rows to train on
    paths = [c["class_path"] for c in config["trainer"]["callbacks"]]
    assert not any(p.endswith("SubmissionWriter") for p in paths)
    checkpoint = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint"))
    assert checkpoint["init_args"]["dirpath"] == str(tmp_path / "t" / "checkpoints")
    with pytest.raises(BortzooError, match="cannot set 'trainer.max_epochs.x'"):
        apply_overrides(base, {"trainer.max_epochs.x": 1}, "test")


# -- new examples -----------------------------------------------------------------------------------------
class Shout(Transform):
    """A user transformation: upper-case the texts (the pluggable contract)."""

    name = "shout"

    def rewrite(self, texts, seed):
        return [t.upper() + f" {seed % 7}" for t in texts]


def rte_rows():
    return [{"sentence1": f"a cat sat on mat {i}", "sentence2": f"the mat {i}", "label": i % 2, "idx": i}
            for i in range(6)]


def test_new_examples_come_only_from_mistakes_and_carry_the_weak_labels():
    spec = get_task("rte")
    rows = rte_rows()
    predicted = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1}  # wrong on 1 and 4
    mistakes = collect_mistakes(spec, rows, predicted)
    assert [m["idx"] for m in mistakes] == [1, 4] and [m["predicted"] for m in mistakes] == [0, 1]
    new, provenance, unchanged = generate_examples(spec, mistakes, Shout(), 3, seed=0, first_id=100)
    assert unchanged == 0 and [r["idx"] for r in new] == list(range(100, 106))
    assert [p["source_id"] for p in provenance] == [1, 1, 1, 4, 4, 4]
    for row, origin in zip(new, provenance):
        source = rows[origin["source_id"]]
        assert row["sentence1"].startswith(source["sentence1"].upper())  # both texts rewritten, still a pair
        assert row["sentence2"].startswith(source["sentence2"].upper())
    weak = {r["idx"]: 1 - r["label"] for r in new}  # a weak model that disagrees with the gold label everywhere
    labelled = label_with(spec, new, provenance, weak)
    assert [r["label"] for r in labelled] == [weak[r["idx"]] for r in new]
    assert [p["label"] for p in provenance] == [weak[r["idx"]] for r in new]
    assert all(r["label"] != rows[p["source_id"]]["label"] for r, p in zip(labelled, provenance))


def test_a_rewrite_equal_to_its_source_is_counted_not_kept():
    spec = get_task("rte")
    mistakes = [{"sentence1": "one", "sentence2": "two", "label": 0, "idx": 3, "predicted": 1}]
    new, provenance, unchanged = generate_examples(spec, mistakes, TokenEdit(), 2, seed=0, first_id=10)
    assert new == [] and provenance == [] and unchanged == 2


# -- end to end -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(agora_tiny_run):
    return agora_tiny_run


def test_interrupted_run_resumes_without_redoing_finished_trials(tiny_run):
    assert set(tiny_run["killed_state"]["steps"]) >= {"split", "weak_fit", "weak_scores"}
    assert (tiny_run["first_trial"].read_text(), tiny_run["first_trial"].stat().st_mtime_ns) == tiny_run["first"]
    state = json.loads((tiny_run["out"] / "state.json").read_text())
    assert state["steps"]["split"] == tiny_run["killed_state"]["steps"]["split"]


def test_pruning_follows_the_documented_rule_and_ends(tiny_run):
    report = json.loads((tiny_run["out"] / "agora.json").read_text())
    iterations = report["iterations"]
    assert [len(it["alive"]) for it in iterations] == [4, 2, 1]
    for it, following in zip(iterations, iterations[1:] + [None]):
        numbers = [int(s.split("-")[1]) for s in it["alive"]]
        kept, dropped = prune(numbers, {int(s.split("-")[1]): t["score"] for s, t in it["trials"].items()}, 0.5)
        assert it["kept"] == [f"set-{s:03d}" for s in kept] and it["dropped"] == [f"set-{s:03d}" for s in dropped]
        assert following is None or following["alive"] == it["kept"]
    assert iterations[-1]["kept"] == []
    best = max((t["score"], -it["iteration"]) for it in iterations for t in it["trials"].values())
    assert report["final"]["agora_dev"]["score"] == pytest.approx(best[0])


def test_held_out_rows_never_enter_training(tiny_run):
    """By id and by text: every iteration's training rows are the original training rows plus new rows whose
    sources are Agora-dev mistakes; no held-out row (nor its text) is among them."""
    from bortzoo.data.rows import load_split

    spec, fixtures = get_task("rte"), str(REPO / "bortzoo/assets/tiny-tasks/glue")
    out = tiny_run["out"]
    report = json.loads((out / "agora.json").read_text())
    agora_ids, held_ids = set(report["split"]["agora_dev_ids"]), set(report["split"]["held_out_ids"])
    assert agora_ids and held_ids and not agora_ids & held_ids
    dev = load_split(spec, "validation", fixtures)
    held_texts = {(r["sentence1"], r["sentence2"]) for r in dev if r["idx"] in held_ids}
    original = load_split(spec, "train", fixtures).select(range(96))
    added_so_far: list[dict] = []
    for it in report["iterations"]:
        folder = str(out / f"iter-{it['iteration']}" / "data")  # load_split keys its cache on the files
        assert sorted(load_split(spec, "validation", folder)["idx"]) == sorted(agora_ids)
        train = load_split(spec, "train", folder)
        rows = train.to_list()
        assert rows[:96] == original.to_list()
        extra = rows[96:]
        assert [r["idx"] for r in extra] == [a["id"] for a in added_so_far]
        assert not {(r["sentence1"], r["sentence2"]) for r in train} & held_texts
        for origin in it["added"]:
            assert origin["source_id"] in it["mistakes"] and origin["source_id"] in agora_ids
        assert set(it["mistakes"]) <= agora_ids
        added_so_far += it["added"]
    assert added_so_far, "the tiny run should add rows (its first iteration's best makes mistakes)"


def test_outputs_report_both_parts_and_are_publishable(tiny_run):
    from bortzoo.publish.run_folder import read_run

    out = tiny_run["out"]
    report = json.loads((out / "agora.json").read_text())
    for part in ("agora_dev", "held_out"):
        assert set(report["final"][part]["metrics"]) == {"accuracy"} and report["final"][part]["rows"] == 48
    assert (out / "checkpoints" / "best.ckpt").stat().st_size > 0
    assert (out / "agora.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = read_run(out)
    assert run.kind == "task" and run.results["agora"]["held_out"] == report["final"]["held_out"]


@pytest.mark.parametrize("key", ["finetune", "weak_model", "out"])
def test_an_empty_path_is_refused_before_anything_is_written(key, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = yaml.safe_load(TINY.read_text())
    recipe.update({"finetune": str(REPO / recipe["finetune"]), "weak_model": str(REPO / recipe["weak_model"]),
                   "out": str(tmp_path / "out"), key: ""})
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(SystemExit):
        main(["agora", "--config", str(tmp_path / "r.yaml")])
    assert f"{key} is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_a_changed_recipe_refuses_the_old_folder(tiny_run, capsys):
    recipe = yaml.safe_load(tiny_run["recipe"].read_text())
    recipe["variants"] = 3
    changed = tiny_run["recipe"].with_name("changed.yaml")
    changed.write_text(yaml.safe_dump(recipe))
    with pytest.raises(SystemExit):
        main(["agora", "--config", str(changed)])
    assert "other settings" in capsys.readouterr().err


def test_a_finished_run_started_again_redoes_nothing(tiny_run, capsys):
    before = (tiny_run["out"] / "agora.json").read_text()
    main(["agora", "--config", str(tiny_run["recipe"])])
    printed = capsys.readouterr().out
    assert "trial 1/" not in printed and "fitting the weak model" not in printed
    after = json.loads((tiny_run["out"] / "agora.json").read_text())
    assert after["iterations"] == json.loads(before)["iterations"]


def test_parallel_trials_run_as_subprocesses_and_match_their_folders(tiny_run, tmp_path):
    """`parallel: 2` launches `python -m bortzoo.agora.trials FOLDER` side by side; each writes its own trial.json."""
    from bortzoo.agora.trials import prepare_trial, read_trial, run_trials

    recipe = yaml.safe_load(tiny_run["recipe"].read_text())
    base = apply_overrides(yaml.safe_load((REPO / recipe["finetune"]).read_text()), recipe["finetune_overrides"], "t")
    base = apply_overrides(base, {"trainer.max_epochs": 2}, "t")
    data_dir = tiny_run["out"] / "iter-1" / "data"
    folders = []
    for index, values in enumerate(recipe["sets"][:2]):
        folder = tmp_path / f"set-{index}"
        folders.append(prepare_trial(folder, trial_config(base, values, folder, data_dir), values))
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        results = run_trials(folders, parallel=2, progress=lambda message: None)
    finally:
        os.chdir(cwd)
    assert [r["checkpoint"] for r in results] == [str(f / "checkpoints" / "best.ckpt") for f in folders]
    assert all(0.0 <= r["score"] <= 1.0 and r["epochs"] == 2 for r in results)
    assert all((f / "trial.log").stat().st_size > 0 and read_trial(f) == r for f, r in zip(folders, results))
