"""SuperGLUE (`aps/super_glue`) as task specs: how each task's row becomes what a model reads.

Each task needs its own encoding, and the choices here are the ones the SuperGLUE baselines and RoBERTa
made, written so a test can read the marked text back:

- BoolQ, CB, RTE, AX-b, AX-g: pair classification (passage + question; premise + hypothesis).
- COPA: two-option multiple choice; each option reads ``(premise, "What was the cause? <choice>")``
  (or ``effect``), so the question word is in the prompt.
- WiC: the pair of sentences with the target word marked ``*word*`` in each (by the rows' character
  offsets).
- WSC (`wsc.fixed`): the text with the candidate noun phrase marked ``[span]`` and the pronoun ``*it*``
  (by the rows' word indices).
- MultiRC: one example per (paragraph, question, answer): ``(paragraph, "question answer")`` classified
  true/false, grouped by (paragraph, question) for the exact-match metric.
- ReCoRD: a ranking: every distinct candidate entity is filled into the query's ``@placeholder`` and scored
  against the passage; the highest-scoring candidate is the answer. (The original Bort code cast ReCoRD as
  binary classification of each candidate on its own and lost 22 points to BERT-large.)

The two diagnostics have no training data and are predicted with the SuperGLUE RTE model (`superglue-rte`),
as the leaderboard asks; their labels are public, so `bortzoo test` on RTE scores them too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Optional

from bortzoo.tasks.glue import NLI2
from bortzoo.tasks.spec import CHOICE, CLASSES, RANKING, EvalSplit, Pair, RowError, TaskSpec

SUPERGLUE_ID = "aps/super_glue"
BOOL = ("False", "True")  # the Hub's ClassLabel names for BoolQ, MultiRC, WiC and WSC
CB_LABELS = ("entailment", "contradiction", "neutral")  # the Hub's order (not GLUE's NLI3 order)
COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}
PLACEHOLDER = "@placeholder"
TARGET_MARK = ("*", "*")  # WiC's target word, WSC's pronoun
SPAN_MARK = ("[", "]")  # WSC's candidate noun phrase
_WORD = re.compile(r"[^0-9a-z]+")


def _int(row: dict, column: str) -> int:
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(column, f"{value!r} is not an integer")
    return value


def mark(text: str, start: int, end: int, marks: tuple[str, str]) -> str:
    """`text` with the characters [start, end) wrapped in `marks`."""
    return f"{text[:start]}{marks[0]}{text[start:end]}{marks[1]}{text[end:]}"


# -- COPA ------------------------------------------------------------------------------------------------
def copa_pairs(row: dict) -> list[Pair]:
    question = row["question"]
    if question not in COPA_QUESTIONS:
        raise RowError("question", f"{question!r} is not one of {', '.join(COPA_QUESTIONS)}")
    prompt = COPA_QUESTIONS[question]
    return [(row["premise"], f"{prompt} {row[choice]}") for choice in ("choice1", "choice2")]


# -- WiC -------------------------------------------------------------------------------------------------
def wic_pairs(row: dict) -> list[Pair]:
    marked = []
    for sentence, start, end in (("sentence1", "start1", "end1"), ("sentence2", "start2", "end2")):
        text, first, last = row[sentence], _int(row, start), _int(row, end)
        if not 0 <= first < last <= len(text):
            raise RowError(start, f"target word span [{first}, {last}) is not within {sentence} "
                                  f"({len(text)} characters)")
        marked.append(mark(text, first, last, TARGET_MARK))
    return [(marked[0], marked[1])]


# -- WSC -------------------------------------------------------------------------------------------------
def _norm(word: str) -> str:
    return _WORD.sub("", word.lower())


def _locate(words: list[str], span: str, index: int, column: str) -> tuple[int, Optional[str]]:
    """Where `span` starts in `words`: at `index` when the words there match (ignoring case and punctuation),
    else its nearest occurrence, with a note saying so; an error if it does not occur at all."""
    wanted = [_norm(w) for w in span.split()]
    if not wanted:
        raise RowError(column.replace("_index", "_text"), "empty span text")

    def matches(at: int) -> bool:
        return [_norm(w) for w in words[at:at + len(wanted)]] == wanted

    if 0 <= index < len(words) and matches(index):
        return index, None
    found = [at for at in range(len(words)) if matches(at)]
    if not found:
        raise RowError(column, f"{span!r} is not at word {index} of the text, nor anywhere in it")
    at = min(found, key=lambda candidate: abs(candidate - index))
    return at, f"{span!r} is not at word {index}; marked at word {at}"


def _wsc_layout(row: dict) -> tuple[str, list[tuple[str, str]]]:
    words = row["text"].split()
    spans, notes = [], []
    for column, text_column, marks in (("span1_index", "span1_text", SPAN_MARK),
                                       ("span2_index", "span2_text", TARGET_MARK)):
        at, note = _locate(words, row[text_column], _int(row, column), column)
        spans.append((at, at + len(row[text_column].split()), marks))
        if note:
            notes.append((column, note))
    (_, first_end, _), (second_start, _, _) = sorted(spans)
    if first_end > second_start:
        raise RowError("span2_index", "the pronoun overlaps the candidate span")
    for start, end, marks in spans:
        words[start] = marks[0] + words[start]
        words[end - 1] = words[end - 1] + marks[1]
    return " ".join(words), notes


def wsc_pairs(row: dict) -> list[Pair]:
    return [(_wsc_layout(row)[0], None)]


def wsc_notes(row: dict) -> list[tuple[str, str]]:
    return _wsc_layout(row)[1]


# -- MultiRC ---------------------------------------------------------------------------------------------
def multirc_pairs(row: dict) -> list[Pair]:
    return [(row["paragraph"], f"{row['question']} {row['answer']}")]


def _idx(row: dict, *keys: str) -> tuple[int, ...]:
    idx = row["idx"]
    if not isinstance(idx, dict) or any(not isinstance(idx.get(key), int) for key in keys):
        raise RowError("idx", f"{idx!r} is not a mapping with integer {', '.join(keys)}")
    return tuple(idx[key] for key in keys)


def multirc_group(row: dict) -> tuple[int, ...]:
    """Answers are scored together per question of a paragraph (question ids restart in each paragraph)."""
    return _idx(row, "paragraph", "question")


# -- ReCoRD ----------------------------------------------------------------------------------------------
def record_candidates(row: dict) -> list[str]:
    """The distinct candidate entities in passage order; a row without any gets one empty candidate, so it is
    still predicted (and scored 0) rather than dropped."""
    entities = [entity for entity in dict.fromkeys(row["entities"] or []) if entity and entity.strip()]
    return entities or [""]


def fill(query: str, entity: str) -> str:
    """The query with the candidate in its placeholder (appended when the query has none)."""
    return query.replace(PLACEHOLDER, entity) if PLACEHOLDER in query else f"{query} {entity}".strip()


def record_passage(passage: str) -> str:
    """The passage with its ``@highlight`` bullet markers (CNN/Daily Mail summaries) read as sentences."""
    return passage.replace("@highlight\n", "- ")


def record_pairs(row: dict) -> list[Pair]:
    passage = record_passage(row["passage"])
    return [(passage, fill(row["query"], entity)) for entity in record_candidates(row)]


def record_label(row: dict) -> list[int]:
    """1 for every candidate that is one of the gold answers, 0 for the others."""
    answers = set(row["answers"] or [])
    return [int(candidate in answers) for candidate in record_candidates(row)]


def record_notes(row: dict) -> list[tuple[str, str]]:
    notes = []
    if PLACEHOLDER not in row["query"]:
        notes.append(("query", f"no {PLACEHOLDER}: the candidate is appended to the query"))
    if not any(entity and entity.strip() for entity in row["entities"] or []):
        notes.append(("entities", "no candidate entities: predicted as the empty answer"))
    elif row["answers"] and not any(record_label(row)):
        notes.append(("answers", "no gold answer among the entities: it cannot be ranked first"))
    return notes


def record_group(row: dict) -> tuple[int, ...]:
    return _idx(row, "passage", "query")


# -- AX-g ------------------------------------------------------------------------------------------------
def axg_group(row: dict) -> tuple[int, ...]:
    """AX-g (Winogender) lists each example next to its twin with the other gender's pronoun: ids 2k, 2k+1."""
    idx = row["idx"]
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise RowError("idx", f"{idx!r} is not an integer")
    return (idx // 2,)


# -- the specs -------------------------------------------------------------------------------------------
def _sg(name: str, board: str, fields: tuple[str, ...], metrics: tuple[str, ...], labels: tuple[str, ...] = (),
        submission: tuple[str, ...] = (), **kwargs) -> TaskSpec:
    kwargs.setdefault("validation", (EvalSplit("validation", board),))
    kwargs.setdefault("test", (EvalSplit("test", board),))
    kwargs.setdefault("kind", CLASSES)
    return TaskSpec(name=name, benchmark="superglue", dataset=SUPERGLUE_ID, config=kwargs.pop("config", name),
                    text_fields=fields, metrics=metrics, label_names=labels, submission_labels=submission, **kwargs)


# The SuperGLUE server's label values, by label id (`submission_labels`; `bortzoo.tasks.superglue_leaderboard` writes
# and validates from them). Checked against jiant, the SuperGLUE authors' library (nyu-mll/jiant), each task's
# `super_glue_format_preds` in jiant/tasks/lib/<task>.py, and jiant 1.x jiant/evaluate.py `_write_*_preds`.
# BoolQ and WiC write booleans lower-cased (boolq.py / wic.py: str(LABELS[pred]).lower(); _write_boolq_preds,
# _write_wic_preds); WSC writes them as Python prints them (wsc.py: str(LABELS[pred]), LABELS = [False, True];
# _write_winograd_preds: {0: "False", 1: "True"}).
TRUE_FALSE = ("false", "true")
WSC_TRUE_FALSE = ("False", "True")

SUPERGLUE_TASKS = (
    # jiant: jiant/tasks/lib/boolq.py, BoolQTask.super_glue_format_preds ("false"/"true")
    _sg("boolq", "BoolQ", ("passage", "question"), ("accuracy",), BOOL, TRUE_FALSE),
    # jiant: jiant/tasks/lib/commitmentbank.py, CommitmentBankTask.super_glue_format_preds (LABELS' strings)
    _sg("cb", "CB", ("premise", "hypothesis"), ("macro_f1", "accuracy"), CB_LABELS, CB_LABELS),
    # jiant: jiant/tasks/lib/copa.py, CopaTask.super_glue_format_preds (CHOICE_KEYS = [0, 1]: a JSON integer)
    _sg("copa", "COPA", ("premise", "question", "choice1", "choice2"), ("accuracy",), kind=CHOICE, num_choices=2,
        pairs=copa_pairs, submission=("0", "1"), rewritable=("premise", "choice1", "choice2")),
    # jiant: jiant/tasks/lib/multirc.py, MultiRCTask.super_glue_format_preds (answers' labels: int(pred))
    _sg("multirc", "MultiRC", ("paragraph", "question", "answer"), ("f1a", "em"), BOOL, ("0", "1"),
        pairs=multirc_pairs, group=multirc_group),
    # jiant: jiant/tasks/evaluate/core.py, ReCordEvaluationScheme.get_preds_from_accumulator (the entity's text)
    _sg("record", "ReCoRD", ("passage", "query", "entities"), ("f1", "em"), kind=RANKING,
        candidates=record_candidates, pairs=record_pairs, label=record_label, label_columns=("answers",),
        group=record_group, notes=record_notes),
    # jiant: jiant/tasks/lib/rte.py, RteTask.super_glue_format_preds; superglue_axb.py and superglue_axg.py
    # subclass RteTask, so AX-b and AX-g hold the same two strings
    _sg("superglue-rte", "RTE", ("premise", "hypothesis"), ("accuracy",), NLI2, NLI2, config="rte",
        test=(EvalSplit("test", "RTE"), EvalSplit("test", "AX-b", task="axb", labelled=True),
              EvalSplit("test", "AX-g", task="axg", labelled=True))),
    # jiant: jiant/tasks/lib/wic.py, WiCTask.super_glue_format_preds ("false"/"true")
    _sg("wic", "WiC", ("word", "sentence1", "sentence2", "start1", "end1", "start2", "end2"), ("accuracy",), BOOL,
        TRUE_FALSE, pairs=wic_pairs),
    # jiant: jiant/tasks/lib/wsc.py, WSCTask.super_glue_format_preds ("False"/"True", capitalised)
    _sg("wsc", "WSC", ("text", "span1_index", "span2_index", "span1_text", "span2_text"), ("accuracy",), BOOL,
        WSC_TRUE_FALSE, config="wsc.fixed", pairs=wsc_pairs, notes=wsc_notes),
    # jiant: jiant/tasks/lib/superglue_axb.py, SuperglueBroadcoverageDiagnosticsTask (RteTask's format)
    _sg("axb", "AX-b", ("sentence1", "sentence2"), ("mcc",), NLI2, NLI2, train=None, validation=(),
        test_labels=True, predicted_by="superglue-rte"),
    # jiant: jiant/tasks/lib/superglue_axg.py, SuperglueWinogenderDiagnosticsTask (RteTask's format)
    _sg("axg", "AX-g", ("premise", "hypothesis"), ("parity", "accuracy"), NLI2, NLI2, train=None, validation=(),
        test_labels=True, predicted_by="superglue-rte", group=axg_group),
)

# Training rows per task, as the Hub dataset card of aps/super_glue lists them (`bortzoo plan` counts steps from them).
SUPERGLUE_TRAIN_ROWS = {'boolq': 9427, 'cb': 250, 'copa': 400, 'multirc': 27243, 'record': 100730, 'superglue-rte': 2490, 'wic': 5428, 'wsc': 554}
SUPERGLUE_TASKS = tuple(replace(spec, train_rows=SUPERGLUE_TRAIN_ROWS.get(spec.name)) for spec in SUPERGLUE_TASKS)

# The SuperGLUE score: the mean over the eight tasks, two-metric tasks averaged first; the diagnostics
# (AX-b, AX-g) are reported but not scored. Checked against the published 74.1 (Bort) and 69.0 (BERT-large).
SUPERGLUE_SCORE_GROUPS = (("BoolQ",), ("CB",), ("COPA",), ("MultiRC",), ("ReCoRD",), ("RTE",), ("WiC",), ("WSC",))
SUPERGLUE_ALIASES = {"wsc.fixed": "wsc", "ax-b": "axb", "ax-g": "axg", "rte-superglue": "superglue-rte"}
