"""GLUE (`nyu-mll/glue`) as task specs, the GLUE score's groups and the leaderboard spellings."""

from __future__ import annotations

from dataclasses import replace

from bortzoo.tasks.spec import CLASSES, REGRESSION, EvalSplit, TaskSpec

GLUE_ID = "nyu-mll/glue"
# The GLUE server's prediction strings (`submission_labels`, by the Hub ClassLabel's label id), checked against
# jiant, the GLUE authors' library (nyu-mll/jiant): jiant/tasks/core.py GlueMixin.get_glue_preds writes
# str(LABELS[pred]).lower() with each task's LABELS in jiant/tasks/lib/<task>.py (cola, sst, mrpc, qqp, wnli:
# ["0", "1"]; mnli, glue_diagnostics: the three NLI names; qnli, rte: entailment/not_entailment), as jiant 1.x
# jiant/evaluate.py _write_glue_preds did. The board names (file names) are jiant/scripts/benchmarks/benchmarks.py
# GlueBenchmark.BENCHMARK_SUBMISSION_FILENAMES.
BINARY_NUMERIC = ("0", "1")  # CoLA, SST-2, MRPC, QQP, WNLI files hold 0/1 (WNLI's 1 = entailment, as in its TSVs)
NLI3 = ("entailment", "neutral", "contradiction")  # MNLI-m, MNLI-mm, AX (glue_diagnostics subclasses MnliTask)
NLI2 = ("entailment", "not_entailment")  # QNLI, RTE


def _glue(name: str, board: str, fields: tuple[str, ...], metrics: tuple[str, ...], labels: tuple[str, ...] = (),
          submission: tuple[str, ...] = (), **kwargs) -> TaskSpec:
    kwargs.setdefault("validation", (EvalSplit("validation", board),))
    kwargs.setdefault("test", (EvalSplit("test", board),))
    kwargs.setdefault("kind", CLASSES if labels else REGRESSION)
    return TaskSpec(name=name, benchmark="glue", dataset=GLUE_ID, config=kwargs.pop("config", name),
                    text_fields=fields, metrics=metrics, label_names=labels, submission_labels=submission, **kwargs)


GLUE_TASKS = (
    _glue("cola", "CoLA", ("sentence",), ("mcc",), ("unacceptable", "acceptable"), BINARY_NUMERIC),
    _glue("sst2", "SST-2", ("sentence",), ("accuracy",), ("negative", "positive"), BINARY_NUMERIC),
    _glue("mrpc", "MRPC", ("sentence1", "sentence2"), ("f1", "accuracy"), ("not_equivalent", "equivalent"),
          BINARY_NUMERIC),
    # STS-B's score is clipped to label_range and written with three decimals: jiant 1.x jiant/evaluate.py
    # _write_glue_preds (min(max(0, x), 5), float_format "%.3f"); jiant's stsb.py get_glue_preds rounds to 3.
    _glue("stsb", "STS-B", ("sentence1", "sentence2"), ("pearson", "spearman"), label_range=(0.0, 5.0)),
    _glue("qqp", "QQP", ("question1", "question2"), ("f1", "accuracy"), ("not_duplicate", "duplicate"),
          BINARY_NUMERIC),
    _glue("mnli", "MNLI", ("premise", "hypothesis"), ("accuracy",), NLI3, NLI3,
          validation=(EvalSplit("validation_matched", "MNLI-m"), EvalSplit("validation_mismatched", "MNLI-mm")),
          test=(EvalSplit("test_matched", "MNLI-m"), EvalSplit("test_mismatched", "MNLI-mm"),
                EvalSplit("test", "AX", task="ax"))),
    _glue("qnli", "QNLI", ("question", "sentence"), ("accuracy",), NLI2, NLI2),
    _glue("rte", "RTE", ("sentence1", "sentence2"), ("accuracy",), NLI2, NLI2),
    _glue("wnli", "WNLI", ("sentence1", "sentence2"), ("accuracy",), ("not_entailment", "entailment"),
          BINARY_NUMERIC),
    _glue("ax", "AX", ("premise", "hypothesis"), ("mcc",), NLI3, NLI3, train=None, validation=(),
          predicted_by="mnli"),
)

# Training rows per task, as the Hub dataset card of nyu-mll/glue lists them (`bortzoo plan` counts steps from them).
GLUE_TRAIN_ROWS = {'cola': 8551, 'sst2': 67349, 'mrpc': 3668, 'stsb': 5749, 'qqp': 363846, 'mnli': 392702, 'qnli': 104743, 'rte': 2490, 'wnli': 635}
GLUE_TASKS = tuple(replace(spec, train_rows=GLUE_TRAIN_ROWS.get(spec.name)) for spec in GLUE_TASKS)

# The GLUE score: the mean over these groups of leaderboard columns, each group the mean of its columns,
# each column the mean of its metrics. MNLI counts once (matched and mismatched averaged); AX not at all.
# Checked against the published scores: Bort 83.6, BERT-large 80.5 (tests/test_metrics.py).
GLUE_SCORE_GROUPS = (("CoLA",), ("SST-2",), ("MRPC",), ("STS-B",), ("QQP",), ("MNLI-m", "MNLI-mm"), ("QNLI",),
                     ("RTE",), ("WNLI",))
GLUE_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli-mm": "mnli"}
