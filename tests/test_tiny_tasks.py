"""The tiny task fixtures: regenerated identically, loaded by `datasets` exactly like the Hub datasets, labels
balanced and decided by the documented keyword rules."""

from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import dataset_folder

from bortzoo.data.tiny_tasks import TINY_TASKS_DIR, main
from bortzoo.tasks import get_task
from bortzoo.tasks.glue import GLUE_TASKS
from bortzoo.tasks.race import RACE_LETTERS, RACE_TASKS, race_pairs
from bortzoo.tasks.superglue import SUPERGLUE_TASKS

SPLITS = {  # as on the Hub (nyu-mll/glue, aps/super_glue, ehovy/race)
    **{name: ["train", "validation", "test"]
       for name in ("cola", "sst2", "mrpc", "stsb", "qqp", "qnli", "rte", "wnli")},
    "mnli": ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"],
    "ax": ["test"],
    **{spec.name: ["train", "validation", "test"] for spec in RACE_TASKS},
    **{name: ["train", "validation", "test"]
       for name in ("boolq", "cb", "copa", "multirc", "record", "superglue-rte", "wic", "wsc")},
    "axb": ["test"],
    "axg": ["test"],
}
ROWS = {"train": 384, "validation": 96, "test": 48}
RECORD_ROWS = {"train": 192, "validation": 48, "test": 24}  # ReCoRD's queries
ALL_TASKS = (*GLUE_TASKS, *SUPERGLUE_TASKS, *RACE_TASKS)


