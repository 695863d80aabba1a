"""Metrics: each official metric against a value computed by hand, every task's collection, the GLUE score
against the published leaderboard rows of Bort and BERT-large."""

import math

import pytest
import torch

from bortzoo.errors import BortzooError
from bortzoo.tasks import TASKS, get_task
from bortzoo.tasks.metrics import (
    METRIC_NAMES,
    benchmark_score,
    make_metric,
    split_score,
    task_metrics,
    to_percent,
)


def format_metrics(values: dict) -> str:
    """Metric fractions as leaderboard text: ``{"f1": 0.893, "accuracy": 0.854}`` -> ``"f1 89.3 / accuracy 85.4"``."""
    return " / ".join(f"{name} {to_percent(value):.1f}" for name, value in values.items())


def computed(metric, preds, target) -> float:
    metric.update(preds, target)
    return float(metric.compute())


# -- binary: F1 of the positive class, MCC, accuracy ---------------------------------------------------
#            idx:  0  1  2  3  4  5  6  7
BIN_PREDS = [1, 1, 1, 0, 1, 0, 0, 0]
BIN_TARGET = [1, 0, 1, 1, 1, 0, 1, 0]
TP, FP, FN, TN = 3, 1, 2, 2  # TP idx 0,2,4; FP idx 1; FN idx 3,6; TN idx 5,7


def binary():
    return torch.tensor(BIN_PREDS), torch.tensor(BIN_TARGET)


def test_confusion_counts_are_what_the_hand_computations_use():
    pairs = list(zip(BIN_PREDS, BIN_TARGET))
    assert (pairs.count((1, 1)), pairs.count((1, 0)), pairs.count((0, 1)), pairs.count((0, 0))) == (TP, FP, FN, TN)


def test_f1_is_binary_f1_of_label_1():
    precision, recall = TP / (TP + FP), TP / (TP + FN)  # 3/4, 3/5
    expected = 2 * precision * recall / (precision + recall)  # 2 * 0.75 * 0.6 / 1.35 = 2/3
    assert expected == pytest.approx(2 / 3)
    # the negative class's F1 differs (P = 2/4, R = 2/3 -> 4/7), so this pins the class
    assert computed(make_metric("f1", get_task("mrpc")), *binary()) == pytest.approx(expected)
    assert computed(make_metric("f1", get_task("qqp")), *binary()) == pytest.approx(expected)


def test_binary_mcc_from_confusion_matrix():
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))  # 4 / sqrt(240)
    assert expected == pytest.approx(0.2581989)
    assert computed(make_metric("mcc", get_task("cola")), *binary()) == pytest.approx(expected, abs=1e-6)


def test_binary_accuracy():
    assert computed(make_metric("accuracy", get_task("mrpc")), *binary()) == pytest.approx((TP + TN) / 8)


def test_one_class_predictions_score_zero_without_crashing():
    # MCC's denominator is 0 when one class is predicted; scikit-learn (GLUE's scorer) then gives 0, where
    # torchmetrics 1.9 alone gives 0.18 here and 0.026 for a majority-class model on CoLA's dev set
    target = torch.tensor(BIN_TARGET)
    assert computed(make_metric("mcc", get_task("cola")), torch.ones(8, dtype=torch.long), target) == 0.0
    assert computed(make_metric("mcc", get_task("cola")), torch.zeros(8, dtype=torch.long), target) == 0.0
    cola_dev = torch.tensor([1] * 721 + [0] * 322)
    assert computed(make_metric("mcc", get_task("cola")), torch.ones(1043, dtype=torch.long), cola_dev) == 0.0
    ones = torch.ones(4, dtype=torch.long)
    assert computed(make_metric("mcc", get_task("cola")), ones, ones) == 0.0  # one class present: undefined
    assert computed(make_metric("mcc", get_task("ax")), torch.zeros(6, dtype=torch.long),
                    torch.tensor([0, 1, 2, 0, 1, 2])) == 0.0
    assert computed(make_metric("f1", get_task("mrpc")), torch.zeros(8, dtype=torch.long), target) == 0.0


# -- multiclass ------------------------------------------------------------------------------------------
def test_three_class_mcc_is_gorodkin_rk():
    target = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    preds = [0, 0, 1, 1, 1, 2, 2, 2, 0, 0]
    c = 6  # correct: idx 0, 1, 3, 4, 6, 7
    s = 10
    p = [4, 3, 3]  # predicted 0: idx 0,1,8,9; 1: idx 2,3,4; 2: idx 5,6,7
    t = [3, 3, 4]
    assert c == sum(a == b for a, b in zip(preds, target)) and p == [preds.count(k) for k in range(3)]
    pt = sum(pk * tk for pk, tk in zip(p, t))  # 12 + 9 + 12 = 33
    expected = (c * s - pt) / math.sqrt((s**2 - sum(pk**2 for pk in p)) * (s**2 - sum(tk**2 for tk in t)))  # 27/66
    assert expected == pytest.approx(27 / 66)
    value = computed(make_metric("mcc", get_task("ax")), torch.tensor(preds), torch.tensor(target))
    assert value == pytest.approx(expected, abs=1e-6)


