"""GLUE read as the classic TSV download: the project's Hub-layout fixtures written out as `glue_data` (in the layout
of `download_glue_data.py` and the files the `datasets` GLUE script read) and read back through `load_split` give
exactly the Hub-layout tables; bad files stop with the file, line, column and value; a fine-tune on the TSVs scores
as one on the Hub layout.

The writer below is independent of `bortzoo.data.glue_tsv`: it spells out each task's original files (headers,
header-less CoLA, MRPC's BOM and columns, QQP's ids, MNLI's parse and annotator columns, string labels where the
originals have them, test files with their index column and no label)."""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import recipe_copy

from bortzoo.data.glue_tsv import LAYOUTS, hub_features, read_glue_tsv, task_folder
from bortzoo.data.rows import load_split
from bortzoo.data.tiny_tasks import TINY_TASKS_DIR, glue_splits
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task, tasks_of
from bortzoo.tasks.glue import NLI2, NLI3

REPO = Path(__file__).resolve().parent.parent
HUB_GLUE = str(TINY_TASKS_DIR / "glue")
GLUE = [spec.name for spec in tasks_of("glue")]
FOLDER = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI",
          "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "ax": "diagnostic"}
FILE = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv", "validation_matched": "dev_matched.tsv",
        "validation_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
        "test_mismatched": "test_mismatched.tsv"}
MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
STSB_HEAD = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]


@pytest.fixture(autouse=True)
def hf_cache(fresh_hf_cache):
    """The Hub-layout fixtures are read through a fresh `datasets` cache (see `conftest.fresh_hf_cache`)."""


# -- the original layout, written from a Hub-layout table ----------------------------------------------------
def label_text(task: str, value) -> str:
    """A label as the original files write it: NLI class names for MNLI, QNLI and RTE, 0/1 elsewhere, STS-B's
    score with three decimals."""
    if task == "stsb":
        return f"{value:.3f}"
    if task == "mnli":
        return NLI3[value]
    if task in ("qnli", "rte"):
        return NLI2[value]
    return str(value)


