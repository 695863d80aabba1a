"""bortzoo.serve.task_guard: the accuracy guard on a task's dev split, read and scored the way fine-tuning does."""

import pytest
import torch
from conftest import dataset_folder
from test_convert import save_task_folder, tiny

from bortzoo.errors import BortzooError
from bortzoo.serve.task_guard import task_guard
from bortzoo.tasks import get_task


def _folder(task, tmp_path, head="bort"):
    return save_task_folder(tiny(task, head), tmp_path / task)


@pytest.mark.parametrize("task", ["sst2", "stsb", "race-all"])
@pytest.mark.cpu_sensitive
def test_task_guard_scores_fp32_like_a_direct_evaluation_and_compares_int8(task, tmp_path):
    from bortzoo.tasks.metrics import split_score, task_metrics, to_percent
    from bortzoo.zoo import load

    folder = _folder(task, tmp_path)
    spec = get_task(task)
    report = task_guard(str(folder), task, data_dir=dataset_folder(spec), examples=12, batch_size=5,
                        pair_encoding="tokenizer")
    assert report.examples == 12
    assert (report.agreement is None) == (spec.kind == "regression")
    if report.agreement is not None:
        assert 0.0 <= report.agreement <= 1.0
    assert report.metric_fp32 is not None and report.metric_optimized is not None

    # fp32's metric equals scoring the same first 12 dev rows directly
    from bortzoo.data.task_data import TaskData

    model, tokenizer = load(str(folder))
    data = TaskData(task, data_dir=dataset_folder(spec), eval_batch_size=12)
    data.tokenizer = tokenizer
    batch = next(iter(data.val_dataloader()[0]))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits
    preds = logits.squeeze(-1) if spec.kind == "regression" else logits.argmax(-1)
    metrics = task_metrics(spec)
    metrics.update(preds, batch["labels"])
    direct = to_percent(split_score({k: float(v) for k, v in metrics.compute().items()}))
    assert report.metric_fp32 == pytest.approx(direct, abs=1e-3)  # batches of 5 vs 12: float sums differ


def test_examples_beyond_the_split_take_the_whole_split(tmp_path):
    spec = get_task("rte")
    report = task_guard(str(_folder("rte", tmp_path)), "rte", data_dir=dataset_folder(spec), examples=10_000)
    from datasets import load_dataset  # noqa: F401  (the split's size, read the way TaskData reads it)

    from bortzoo.data.rows import load_split

    assert report.examples == len(load_split(spec, spec.eval_splits("validate")[0].split, dataset_folder(spec)))


def test_wrong_models_and_inputs_are_named(tmp_path, bort_layout_dir):
    spec = get_task("sst2")
    with pytest.raises(BortzooError, match="needs a model fine-tuned on it"):
        task_guard(str(bort_layout_dir), "sst2", data_dir=dataset_folder(spec))
    mnli = _folder("mnli", tmp_path)
    with pytest.raises(BortzooError, match="has 3 outputs; sst2 has 2"):
        task_guard(str(mnli), "sst2", data_dir=dataset_folder(spec))
    with pytest.raises(BortzooError, match="examples must be a positive integer"):
        task_guard(str(mnli), "mnli", examples=0)
    with pytest.raises(BortzooError, match="unknown task"):
        task_guard(str(mnli), "nope")
    for grouped in ("multirc", "record", "axg"):  # scored over groups: bortzoo test checks those
        with pytest.raises(BortzooError, match=f"task {grouped} is scored over groups of rows or candidates"):
            task_guard(str(mnli), grouped)
