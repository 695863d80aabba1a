"""The tiny task fixtures: regenerated identically, loaded by `datasets` exactly like the Hub datasets, labels
balanced and decided by the documented keyword rules."""

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from bortzoo.data.fixtures import TINY_TASKS_DIR, dataset_folder, main
from bortzoo.data.tasks import GLUE_TASKS, RACE_LETTERS, RACE_TASKS, get_task, race_pairs

SPLITS = {  # as on the Hub (nyu-mll/glue, ehovy/race)
    **{name: ["train", "validation", "test"]
       for name in ("cola", "sst2", "mrpc", "stsb", "qqp", "qnli", "rte", "wnli")},
    "mnli": ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"],
    "ax": ["test"],
    **{spec.name: ["train", "validation", "test"] for spec in RACE_TASKS},
}
ROWS = {"train": 384, "validation": 96, "test": 48}


def rows_of(task: str, split: str) -> int:
    return ROWS[split.split("_")[0]] * (2 if task == "race-all" else 1)  # race `all` = middle + high


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Every config as `datasets.load_dataset(folder, config)` gives it (cached in a temporary folder)."""
    import datasets

    cache = tmp_path_factory.mktemp("hf-cache")
    datasets.disable_progress_bars()
    try:
        return {spec.name: datasets.load_dataset(dataset_folder(spec), spec.config, cache_dir=str(cache))
                for spec in (*GLUE_TASKS, *RACE_TASKS)}
    finally:
        datasets.enable_progress_bars()


def test_regenerating_gives_the_committed_files(tmp_path):
    main([str(tmp_path)])
    committed = sorted(p.relative_to(TINY_TASKS_DIR) for p in TINY_TASKS_DIR.rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh == committed
    for relative in committed:
        if relative.suffix == ".parquet":
            old, new = pq.read_table(TINY_TASKS_DIR / relative), pq.read_table(tmp_path / relative)
            assert new.to_pydict() == old.to_pydict(), relative
            assert new.schema.metadata[b"huggingface"] == old.schema.metadata[b"huggingface"], relative
        else:
            assert (tmp_path / relative).read_text() == (TINY_TASKS_DIR / relative).read_text(), relative


def test_layout_is_the_hubs():
    for name, configs in (("glue", [s.config for s in GLUE_TASKS]), ("race", [s.config for s in RACE_TASKS])):
        folder = TINY_TASKS_DIR / name
        card = (folder / "README.md").read_text()
        meta = yaml.safe_load(card.split("---\n")[1])
        assert sorted(c["config_name"] for c in meta["configs"]) == sorted(configs)
        assert sorted(i["config_name"] for i in meta["dataset_info"]) == sorted(configs)
        spec_of = {spec.config: spec for spec in (GLUE_TASKS if name == "glue" else RACE_TASKS)}
        for config in meta["configs"]:
            splits = SPLITS[spec_of[config["config_name"]].name]
            assert [f["split"] for f in config["data_files"]] == splits
            for entry in config["data_files"]:
                assert entry["path"] == f"{config['config_name']}/{entry['split']}-*"
                matches = sorted(folder.glob(entry["path"]))
                assert [m.name for m in matches] == [f"{entry['split']}-00000-of-00001.parquet"]
        assert "synthetic" in card.lower() and "bortzoo.data.fixtures" in card
    assert sum(p.stat().st_size for p in TINY_TASKS_DIR.rglob("*") if p.is_file()) < 600_000


@pytest.mark.parametrize("spec", GLUE_TASKS, ids=lambda s: s.name)
def test_glue_config_loads_like_the_hub(loaded, spec):
    from datasets import ClassLabel, Value

    data = loaded[spec.name]
    assert list(data) == SPLITS[spec.name]
    for split, table in data.items():
        assert table.num_rows == rows_of(spec.name, split)
        features = table.features
        assert list(features) == [*spec.text_fields, "label", "idx"]
        assert all(features[name] == Value("string") for name in spec.text_fields)
        assert features["idx"] == Value("int32")
        assert list(table["idx"]) == list(range(table.num_rows))
        if spec.label_names:
            assert isinstance(features["label"], ClassLabel) and features["label"].names == list(spec.label_names)
        else:
            assert features["label"] == Value("float32")
        labels = list(table["label"])
        if split.startswith("test"):
            assert set(labels) == {-1}  # hidden, as on the Hub
        elif spec.label_names:
            counts = Counter(labels)
            assert sorted(counts) == list(range(len(spec.label_names)))
            assert len(set(counts.values())) == 1, counts  # balanced
        else:
            assert all(0.0 <= x <= 5.0 for x in labels)
            counts = Counter(round(x) for x in labels)
            assert sorted(counts) == list(range(6)) and len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("spec", RACE_TASKS, ids=lambda s: s.name)
def test_race_config_loads_like_the_hub(loaded, spec):
    from datasets import Features, List, Value

    data = loaded[spec.name]
    assert list(data) == SPLITS[spec.name]
    expected = Features({"example_id": Value("string"), "article": Value("string"), "answer": Value("string"),
                         "question": Value("string"), "options": List(Value("string"))})
    for split, table in data.items():
        assert table.num_rows == rows_of(spec.name, split)
        assert table.features == expected
        assert all(len(options) == 4 for options in table["options"])
        counts = Counter(table["answer"])  # public in every split, test too
        assert sorted(counts) == list(RACE_LETTERS) and len(set(counts.values())) == 1, counts
        assert len(set(table["example_id"])) == table.num_rows
        cloze = [row for row in table if "_" in row["question"]]
        assert 0.25 * table.num_rows < len(cloze) < 0.75 * table.num_rows
        for row in cloze[:5]:
            assert all("_" not in second for _, second in race_pairs(row))
    if spec.config == "all":  # middle then high, as the Hub's `all` holds both
        for split in data:
            assert data[split].to_dict() == {
                name: list(loaded["race-middle"][split][name]) + list(loaded["race-high"][split][name])
                for name in expected}


# -- the keyword rules (independent of the generator): each label follows from its text -----------------------
VERBS = {"sees", "follows", "finds", "helps", "watches", "builds", "carries", "visits", "paints", "counts"}
CAPITAL_CITIES = {"paris", "rome", "madrid", "tokyo", "cairo", "lima", "nairobi", "oslo"}
ANIMALS = {"cat", "dog", "bird", "fox", "horse"}


def _words(text: str) -> list[str]:
    return text.replace(".", " ").replace("?", " ").split()


RULES = {
    "cola": lambda r: int(bool(VERBS & set(_words(r["sentence"])))),
    "sst2": lambda r: int(bool({"bright", "clever", "quick"} & set(_words(r["sentence"])))),
    "mrpc": lambda r: int(bool({"sees", "watches", "finds"} & set(_words(r["sentence2"])))),
    "stsb": lambda r: ("distant", "heavy", "tired", "quiet", "clever", "bright").index(_words(r["sentence2"])[1]),
    "qqp": lambda r: int(_words(r["question2"])[-1] in CAPITAL_CITIES),
    "mnli": lambda r: next(i for i, cues in enumerate(({"morning", "every"}, {"rain", "dinner"}, {"night", "winter"}))
                           if cues & set(_words(r["hypothesis"])[-2:])),
    "qnli": lambda r: int(_words(r["sentence"])[-1] not in {"river", "city", "hill", "bridge", "market", "sea"}),
    "rte": lambda r: int(_words(r["sentence2"])[2] not in ANIMALS),
    "wnli": lambda r: int(_words(r["sentence2"])[-1] in {"river", "hill", "sea"}),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_labels_follow_the_documented_rule(loaded, name):
    for split, table in loaded[name].items():
        if split.startswith("test"):
            continue
        for row in table:
            expected = RULES[name](row)
            assert (round(row["label"]) if name == "stsb" else row["label"]) == expected, (split, row)


def test_race_answer_is_the_only_animal(loaded):
    for split, table in loaded["race-all"].items():
        for row in table:
            animals = [i for i, option in enumerate(row["options"]) if option in ANIMALS]
            assert animals == [RACE_LETTERS.index(row["answer"])], row
            assert row["options"][animals[0]] in _words(row["article"])


def test_every_task_has_a_fixture():
    assert {spec.name for spec in (*GLUE_TASKS, *RACE_TASKS)} <= set(SPLITS)
    assert Path(dataset_folder(get_task("sst2"))) == TINY_TASKS_DIR / "glue"
    assert Path(dataset_folder(get_task("race"))) == TINY_TASKS_DIR / "race"
