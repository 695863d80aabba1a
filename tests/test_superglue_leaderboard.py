"""SuperGLUE leaderboard files: the JSON-lines layout per task, the zip, the validator and the prediction writer."""

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task
from bortzoo.tasks.leaderboard import SubmissionWriter, zip_superglue
from bortzoo.tasks.superglue_leaderboard import (
    SUPERGLUE_FILES,
    SUPERGLUE_ZIP,
    allowed_labels,
    expected_ids_from,
    superglue_records,
    validate_file,
    validate_submission,
    write_jsonl,
)

OFFICIAL = ["BoolQ.jsonl", "CB.jsonl", "COPA.jsonl", "MultiRC.jsonl", "ReCoRD.jsonl", "RTE.jsonl", "WiC.jsonl",
            "WSC.jsonl", "AX-b.jsonl", "AX-g.jsonl"]

# MultiRC: question ids restart in every paragraph; rows arrive in any order.
MULTIRC_IDS = [{"paragraph": 1, "question": 0, "answer": 1}, {"paragraph": 0, "question": 1, "answer": 2},
               {"paragraph": 0, "question": 0, "answer": 0}, {"paragraph": 0, "question": 0, "answer": 1},
               {"paragraph": 1, "question": 0, "answer": 0}]
MULTIRC_PREDICTIONS = [1, 0, 1, 0, 0]
RECORD_IDS = [{"passage": 1, "query": 7}, {"passage": 0, "query": 3}]
RECORD_CANDIDATES = [["Paris", "Zoë", "Bonn"], ["Obama"]]
RECORD_PREDICTIONS = [1, 0]


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_official_file_names():
    assert sorted(SUPERGLUE_FILES) == sorted(OFFICIAL)
    assert SUPERGLUE_ZIP == "superglue-submission.zip"


@pytest.mark.parametrize("task", ["boolq", "wic"])
def test_booleans_are_lower_case_strings(task):
    records = superglue_records(task, [12, 3, 5], [1, 0, 1])
    assert records == [{"idx": 3, "label": "false"}, {"idx": 5, "label": "true"}, {"idx": 12, "label": "true"}]


def test_wsc_booleans_are_capitalised():
    # jiant writes WSC's labels as Python's str(bool): jiant/tasks/lib/wsc.py WSCTask.super_glue_format_preds, and
    # jiant 1.x jiant/evaluate.py _write_winograd_preds ({0: "False", 1: "True"}); BoolQ and WiC are lower-cased.
    records = superglue_records("wsc", [12, 3, 5], [1, 0, 1])
    assert records == [{"idx": 3, "label": "False"}, {"idx": 5, "label": "True"}, {"idx": 12, "label": "True"}]
    assert allowed_labels(get_task("wsc")) == ("False", "True")


# Each column's label values as jiant writes them, by label id (jiant: jiant/tasks/lib/<task>.py, each task's
# LABELS / CHOICE_KEYS and super_glue_format_preds; jiant 1.x: jiant/evaluate.py, the _write_*_preds functions).
# By label id of the aps/super_glue ClassLabel: its CB order differs from jiant's LABELS list, not its strings.
JIANT_LABELS = {"BoolQ": ("false", "true"), "CB": ("entailment", "contradiction", "neutral"), "COPA": (0, 1),
                "MultiRC": (0, 1), "ReCoRD": None, "RTE": ("entailment", "not_entailment"), "WiC": ("false", "true"),
                "WSC": ("False", "True"), "AX-b": ("entailment", "not_entailment"),
                "AX-g": ("entailment", "not_entailment")}


def test_every_column_holds_jiants_label_values():
    from bortzoo.tasks.superglue_leaderboard import board_specs

    assert {board: allowed_labels(spec) for board, spec in board_specs().items()} == JIANT_LABELS


def test_nli_labels_are_the_spec_strings():
    assert superglue_records("cb", [0, 1, 2], [0, 1, 2]) == [
        {"idx": 0, "label": "entailment"}, {"idx": 1, "label": "contradiction"}, {"idx": 2, "label": "neutral"}]
    for task in ("superglue-rte", "axb", "axg"):
        assert [r["label"] for r in superglue_records(task, [1, 0], [1, 0])] == ["entailment", "not_entailment"]