def test_multiclass_accuracy_is_micro():
    preds, target = torch.tensor([0, 0, 0, 0, 1, 2]), torch.tensor([0, 0, 0, 0, 2, 1])
    # micro: 4 of 6 right; macro would be the mean per-class recall (1 + 0 + 0) / 3
    assert computed(make_metric("accuracy", get_task("mnli")), preds, target) == pytest.approx(4 / 6)


def test_choice_accuracy_on_ids_and_on_scores():
    spec = get_task("race")
    scores = torch.tensor([[0.1, 0.9, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 1.0, 0.0]])
    target = torch.tensor([1, 0, 2, 2])  # argmax 1, 0, 3, 2: rows 0, 1, 3 right
    assert computed(make_metric("accuracy", spec), scores.argmax(-1), target) == pytest.approx(3 / 4)
    assert computed(make_metric("accuracy", spec), scores, target) == pytest.approx(3 / 4)


# -- regression ------------------------------------------------------------------------------------------
def test_pearson_by_formula():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]
    # means 2.5; deviations x (-1.5, -0.5, 0.5, 1.5), y (-0.5, -1.5, 1.5, 0.5)
    covariance = sum((a - 2.5) * (b - 2.5) for a, b in zip(x, y))  # 0.75 * 4 = 3
    expected = covariance / math.sqrt(sum((a - 2.5) ** 2 for a in x) * sum((b - 2.5) ** 2 for b in y))  # 3 / 5
    assert expected == pytest.approx(0.6)
    assert computed(make_metric("pearson", get_task("stsb")), torch.tensor(x), torch.tensor(y)) == pytest.approx(0.6)


def test_spearman_with_a_tie_uses_average_ranks():
    preds = [0.5, 2.0, 2.0, 3.0, 1.0]  # ranks 1, 3.5, 3.5, 5, 2 (the tie shares ranks 3 and 4)
    target = [0.2, 4.8, 1.0, 3.5, 2.5]  # ranks 1, 5, 2, 4, 3
    rank_p, rank_t = [1, 3.5, 3.5, 5, 2], [1, 5, 2, 4, 3]
    # Pearson of the ranks; both means are 3
    covariance = sum((a - 3) * (b - 3) for a, b in zip(rank_p, rank_t))  # 4 + 1 - 0.5 + 2 + 0 = 6.5
    expected = covariance / math.sqrt(sum((a - 3) ** 2 for a in rank_p) * sum((b - 3) ** 2 for b in rank_t))
    assert expected == pytest.approx(6.5 / math.sqrt(9.5 * 10))  # ordinal ranks 3, 4 would give 0.5
    value = computed(make_metric("spearman", get_task("stsb")), torch.tensor(preds), torch.tensor(target))
    assert value == pytest.approx(expected, abs=1e-6)


def test_regression_takes_float32_scores_against_float64_labels():
    collection = task_metrics(get_task("stsb"))
    collection.update(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 1.0, 4.0, 3.0], dtype=torch.float64))
    values = collection.compute()
    assert float(values["pearson"]) == pytest.approx(0.6)
    assert float(values["spearman"]) == pytest.approx(0.6)  # the same data are their own ranks


# -- names and kinds -------------------------------------------------------------------------------------
def test_unknown_metric_names_the_valid_ones():
    with pytest.raises(BortzooError) as error:
        make_metric("auc", get_task("sst2"))
    assert all(name in str(error.value) for name in METRIC_NAMES)


@pytest.mark.parametrize("name, task", [("f1", "mnli"), ("pearson", "cola"), ("mcc", "stsb"), ("f1", "race")])
def test_metric_on_a_task_it_does_not_define_is_an_error(name, task):
    with pytest.raises(BortzooError, match=name):
        make_metric(name, get_task(task))


# what grouped (MultiRC, AX-g) and ReCoRD metrics take besides preds and target; the others never see it
TINY_EXTRA = {"groups": torch.tensor([[0, 0], [0, 0], [0, 1], [1, 0], [1, 0], [1, 1]]),
              "candidates": [["Obama", "Biden"]] * 6, "answers": [["Obama"], ["Biden"], [], ["x"], ["Obama"], ["y"]]}