def rows_of(task: str, split: str) -> int:
    if task == "record":
        return RECORD_ROWS[split]
    return ROWS[split.split("_")[0]] * (2 if task == "race-all" else 1)  # race `all` = middle + high


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Every config as `datasets.load_dataset(folder, config)` gives it (cached in a temporary folder)."""
    import datasets

    cache = tmp_path_factory.mktemp("hf-cache")
    datasets.disable_progress_bars()
    try:
        return {spec.name: datasets.load_dataset(dataset_folder(spec), spec.config, cache_dir=str(cache))
                for spec in ALL_TASKS}
    finally:
        datasets.enable_progress_bars()


def test_regenerating_gives_the_committed_files(tmp_path):
    main([str(tmp_path)])
    committed = sorted(p.relative_to(TINY_TASKS_DIR) for p in TINY_TASKS_DIR.rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh == committed
    assert {p.parts[0] for p in committed} == {"glue", "super_glue", "race"}
    for relative in committed:
        if relative.suffix == ".parquet":
            old, new = pq.read_table(TINY_TASKS_DIR / relative), pq.read_table(tmp_path / relative)
            assert new.to_pydict() == old.to_pydict(), relative
            assert new.schema.metadata[b"huggingface"] == old.schema.metadata[b"huggingface"], relative
            writer = (pq.ParquetFile(TINY_TASKS_DIR / relative).metadata.created_by,
                      pq.ParquetFile(tmp_path / relative).metadata.created_by)
            if writer[0] == writer[1]:  # the same pyarrow writes the same bytes
                assert (tmp_path / relative).read_bytes() == (TINY_TASKS_DIR / relative).read_bytes(), relative
        else:
            assert (tmp_path / relative).read_bytes() == (TINY_TASKS_DIR / relative).read_bytes(), relative


def test_layout_is_the_hubs():
    for name, tasks in (("glue", GLUE_TASKS), ("super_glue", SUPERGLUE_TASKS), ("race", RACE_TASKS)):
        configs = [s.config for s in tasks]
        folder = TINY_TASKS_DIR / name
        card = (folder / "README.md").read_text()
        meta = yaml.safe_load(card.split("---\n")[1])
        assert sorted(c["config_name"] for c in meta["configs"]) == sorted(configs)
        assert sorted(i["config_name"] for i in meta["dataset_info"]) == sorted(configs)
        spec_of = {spec.config: spec for spec in tasks}
        for config in meta["configs"]:
            splits = SPLITS[spec_of[config["config_name"]].name]
            assert [f["split"] for f in config["data_files"]] == splits
            for entry in config["data_files"]:
                assert entry["path"] == f"{config['config_name']}/{entry['split']}-*"
                matches = sorted(folder.glob(entry["path"]))
                assert [m.name for m in matches] == [f"{entry['split']}-00000-of-00001.parquet"]
        assert "synthetic" in card.lower() and "bortzoo.data.tiny_tasks" in card
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
    assert {spec.name for spec in ALL_TASKS} <= set(SPLITS)
    assert Path(dataset_folder(get_task("sst2"))) == TINY_TASKS_DIR / "glue"
    assert Path(dataset_folder(get_task("race"))) == TINY_TASKS_DIR / "race"
    for name in ("boolq", "record", "wsc", "superglue-rte", "axg"):
        assert Path(dataset_folder(get_task(name))) == TINY_TASKS_DIR / "super_glue"


# -- SuperGLUE (aps/super_glue): the Hub's features, written out here independently of the generator ----------
def superglue_hub_features() -> dict:
    """{config: Features} as the Hub's `super_glue` script (v1.0.3) declares them, in its column order."""
    from datasets import ClassLabel, Features, Sequence, Value

    s, i = Value("string"), Value("int32")
    boolean, nli2 = ClassLabel(names=["False", "True"]), ClassLabel(names=["entailment", "not_entailment"])
    return {
        "boolq": Features({"question": s, "passage": s, "idx": i, "label": boolean}),
        "cb": Features({"premise": s, "hypothesis": s, "idx": i,
                        "label": ClassLabel(names=["entailment", "contradiction", "neutral"])}),
        "copa": Features({"premise": s, "choice1": s, "choice2": s, "question": s, "idx": i,
                          "label": ClassLabel(names=["choice1", "choice2"])}),
        "multirc": Features({"paragraph": s, "question": s, "answer": s,
                             "idx": {"paragraph": i, "question": i, "answer": i}, "label": boolean}),
        "record": Features({"passage": s, "query": s, "entities": Sequence(s),
                            "entity_spans": Sequence({"text": s, "start": i, "end": i}), "answers": Sequence(s),
                            "idx": {"passage": i, "query": i}}),
        "rte": Features({"premise": s, "hypothesis": s, "idx": i, "label": nli2}),
        "wic": Features({"word": s, "sentence1": s, "sentence2": s, "start1": i, "start2": i, "end1": i, "end2": i,
                         "idx": i, "label": boolean}),
        "wsc.fixed": Features({"text": s, "span1_index": i, "span2_index": i, "span1_text": s, "span2_text": s,
                               "idx": i, "label": boolean}),
        "axb": Features({"sentence1": s, "sentence2": s, "idx": i, "label": nli2}),
        "axg": Features({"premise": s, "hypothesis": s, "idx": i, "label": nli2}),
    }


def _order(features) -> list:
    """Column names, nested ones too, in order (Features compare as dicts, ignoring order)."""
    return [(name, list(feature) if isinstance(feature, dict) else None) for name, feature in features.items()]


@pytest.mark.parametrize("spec", SUPERGLUE_TASKS, ids=lambda s: s.name)
def test_superglue_config_loads_like_the_hub(loaded, spec):
    data = loaded[spec.name]
    expected = superglue_hub_features()[spec.config]
    assert list(data) == SPLITS[spec.name]
    for split, table in data.items():
        assert table.num_rows == rows_of(spec.name, split), split
        assert table.features == expected and _order(table.features) == _order(expected), split
        if spec.config in ("multirc", "record"):
            continue  # idx is a struct (checked below)
        assert list(table["idx"]) == list(range(table.num_rows))
        labels = list(table["label"])
        if split == "test" and spec.config not in ("axb", "axg"):
            assert set(labels) == {-1}  # hidden, as on the Hub
        else:  # AX-b's and AX-g's labels are public
            counts = Counter(labels)
            assert sorted(counts) == list(range(len(expected["label"].names)))
            assert len(set(counts.values())) == 1, counts  # balanced