def test_copa_labels_are_integers():
    records = superglue_records("copa", [torch.tensor(4), 3], [torch.tensor(1), 0])
    assert records == [{"idx": 3, "label": 0}, {"idx": 4, "label": 1}]
    assert all(type(r["label"]) is int and type(r["idx"]) is int for r in records)
    assert allowed_labels(get_task("copa")) == (0, 1)


def test_multirc_nests_answers_under_questions_under_paragraphs():
    records = superglue_records("multirc", MULTIRC_IDS, MULTIRC_PREDICTIONS)
    assert records == [
        {"idx": 0, "passage": {"questions": [
            {"idx": 0, "answers": [{"idx": 0, "label": 1}, {"idx": 1, "label": 0}]},
            {"idx": 1, "answers": [{"idx": 2, "label": 0}]}]}},
        {"idx": 1, "passage": {"questions": [
            {"idx": 0, "answers": [{"idx": 0, "label": 0}, {"idx": 1, "label": 1}]}]}},
    ]


def test_record_writes_the_query_idx_and_the_chosen_candidate_text():
    records = superglue_records("record", RECORD_IDS, RECORD_PREDICTIONS, candidates=RECORD_CANDIDATES)
    assert records == [{"idx": 3, "label": "Obama"}, {"idx": 7, "label": "Zoë"}]


@pytest.mark.parametrize("task, ids, predictions, kwargs, message", [
    ("boolq", [0, 5], [1, 2], {}, r"BoolQ, idx 5: prediction 2 has no label"),
    ("cb", [4, 4], [0, 1], {}, r"CB: duplicate example id \(idx 4\)"),
    ("copa", [0, 1], [0, 2], {}, r"COPA, idx 1: prediction 2"),
    ("copa", [0, 1], [0, 0.5], {}, r"COPA, idx 1: prediction 0.5 is not an integer"),
    ("multirc", [{"paragraph": 0, "question": 0, "answer": 0}] * 2, [0, 1], {},
     r"MultiRC: duplicate example id \(paragraph 0 question 0 answer 0\)"),
    ("multirc", [{"paragraph": 0, "question": 0}], [0], {}, r"MultiRC: example id .* is not a dict"),
    ("record", RECORD_IDS, RECORD_PREDICTIONS, {}, r"ReCoRD: .*no candidates were given"),
    ("record", RECORD_IDS, [3, 0], {"candidates": RECORD_CANDIDATES},
     r"ReCoRD, query 7: prediction 3 is not an index into its 3 candidates"),
    ("record", RECORD_IDS, [0], {"candidates": RECORD_CANDIDATES}, r"ReCoRD: 2 ids but 1 predictions"),
    ("wic", ["a"], [0], {}, r"WiC: example id 'a' is not an integer"),
    ("axb", [0, 1], [0, 7], {}, r"AX-b, idx 1: prediction 7"),
])
def test_bad_input_names_the_board_and_the_id(task, ids, predictions, kwargs, message):
    with pytest.raises(BortzooError, match=message):
        superglue_records(task, ids, predictions, **kwargs)


def write_all(folder: Path) -> None:
    """One small file per leaderboard column."""
    write_jsonl("boolq", "BoolQ", [0, 1], [0, 1], folder)
    write_jsonl("cb", "CB", [0, 1, 2], [2, 1, 0], folder)
    write_jsonl("copa", "COPA", [0, 1], [1, 0], folder)
    write_jsonl("multirc", "MultiRC", MULTIRC_IDS, MULTIRC_PREDICTIONS, folder)
    write_jsonl("record", "ReCoRD", RECORD_IDS, RECORD_PREDICTIONS, folder, candidates=RECORD_CANDIDATES)
    write_jsonl("superglue-rte", "RTE", [0, 1], [0, 1], folder)
    write_jsonl("wic", "WiC", [0, 1], [1, 1], folder)
    write_jsonl("wsc", "WSC", [0, 1], [0, 0], folder)
    write_jsonl("axb", "AX-b", [0, 1], [0, 1], folder)
    write_jsonl("axg", "AX-g", [0, 1, 2, 3], [0, 1, 1, 0], folder)


EXPECTED = {"BoolQ": [0, 1], "CB": [0, 1, 2], "COPA": [1, 0], "MultiRC": MULTIRC_IDS, "ReCoRD": RECORD_IDS,
            "RTE": [0, 1], "WiC": [0, 1], "WSC": [0, 1], "AX-b": [0, 1], "AX-g": [0, 1, 2, 3]}