def tiny_batch(spec):
    n = 6
    if spec.kind == "regression":
        return torch.linspace(0.0, 5.0, n), torch.tensor([0.0, 1.5, 1.0, 3.0, 4.5, 5.0])
    classes = spec.num_choices or spec.num_labels  # ranking: 1, candidate 0 every time
    return torch.arange(n) % classes, torch.tensor([0, 1, 1, 0, 1, 0]) % classes


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_its_metric_collection(name):
    spec = get_task(name)
    collection = task_metrics(spec, prefix="val/")
    assert list(collection.keys()) == [f"val/{metric}" for metric in spec.metrics]
    collection.update(*tiny_batch(spec), **TINY_EXTRA)
    values = collection.compute()
    assert list(values) == [f"val/{metric}" for metric in spec.metrics]
    assert all(math.isfinite(float(value)) and -1.0 <= float(value) <= 1.0 for value in values.values())


def test_collection_without_prefix_has_bare_names():
    assert list(task_metrics(get_task("mrpc")).keys()) == ["f1", "accuracy"]


# -- scores ----------------------------------------------------------------------------------------------
BORT = {"CoLA": {"mcc": 63.9}, "SST-2": {"accuracy": 96.2}, "MRPC": {"f1": 94.1, "accuracy": 92.3},
        "STS-B": {"pearson": 89.2, "spearman": 88.3}, "QQP": {"f1": 66.0, "accuracy": 85.9},
        "MNLI-m": {"accuracy": 88.1}, "MNLI-mm": {"accuracy": 87.8}, "QNLI": {"accuracy": 92.3},
        "RTE": {"accuracy": 82.7}, "WNLI": {"accuracy": 71.2}, "AX": {"mcc": 51.9}}
BERT_LARGE = {"CoLA": {"mcc": 60.5}, "SST-2": {"accuracy": 94.9}, "MRPC": {"f1": 89.3, "accuracy": 85.4},
              "STS-B": {"pearson": 87.6, "spearman": 86.5}, "QQP": {"f1": 72.1, "accuracy": 89.3},
              "MNLI-m": {"accuracy": 86.7}, "MNLI-mm": {"accuracy": 85.9}, "QNLI": {"accuracy": 92.7},
              "RTE": {"accuracy": 70.1}, "WNLI": {"accuracy": 65.1}, "AX": {"mcc": 39.6}}


@pytest.mark.parametrize("row, published", [(BORT, 83.6), (BERT_LARGE, 80.5)], ids=["bort", "bert-large"])
def test_glue_score_matches_the_leaderboard(row, published):
    assert round(benchmark_score(row), 1) == published
    assert round(benchmark_score(row, "glue"), 1) == published


def test_glue_score_ignores_ax_and_is_linear():
    assert benchmark_score({**BORT, "AX": {"mcc": 0.0}}) == pytest.approx(benchmark_score(BORT))
    without_ax = {column: values for column, values in BORT.items() if column != "AX"}
    assert benchmark_score(without_ax) == pytest.approx(benchmark_score(BORT))
    fractions = {column: {metric: value / 100 for metric, value in values.items()} for column, values in BORT.items()}
    assert benchmark_score(fractions) == pytest.approx(benchmark_score(BORT) / 100)


def test_glue_score_names_missing_columns():
    partial = {column: values for column, values in BORT.items() if column not in ("MNLI-mm", "WNLI")}
    with pytest.raises(BortzooError) as error:
        benchmark_score(partial)
    message = str(error.value)
    assert "MNLI-mm" in message and "WNLI" in message and "CoLA" not in message


def test_unknown_benchmark_is_an_error():
    with pytest.raises(BortzooError, match=r"no score is defined for benchmark 'xtreme'; known: glue, superglue"):
        benchmark_score(BORT, "xtreme")
    with pytest.raises(BortzooError, match=r"the superglue score needs every column; missing: BoolQ, CB"):
        benchmark_score(BORT, "superglue")  # GLUE's columns are not SuperGLUE's


def test_split_score_averages_the_metrics():
    assert split_score({"f1": 94.1, "accuracy": 92.3}) == pytest.approx(93.2)
    assert split_score({"mcc": 0.639}) == pytest.approx(0.639)
    with pytest.raises(BortzooError):
        split_score({})


def test_format_metrics_as_percentages_with_one_decimal():
    assert to_percent(0.854) == pytest.approx(85.4)
    assert format_metrics({"f1": 0.893, "accuracy": 0.854}) == "f1 89.3 / accuracy 85.4"
    assert format_metrics({"mcc": torch.tensor(0.6394)}) == "mcc 63.9"


def test_every_metric_has_one_model_card_type():
    """Cards write each metric under a model-index type and the demo maps the types back: one type per name."""
    from bortzoo.publish.cards import HUB_METRICS
    from bortzoo.tasks.metrics import METRIC_NAMES

    assert set(METRIC_NAMES) <= set(HUB_METRICS)
    assert len(set(HUB_METRICS.values())) == len(HUB_METRICS)