@pytest.mark.parametrize("spec", SUPERGLUE_TASKS, ids=lambda s: s.name)
def test_superglue_rows_read_cleanly_by_their_spec(loaded, spec):
    """Every shipped row encodes without a note (bad rows are the tests' own to build)."""
    for split, table in loaded[spec.name].items():
        for row in table:
            pairs = spec.texts(row)
            assert pairs and all(first for first, _ in pairs), (split, row)
            assert not (spec.notes(row) if spec.notes else []), (split, row)


def test_multirc_groups_several_answers_per_question(loaded):
    for split, table in loaded["multirc"].items():
        groups: dict = defaultdict(list)
        questions: dict = defaultdict(list)
        for row in table:
            idx = row["idx"]
            groups[idx["paragraph"], idx["question"]].append(row)
            if idx["question"] not in questions[idx["paragraph"]]:
                questions[idx["paragraph"]].append(idx["question"])
        assert sorted(questions) == list(range(len(questions)))  # paragraphs numbered in order
        for ids in questions.values():
            assert ids == list(range(len(ids))) and 2 <= len(ids) <= 3  # question ids restart per paragraph
        sizes = Counter(len(rows) for rows in groups.values())
        assert set(sizes) == {2, 3, 4}, sizes
        for rows in groups.values():
            assert [r["idx"]["answer"] for r in rows] == list(range(len(rows)))  # answer ids restart per question
            assert len({(r["paragraph"], r["question"]) for r in rows}) == 1
            if split != "test":
                assert {r["label"] for r in rows} == {0, 1}  # at least one true and one false answer
        assert len({row["paragraph"] for row in table}) == len(questions)
        assert len(groups) == len({(r["idx"]["paragraph"], r["idx"]["question"]) for r in table})


def test_record_entities_spans_and_answers(loaded):
    for split, table in loaded["record"].items():
        per_passage = Counter()
        for row in table:
            passage, entities, spans = row["passage"], row["entities"], row["entity_spans"]
            assert "@placeholder" in row["query"] and "\n@highlight\n" in passage
            assert 3 <= len(entities) <= 6 and len(set(entities)) == len(entities)
            assert list(spans) == ["text", "start", "end"]
            assert sorted(spans["start"]) == spans["start"]
            for text, start, end in zip(spans["text"], spans["start"], spans["end"]):
                assert passage[start:end] == text  # end exclusive, as the Hub's script writes it
            assert set(spans["text"]) == set(entities)
            if split == "test":
                assert row["answers"] == []
            else:
                assert row["answers"] and set(row["answers"]) <= set(entities)
                assert row["answers"] == sorted(row["answers"])
            per_passage[row["idx"]["passage"]] += 1
        assert list(table["idx"]) == sorted(table["idx"], key=lambda idx: (idx["passage"], idx["query"]))
        assert len({idx["query"] for idx in table["idx"]}) == table.num_rows
        assert sorted(per_passage) == list(range(len(per_passage)))
        assert max(per_passage.values()) >= 2 and sum(n >= 2 for n in per_passage.values()) > len(per_passage) // 2
    train = loaded["record"]["train"]
    assert any(len(row["answers"]) == 2 for row in train)  # a second surface form of the gold entity
    assert any(row["entities"].index(row["answers"][0]) > 0 for row in train)  # the gold is not always first


def test_wic_offsets_slice_out_the_word(loaded):
    for table in loaded["wic"].values():
        for row in table:
            for n in (1, 2):
                sentence, start, end = row[f"sentence{n}"], row[f"start{n}"], row[f"end{n}"]
                assert sentence[start:end] == row["word"], row
                assert (start == 0 or sentence[start - 1] == " ") and sentence[end] == " ", row