def test_written_files_validate_and_zip_at_the_top_level(tmp_path):
    write_all(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OFFICIAL)  # no temporary files left
    assert read_jsonl(tmp_path / "BoolQ.jsonl") == [{"idx": 0, "label": "false"}, {"idx": 1, "label": "true"}]
    assert read_jsonl(tmp_path / "WSC.jsonl") == [{"idx": 0, "label": "False"}, {"idx": 1, "label": "False"}]
    assert validate_submission(tmp_path, EXPECTED, complete=True) == []
    target, missing = zip_superglue(tmp_path)
    assert target == tmp_path / SUPERGLUE_ZIP and missing == []
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == sorted(OFFICIAL)
    assert validate_submission(target, EXPECTED, complete=True) == []
    assert validate_submission(tmp_path / "MultiRC.jsonl", {"MultiRC.jsonl": MULTIRC_IDS}) == []


def test_zip_names_the_missing_files(tmp_path):
    write_jsonl("boolq", "BoolQ", [0], [1], tmp_path)
    target, missing = zip_superglue(tmp_path)
    assert missing == [n for n in SUPERGLUE_FILES if n != "BoolQ.jsonl"]
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == ["BoolQ.jsonl"]
    assert validate_submission(target) == []  # missing files only count when asked
    problems = validate_submission(target, complete=True)
    assert len(problems) == 1 and "missing CB.jsonl" in problems[0] and "AX-g.jsonl" in problems[0]


def test_write_checks_the_rows_against_the_test_split(tmp_path):
    with pytest.raises(BortzooError, match="BoolQ: 2 predictions for 3 test rows"):
        write_jsonl("boolq", "BoolQ", [0, 1], [0, 1], tmp_path, expected_rows=3)
    with pytest.raises(BortzooError, match=r"BoolQ.jsonl: 1 ids missing: idx 2"):
        write_jsonl("boolq", "BoolQ", [0, 1], [0, 1], tmp_path, expected_ids=[0, 2])
    with pytest.raises(BortzooError, match="not a SuperGLUE leaderboard column"):
        write_jsonl("boolq", "boolq", [0], [0], tmp_path)
    assert list(tmp_path.iterdir()) == []


def problems_of(name: str, lines: list, expected=None) -> list:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return validate_file(name, text, expected)


