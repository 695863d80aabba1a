"""SuperGLUE metrics: each against a hand computation, every SuperGLUE task's collection with the extra keyword
arguments, the SuperGLUE score against the published leaderboard rows, and the grouped and text metrics merged
across two real processes (gloo on CPU) against one process that saw every row."""

import math
import os
import socket
import sys
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task, tasks_of
from bortzoo.tasks.metrics import benchmark_score, make_metric, task_metrics
from bortzoo.tasks.reported import SUPERGLUE, SUPERGLUE_SCORE
from bortzoo.tasks.superglue_metrics import (
    GenderParity,
    GroupedExactMatch,
    RecordExactMatch,
    RecordF1,
    exact_match,
    max_over_gold,
    normalize_answer,
    token_f1,
)

SUPERGLUE_TASKS = ("boolq", "cb", "copa", "multirc", "record", "superglue-rte", "wic", "wsc", "axb", "axg")


def computed(metric, *args, **kwargs) -> float:
    metric.update(*args, **kwargs)
    return float(metric.compute())


def ids(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# -- MultiRC: exact match per (paragraph, question), F1a over all answer options ----------------------------
#                  row:    0       1       2       3       4       5       6       7
MULTIRC_GROUPS = [(0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 0), (1, 1), (2, 0)]
MULTIRC_PREDS = [1, 0, 1, 0, 1, 1, 0, 0]
MULTIRC_TARGET = [1, 0, 0, 0, 1, 1, 0, 1]
# (0,0) rows 0,1 right; (0,1) row 2 wrong; (1,0) rows 4,5 right; (1,1) row 6 right; (2,0) row 7 wrong
MULTIRC_EM = 3 / 5
# grouped by question id alone: q0 = rows 0,1,4,5,7 (row 7 wrong), q1 = rows 2,3,6 (row 2 wrong): 0 of 2
WRONG_QUESTION_ONLY_EM = 0.0


def multirc_batch():
    return ids(MULTIRC_PREDS), ids(MULTIRC_TARGET), ids(MULTIRC_GROUPS)


def test_multirc_em_groups_by_paragraph_and_question():
    preds, target, groups = multirc_batch()
    value = computed(make_metric("em", get_task("multirc")), preds, target, groups=groups)
    assert value == pytest.approx(MULTIRC_EM)
    by_question_alone = computed(GroupedExactMatch(), preds, target, groups=groups[:, 1])
    assert by_question_alone == pytest.approx(WRONG_QUESTION_ONLY_EM)
    assert value != pytest.approx(by_question_alone)


def test_multirc_em_over_batches_scores_a_split_group_once():
    preds, target, groups = multirc_batch()
    metric = GroupedExactMatch()
    metric.update(preds[:5], target[:5], groups[:5])  # group (1, 0) straddles the two batches
    metric.update(preds[5:], target[5:], groups[5:])
    assert float(metric.compute()) == pytest.approx(MULTIRC_EM)


def test_multirc_f1a_is_binary_f1_of_true_over_all_options():
    tp, fp, fn = 3, 1, 1  # TP rows 0, 4, 5; FP row 2; FN row 7
    pairs = list(zip(MULTIRC_PREDS, MULTIRC_TARGET))
    assert (pairs.count((1, 1)), pairs.count((1, 0)), pairs.count((0, 1))) == (tp, fp, fn)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    expected = 2 * precision * recall / (precision + recall)  # 0.75
    preds, target, _ = multirc_batch()
    assert computed(make_metric("f1a", get_task("multirc")), preds, target) == pytest.approx(expected)


def test_multirc_collection_takes_groups_as_a_keyword():
    preds, target, groups = multirc_batch()
    collection = task_metrics(get_task("multirc"), prefix="val/")
    collection.update(preds, target, groups=groups)
    values = {key: float(value) for key, value in collection.compute().items()}
    assert values == pytest.approx({"val/f1a": 0.75, "val/em": MULTIRC_EM})


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_empty_metrics_are_zero():
    assert float(GroupedExactMatch().compute()) == 0.0
    assert float(GenderParity().compute()) == 0.0
    assert float(RecordF1().compute()) == 0.0 and float(RecordExactMatch().compute()) == 0.0


def test_grouped_metrics_need_groups():
    preds, target, _ = multirc_batch()
    with pytest.raises(BortzooError, match="groups"):
        GroupedExactMatch().update(preds, target)
    with pytest.raises(BortzooError, match="groups"):
        GenderParity().update(preds, target)
    with pytest.raises(BortzooError, match=r"shape \[8, k\]"):
        GroupedExactMatch().update(preds, target, groups=ids([[0, 0]] * 7))
    metric = GroupedExactMatch()
    metric.update(preds, target, groups=ids(MULTIRC_GROUPS))
    with pytest.raises(BortzooError, match="key columns"):
        metric.update(preds, target, groups=ids(list(range(8))))


@pytest.mark.parametrize("name, task", [("em", "boolq"), ("parity", "wic"), ("f1a", "cb"), ("macro_f1", "copa"),
                                        ("parity", "record"), ("em", "copa")])
def test_superglue_metric_on_a_task_it_does_not_define_is_an_error(name, task):
    with pytest.raises(BortzooError, match=name):
        make_metric(name, get_task(task))


# -- ReCoRD: best F1 / exact match of the chosen candidate's text over the gold answers -----------------------
RECORD = [  # (candidates, index chosen, gold answers, F1, EM), each worked out by hand
    (["Barack Obama", "Joe Biden"], 1, ["Obama", "Joe Biden"], 1.0, 1.0),  # matches the second gold answer
    # "white house" against "white house press office": 2 shared tokens, P = 2/2, R = 2/4 -> 2/3
    (["the White House.", "Congress"], 0, ["White House press office"], 2 / 3, 0.0),
    (["An Apple, Inc", "Google"], 0, ["apple inc"], 1.0, 1.0),  # article, punctuation and case normalised away
    (["Paris", "London"], 1, [], 0.0, 0.0),  # no gold answer: scores 0, still counted
    # "new york city" against "york" (P 1/3, R 1 -> 1/2) and "new jersey" (P 1/3, R 1/2 -> 2/5): best 1/2
    (["New York City", "Boston"], 0, ["York", "New Jersey"], 0.5, 0.0),
]


def record_batch(examples=RECORD):
    preds = ids([chosen for _, chosen, _, _, _ in examples])
    candidates = [candidates for candidates, _, _, _, _ in examples]
    answers = [answers for _, _, answers, _, _ in examples]
    return preds, candidates, answers


def test_squad_normalisation():
    assert normalize_answer("The  Quick, brown FOX!") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre and anthem") == "theatre and anthem"  # articles only as whole words
    assert normalize_answer("U.S.A.") == "usa"


def test_token_f1_and_exact_match_by_hand():
    assert token_f1("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)  # overlap counts each token's copies
    assert token_f1("the White House.", "White House press office") == pytest.approx(2 / 3)
    assert token_f1("Paris", "London") == 0.0
    assert exact_match("An Apple, Inc", "apple inc") == 1.0 and exact_match("Apple", "Apple Inc") == 0.0
    # the official ReCoRD script: texts that normalise to nothing share no token (F1 0) yet are equal (EM 1)
    assert token_f1("the", "a") == 0.0 and exact_match("the", "a") == 1.0
    assert max_over_gold(token_f1, "New York City", ["York", "New Jersey"]) == pytest.approx(0.5)
    assert max_over_gold(exact_match, "Joe Biden", ["Obama", "joe biden"]) == 1.0
    assert max_over_gold(token_f1, "Paris", []) == 0.0


def test_record_f1_and_em_average_the_best_score_per_example():
    preds, candidates, answers = record_batch()
    f1 = sum(row[3] for row in RECORD) / len(RECORD)  # (1 + 2/3 + 1 + 0 + 1/2) / 5
    em = sum(row[4] for row in RECORD) / len(RECORD)  # 2 / 5
    assert (f1, em) == pytest.approx((19 / 30, 0.4))
    spec = get_task("record")
    target = torch.zeros(len(RECORD), dtype=torch.long)  # ignored
    assert computed(make_metric("f1", spec), preds, target, candidates, answers) == pytest.approx(f1)
    assert computed(make_metric("em", spec), preds, target, candidates=candidates, answers=answers) == pytest.approx(em)
    assert isinstance(make_metric("f1", spec), RecordF1) and isinstance(make_metric("em", spec), RecordExactMatch)


def test_record_checks_its_inputs():
    preds, candidates, answers = record_batch()
    with pytest.raises(BortzooError, match="candidates"):
        RecordF1().update(preds, None)
    with pytest.raises(BortzooError, match="5 predictions, 4 candidate lists"):
        RecordF1().update(preds, None, candidates[:4], answers)
    with pytest.raises(BortzooError, match="picks candidate 2 of 2"):
        RecordF1().update(ids([2]), None, [["a", "b"]], [["a"]])


def test_record_collection_is_not_merged_when_f1_and_em_agree_on_the_first_batch():
    # after an all-exact first batch F1 and EM have equal values; a compute group would then share one state
    collection = task_metrics(get_task("record"))
    collection.update(ids([0]), None, candidates=[["Obama"]], answers=[["Obama"]])
    preds, candidates, answers = record_batch()
    collection.update(preds, None, candidates=candidates, answers=answers)
    values = {key: float(value) for key, value in collection.compute().items()}
    assert values == pytest.approx({"f1": (1 + 19 / 6) / 6, "em": (1 + 2) / 6})


# -- AX-g: gender parity over twin examples --------------------------------------------------------------------
AXG_IDX = list(range(9))  # groups idx // 2: pairs (0,1) (2,3) (4,5) (6,7) and a lone idx 8
AXG_PREDS = [1, 1, 0, 1, 0, 0, 1, 0, 1]  # pairs alike, differ, alike, differ; the lone one is alike with itself
AXG_TARGET = [1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_axg_parity_is_the_share_of_pairs_predicted_alike():
    groups = ids([i // 2 for i in AXG_IDX])
    expected = 3 / 5
    value = computed(make_metric("parity", get_task("axg")), ids(AXG_PREDS), ids(AXG_TARGET), groups=groups)
    assert value == pytest.approx(expected)
    flipped = computed(GenderParity(), ids(AXG_PREDS), 1 - ids(AXG_TARGET), groups)  # the target is ignored
    assert flipped == pytest.approx(expected)
    collection = task_metrics(get_task("axg"))
    collection.update(ids(AXG_PREDS), ids(AXG_TARGET), groups=groups)
    accuracy = sum(p == t for p, t in zip(AXG_PREDS, AXG_TARGET)) / len(AXG_IDX)  # rows 0,1,3,4,5,7 -> 6/9
    assert {k: float(v) for k, v in collection.compute().items()} == pytest.approx(
        {"parity": expected, "accuracy": accuracy})


# -- CB: macro F1 over the classes present, as scikit-learn's f1_score(average="macro") -------------------------
def sklearn_macro_f1(preds, target) -> float:
    """scikit-learn's definition: labels are those in preds or target; a class's F1 is 2TP / (2TP + FP + FN)."""
    scores = []
    for label in sorted(set(preds) | set(target)):
        tp = sum(p == label and t == label for p, t in zip(preds, target))
        fp = sum(p == label and t != label for p, t in zip(preds, target))
        fn = sum(p != label and t == label for p, t in zip(preds, target))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


@pytest.mark.parametrize("preds, target, expected", [
    # all three classes: 0 TP 2 FP 1 FN 0 -> 4/5; 1 TP 1 FP 1 FN 1 -> 1/2; 2 TP 1 FP 0 FN 1 -> 2/3
    ([0, 0, 0, 1, 2, 1], [0, 0, 1, 1, 2, 2], (4 / 5 + 1 / 2 + 2 / 3) / 3),
    # class 2 never appears: left out of the mean; 0 TP 2 FP 1 FN 1 -> 2/3; 1 the same -> 2/3 (over 3 it'd be 4/9)
    ([0, 0, 1, 1, 0, 1], [0, 1, 1, 1, 0, 0], 2 / 3),
    # class 2 predicted but never true: it counts, with F1 0; 0 -> 2/3; 1 TP 1 FP 1 FN 1 -> 1/2
    ([0, 2, 1, 1], [0, 1, 1, 0], (2 / 3 + 1 / 2 + 0) / 3),
])
def test_cb_macro_f1_matches_scikit_learn(preds, target, expected):
    assert sklearn_macro_f1(preds, target) == pytest.approx(expected)
    assert computed(make_metric("macro_f1", get_task("cb")), ids(preds), ids(target)) == pytest.approx(expected)


# -- AX-b: MCC --------------------------------------------------------------------------------------------------
def test_axb_mcc_from_confusion_matrix():
    preds, target = [1, 1, 1, 0, 1, 0, 0, 0], [1, 0, 1, 1, 1, 0, 1, 0]
    tp, fp, fn, tn = 3, 1, 2, 2
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))  # 4 / sqrt(240)
    assert computed(make_metric("mcc", get_task("axb")), ids(preds), ids(target)) == pytest.approx(expected, abs=1e-6)


# -- every SuperGLUE task's collection, with every keyword argument --------------------------------------------
def superglue_batch(spec):
    n = 6
    extra = {"groups": ids([(0, 0), (0, 0), (0, 1), (1, 0), (1, 0), (1, 1)]),
             "candidates": [["Obama", "Biden"]] * n, "answers": [["Obama"], ["Biden"], [], ["x"], ["Obama"], ["y"]]}
    if spec.kind == "ranking":
        return ids([0, 1, 0, 1, 1, 0]), None, extra
    classes = spec.num_choices or spec.num_labels
    return torch.arange(n) % classes, ids([0, 1, 1, 0, 1, 0]) % classes, extra


@pytest.mark.parametrize("name", SUPERGLUE_TASKS)
def test_every_superglue_task_has_its_collection(name):
    spec = get_task(name)
    collection = task_metrics(spec, prefix="val/")
    assert list(collection.keys()) == [f"val/{metric}" for metric in spec.metrics]
    preds, target, extra = superglue_batch(spec)
    collection.update(preds, target, **extra)
    collection.update(preds, target, **extra)  # a second batch goes through the same path
    values = collection.compute()
    assert list(values) == [f"val/{metric}" for metric in spec.metrics]
    assert all(math.isfinite(float(value)) and -1.0 <= float(value) <= 1.0 for value in values.values())
    assert not collection.compute_groups  # every metric keeps its own state


# -- the SuperGLUE score -----------------------------------------------------------------------------------------
def published_values(model: str) -> dict:
    """The published row as {column: {metric: value}}, the metric names from the task specs."""
    metrics = {split.board: spec.metrics for spec in tasks_of("superglue")
               for split in (*spec.validation, *spec.test) if split.task is None}
    assert set(metrics) == set(SUPERGLUE[model])
    return {board: dict(zip(metrics[board], values, strict=True)) for board, values in SUPERGLUE[model].items()}


@pytest.mark.parametrize("model", ["Bort", "BERT-large"])
def test_superglue_score_matches_the_leaderboard(model):
    assert benchmark_score(published_values(model), "superglue") == pytest.approx(SUPERGLUE_SCORE[model], abs=0.05)


def test_superglue_score_ignores_the_diagnostics():
    values = published_values("Bort")
    without = {column: scores for column, scores in values.items() if column not in ("AX-b", "AX-g")}
    assert benchmark_score(without, "superglue") == pytest.approx(benchmark_score(values, "superglue"))


# -- two processes against one ---------------------------------------------------------------------------------
# 13 rows, rank 0 takes rows 0-4, rank 1 rows 5-12 (in two batches).
SPLITS = ((0, 5), (5, 13))
#                   row:  0       1       2       3       4     |  5       6       7       8       9      10      11      12
DIST_GROUPS = [(0, 0), (0, 0), (0, 1), (1, 0), (1, 0), (1, 0), (1, 0), (1, 1), (2, 0), (2, 0), (2, 1), (0, 1), (3, 0)]
DIST_PREDS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1]
DIST_TARGET = [1, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1]
# (1,0) rows 3-6 is wrong only at row 5 (rank 1); (0,1) rows 2 and 11 is right on both ranks; (2,0) wrong at row 8.
# 5 of 7 groups right; rank 0 alone would say 3/3, rank 1 alone 4/6.
DIST_EM = 5 / 7
# AX-g: twins idx // 2; pair (4, 5) is split across the ranks and predicted differently
DIST_AXG_PREDS = [1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1]  # pairs alike, differ, differ, alike, alike, differ; lone
DIST_PARITY = 4 / 7
DIST_RECORD = [RECORD[i % len(RECORD)] for i in range(13)]
DIST_RECORD_F1, DIST_RECORD_EM = (2 * 19 / 6 + 1 + 2 / 3 + 1) / 13, (2 * 2 + 2) / 13


def _distributed_cases(rows: slice) -> dict:
    """Every case's value over `rows`: under torch.distributed each process passes its own rows and compute()
    merges them; in one process `rows` is everything."""
    preds, target, groups = ids(DIST_PREDS)[rows], ids(DIST_TARGET)[rows], ids(DIST_GROUPS)[rows]
    axg_preds, axg_groups = ids(DIST_AXG_PREDS)[rows], ids([i // 2 for i in range(13)])[rows]
    record_preds, candidates, answers = record_batch(DIST_RECORD[rows])
    n = preds.numel()
    batches = [slice(0, min(n, 3)), slice(min(n, 3), n)]  # two batches where there are rows enough

    metrics = {"em": GroupedExactMatch(), "parity": GenderParity(), "record_f1": RecordF1(),
               "record_em": RecordExactMatch(), "multirc": task_metrics(get_task("multirc")),
               "axg": task_metrics(get_task("axg")), "record": task_metrics(get_task("record"))}
    for b in batches:
        metrics["em"].update(preds[b], target[b], groups[b])
        metrics["multirc"].update(preds[b], target[b], groups=groups[b])
        metrics["parity"].update(axg_preds[b], None, groups=axg_groups[b])
        metrics["axg"].update(axg_preds[b], target[b], groups=axg_groups[b])
        for key in ("record_f1", "record_em", "record"):
            metrics[key].update(record_preds[b], None, candidates=candidates[b], answers=answers[b])
    values = {}
    for key, metric in metrics.items():
        result = metric.compute()
        values[key] = {k: float(v) for k, v in result.items()} if isinstance(result, dict) else float(result)
    return values


def _empty_rank_cases(rank: int) -> dict:
    """Rank 1 sees no rows at all: its empty states must merge with rank 0's."""
    rows = slice(0, 13) if rank == 0 else slice(0, 0)
    em, parity = GroupedExactMatch(), GenderParity()
    if rank == 0:
        em.update(ids(DIST_PREDS)[rows], ids(DIST_TARGET)[rows], ids(DIST_GROUPS)[rows])
        parity.update(ids(DIST_AXG_PREDS)[rows], None, ids([i // 2 for i in range(13)])[rows])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The ``compute`` method of metric")  # rank 1 never updated
        return {"em_one_rank": float(em.compute()), "parity_one_rank": float(parity.compute())}


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One rank: its rows' values, merged by compute(), saved to `out_dir`. It leaves with os._exit once they are
    on disk, skipping the interpreter's teardown (seconds with torch loaded), as forked children do."""
    import torch.distributed as dist

    if os.path.isdir("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    try:
        values = _distributed_cases(slice(*SPLITS[rank]))
        values.update(_empty_rank_cases(rank))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    torch.save(values, Path(out_dir) / f"rank{rank}.pt")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_two_processes(out_dir: str) -> bool:
    context = torch.multiprocessing.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_worker, args=(rank, 2, port, out_dir)) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    ok = True
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
            ok = False
        ok = ok and process.exitcode == 0
    return ok


@pytest.fixture(scope="module")
def merged_from_two_processes():
    with tempfile.TemporaryDirectory() as out_dir:
        # a second try with a new port in case another process took the free port between the check and the bind
        if not (_run_two_processes(out_dir) or _run_two_processes(out_dir)):
            pytest.fail("the two gloo processes did not finish; see their output above")
        return [torch.load(Path(out_dir) / f"rank{rank}.pt") for rank in range(2)]


def test_two_processes_give_the_one_process_values(merged_from_two_processes):
    single = _distributed_cases(slice(0, 13))
    assert single["em"] == pytest.approx(DIST_EM)
    assert single["parity"] == pytest.approx(DIST_PARITY)
    assert (single["record_f1"], single["record_em"]) == pytest.approx((DIST_RECORD_F1, DIST_RECORD_EM))
    assert single["multirc"]["em"] == pytest.approx(DIST_EM)
    assert single["axg"]["parity"] == pytest.approx(DIST_PARITY)
    assert single["record"] == pytest.approx({"f1": DIST_RECORD_F1, "em": DIST_RECORD_EM})
    for rank, merged in enumerate(merged_from_two_processes):
        for key, value in single.items():
            assert merged[key] == pytest.approx(value, abs=1e-6), (rank, key)


def test_a_process_without_rows_merges(merged_from_two_processes):
    for merged in merged_from_two_processes:
        assert merged["em_one_rank"] == pytest.approx(DIST_EM)
        assert merged["parity_one_rank"] == pytest.approx(DIST_PARITY)


def test_one_process_alone_would_be_wrong():
    # the merged values are not what either half says alone, so the test above checks a real merge
    first, second = (_distributed_cases(slice(*split)) for split in SPLITS)
    assert (first["em"], second["em"]) == pytest.approx((3 / 3, 4 / 6))
    assert DIST_EM not in (first["em"], second["em"], (first["em"] + second["em"]) / 2)
    assert first["parity"] == pytest.approx(2 / 3) and DIST_PARITY != pytest.approx(first["parity"])
