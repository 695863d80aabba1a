"""A user's own copy of a benchmark: label names compared with the spec (remapped or refused), a class string the
card does not know named with its file, row, column and value, a folder without a card told the layout it needs."""

from pathlib import Path

import pytest

from bortzoo.data.rows import load_split
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
TINY_GLUE = REPO / "bortzoo" / "assets" / "tiny-tasks" / "glue"

CARD = """---
configs:
- config_name: {config}
  data_files:
{files}
---
"""


def write_copy(folder: Path, config: str, splits: dict, suffix: str = "parquet") -> Path:
    """A Hub-layout folder holding `splits` (name → Dataset) of one config, with a card listing its files."""
    (folder / config).mkdir(parents=True)
    lines = []
    for split, data in splits.items():
        path = folder / config / f"{split}.{suffix}"
        data.to_parquet(path) if suffix == "parquet" else data.to_csv(path, index=False)
        lines.append(f"  - split: {split}\n    path: {config}/{split}.{suffix}")
    (folder / "README.md").write_text(CARD.format(config=config, files="\n".join(lines)))
    return folder


def reordered(data, names: list[str]):
    """`data` with its ClassLabel declared in the order `names`, each row keeping its class (by name)."""
    from datasets import ClassLabel

    old = data.features["label"].names
    features = data.features.copy()
    features["label"] = ClassLabel(names=names)
    return data.map(lambda b: {"label": [names.index(old[v]) for v in b["label"]]}, batched=True, features=features)


def test_label_names_in_another_order_are_remapped_by_name(tmp_path, fresh_hf_cache):
    spec = get_task("mnli")
    original = load_split(spec, "validation_matched", str(TINY_GLUE))
    assert original.features["label"].names == ["entailment", "neutral", "contradiction"]
    other_order = ["contradiction", "entailment", "neutral"]
    copy = write_copy(tmp_path / "glue", "mnli", {"train": reordered(load_split(spec, "train", str(TINY_GLUE)), other_order),
                                                  "validation_matched": reordered(original, other_order)})
    with pytest.warns(UserWarning, match=r"orders its classes \['contradiction', 'entailment', 'neutral'\]; remapped by name"):
        remapped = load_split(spec, "validation_matched", str(copy))
    assert remapped.features["label"].names == list(spec.label_names)
    assert remapped["label"] == original["label"]  # every row keeps its class
    assert remapped["premise"] == original["premise"]


def renamed_copy(tmp_path: Path, task: str, names: list[str]):
    """The fixture's validation split with its classes renamed by id (the ids kept), as a local copy."""
    from datasets import ClassLabel

    data = load_split(get_task(task), "validation", str(TINY_GLUE))
    features = data.features.copy()
    features["label"] = ClassLabel(names=names)
    return data, write_copy(tmp_path / "glue", task, {"validation": data.cast(features)})


def test_label_names_that_differ_are_refused_naming_task_split_and_column(tmp_path, fresh_hf_cache):
    spec = get_task("sst2")
    _, copy = renamed_copy(tmp_path, "sst2", ["neg", "pos"])
    with pytest.raises(BortzooError) as caught:
        load_split(spec, "validation", str(copy))
    message = str(caught.value)
    assert "task sst2, split validation, column 'label'" in message
    assert "['neg', 'pos']" in message and "['negative', 'positive']" in message


def test_the_leaderboards_own_label_strings_are_the_same_classes(tmp_path, fresh_hf_cache):
    """GLUE's files write CoLA as 0/1: a copy whose ClassLabel says '0', '1' keeps its ids."""
    spec = get_task("cola")
    data, copy = renamed_copy(tmp_path, "cola", ["0", "1"])
    assert load_split(spec, "validation", str(copy))["label"] == data["label"]


def test_a_class_string_the_card_does_not_know_names_file_row_column_and_value(tmp_path, fresh_hf_cache):
    folder = tmp_path / "glue"
    (folder / "sst2").mkdir(parents=True)
    (folder / "README.md").write_text("""---
configs:
- config_name: sst2
  data_files:
  - split: train
    path: sst2/train.csv
dataset_info:
- config_name: sst2
  features:
  - name: sentence
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': negative
          '1': positive
  - name: idx
    dtype: int32
---
""")
    (folder / "sst2" / "train.csv").write_text("sentence,label,idx\ngood film,positive,0\nbad film,negative,1\n"
                                                "so so,Positive,2\n")
    with pytest.raises(BortzooError) as caught:
        load_split(get_task("sst2"), "train", str(folder))
    message = str(caught.value)
    assert "split train, file sst2/train.csv, row 2, column 'label': 'Positive'" in message
    assert "negative, positive" in message and "error occurred" not in message


def test_a_folder_without_a_card_is_told_the_layout(tmp_path, fresh_hf_cache):
    import shutil

    folder = tmp_path / "glue"
    shutil.copytree(TINY_GLUE / "sst2", folder / "sst2")
    with pytest.raises(BortzooError) as caught:
        load_split(get_task("sst2"), "train", str(folder))
    message = str(caught.value)
    assert "has no config 'sst2'" in message and "README.md" in message and "configs:" in message
    assert "sst2/<split>-*.parquet" in message and "glue_data/<TASK>/train.tsv" in message
    assert "BuilderConfig" not in message