def test_validator_catches_a_wrong_file_name(tmp_path):
    write_jsonl("boolq", "BoolQ", [0], [1], tmp_path)
    (tmp_path / "boolq.jsonl").write_text('{"idx": 0, "label": "true"}\n')
    problems = validate_submission(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("boolq.jsonl: not a SuperGLUE file name")
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as archive:
        archive.write(tmp_path / "BoolQ.jsonl", arcname="submission/BoolQ.jsonl")
    assert any("not at the zip's top level" in p for p in validate_submission(tmp_path / "nested.zip"))


@pytest.mark.parametrize("name, line, message", [
    ("BoolQ.jsonl", {"idx": 0, "label": "True"}, 'label "True" is not one of "false", "true"'),
    ("BoolQ.jsonl", {"idx": 0, "label": True}, "label true is not one of"),
    ("CB.jsonl", {"idx": 0, "label": "not_entailment"}, "is not one of"),
    ("RTE.jsonl", {"idx": 0, "label": "neutral"}, "is not one of"),
    ("COPA.jsonl", {"idx": 0, "label": "1"}, 'label "1" is not one of the integers 0, 1'),
    ("COPA.jsonl", {"idx": 0, "label": 2}, "label 2 is not one of the integers"),
    ("ReCoRD.jsonl", {"idx": 0, "label": 3}, "label 3 is not a string"),
    ("WiC.jsonl", {"idx": "0", "label": "true"}, "idx '0' is not an integer"),
    ("WSC.jsonl", {"idx": 0}, "missing key 'label'"),
    ("WSC.jsonl", {"idx": 0, "label": "true"}, 'label "true" is not one of "False", "True"'),
    ("AX-g.jsonl", {"idx": 0, "label": "entailment", "prediction": 1}, "unexpected key 'prediction'"),
    ("AX-b.jsonl", [0, "entailment"], "not a JSON object"),
])
def test_validator_catches_a_bad_line(name, line, message):
    problems = problems_of(name, [line])
    assert len(problems) >= 1 and message in problems[0] and problems[0].startswith(f"{name} line 1")


def test_validator_catches_invalid_json_and_empty_files():
    assert "line 2: not valid JSON" in problems_of("CB.jsonl", ['{"idx": 0, "label": "neutral"}', "{idx: 1}"])[0]
    assert problems_of("CB.jsonl", []) == ["CB.jsonl: empty file"]


def test_validator_catches_a_duplicate_idx():
    line = {"idx": 4, "label": "true"}
    assert problems_of("BoolQ.jsonl", [line, line]) == ["BoolQ.jsonl line 2: duplicate idx 4"]
    paragraph = {"idx": 0, "passage": {"questions": [{"idx": 0, "answers": [{"idx": 0, "label": 1}]}]}}
    assert problems_of("MultiRC.jsonl", [paragraph, paragraph]) == ["MultiRC.jsonl line 2: duplicate idx 0"]


def test_validator_catches_missing_and_extra_ids():
    lines = [{"idx": 0, "label": "true"}, {"idx": 9, "label": "false"}]
    assert problems_of("BoolQ.jsonl", lines, [0, 1, 2]) == ["BoolQ.jsonl: 2 ids missing: idx 1, idx 2",
                                                          "BoolQ.jsonl: 1 ids not in the test split: idx 9"]
    records = superglue_records("multirc", MULTIRC_IDS[1:], MULTIRC_PREDICTIONS[1:])
    assert problems_of("MultiRC.jsonl", records, MULTIRC_IDS) == [
        "MultiRC.jsonl: 1 ids missing: paragraph 1 question 0 answer 1"]
    records = superglue_records("record", RECORD_IDS, RECORD_PREDICTIONS, candidates=RECORD_CANDIDATES)
    assert problems_of("ReCoRD.jsonl", records, [{"passage": 1, "query": 7}, {"passage": 2, "query": 8}]) == [
        "ReCoRD.jsonl: 1 ids missing: query 8", "ReCoRD.jsonl: 1 ids not in the test split: query 3"]


def test_validator_checks_expected_id_boards(tmp_path):
    write_jsonl("boolq", "BoolQ", [0], [1], tmp_path)
    assert validate_submission(tmp_path, {"BoolQ": [0, 1]}) == ["BoolQ.jsonl: 1 ids missing: idx 1"]
    assert "not a SuperGLUE leaderboard column" in validate_submission(tmp_path, {"MNLI-m": [0]})[0]


@pytest.mark.parametrize("line, message", [
    ({"idx": 0, "label": 1}, "missing key 'passage'"),
    ({"idx": 0, "passage": {"questions": []}}, "passage.questions is not a non-empty list"),
    ({"idx": 0, "passage": {"questions": [{"idx": 0, "answers": [{"idx": 0, "label": "true"}]}]}},
     'question 0 answer 0: label "true" is not one of the integers 0, 1'),
    ({"idx": 0, "passage": {"questions": [{"idx": 0, "answers": [{"idx": "a", "label": 1}]}]}},
     "answer 0: idx 'a' is not an integer"),
    ({"idx": 0, "passage": {"questions": [{"idx": 0, "answers": [{"idx": 0, "label": 1}, {"idx": 0, "label": 0}]}]}},
     "duplicate answer idx 0"),
    ({"idx": 0, "passage": {"questions": [{"idx": 1, "answers": [{"idx": 0, "label": 1}]},
                                          {"idx": 1, "answers": [{"idx": 1, "label": 1}]}]}},
     "duplicate question idx 1"),
    ({"idx": 0, "passage": {"questions": [{"answers": [{"idx": 0, "label": 1}]}]}}, "missing key 'idx'"),
    ({"idx": 0, "passage": [1]}, "passage is not an object"),
])
def test_validator_catches_a_malformed_multirc_line(line, message):
    problems = problems_of("MultiRC.jsonl", [line])
    assert any(message in p for p in problems), problems


def test_expected_ids_from_a_dataset():
    from datasets import Dataset

    raw = Dataset.from_dict({"idx": RECORD_IDS, "query": ["a", "b"]})
    assert expected_ids_from(raw, "record") == RECORD_IDS
    encoded = Dataset.from_dict({"ids": [3, 1], "labels": [-1, -1]})
    assert expected_ids_from(encoded, "boolq") == [3, 1]
    with pytest.raises(BortzooError, match="no 'idx'"):
        expected_ids_from(Dataset.from_dict({"x": [1]}), "boolq")


# -- the `bortzoo predict` callback ---------------------------------------------------------------------------
class FakeData:
    def __init__(self, datasets: dict):
        self.datasets = datasets


def drive_writer(folder: Path, task: str, predictions, datasets=None):
    trainer = SimpleNamespace(world_size=1, default_root_dir=str(folder), datamodule=FakeData(datasets or {}))
    module = SimpleNamespace(spec=get_task(task))
    SubmissionWriter(dirpath=str(folder / "submission")).write_on_epoch_end(trainer, module, predictions, None)
    return folder / "submission"


def batch(ids, predictions, split, **extra):
    return {"ids": ids, "predictions": torch.tensor(predictions, dtype=torch.long), "split": split, **extra}


def test_writer_writes_rte_and_both_diagnostics(tmp_path):
    from datasets import Dataset

    predictions = [
        [batch([torch.tensor(1), torch.tensor(0)], [1, 0], 0), batch([torch.tensor(2)], [0], 0)],  # RTE
        [batch([0, 1], [0, 0], 1)],  # AX-b
        [batch([1, 0], [1, 1], 2), batch([3, 2], [0, 1], 2)],  # AX-g
    ]
    datasets = {"superglue-rte/test": Dataset.from_dict({"ids": [0, 1, 2]}),
                "axg/test": Dataset.from_dict({"ids": [0, 1, 2, 3]})}
    with pytest.warns(UserWarning, match="still missing: BoolQ.jsonl"):
        folder = drive_writer(tmp_path, "superglue-rte", predictions, datasets)
    assert read_jsonl(folder / "RTE.jsonl") == [{"idx": 0, "label": "entailment"},
                                                {"idx": 1, "label": "not_entailment"},
                                                {"idx": 2, "label": "entailment"}]
    assert read_jsonl(folder / "AX-b.jsonl") == [{"idx": 0, "label": "entailment"},
                                                 {"idx": 1, "label": "entailment"}]
    assert [r["label"] for r in read_jsonl(folder / "AX-g.jsonl")] == ["not_entailment", "not_entailment",
                                                                     "not_entailment", "entailment"]
    with zipfile.ZipFile(folder / SUPERGLUE_ZIP) as archive:
        assert sorted(archive.namelist()) == ["AX-b.jsonl", "AX-g.jsonl", "RTE.jsonl"]
    assert validate_submission(folder / SUPERGLUE_ZIP, {"RTE": [0, 1, 2], "AX-b": [0, 1], "AX-g": [0, 1, 2, 3]}) == []
    assert not list(folder.glob("*.tsv"))


def test_writer_refuses_predictions_that_miss_test_rows(tmp_path):
    from datasets import Dataset

    predictions = [[batch([0], [1], 0)], [batch([0], [0], 1)], [batch([0], [0], 2)]]
    with pytest.raises(BortzooError, match="RTE: 1 predictions for 2 test rows"):
        drive_writer(tmp_path, "superglue-rte", predictions, {"superglue-rte/test": Dataset.from_dict({"ids": [0, 1]})})


def test_writer_writes_record_candidate_texts(tmp_path):
    predictions = [batch(RECORD_IDS[:1], [2], 0, candidates=RECORD_CANDIDATES[:1]),
                   batch(RECORD_IDS[1:], [0], 0, candidates=RECORD_CANDIDATES[1:])]
    with pytest.warns(UserWarning, match="still missing"):
        folder = drive_writer(tmp_path, "record", predictions)
    assert read_jsonl(folder / "ReCoRD.jsonl") == [{"idx": 3, "label": "Obama"}, {"idx": 7, "label": "Bonn"}]
    with zipfile.ZipFile(folder / SUPERGLUE_ZIP) as archive:
        assert archive.namelist() == ["ReCoRD.jsonl"]
    with pytest.raises(BortzooError, match="no candidates were given"):
        drive_writer(tmp_path, "record", [batch(RECORD_IDS, [0, 0], 0)])


def test_writer_keeps_glue_tsv(tmp_path):
    with pytest.warns(UserWarning, match="GLUE server needs every task's file"):
        folder = drive_writer(tmp_path, "sst2", [batch([1, 0], [1, 0], 0)])
    assert (folder / "SST-2.tsv").read_text() == "index\tprediction\n0\t0\n1\t1\n"
    assert (folder / "glue-submission.zip").is_file() and not (folder / SUPERGLUE_ZIP).exists()