def original_lines(task: str, split: str, table) -> tuple[list[list[str]], bool]:
    """The rows (header first, where the file has one) of the original TSV for one split, and whether the file
    starts with a byte-order mark (MRPC's train/dev, copied from msr_paraphrase_train.txt)."""
    test = split.startswith("test")
    spec = get_task(task)
    texts = [table[name] for name in spec.text_fields]
    labels = None if test else [label_text(task, value) for value in table["label"]]
    n = len(table)
    if task == "cola":
        if test:
            return [["index", "sentence"]] + [[str(i), texts[0][i]] for i in range(n)], False
        return [[f"src{i % 7}", labels[i], "" if labels[i] == "1" else "*", texts[0][i]] for i in range(n)], False
    if task == "sst2":
        if test:
            return [["index", "sentence"]] + [[str(i), texts[0][i]] for i in range(n)], False
        return [["sentence", "label"]] + [[texts[0][i], labels[i]] for i in range(n)], False
    if task == "mrpc":
        if test:
            return [["index", "#1 ID", "#2 ID", "#1 String", "#2 String"]] + [
                [str(i), str(1000 + 2 * i), str(1001 + 2 * i), texts[0][i], texts[1][i]] for i in range(n)], False
        return [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]] + [
            [labels[i], str(1000 + 2 * i), str(1001 + 2 * i), texts[0][i], texts[1][i]] for i in range(n)], True
    if task == "stsb":
        fill = lambda i: [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none"]  # noqa: E731
        if test:
            return [STSB_HEAD] + [fill(i) + [texts[0][i], texts[1][i]] for i in range(n)], False
        return [STSB_HEAD + ["score"]] + [fill(i) + [texts[0][i], texts[1][i], labels[i]] for i in range(n)], False
    if task == "qqp":
        if test:
            return [["id", "question1", "question2"]] + [[str(i), texts[0][i], texts[1][i]] for i in range(n)], False
        head = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
        return [head] + [[str(5000 + i), str(2 * i + 1), str(2 * i + 2), texts[0][i], texts[1][i], labels[i]]
                         for i in range(n)], False
    if task == "mnli":
        fill = lambda i: [str(i), str(7000 + i), f"{7000 + i}e", "fiction",  # noqa: E731
                          "( ( a ) b )", "( c )", "(ROOT (S a))", "(ROOT (S c))"]
        if test:
            return [MNLI_HEAD] + [fill(i) + [texts[0][i], texts[1][i]] for i in range(n)], False
        annotators = ["label1"] if split == "train" else ["label1", "label2", "label3", "label4", "label5"]
        return [MNLI_HEAD + annotators + ["gold_label"]] + [
            fill(i) + [texts[0][i], texts[1][i]] + [labels[i]] * len(annotators) + [labels[i]] for i in range(n)], False
    if task in ("qnli", "rte", "wnli", "ax"):
        head = ["index", "question", "sentence"] if task == "qnli" else ["index", "sentence1", "sentence2"]
        if test:
            return [head] + [[str(i), texts[0][i], texts[1][i]] for i in range(n)], False
        return [head + ["label"]] + [[str(i), texts[0][i], texts[1][i], labels[i]] for i in range(n)], False
    raise AssertionError(task)


def write_tsv(path: Path, rows: list[list[str]], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join("\t".join(row) + "\n" for row in rows)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


def file_of(task: str, split: str) -> str:
    return "diagnostic.tsv" if task == "ax" else FILE[split]


@pytest.fixture(scope="module")
def glue_data(tmp_path_factory) -> Path:
    """Every GLUE fixture split written as the classic download into `glue_data/`."""
    import datasets

    root = tmp_path_factory.mktemp("classic") / "glue_data"
    for task in GLUE:
        spec = get_task(task)
        for split in glue_splits(spec):
            table = datasets.load_dataset(HUB_GLUE, spec.config, split=split)  # read apart from the module under test
            rows, bom = original_lines(task, split, table)
            write_tsv(root / FOLDER[task] / file_of(task, split), rows, bom)
    return root


def copy_task(glue_data: Path, tmp_path: Path, task: str) -> Path:
    """A writable copy of one task's folder inside a fresh glue_data, for tests that break a file."""
    target = tmp_path / "glue_data" / FOLDER[task]
    shutil.copytree(glue_data / FOLDER[task], target)
    return target


def edit_line(path: Path, line: int, edit) -> None:
    """Replace physical line `line` (1-based) of `path` by edit(fields)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line - 1] = "\t".join(edit(lines[line - 1].split("\t")))
    path.write_text("\n".join(lines), encoding="utf-8")


# -- the round trip: every task, every split, every row ------------------------------------------------------
@pytest.mark.parametrize("task", GLUE)
def test_classic_download_reads_as_the_hub_layout(glue_data, task):
    spec = get_task(task)
    for split in glue_splits(spec):
        hub = load_split(spec, split, HUB_GLUE)
        tsv = load_split(spec, split, str(glue_data))
        assert tsv.features == hub.features == hub_features(spec), (task, split)
        assert tsv.column_names == hub.column_names
        assert tsv.to_dict() == hub.to_dict(), (task, split)  # texts, labels (ids, -1, float32 scores) and idx
        assert tsv.features["idx"].dtype == "int32"
        if split.startswith("test"):
            assert set(tsv["label"]) == {-1}


def test_the_split_names_are_the_hubs():
    """Each layout's files name exactly the spec's splits (MNLI's four evaluation splits, AX's single test)."""
    for task in GLUE:
        spec = get_task(task)
        assert sorted(LAYOUTS[spec.config].files) == sorted(glue_splits(spec)), task
    assert LAYOUTS["mnli"].files["validation_mismatched"] == "dev_mismatched.tsv"
    assert LAYOUTS["ax"].files == {"test": "diagnostic.tsv"}


def test_a_single_task_folder_works(glue_data):
    for task, split in (("rte", "validation"), ("mnli", "validation_mismatched"), ("cola", "train"), ("ax", "test")):
        spec = get_task(task)
        folder = str(glue_data / FOLDER[task])
        assert task_folder(spec, folder) == folder
        assert load_split(spec, split, folder).to_dict() == load_split(spec, split, HUB_GLUE).to_dict()


def test_a_renamed_task_folder_works(glue_data, tmp_path):
    folder = tmp_path / "my-rte"
    shutil.copytree(glue_data / "RTE", folder)
    spec = get_task("rte")
    assert load_split(spec, "train", str(folder)).to_dict() == load_split(spec, "train", HUB_GLUE).to_dict()


def test_the_hub_layout_and_other_benchmarks_are_not_classic(glue_data):
    assert task_folder(get_task("rte"), HUB_GLUE) is None
    assert task_folder(get_task("mnli"), HUB_GLUE) is None
    assert task_folder(get_task("race-high"), str(glue_data)) is None
    assert task_folder(get_task("boolq"), str(glue_data)) is None


def test_read_glue_tsv_gives_every_split_by_default(glue_data):
    splits = read_glue_tsv(get_task("mnli"), str(glue_data / "MNLI"))
    assert list(splits) == ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"]
    assert [len(splits[s]) for s in splits] == [384, 96, 96, 48, 48]


def test_quote_characters_are_text(tmp_path, glue_data):
    """QUOTE_NONE: a field that starts, ends or is made of quotes is read as written, as the originals need
    (SST-2 and QQP hold many)."""
    texts = ['"The cat" sat .', "it 's \"fine", '""', "'single' and \"double\"", '" spaced "', 'end "']
    folder = copy_task(glue_data, tmp_path, "rte")
    rows = [["index", "sentence1", "sentence2", "label"]]
    rows += [[str(i), text, text[::-1], NLI2[i % 2]] for i, text in enumerate(texts)]
    write_tsv(folder / "dev.tsv", rows)
    data = load_split(get_task("rte"), "validation", str(folder.parent))
    assert data["sentence1"] == texts
    assert data["sentence2"] == [text[::-1] for text in texts]
    assert data["label"] == [0, 1, 0, 1, 0, 1] and data["idx"] == list(range(len(texts)))


def test_labels_map_by_name_not_by_position(tmp_path, glue_data):
    """WNLI's Hub names are (not_entailment, entailment): its files' 1 is entailment; RTE's names are the other way
    round. MNLI's strings map to the Hub's (entailment, neutral, contradiction) ids whatever their order in a file."""
    folder = copy_task(glue_data, tmp_path, "mnli")
    rows = [MNLI_HEAD + ["label1", "gold_label"]]
    for i, gold in enumerate(["contradiction", "entailment", "neutral"]):
        rows.append([str(i)] + ["x"] * 7 + [f"premise {i}", f"hypothesis {i}", gold, gold])
    write_tsv(folder / "train.tsv", rows)
    assert load_split(get_task("mnli"), "train", str(folder.parent))["label"] == [2, 0, 1]
    wnli = copy_task(glue_data, tmp_path, "wnli")
    write_tsv(wnli / "dev.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "1"],
                                 ["1", "c", "d", "0"]])
    data = load_split(get_task("wnli"), "validation", str(wnli.parent))
    assert [data.features["label"].int2str(x) for x in data["label"]] == ["entailment", "not_entailment"]


def test_trailing_blank_lines_and_windows_line_ends_are_fine(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "sst2")
    write_tsv(folder / "dev.tsv", [["sentence", "label"], ["a good film", "1"], ["a bad one", "0"], [], []])
    assert load_split(get_task("sst2"), "validation", str(folder))["sentence"] == ["a good film", "a bad one"]
    (folder / "dev.tsv").write_bytes(b"sentence\tlabel\r\na good film\t1\r\na bad one\t0\r\n")
    data = load_split(get_task("sst2"), "validation", str(folder))
    assert data["sentence"] == ["a good film", "a bad one"] and data["label"] == [1, 0]


# -- bad input: file, line, column and value ------------------------------------------------------------------
def raises(task: str, split: str, data_dir: Path, *fragments: str) -> str:
    with pytest.raises(BortzooError) as caught:
        load_split(get_task(task), split, str(data_dir))
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_label_that_is_not_the_tasks(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "rte")
    edit_line(folder / "dev.tsv", 5, lambda f: f[:-1] + ["neutral"])  # RTE is two-way
    raises("rte", "validation", folder.parent, str(folder / "dev.tsv"), "line 5", "column 'label'", "'neutral'",
           "entailment, not_entailment")


def test_a_numeric_label_out_of_range(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "qqp")
    edit_line(folder / "train.tsv", 12, lambda f: f[:-1] + ["2"])
    raises("qqp", "train", folder.parent, "train.tsv", "line 12", "column 'is_duplicate'", "'2'",
           "0 (not_duplicate), 1 (duplicate)")


def test_an_empty_label_is_not_dropped(tmp_path, glue_data):
    """The `datasets` script dropped a row whose label was empty; here it stops the read."""
    folder = copy_task(glue_data, tmp_path, "mnli")
    edit_line(folder / "dev_matched.tsv", 3, lambda f: f[:-1] + [""])
    raises("mnli", "validation_matched", folder.parent, "dev_matched.tsv", "line 3", "column 'gold_label'", "''")


def test_a_header_less_cola_line_with_a_bad_label(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "cola")
    edit_line(folder / "train.tsv", 1, lambda f: [f[0], "*", "*", f[3]])  # the mark in the label field
    raises("cola", "train", folder.parent, "train.tsv", "line 1", "column 'label'", "'*'")


def test_an_stsb_score_that_is_not_a_number_or_out_of_range(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "stsb")
    edit_line(folder / "train.tsv", 4, lambda f: f[:-1] + ["high"])
    raises("stsb", "train", folder.parent, "train.tsv", "line 4", "column 'score'", "'high'", "not a number")
    edit_line(folder / "train.tsv", 4, lambda f: f[:-1] + ["5.200"])
    raises("stsb", "train", folder.parent, "line 4", "column 'score'", "'5.200'", "outside [0, 5]")


def test_a_line_with_a_missing_field(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "qnli")
    edit_line(folder / "train.tsv", 7, lambda f: f[:2] + [f[3]])  # the sentence lost: the label slides left
    raises("qnli", "train", folder.parent, "train.tsv", "line 7", "column 'label'", "no value", "3 tab-separated "
           "fields, expected 4")


def test_a_line_with_an_extra_field(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "mrpc")
    edit_line(folder / "test.tsv", 9, lambda f: f + ["stray"])
    raises("mrpc", "test", folder.parent, "test.tsv", "line 9", "'stray'", "after column '#2 String'")


def test_a_header_less_cola_line_with_too_few_fields(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "cola")
    edit_line(folder / "dev.tsv", 2, lambda f: f[:3])
    raises("cola", "validation", folder.parent, "dev.tsv", "line 2", "column 'sentence'", "no value")


def test_a_blank_line_between_rows(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "wnli")
    edit_line(folder / "train.tsv", 6, lambda f: [""])
    raises("wnli", "train", folder.parent, "train.tsv", "line 6", "blank line between rows")


def test_a_missing_label_column(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "mnli")
    edit_line(folder / "train.tsv", 1, lambda f: f[:-1] + ["gold"])
    raises("mnli", "train", folder.parent, "train.tsv", "line 1 (the header)", "no label column 'gold_label'", "'gold'")


def test_a_missing_text_column(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "qqp")
    edit_line(folder / "dev.tsv", 1, lambda f: [("q1" if x == "question1" else x) for x in f])
    raises("qqp", "validation", folder.parent, "dev.tsv", "line 1 (the header)", "no column 'question1'", "'q1'")


def test_a_missing_file_lists_the_folders_files(tmp_path, glue_data):
    folder = copy_task(glue_data, tmp_path, "mnli")
    (folder / "dev_mismatched.tsv").unlink()
    raises("mnli", "validation_mismatched", folder.parent, str(folder), "no dev_mismatched.tsv",
           "train.tsv, dev_matched.tsv, dev_mismatched.tsv, test_matched.tsv, test_mismatched.tsv")


def test_a_glue_data_folder_without_the_task(tmp_path, glue_data):
    copy_task(glue_data, tmp_path, "rte")
    raises("sst2", "train", tmp_path / "glue_data", "classic GLUE download", "RTE/", "no SST-2/ folder",
           "train.tsv, dev.tsv, test.tsv")


def test_another_tasks_folder(glue_data):
    """MNLI's predict reads AX too: a data_dir that is MNLI's own folder says where AX's file is expected."""
    raises("ax", "test", glue_data / "MNLI", "classic GLUE folder of MNLI", "not of diagnostic", "diagnostic.tsv")


def test_a_split_the_task_does_not_have(glue_data):
    raises("rte", "validation_matched", glue_data, "no split 'validation_matched'", "['test', 'train', 'validation']")


# -- end to end: a fine-tune on the TSVs scores as one on the Hub layout ------------------------------------------
@pytest.mark.slow
def test_fit_on_the_classic_download_matches_the_hub_layout(tmp_path, glue_data, monkeypatch):
    from bortzoo.cli import main

    monkeypatch.chdir(REPO)  # the recipe names the tokenizer relative to the repository root
    recipe = REPO / "recipes" / "finetune" / "glue" / "mnli-bort-tiny.yaml"
    results = {}
    for name, data_dir in (("hub", HUB_GLUE), ("tsv", str(glue_data))):
        (tmp_path / name).mkdir()
        copy = recipe_copy(recipe, tmp_path / name, **{"trainer.max_epochs": 1, "trainer.limit_train_batches": 3,
                                                        "data.init_args.data_dir": data_dir})
        main(["fit", "--config", str(copy)])
        out = Path(yaml.safe_load(copy.read_text())["trainer"]["default_root_dir"])
        results[name] = json.loads((out / "results.json").read_text())
    hub, tsv = results["hub"]["final"], results["tsv"]["final"]
    assert set(tsv["splits"]) == {"MNLI-m", "MNLI-mm"}
    for board, values in hub["splits"].items():
        assert tsv["splits"][board] == pytest.approx(values, abs=1e-6), board
    assert tsv["score"] == pytest.approx(hub["score"], abs=1e-6)
    assert os.path.isfile(results["tsv"]["best_checkpoint"])
