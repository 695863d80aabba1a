"""SuperGLUE specs read rows as intended: the marked spans, the options, the groups and the candidates.

Each test writes a few hand-made rows in the columns of `aps/super_glue` into a Hub-layout folder, reads
them through `TaskData` like the real data, and decodes what the model would read: the texts must be the
rows' own with exactly the marks the spec promises. Bad rows stop with task, split, row and column;
ReCoRD's imperfect rows are counted and kept.
"""

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH

from bortzoo.data.encoding import PadCollator
from bortzoo.data.task_data import TaskData
from bortzoo.errors import BortzooError
from bortzoo.modules.task_model import TaskModel, ranking_loss
from bortzoo.tasks import get_task
from bortzoo.tasks.superglue import COPA_QUESTIONS, fill, record_candidates, record_label


@pytest.fixture(autouse=True)
def hf_cache(fresh_hf_cache):
    """Every test reads its folders through a fresh `datasets` cache (see `conftest.fresh_hf_cache`)."""


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    from bortzoo.hub import load_tokenizer

    return load_tokenizer(tiny_tokenizer_dir)


def folder(root: Path, config: str, splits: dict[str, list[dict]]) -> str:
    """A Hub-layout folder (`<config>/<split>.jsonl` and a `configs:` card) holding the given rows."""
    (root / config).mkdir(parents=True)
    entries = []
    for split, rows in splits.items():
        (root / config / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        entries.append(f"  - split: {split}\n    path: {config}/{split}.jsonl\n")
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{''.join(entries)}---\n")
    return str(root)


def loaded(tmp_path, tok, task: str, rows: list[dict], split: str = "validation", **kwargs) -> TaskData:
    spec = get_task(task)
    dm = TaskData(task, data_dir=folder(tmp_path / "data", spec.config, {split: rows}), max_length=128, **kwargs)
    dm.tokenizer = tok
    dm._load(spec, split, hidden=False)
    return dm


def decoded(tok, sequence: list[int]) -> tuple[str, ...]:
    """The texts of one encoded sequence (`<s> A </s></s> B </s>` with the tiny RoBERTa-style tokenizer)."""
    text = tok.decode(sequence)
    assert text.startswith("<s>") and text.endswith("</s>")
    return tuple(text[len("<s>"):-len("</s>")].split("</s></s>"))


# -- COPA: two options, the question word in the prompt ---------------------------------------------------
COPA = [{"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
         "choice2": "The grass was cut.", "question": "cause", "idx": 0, "label": 0},
        {"premise": "The woman tolerated her friend's difficult behavior.", "choice1": "The woman knew her friend "
         "was going through a hard time.", "choice2": "The woman felt that her friend took advantage of her "
         "kindness.", "question": "effect", "idx": 1, "label": 1}]


def test_copa_reads_two_options_with_the_question_word(tmp_path, tok):
    dm = loaded(tmp_path, tok, "copa", COPA)
    data = dm.datasets["copa/validation"]
    for row, encoded in zip(COPA, data):
        assert len(encoded["input_ids"]) == 2  # one sequence per option
        prompt = {"cause": "What was the cause?", "effect": "What happened as a result?"}[row["question"]]
        assert prompt == COPA_QUESTIONS[row["question"]]
        for option, sequence in zip(("choice1", "choice2"), encoded["input_ids"]):
            assert decoded(tok, sequence) == (row["premise"], f"{prompt} {row[option]}")
        assert encoded["labels"] == row["label"]
    batch = PadCollator(tok.pad_token_id)([data[0], data[1]])
    assert batch["input_ids"].shape[:2] == (2, 2) and batch["labels"].tolist() == [0, 1]
    assert "option_mask" not in batch  # every row has its two options


def test_copa_bad_question_and_label_name_their_row(tmp_path, tok):
    rows = [COPA[0], dict(COPA[1], question="reason")]
    with pytest.raises(BortzooError, match=r"task copa, split validation, row 1, column 'question': 'reason' is not "
                                           r"one of cause, effect"):
        loaded(tmp_path / "a", tok, "copa", rows)
    with pytest.raises(BortzooError, match=r"task copa, split validation, row 0, column 'label': label 2 is not an "
                                           r"option index 0..1"):
        loaded(tmp_path / "b", tok, "copa", [dict(COPA[0], label=2)])


# -- WiC: the target word marked in both sentences -------------------------------------------------------
def wic_row(s1: str, w1: str, s2: str, w2: str, idx: int = 0, label: int = 1) -> dict:
    start1, start2 = s1.index(w1), s2.index(w2)
    return {"word": w1, "sentence1": s1, "sentence2": s2, "start1": start1, "start2": start2,
            "end1": start1 + len(w1), "end2": start2 + len(w2), "idx": idx, "label": label}


def test_wic_marks_the_target_word_in_each_sentence(tmp_path, tok):
    rows = [wic_row("Do you want to come over to my place later?", "place",
                    "A political system with no place for the less prominent groups.", "place"),
            wic_row("The cat ran home.", "ran", "She runs a company.", "runs", idx=1, label=0)]
    dm = loaded(tmp_path, tok, "wic", rows)
    texts = [decoded(tok, encoded["input_ids"]) for encoded in dm.datasets["wic/validation"]]
    assert texts[0] == ("Do you want to come over to my *place* later?",
                        "A political system with no *place* for the less prominent groups.")
    assert texts[1] == ("The cat *ran* home.", "She *runs* a company.")  # the marks follow the offsets, not `word`


def test_wic_offsets_outside_the_sentence_name_row_and_column(tmp_path, tok):
    row = dict(wic_row("The cat ran home.", "ran", "She runs a company.", "runs"), end2=99)
    with pytest.raises(BortzooError, match=r"task wic, split validation, row 0, column 'start2': target word span "
                                           r"\[4, 99\) is not within sentence2"):
        loaded(tmp_path, tok, "wic", [row])


# -- WSC: candidate [marked], pronoun *marked*, by word index ---------------------------------------------
WSC = {"text": "The city councilmen refused the demonstrators a permit because they feared violence.",
       "span1_index": 0, "span2_index": 9, "span1_text": "The city councilmen", "span2_text": "they", "idx": 0,
       "label": 1}


def test_wsc_marks_the_candidate_and_the_pronoun(tmp_path, tok):
    rows = [WSC, dict(WSC, span1_index=4, span1_text="the demonstrators", idx=1, label=0)]
    dm = loaded(tmp_path, tok, "wsc", rows)
    texts = [decoded(tok, encoded["input_ids"]) for encoded in dm.datasets["wsc/validation"]]
    assert texts[0] == ("[The city councilmen] refused the demonstrators a permit because *they* feared violence.",)
    assert texts[1] == ("The city councilmen refused [the demonstrators] a permit because *they* feared violence.",)
    assert dm.notes["wsc/validation"] == {}


def test_wsc_a_misplaced_span_is_marked_where_it_is_and_counted(tmp_path, tok):
    rows = [dict(WSC, span1_index=2), WSC]
    with pytest.warns(UserWarning, match=r"wsc/validation: 1 of 2 rows, column 'span1_index': row 0"):
        dm = loaded(tmp_path, tok, "wsc", rows)
    text = decoded(tok, dm.datasets["wsc/validation"][0]["input_ids"])[0]
    assert text.startswith("[The city councilmen] refused")
    assert dm.notes["wsc/validation"] == {"span1_index": [(0, "'The city councilmen' is not at word 2; marked at "
                                                              "word 0")]}


def test_wsc_a_span_not_in_the_text_names_row_and_column(tmp_path, tok):
    with pytest.raises(BortzooError, match=r"task wsc, split validation, row 1, column 'span2_index': 'she' is not "
                                           r"at word 9"):
        loaded(tmp_path, tok, "wsc", [WSC, dict(WSC, span2_text="she")])


# -- MultiRC: one example per answer, grouped by (paragraph, question) -------------------------------------
def multirc_rows() -> list[dict]:
    rows = []
    for paragraph in range(2):
        for question in range(2):  # question ids restart in each paragraph, as in the real data
            for answer in range(3):
                rows.append({"paragraph": f"Paragraph {paragraph}.", "question": f"Question {question}?",
                             "answer": f"answer {answer}", "label": int(answer == question),
                             "idx": {"paragraph": paragraph, "question": question, "answer": answer}})
    return rows


def test_multirc_reads_paragraph_and_question_answer_and_keeps_groups(tmp_path, tok):
    rows = multirc_rows()
    dm = loaded(tmp_path, tok, "multirc", rows)
    data = dm.datasets["multirc/validation"]
    for row, encoded in zip(rows, data):
        assert decoded(tok, encoded["input_ids"]) == (row["paragraph"], f"{row['question']} {row['answer']}")
        assert encoded["groups"] == [row["idx"]["paragraph"], row["idx"]["question"]]
        assert encoded["ids"] == row["idx"]
    batch = PadCollator(tok.pad_token_id)([data[i] for i in range(len(data))])
    assert batch["groups"].shape == (12, 2) and batch["groups"].dtype == torch.long
    assert len({tuple(g) for g in batch["groups"].tolist()}) == 4  # (0,0) and (1,0) are different questions


def test_multirc_idx_without_question_names_the_column(tmp_path, tok):
    rows = multirc_rows()
    rows[3]["idx"] = {"paragraph": 0, "answer": 0}
    with pytest.raises(BortzooError, match=r"task multirc, split validation, row 3, column 'idx'"):
        loaded(tmp_path, tok, "multirc", rows)


# -- ReCoRD: a ranking of the candidate entities filled into the query -------------------------------------
def record_row(query_idx: int, entities: list[str], answers: list[str], query: str = "@placeholder won the race.",
               passage: str = "Alice and Bob ran.\n@highlight\nAlice won") -> dict:
    return {"passage": passage, "query": query, "entities": entities,
            "entity_spans": [{"text": e, "start": 0, "end": len(e)} for e in entities], "answers": answers,
            "idx": {"passage": 0, "query": query_idx}}


def test_record_fills_each_distinct_candidate_into_the_query(tmp_path, tok):
    rows = [record_row(0, ["Alice", "Bob", "Alice"], ["Alice"]), record_row(1, ["Bob", "Carol", "Dan", "Eve"],
                                                                            ["Carol", "Eve"])]
    dm = loaded(tmp_path, tok, "record", rows)
    data = dm.datasets["record/validation"]
    first, second = data[0], data[1]
    assert first["candidates"] == ["Alice", "Bob"]  # duplicates scored once, in passage order
    assert [decoded(tok, s) for s in first["input_ids"]] == [
        ("Alice and Bob ran.\n- Alice won", "Alice won the race."), ("Alice and Bob ran.\n- Alice won", "Bob won the race.")]
    assert first["labels"] == [1, 0] and second["labels"] == [0, 1, 0, 1]  # every gold candidate is right
    assert second["gold_answers"] == ["Carol", "Eve"]
    batch = PadCollator(tok.pad_token_id)([first, second])
    assert batch["input_ids"].shape[:2] == (2, 4)
    assert batch["option_mask"].tolist() == [[True, True, False, False], [True] * 4]
    assert batch["labels"].tolist() == [[1, 0, 0, 0], [0, 1, 0, 1]]
    assert batch["attention_mask"][0, 2:].sum(-1).tolist() == [1, 1]  # dummies: one attended pad token
    assert batch["candidates"] == [["Alice", "Bob"], ["Bob", "Carol", "Dan", "Eve"]]
    assert batch["answers"] == [["Alice"], ["Carol", "Eve"]]
    assert dm.notes["record/validation"] == {}


def test_record_rows_without_placeholder_or_entities_are_counted_not_dropped(tmp_path, tok):
    rows = [record_row(0, ["Alice", "Bob"], ["Alice"]),
            record_row(1, ["Alice", "Bob"], ["Bob"], query="The winner of the race was"),
            record_row(2, [], ["Alice"]),
            record_row(3, ["Alice", "Bob"], ["Carol"])]
    with pytest.warns(UserWarning, match=r"record/validation: 1 of 4 rows, column 'query': row 1: no @placeholder"):
        dm = loaded(tmp_path, tok, "record", rows)
    data = dm.datasets["record/validation"]
    assert len(data) == 4  # every row kept
    assert decoded(tok, data[1]["input_ids"][1])[1] == "The winner of the race was Bob"  # appended
    assert data[2]["candidates"] == [""] and data[2]["labels"] == [0]  # predicted as the empty answer
    assert data[3]["labels"] == [0, 0]
    notes = dm.notes["record/validation"]
    assert {column: [row for row, _ in items] for column, items in notes.items()} == {
        "query": [1], "entities": [2], "answers": [3]}
    assert "no @placeholder" in notes["query"][0][1] and "no candidate entities" in notes["entities"][0][1]


def test_record_label_and_fill_helpers():
    row = record_row(0, ["A", "B", "A", " "], ["B", "Z"])
    assert record_candidates(row) == ["A", "B"] and record_label(row) == [0, 1]
    assert fill("@placeholder met @placeholder.", "Ann") == "Ann met Ann."
    assert fill("Who won?", "Ann") == "Who won? Ann"


def test_ranking_loss_and_masked_forward_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, torch.finfo(torch.float32).min]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # the second row has no gold: it adds nothing
    expected = -torch.log((torch.exp(torch.tensor(2.0)) + torch.exp(torch.tensor(-1.0)))
                          / torch.exp(torch.tensor([2.0, 0.0, -1.0])).sum())
    assert ranking_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert ranking_loss(logits, torch.zeros_like(labels)).item() == 0.0

    torch.manual_seed(0)
    model = TaskModel(task="record", model=None, arch=TINY_ARCH, head="bort").eval()
    ids = torch.randint(5, 100, (2, 3, 6))
    mask = torch.ones_like(ids)
    option_mask = torch.tensor([[True, True, False], [True, True, True]])
    with torch.no_grad():
        masked = model(ids, mask, None, option_mask)
        plain = model(ids, mask)
    assert masked[0, 2] == torch.finfo(torch.float32).min and torch.equal(masked[1], plain[1].float())
    assert torch.equal(masked[0, :2], plain[0, :2].float())
    assert masked.argmax(-1)[0] in (0, 1)