def test_wsc_span_indices_point_at_the_span_texts(loaded):
    for table in loaded["wsc"].values():
        for row in table:
            words = row["text"].split()
            for n in (1, 2):
                span = row[f"span{n}_text"].split()
                at = row[f"span{n}_index"]
                assert words[at:at + len(span)] == span, row
            assert row["span2_text"] == "it"


def test_axg_comes_in_gender_twins(loaded):
    table = loaded["axg"]["test"]
    rows = list(table)
    assert len(rows) % 2 == 0
    for first, second in zip(rows[0::2], rows[1::2]):
        assert first["idx"] // 2 == second["idx"] // 2 and first["idx"] % 2 == 0
        assert first["label"] == second["label"] and first["hypothesis"] == second["hypothesis"]
        a, b = first["premise"].split(), second["premise"].split()
        differ = [(x, y) for x, y in zip(a, b) if x != y]
        assert len(a) == len(b) and len(differ) == 1 and set(differ[0]) == {"he", "she"}, (first, second)


def test_copa_balances_question_and_label(loaded):
    for split, table in loaded["copa"].items():
        counts = Counter(table["question"])
        assert set(counts) == {"cause", "effect"} and len(set(counts.values())) == 1
        if split != "test":
            joint = Counter(zip(table["question"], table["label"]))
            assert len(joint) == 4 and len(set(joint.values())) == 1, joint


PEOPLE = {"farmer", "teacher", "child", "student"}
TIME_WORDS = {"morning", "night", "day", "rain", "dinner", "winter"}
SG_RULES = {
    "boolq": lambda r: int(bool({"sees", "watches", "finds"} & set(_words(r["question"])))),
    "cb": lambda r: next(["entailment", "contradiction", "neutral"].index(name) for name, cues in
                         (("entailment", {"morning", "every"}), ("neutral", {"rain", "dinner"}),
                          ("contradiction", {"night", "winter"})) if cues & set(_words(r["hypothesis"])[-2:])),
    "copa": lambda r: [(_words(r[c])[2] in ANIMALS) == (r["question"] == "cause") for c in ("choice1", "choice2")]
    .index(True),
    "multirc": lambda r: int(_words(r["answer"])[-1] in ANIMALS),
    "superglue-rte": lambda r: int(_words(r["hypothesis"])[2] not in ANIMALS),
    "axb": lambda r: int(_words(r["sentence2"])[2] not in ANIMALS),
    "axg": lambda r: int(_words(r["hypothesis"])[2] not in ANIMALS),
    "wic": lambda r: int(_words(r["sentence2"])[-1] in TIME_WORDS),
    "wsc": lambda r: int(_words(r["span1_text"])[-1] in ANIMALS),
}


@pytest.mark.parametrize("name", sorted(SG_RULES))
def test_superglue_labels_follow_the_documented_rule(loaded, name):
    for split, table in loaded[name].items():
        if split == "test" and name not in ("axb", "axg"):
            continue
        for row in table:
            assert row["label"] == SG_RULES[name](row), (split, row)
    if name == "copa":  # neither choice wins without the question: each has an animal or a person subject
        for row in loaded[name]["train"]:
            kinds = {("animal" if _words(row[c])[2] in ANIMALS else "person" if _words(row[c])[2] in PEOPLE else "?")
                     for c in ("choice1", "choice2")}
            assert kinds == {"animal", "person"}, row
    if name == "wic":
        for row in loaded[name]["train"]:
            assert _words(row["sentence1"])[-1] in TIME_WORDS


def test_record_answer_is_the_only_animal(loaded):
    for split, table in loaded["record"].items():
        for row in table:
            animals = sorted(e for e in row["entities"] if set(e.split()) & ANIMALS)
            assert len(animals) in (1, 2), f"{split}: {len(animals)} animal entities in {row['entities']}"
            assert len({e.split()[-1] for e in animals}) == 1, f"{split}: two different animals in {animals}"
            if split != "test":
                assert row["answers"] == animals, row
            assert all(not (set(e.split()) & ANIMALS) for e in row["entities"] if e not in animals)
