"""RACE (`ehovy/race`) as task specs: article, question, four options, an answer letter."""

from __future__ import annotations

from dataclasses import replace

from bortzoo.tasks.spec import CHOICE, EvalSplit, Pair, TaskSpec

RACE_ID = "ehovy/race"
RACE_LETTERS = ("A", "B", "C", "D")


def race_pairs(row: dict) -> list[Pair]:
    """(article, question with the option): a cloze question ("... _ ...") gets the option in its blank,
    any other question is followed by the option, the way RACE models have read it since BERT."""
    question = row["question"]
    seconds = [question.replace("_", option) if "_" in question else f"{question} {option}".strip()
               for option in row["options"]]
    return [(row["article"], second) for second in seconds]


def race_label(row: dict) -> int:
    """The index of the answer letter; anything but A-D is an error the loader reports with its row."""
    answer = str(row["answer"]).strip().upper()
    if answer not in RACE_LETTERS:
        raise ValueError(f"answer {row['answer']!r} is not one of {', '.join(RACE_LETTERS)}")
    return RACE_LETTERS.index(answer)


def _race(config: str, board: str) -> TaskSpec:
    return TaskSpec(name=f"race-{config}", benchmark="race", dataset=RACE_ID, config=config, kind=CHOICE,
                    text_fields=("article", "question", "options"), metrics=("accuracy",), num_choices=4,
                    validation=(EvalSplit("validation", board),), test=(EvalSplit("test", board),),
                    test_labels=True, id_column="example_id", pairs=race_pairs, label=race_label,
                    label_columns=("answer",), submission_labels=RACE_LETTERS)


# Training rows per config, as the Hub dataset card of ehovy/race lists them (`bortzoo plan` counts steps from them).
RACE_TRAIN_ROWS = {"all": 87866, "middle": 25421, "high": 62445}
RACE_TASKS = tuple(replace(_race(config, board), train_rows=RACE_TRAIN_ROWS[config])
                   for config, board in (("all", "RACE"), ("middle", "RACE-m"), ("high", "RACE-h")))
RACE_ALIASES = {"race": "race-all"}
