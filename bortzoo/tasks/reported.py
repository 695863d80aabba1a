"""Scores the Bort authors published (test servers), kept apart from anything bortzoo measured.

Cards and the demo quote these only under a "reported by the authors" label. Keys are leaderboard
columns (the task specs' `board` names); values are percentages in the task spec's metric order
(MRPC and QQP: F1 then accuracy; STS-B: Pearson then Spearman; CB: macro-F1 then accuracy; MultiRC: F1a then
exact match; ReCoRD: F1 then exact match; AX-g: gender parity then accuracy). RACE numbers were never published.
"""

from __future__ import annotations

from typing import Optional

SOURCE = "alexa/bort README: GLUE and SuperGLUE test-server scores (de Wynter and Perry, 2020)"

GLUE: dict[str, dict[str, tuple[float, ...]]] = {
    "Bort": {"CoLA": (63.9,), "SST-2": (96.2,), "MRPC": (94.1, 92.3), "STS-B": (89.2, 88.3), "QQP": (66.0, 85.9),
             "MNLI-m": (88.1,), "MNLI-mm": (87.8,), "QNLI": (92.3,), "RTE": (82.7,), "WNLI": (71.2,), "AX": (51.9,)},
    "BERT-large": {"CoLA": (60.5,), "SST-2": (94.9,), "MRPC": (89.3, 85.4), "STS-B": (87.6, 86.5),
                   "QQP": (72.1, 89.3), "MNLI-m": (86.7,), "MNLI-mm": (85.9,), "QNLI": (92.7,), "RTE": (70.1,),
                   "WNLI": (65.1,), "AX": (39.6,)},
}
GLUE_SCORE = {"Bort": 83.6, "BERT-large": 80.5}

SUPERGLUE: dict[str, dict[str, tuple[float, ...]]] = {
    "Bort": {"BoolQ": (83.7,), "CB": (81.9, 86.5), "COPA": (89.6,), "MultiRC": (83.7, 54.1), "ReCoRD": (49.8, 49.0),
             "RTE": (81.2,), "WiC": (70.1,), "WSC": (65.8,), "AX-b": (48.0,), "AX-g": (96.1, 61.5)},
    "BERT-large": {"BoolQ": (77.4,), "CB": (75.7, 83.6), "COPA": (70.6,), "MultiRC": (70.0, 24.1),
                   "ReCoRD": (72.0, 71.3), "RTE": (71.7,), "WiC": (69.6,), "WSC": (64.4,), "AX-b": (23.0,),
                   "AX-g": (97.8, 51.7)},
}
SUPERGLUE_SCORE = {"Bort": 74.1, "BERT-large": 69.0}

TABLES = {"glue": GLUE, "superglue": SUPERGLUE}
SCORES = {"glue": GLUE_SCORE, "superglue": SUPERGLUE_SCORE}

# Where Bort is behind BERT-large in the authors' own tables: every card must say so.
KNOWN_LOSSES = ("QQP (GLUE): 66.0/85.9 F1/accuracy against BERT-large's 72.1/89.3",
                "ReCoRD (SuperGLUE): 49.8/49.0 F1/EM against BERT-large's 72.0/71.3")


def reported(benchmark: str, board: str) -> Optional[dict[str, tuple[float, ...]]]:
    """The authors' test-server numbers for one leaderboard column, by model; None if never published."""
    table = TABLES.get(benchmark)
    if table is None or board not in table["Bort"]:
        return None
    return {model: scores[board] for model, scores in table.items()}


def metric_names(benchmark: str, board: str) -> tuple[str, ...]:
    """The metrics behind one published column's numbers, in their order (the task spec's)."""
    from bortzoo.tasks import tasks_of

    for spec in tasks_of(benchmark):
        if any(split.board == board and split.task is None for split in (*spec.validation, *spec.test)):
            return spec.metrics
    raise KeyError(f"no {benchmark} task reports column {board!r}")
