"""TaskData and its parts, offline on the tiny fixtures: every task loads and batches, the pair templates are the
tokenizers' own, truncation is longest-first and counted, and bad data stops with the task, split, row and column."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import dataset_folder

from bortzoo.data.encoding import PadCollator, Template, _longest_first, encode_split
from bortzoo.data.rows import check_labels, load_split
from bortzoo.data.task_data import TaskData
from bortzoo.data.tiny_tasks import glue_features, race_features
from bortzoo.errors import BortzooError
from bortzoo.hub import load_tokenizer
from bortzoo.tasks import TASKS, get_task
from bortzoo.tasks.race import RACE_LETTERS, race_pairs
from bortzoo.tasks.spec import CHOICE, RANKING, REGRESSION

ROWS = {"train": 384, "validation": 96, "test": 48}  # rows per fixture split, by the split's kind


def rows_of(task: str, split: str) -> int:
    return ROWS[split.split("_")[0]] * (2 if task == "race-all" else 1)  # race `all` = middle + high


@pytest.fixture(autouse=True)
def hf_cache(fresh_hf_cache):
    """Every test reads its folders through a fresh `datasets` cache (see `conftest.fresh_hf_cache`)."""


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    return load_tokenizer(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A BERT WordPiece tokenizer built offline from a tiny vocab.txt."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("bert-vocab")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "the", "cat", "dog", "sat", "ran", "on", "mat",
             ".", "?"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    assert len(tokenizer) == len(words)
    return tokenizer


def task_data(spec, tokenizer, **kwargs) -> TaskData:
    kwargs.setdefault("data_dir", dataset_folder(spec))
    dm = TaskData(spec.name, **kwargs)
    dm.tokenizer = tokenizer  # no model is attached to bring one
    return dm


def raw(spec, split):
    """The fixture split as `datasets` reads it, independently of the module under test."""
    import datasets

    return datasets.load_dataset(dataset_folder(spec), spec.config)[split]


def expected_labels(spec, table, hidden: bool) -> list:
    if spec.kind == RANKING:  # one 0/1 per candidate entity (all 0 where the answers are hidden)
        return [[0] * len(spec.candidates(row)) if hidden else spec.target(row) for row in table]
    if hidden:
        return [-1] * table.num_rows
    if spec.benchmark == "race":
        return [RACE_LETTERS.index(a) for a in table["answer"]]
    return list(table["label"])


def assert_labels(got: list, expected: list) -> None:
    """Scores compare approximately (STS-B's float32); class ids and a ranking's 0/1 lists exactly."""
    if expected and isinstance(expected[0], list):
        assert list(got) == expected
    else:
        assert got == pytest.approx(expected)


def id_key(example_id):
    """A hashable form of an example id (MultiRC's and ReCoRD's ids are dicts)."""
    return json.dumps(example_id, sort_keys=True) if isinstance(example_id, dict) else example_id


def check_batch(batch: dict, spec, tokenizer, rows: list[dict]) -> None:
    """A collated batch against the encoded rows it was built from."""
    size = len(rows)
    ids, mask, types, labels = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["labels"]
    if spec.kind == RANKING:  # rows padded to the most candidates with one-token dummies, masked out
        options = max(len(row["input_ids"]) for row in rows)
        assert ids.dim() == 3 and ids.shape[:2] == (size, options)
        assert batch["option_mask"].tolist() == [[i < len(row["input_ids"]) for i in range(options)] for row in rows]
        assert batch["candidates"] == [row["candidates"] for row in rows]
        assert batch["answers"] == [row["gold_answers"] for row in rows]
        assert labels.tolist() == [[*row["labels"], *[0] * (options - len(row["labels"]))] for row in rows]
        keep = batch["option_mask"].reshape(-1)
        ids, mask, types = (t.reshape(-1, t.shape[-1])[keep] for t in (ids, mask, types))
        sequences = [seq for row in rows for seq in row["input_ids"]]
    elif spec.kind == CHOICE:
        assert ids.dim() == 3 and ids.shape[:2] == (size, spec.num_choices)
        sequences = [seq for row in rows for seq in row["input_ids"]]
    else:
        assert ids.dim() == 2 and ids.shape[0] == size
        sequences = [row["input_ids"] for row in rows]
    assert mask.shape == ids.shape == types.shape
    assert ids.dtype == mask.dtype == types.dtype == torch.long
    flat_ids, flat_mask = ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, ids.shape[-1])
    lengths = torch.tensor([len(seq) for seq in sequences])
    assert ids.shape[-1] == int(lengths.max())  # padded to the longest sequence of the batch, no further
    positions = torch.arange(ids.shape[-1])
    assert torch.equal(flat_mask, (positions[None, :] < lengths[:, None]).long())
    assert torch.equal(flat_mask.sum(-1), lengths)
    for row_ids, row_mask, seq in zip(flat_ids, flat_mask, sequences):
        assert row_ids[: len(seq)].tolist() == seq
        assert set(row_ids[row_mask == 0].tolist()) <= {tokenizer.pad_token_id}
        assert seq[0] == tokenizer.bos_token_id and seq[-1] == tokenizer.eos_token_id
    assert not types.any()  # RoBERTa-style: one token type
    if spec.kind != RANKING:
        assert labels.shape == (size,)
        assert labels.dtype == (torch.float32 if spec.kind == REGRESSION else torch.long)
        assert labels.tolist() == pytest.approx([row["labels"] for row in rows])
    assert batch["ids"] == [row["ids"] for row in rows]
    if spec.group is not None:
        assert batch["groups"].tolist() == [row["groups"] for row in rows]


def check_loader(loader, dataset, spec, tokenizer, raw_table, hidden: bool) -> None:
    """Every row of an evaluation loader, in order, with the raw table's ids and labels."""
    assert len(dataset) == raw_table.num_rows
    seen = 0
    for batch in loader:
        rows = [dataset[i] for i in range(seen, seen + len(batch["ids"]))]
        check_batch(batch, spec, tokenizer, rows)
        seen += len(rows)
    assert seen == raw_table.num_rows
    assert dataset["ids"] == list(raw_table[spec.id_column])
    if spec.group is not None:
        assert dataset["groups"] == [list(spec.group(row)) for row in raw_table]
    assert_labels(dataset["labels"], expected_labels(spec, raw_table, hidden))


# -- 1. every registered task through TaskData ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_loads_encodes_and_batches(tok, name):
    spec = get_task(name)
    dm = task_data(spec, tok, max_length=256, batch_size=7, eval_batch_size=10)

    if spec.train is None:  # ax, axb, axg: predicted by the MNLI (RTE) model only
        with pytest.raises(BortzooError, match=spec.predicted_by) as err:
            dm.setup("fit")
        assert "no training data" in str(err.value)
        # SuperGLUE's diagnostics have public labels: `test` reads them (TaskModel scores them under RTE)
        for stage in ("validate",) if spec.test_labels else ("validate", "test"):
            with pytest.raises(BortzooError, match=f"task {name} has no labelled split to {stage} on.*{spec.predicted_by}"):
                dm.setup(stage)
        assert dm.val_dataloader() == [] and (len(dm.test_dataloader()) == 1 if spec.test_labels else dm.test_dataloader() == [])
    else:
        dm.setup("fit")
        key = f"{spec.name}/{spec.train}"
        assert list(dm.datasets) == [key]  # fit tokenises the training split up front
        train = dm.datasets[key]
        assert len(train) == raw(spec, "train").num_rows == (rows_of(name, "train") if spec.benchmark != "superglue" else len(train))
        loader = dm.train_dataloader()
        batch = next(iter(loader))
        assert len(batch["ids"]) == 7
        by_id = {id_key(row["ids"]): row for row in train}
        check_batch(batch, spec, tok, [by_id[id_key(i)] for i in batch["ids"]])
        assert sorted(id_key(i) for b in loader for i in b["ids"]) == sorted(by_id)  # an epoch sees every row once
        assert_labels(train["labels"], expected_labels(spec, raw(spec, "train"), hidden=False))

        # validate: the dev splits, one loader each (MNLI: matched and mismatched)
        loaders = dm.val_dataloader()
        datasets = dm._eval("validate")
        assert [s.split for s in dm.splits_for("validate")] == [s.split for s in spec.validation]
        assert len(loaders) == len(datasets) == (2 if name == "mnli" else 1)
        for loader, data, item in zip(loaders, datasets, spec.validation):
            check_loader(loader, data, spec, tok, raw(spec, item.split), hidden=False)

        # test: GLUE's and SuperGLUE's test labels are hidden, so it reads the dev splits (and the SuperGLUE
        # diagnostics the RTE model predicts, whose labels are public); RACE's are public
        items = dm.splits_for("test")
        datasets = dm._eval("test")
        loaders = dm.test_dataloader()
        if spec.benchmark == "race":
            assert [s.split for s in items] == ["test"]
        elif name == "superglue-rte":
            assert [(s.task, s.split) for s in items] == [(None, "validation"), ("axb", "test"), ("axg", "test")]
        else:
            assert items == spec.validation
        assert len(loaders) == len(items)
        for loader, data, item in zip(loaders, datasets, items):
            task = get_task(item.task) if item.task else spec
            assert len(data) == raw(task, item.split).num_rows
            check_loader(loader, data, task, tok, raw(task, item.split), hidden=False)
            if spec.kind != RANKING:
                assert min(data["labels"]) >= 0  # real labels, not the hidden -1

    # predict: the test splits (MNLI's three: matched, mismatched and the AX diagnostic)
    items = dm.splits_for("predict")
    loaders = dm.predict_dataloader()
    datasets = dm._eval("predict")
    expected = {"mnli": ["mnli/test_matched", "mnli/test_mismatched", "ax/test"],
                "superglue-rte": ["superglue-rte/test", "axb/test", "axg/test"]}.get(name, [f"{name}/test"])
    assert [f"{s.task or name}/{s.split}" for s in items] == expected
    boards = {"mnli": ["MNLI-m", "MNLI-mm", "AX"], "superglue-rte": ["RTE", "AX-b", "AX-g"]}
    assert [s.board for s in items] == boards.get(name, [s.board for s in spec.test])
    assert len(loaders) == len(datasets) == len(expected)
    for loader, data, item in zip(loaders, datasets, items):
        task = get_task(item.task) if item.task else spec
        check_loader(loader, data, task, tok, raw(task, item.split), hidden=not task.test_labels)
    assert set(expected) <= set(dm.datasets)
    assert all(cut == 0 for cut in dm.truncated.values()), dm.truncated  # 256 tokens hold every fixture row


@pytest.mark.parametrize("name", ["sst2", "mrpc", "race-middle", "boolq", "copa", "multirc", "record", "wic", "wsc"])
def test_encoded_text_is_the_rows_text(tok, name):
    """Decoding an encoded row gives the row's own text(s) in the tokenizer's template, with the marks and
    options the spec promises (checked on the fixtures here, on hand-written rows in test_superglue_encoding)."""
    spec = get_task(name)
    dm = task_data(spec, tok, max_length=256)
    data = dm._eval("validate")[0]
    table = raw(spec, "validation")
    for row, encoded in zip(table.select(range(10)), data.select(range(10))):
        pairs = spec.texts(row)
        multi = spec.kind in (CHOICE, RANKING)
        sequences = encoded["input_ids"] if multi else [encoded["input_ids"]]
        assert len(sequences) == len(pairs) == (spec.num_choices if spec.kind == CHOICE else
                                                len(spec.candidates(row)) if spec.kind == RANKING else 1)
        for (first, second), seq in zip(pairs, sequences):
            text = f"<s>{first}</s>" + (f"</s>{second}</s>" if second is not None else "")
            assert tok.decode(seq) == text
        decoded = [tok.decode(seq) for seq in sequences]
        if name == "wic":  # the target word, cut out by the row's offsets, marked in each sentence
            for sentence, start, end in (("sentence1", "start1", "end1"), ("sentence2", "start2", "end2")):
                assert f"*{row[sentence][row[start]:row[end]]}*" in decoded[0]
        if name == "wsc":  # the candidate [marked] and the pronoun *marked*, at their word indices
            words = decoded[0][len("<s>"):-len("</s>")].split()
            assert words[row["span1_index"]].startswith("[") and words[row["span2_index"]].startswith("*")
            assert " ".join(words[row["span1_index"]:row["span1_index"] + len(row["span1_text"].split())]).strip(
                "[]") == row["span1_text"]
        if name == "copa":
            prompt = {"cause": "What was the cause?", "effect": "What happened as a result?"}[row["question"]]
            assert [d.split("</s></s>")[1] for d in decoded] == [f"{prompt} {row['choice1']}</s>",
                                                                  f"{prompt} {row['choice2']}</s>"]
        if name == "record":  # each distinct entity in the query's placeholder
            assert [d.split("</s></s>")[1] for d in decoded] == [
                row["query"].replace("@placeholder", e) + "</s>" for e in dict.fromkeys(row["entities"])]
    if name == "race-middle":
        row = table[0]
        assert [second for _, second in race_pairs(row)] == [
            row["question"].replace("_", o) if "_" in row["question"] else f"{row['question']} {o}"
            for o in row["options"]]


def test_train_limit_and_batch_sizes(tok):
    spec = get_task("rte")
    dm = task_data(spec, tok, batch_size=5, eval_batch_size=11, train_limit=13)
    dm.setup("fit")
    assert len(dm.datasets["rte/train"]) == 13
    assert [len(b["ids"]) for b in dm.train_dataloader()] == [5, 5, 3]
    assert [len(b["ids"]) for b in dm.val_dataloader()[0]] == [11] * 8 + [8]  # the limit is for training only


# -- 2. templates ---------------------------------------------------------------------------------------------
def test_roberta_pair_template(tok):
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert (bos, eos) == (0, 2)
    template = Template.of(tok)
    assert template == Template(start=(bos,), middle=(eos, eos), end=(eos,), second_type=0)
    bort = Template.of(tok, "bort")
    assert bort == Template(start=(bos,), middle=(eos,), end=(eos,), second_type=0)

    a, b = [11, 12, 13], [21, 22]
    assert template.build(a, b, 64) == ([0, 11, 12, 13, 2, 2, 21, 22, 2], [0] * 9, False)  # <s> A </s></s> B </s>
    assert bort.build(a, b, 64) == ([0, 11, 12, 13, 2, 21, 22, 2], [0] * 8, False)  # <s> A </s> B </s>
    assert template.build(a, None, 64) == bort.build(a, None, 64) == ([0, 11, 12, 13, 2], [0] * 5, False)
    assert template.budget(True) == 4 and bort.budget(True) == 3 and template.budget(False) == 2

    # the template is the tokenizer's own: building from the parts gives what the tokenizer gives the pair
    for first, second in [("the cat sat.", "a dog ran?"), ("which fox builds a clever engine", "in paris?")]:
        x = tok(first, add_special_tokens=False)["input_ids"]
        y = tok(second, add_special_tokens=False)["input_ids"]
        assert template.build(x, y, 512)[0] == tok(first, second)["input_ids"]
        assert template.build(x, None, 512)[0] == tok(first)["input_ids"]


def test_bort_pair_encoding_in_task_data(tok):
    """`pair_encoding="bort"` drops one separator from every pair; single sentences are unchanged."""
    for name, shorter in (("mrpc", 1), ("sst2", 0), ("race-high", 1)):
        spec = get_task(name)
        plain = task_data(spec, tok, max_length=256)._eval("validate")[0]
        bort = task_data(spec, tok, max_length=256, pair_encoding="bort")._eval("validate")[0]
        for p, b in zip(plain["input_ids"], bort["input_ids"]):
            p, b = (p, b) if spec.kind == CHOICE else ([p], [b])
            for p_seq, b_seq in zip(p, b):
                assert len(p_seq) == len(b_seq) + shorter
                if shorter:
                    cut = next(i for i in range(len(p_seq)) if p_seq[i:i + 2] == [2, 2])
                    assert b_seq == p_seq[:cut] + p_seq[cut + 1:]  # <s> A </s> B </s>
                else:
                    assert b_seq == p_seq


def test_bert_pair_template_and_token_types(bert, tok):
    cls_, sep = bert.cls_token_id, bert.sep_token_id
    template = Template.of(bert)
    assert template == Template(start=(cls_,), middle=(sep,), end=(sep,), second_type=1)
    assert Template.of(bert, "bort") == template  # BERT already has one separator

    a = bert("the cat sat", add_special_tokens=False)["input_ids"]
    b = bert("a dog ran .", add_special_tokens=False)["input_ids"]
    assert bert.unk_token_id not in a + b
    ids, types, cut = template.build(a, b, 64)
    assert ids == [cls_, *a, sep, *b, sep] and not cut  # [CLS] A [SEP] B [SEP]
    assert types == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    reference = bert("the cat sat", "a dog ran .", return_token_type_ids=True)
    assert (ids, types) == (reference["input_ids"], reference["token_type_ids"])
    assert template.build(a, None, 64)[:2] == ([cls_, *a, sep], [0] * (len(a) + 2))

    # through TaskData and the collator: types 0 up to the first [SEP], 1 to the last, 0 on the padding
    dm = task_data(get_task("mrpc"), bert)
    batch = next(iter(dm.val_dataloader()[0]))
    assert batch["input_ids"][:, 0].eq(cls_).all()
    for row_ids, row_types, row_mask in zip(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]):
        n = int(row_mask.sum())
        seps = [i for i in range(n) if row_ids[i] == sep]
        assert len(seps) == 2 and seps[-1] == n - 1
        assert row_types.tolist() == [0] * (seps[0] + 1) + [1] * (n - seps[0] - 1) + [0] * (len(row_ids) - n)
        assert set(row_ids[n:].tolist()) <= {bert.pad_token_id}


# -- 3. truncation --------------------------------------------------------------------------------------------
def remove_one_at_a_time(n_first: int, n_second: int, room: int) -> tuple[int, int]:
    """Longest-first by brute force: drop a token from the longer text (the second on a tie) until both fit."""
    while n_first + n_second > room:
        if n_first > n_second:
            n_first -= 1
        else:
            n_second -= 1
    return n_first, n_second


def test_longest_first_matches_brute_force():
    checked = 0
    for room in range(2, 26):
        for n_first in range(0, 30):
            for n_second in range(0, 30):
                if n_first + n_second <= room:
                    continue
                kept = _longest_first(n_first, n_second, room)
                assert kept == remove_one_at_a_time(n_first, n_second, room), (n_first, n_second, room)
                assert sum(kept) == room and kept[0] <= n_first and kept[1] <= n_second
                checked += 1
    assert checked > 10_000
    assert _longest_first(10, 3, 7) == (4, 3) and _longest_first(3, 10, 7) == (3, 4)
    assert _longest_first(5, 5, 7) == (4, 3)  # a tie cuts the second first


@pytest.mark.parametrize("encoding", ["tokenizer", "bort"])
def test_build_never_exceeds_max_length(tok, encoding):
    template = Template.of(tok, encoding)
    first_all, second_all = list(range(100, 130)), list(range(200, 230))
    for max_length in range(8, 30):
        for n_first in range(0, 30):
            for n_second in [None, *range(0, 30, 3)]:
                first = first_all[:n_first]
                second = None if n_second is None else second_all[:n_second]
                ids, types, cut = template.build(first, second, max_length)
                assert len(ids) == len(types) <= max_length
                full = template.budget(second is not None) + n_first + (n_second or 0)
                assert cut == (full > max_length)
                room = max_length - template.budget(second is not None)
                if second is None:
                    keep = min(n_first, room)
                    assert ids == [*template.start, *first[:keep], *template.end]
                else:
                    k1, k2 = remove_one_at_a_time(n_first, n_second, room)
                    assert ids == [*template.start, *first[:k1], *template.middle, *second[:k2], *template.end]
                if cut:
                    assert len(ids) == max_length  # cut to fit exactly, not shorter
    with pytest.raises(BortzooError, match="max_length 5 leaves no room"):
        Template.of(tok).build([1] * 5, [1] * 5, 5)  # 4 special tokens leave 1


def test_race_truncation_is_counted_not_dropped(tok):
    spec, max_length = get_task("race-middle"), 56
    dm = task_data(spec, tok, max_length=max_length, batch_size=16)
    dm.setup("fit")
    dm.val_dataloader(), dm.test_dataloader()
    template = Template.of(tok)
    assert set(dm.truncated) == {"race-middle/train", "race-middle/validation", "race-middle/test"}
    for split in ("train", "validation", "test"):
        data, table = dm.datasets[f"race-middle/{split}"], raw(spec, split)
        assert len(data) == table.num_rows == rows_of(spec.name, split)  # nothing dropped
        assert data["ids"] == table["example_id"]
        expected_cut = 0
        for row, encoded in zip(table, data["input_ids"]):
            cut = False
            for (first, second), seq in zip(race_pairs(row), encoded):
                a = tok(first, add_special_tokens=False)["input_ids"]
                b = tok(second, add_special_tokens=False)["input_ids"]
                assert len(seq) <= max_length
                if len(a) + len(b) + 4 > max_length:
                    cut = True
                    k1, k2 = remove_one_at_a_time(len(a), len(b), max_length - 4)
                    assert seq == [*template.start, *a[:k1], *template.middle, *b[:k2], *template.end]
                else:
                    assert seq == [*template.start, *a, *template.middle, *b, *template.end]
            expected_cut += cut
        assert dm.truncated[f"race-middle/{split}"] == expected_cut
        assert 0 < expected_cut < len(data)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[:2] == (16, 4) and batch["input_ids"].shape[2] <= max_length


def test_pad_collator():
    rows = [{"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1], "labels": 1, "ids": "a"},
            {"input_ids": [5], "token_type_ids": [0], "labels": 0, "ids": "b"}]
    batch = PadCollator(pad_id=9)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert batch["labels"].dtype == torch.long and batch["ids"] == ["a", "b"]
    assert PadCollator(0, regression=True)([dict(rows[0], labels=2.5)])["labels"].dtype == torch.float32
    choice = [{"input_ids": [[1, 2], [1], [1, 2, 3]], "token_type_ids": [[0, 0], [0], [0, 0, 0]], "labels": 2,
               "ids": 7}] * 2
    batch = PadCollator(0)(choice)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 3, 3)
    assert batch["attention_mask"][1].tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]


# -- 4. bad input ---------------------------------------------------------------------------------------------
def hub_folder(root: Path, config: str, splits: dict[str, list[dict]], fmt: str = "jsonl") -> str:
    """A local folder in the Hub layout: `<config>/<split>.<fmt>` data files and a README.md `configs:` card."""
    (root / config).mkdir(parents=True)
    entries = []
    for split, rows in splits.items():
        path = root / config / f"{split}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        else:
            columns = list(rows[0])
            path.write_text(",".join(columns) + "\n" + "".join(",".join(str(r[c]) for c in columns) + "\n"
                                                               for r in rows))
        entries.append(f"  - split: {split}\n    path: {config}/{split}.{fmt}\n")
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{''.join(entries)}---\n")
    return str(root)


def edited_copy(root: Path, spec, split: str, edit) -> str:
    """A copy of the spec's fixture folder with one split's parquet rewritten by `edit(columns)` (same schema)."""
    folder = root / Path(dataset_folder(spec)).name
    shutil.copytree(dataset_folder(spec), folder)
    path = folder / spec.config / f"{split}-00000-of-00001.parquet"
    columns = pq.read_table(path).to_pydict()
    edit(columns)
    import datasets

    features = race_features() if spec.benchmark == "race" else glue_features(spec)
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    return str(folder)


def sst2_rows(labels) -> list[dict]:
    return [{"sentence": f"the cat sat {i}.", "label": label, "idx": i} for i, label in enumerate(labels)]


def stsb_rows(labels) -> list[dict]:
    return [{"sentence1": "the cat sat.", "sentence2": f"a dog ran {i}.", "label": label, "idx": i}
            for i, label in enumerate(labels)]


@pytest.mark.parametrize("missing", ["idx", "sentence", "label"])
def test_missing_column(tmp_path, missing):
    rows = [{k: v for k, v in row.items() if k != missing} for row in sst2_rows([0, 1, 0])]
    folder = hub_folder(tmp_path / "data", "sst2", {"validation": rows})
    with pytest.raises(BortzooError) as err:
        load_split(get_task("sst2"), "validation", data_dir=folder)
    message = str(err.value)
    assert "task sst2, split validation" in message and f"missing column(s) ['{missing}']" in message
    assert folder in message


def test_missing_race_column(tmp_path):
    rows = [{"example_id": "m1.txt", "article": "the cat sat.", "answer": "A", "question": "who sat?"}]
    folder = hub_folder(tmp_path / "race", "high", {"test": rows})
    with pytest.raises(BortzooError, match=r"task race-high, split test: missing column\(s\) \['options'\]"):
        load_split(get_task("race-high"), "test", data_dir=folder)


def test_class_label_outside_the_spec_names_its_row(tmp_path, tok):
    train = sst2_rows([0, 1, 0, 1, 7, 0])
    folder = hub_folder(tmp_path / "data", "sst2", {"train": train, "validation": sst2_rows([0, 1])})
    dm = TaskData("sst2", data_dir=folder)
    dm.tokenizer = tok
    with pytest.raises(BortzooError) as err:
        dm.setup("fit")
    assert str(err.value) == ("task sst2, split train, row 4, column 'label': label 7 is not one of 0..1 "
                              "(negative, positive)")
    assert dm.datasets == {}  # nothing half-loaded


@pytest.mark.parametrize("bad", [-1, 2, True])
def test_other_bad_class_labels(tmp_path, bad):
    folder = hub_folder(tmp_path / "data", "sst2", {"validation": sst2_rows([1, bad])})
    data = load_split(get_task("sst2"), "validation", data_dir=folder)
    with pytest.raises(BortzooError, match=r"task sst2, split validation, row 1, column 'label': label"):
        check_labels(get_task("sst2"), data, "validation", hidden=False)


def test_class_label_names_are_mapped_to_ids(tmp_path, tok):
    folder = hub_folder(tmp_path / "data", "sst2", {"validation": sst2_rows(["positive", "negative", "positive", 0])})
    data = load_split(get_task("sst2"), "validation", data_dir=folder)
    assert check_labels(get_task("sst2"), data, "validation", hidden=False) == [1, 0, 1, 0]
    result = encode_split(get_task("sst2"), data, "validation", tok, 64)
    encoded, cut = result.data, result.truncated
    assert encoded["labels"] == [1, 0, 1, 0] and cut == 0
    with pytest.raises(BortzooError, match="label 'Positive' is not one of 0..1"):  # names are exact
        check_labels(get_task("sst2"), data.map(lambda r: {"label": "Positive"}), "validation", hidden=False)

    mnli = [{"premise": "p", "hypothesis": "h", "label": name, "idx": i}
            for i, name in enumerate(["neutral", "contradiction", "entailment"])]
    folder = hub_folder(tmp_path / "mnli", "mnli", {"validation_matched": mnli})
    data = load_split(get_task("mnli"), "validation_matched", data_dir=folder)
    assert check_labels(get_task("mnli"), data, "validation_matched", hidden=False) == [1, 2, 0]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_regression_label_that_is_not_a_number(tmp_path, fmt):
    folder = hub_folder(tmp_path / "data", "stsb", {"validation": stsb_rows(["3.5", "0", "abc", "1"])}, fmt=fmt)
    spec = get_task("stsb")
    data = load_split(spec, "validation", data_dir=folder)
    with pytest.raises(BortzooError) as err:
        check_labels(spec, data, "validation", hidden=False)
    assert str(err.value) == "task stsb, split validation, row 2, column 'label': label 'abc' is not a number"


def test_regression_label_range(tmp_path, tok):
    spec = get_task("stsb")
    good = hub_folder(tmp_path / "good", "stsb", {"validation": stsb_rows(["3.5", 0.0, 5.0, "2"])})
    data = load_split(spec, "validation", data_dir=good)
    assert check_labels(spec, data, "validation", hidden=False) == [3.5, 0.0, 5.0, 2.0]
    encoded = encode_split(spec, data, "validation", tok, 64).data
    assert encoded["labels"] == [3.5, 0.0, 5.0, 2.0]
    batch = PadCollator(tok.pad_token_id, regression=True)([encoded[i] for i in range(4)])
    assert batch["labels"].dtype == torch.float32

    for i, bad in enumerate((5.5, -0.25)):
        folder = hub_folder(tmp_path / f"bad{i}", "stsb", {"validation": stsb_rows([1.0, 2.0, 3.0, bad])})
        data = load_split(spec, "validation", data_dir=folder)
        with pytest.raises(BortzooError) as err:
            check_labels(spec, data, "validation", hidden=False)
        assert str(err.value) == f"task stsb, split validation, row 3, column 'label': label {bad} is outside [0, 5]"


def test_empty_split(tmp_path, monkeypatch):
    spec = get_task("sst2")
    folder = tmp_path / "data"
    (folder / "sst2").mkdir(parents=True)
    import datasets

    empty = datasets.Dataset.from_dict({"sentence": [], "label": [], "idx": []}, features=glue_features(spec))
    empty.to_parquet(str(folder / "sst2" / "validation.parquet"))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: sst2\n  data_files:\n  - split: validation\n"
                                      "    path: sst2/validation.parquet\n---\n")
    # datasets itself refuses a split without rows; the loader reports it with the task and the split
    with pytest.raises(BortzooError, match=r"task sst2: cannot load .*validation"):
        load_split(spec, "validation", data_dir=str(folder))

    # a loader that does hand back an empty split (another datasets version) gets the loader's own message
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(validation=empty))
    with pytest.raises(BortzooError, match=r"task sst2, split validation: the split is empty"):
        load_split(spec, "validation", data_dir=str(folder))


def test_split_that_does_not_exist_names_the_available_splits():
    spec = get_task("sst2")
    with pytest.raises(BortzooError) as err:
        load_split(spec, "dev", data_dir=dataset_folder(spec))
    message = str(err.value)
    assert "task sst2" in message and "no split 'dev'" in message
    assert "['test', 'train', 'validation']" in message


def test_unknown_config_in_data_dir(tmp_path):
    folder = hub_folder(tmp_path / "data", "cola", {"validation": sst2_rows([0, 1])})
    with pytest.raises(BortzooError, match=r"task sst2: .* has no config 'sst2'. A local copy must be laid out like"):
        load_split(get_task("sst2"), "validation", data_dir=folder)


def test_race_answer_outside_a_to_d(tmp_path, tok):
    spec = get_task("race-middle")
    folder = edited_copy(tmp_path, spec, "validation", lambda c: c["answer"].__setitem__(5, "E"))
    dm = task_data(spec, tok, data_dir=folder)
    with pytest.raises(BortzooError) as err:
        dm.val_dataloader()
    assert str(err.value) == ("task race-middle, split validation, row 5, column 'answer': answer 'E' is not one "
                              "of A, B, C, D")


def test_race_row_with_three_options(tmp_path, tok):
    spec = get_task("race-middle")
    folder = edited_copy(tmp_path, spec, "test", lambda c: c["options"].__setitem__(7, c["options"][7][:3]))
    dm = task_data(spec, tok, data_dir=folder)
    with pytest.raises(BortzooError) as err:
        dm.test_dataloader()
    assert str(err.value) == ("task race-middle, split test, row 7, column 'options': expected 4 options, got 3")


def test_race_answers_are_read_loosely(tmp_path, tok):
    spec = get_task("race-middle")
    folder = edited_copy(tmp_path, spec, "validation", lambda c: c["answer"].__setitem__(0, " b "))
    data = task_data(spec, tok, data_dir=folder)._eval("validate")[0]
    assert data["labels"][0] == 1


def test_data_dir_that_is_not_a_folder(tmp_path):
    a_file = tmp_path / "glue.parquet"
    a_file.write_bytes(b"")
    for where in (a_file, tmp_path / "nowhere"):
        with pytest.raises(BortzooError, match=r"task sst2: data_dir .* is not a folder"):
            load_split(get_task("sst2"), "validation", data_dir=str(where))
        dm = TaskData("sst2", data_dir=str(where))
        dm.tokenizer = object()  # never reached
        with pytest.raises(BortzooError, match="is not a folder"):
            dm.setup("fit")


def test_unknown_task_and_bad_arguments(tok):
    with pytest.raises(BortzooError, match=r"unknown task 'glue-x'; known tasks: .*sst2"):
        TaskData("glue-x")
    with pytest.raises(BortzooError, match="unknown task"):
        get_task("superglue")
    assert get_task("SST-2").name == "sst2" and get_task("race").name == "race-all"
    with pytest.raises(BortzooError, match=r"pair_encoding must be one of \('tokenizer', 'bort'\), got 'xlnet'"):
        TaskData("mrpc", pair_encoding="xlnet")
    with pytest.raises(BortzooError, match="pair_encoding must be one of"):
        Template.of(tok, "xlnet")
    with pytest.raises(BortzooError, match="max_length must be at least 8"):
        TaskData("mrpc", max_length=7)
    with pytest.raises(BortzooError, match="batch sizes must be positive"):
        TaskData("mrpc", batch_size=0)
    with pytest.raises(BortzooError, match="batch sizes must be positive"):
        TaskData("mrpc", eval_batch_size=0)


def test_no_tokenizer_is_an_error():
    dm = TaskData("sst2", data_dir=dataset_folder(get_task("sst2")))
    with pytest.raises(BortzooError, match="TaskData has no tokenizer"):
        dm.setup("fit")


# -- 5. hidden labels -----------------------------------------------------------------------------------------
def test_hidden_labels_are_not_checked(tmp_path, tok):
    stsb = get_task("stsb")
    folder = hub_folder(tmp_path / "stsb", "stsb", {"test": stsb_rows(["abc", 9.0, "-1"])})
    data = load_split(stsb, "test", data_dir=folder)
    assert check_labels(stsb, data, "test", hidden=True) == [-1, -1, -1]
    with pytest.raises(BortzooError, match="row 0"):
        check_labels(stsb, data, "test", hidden=False)
    encoded = encode_split(stsb, data, "test", tok, 64, hidden=True).data
    assert encoded["labels"] == [-1.0, -1.0, -1.0]

    sst2 = get_task("sst2")
    folder = hub_folder(tmp_path / "sst2", "sst2", {"test": sst2_rows([7, "nonsense"])})
    data = load_split(sst2, "test", data_dir=folder)
    assert check_labels(sst2, data, "test", hidden=True) == [-1, -1]


def test_glue_test_splits_hide_labels_race_does_not(tok):
    """GLUE's test rows hold -1: read as labelled they fail the check; predict reads them hidden."""
    spec = get_task("cola")
    data = load_split(spec, "test", data_dir=dataset_folder(spec))
    with pytest.raises(BortzooError, match=r"task cola, split test, row 0, column 'label': label -1"):
        check_labels(spec, data, "test", hidden=False)
    assert check_labels(spec, data, "test", hidden=True) == [-1] * 48
    race = get_task("race-high")
    assert race.test_labels and task_data(race, tok)._eval("predict")[0]["labels"] == expected_labels(
        race, raw(race, "test"), hidden=False)


# -- nulls and local caches (datasets fills a column the files lack with nulls; caches folders by name) ----
def test_a_null_text_names_its_row_and_column(tmp_path, tok):
    rows = sst2_rows([0, 1, 0])
    rows[1]["sentence"] = None
    dm = task_data(get_task("sst2"), tok, data_dir=hub_folder(tmp_path / "data", "sst2", {"validation": rows}))
    with pytest.raises(BortzooError, match=r"task sst2, split validation, row 1, column 'sentence': no value"):
        dm._eval("validate")


def test_a_null_second_text_is_an_error_not_a_single_sentence(tmp_path, tok):
    rows = [{"sentence1": "the cat sat.", "sentence2": None, "label": 1, "idx": 0}]
    dm = task_data(get_task("mrpc"), tok, data_dir=hub_folder(tmp_path / "data", "mrpc", {"validation": rows}))
    with pytest.raises(BortzooError, match=r"row 0, column 'sentence2': no value"):
        dm._eval("validate")


@pytest.mark.parametrize("dropped", ["sentence", "idx"])
def test_a_column_missing_from_hub_layout_files_is_named(tmp_path, tok, dropped):
    """The card declares the features, so `datasets` fills the missing column with nulls: still an error."""
    folder = Path(edited_copy(tmp_path, get_task("sst2"), "validation", lambda c: None))
    path = folder / "sst2" / "validation-00000-of-00001.parquet"
    columns = pq.read_table(path).to_pydict()
    del columns[dropped]
    import datasets

    datasets.Dataset.from_dict(columns).to_parquet(str(path))
    dm = task_data(get_task("sst2"), tok, data_dir=str(folder))
    with pytest.raises(BortzooError, match=rf"row 0, column '{dropped}': no value"):
        dm._eval("validate")


def test_edited_local_data_is_read_again(tmp_path, monkeypatch):
    """The local cache is keyed on the folder's files: an edit, or another folder of the same name, is seen."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "one-cache")
    spec = get_task("sst2")
    original = load_split(spec, "validation", data_dir=dataset_folder(spec))[0]["sentence"]
    folder = edited_copy(tmp_path / "copy", spec, "validation", lambda c: c.update(sentence=["EDITED"] * len(c["sentence"])))
    assert load_split(spec, "validation", data_dir=folder)[0]["sentence"] == "EDITED" != original
    path = Path(folder) / "sst2" / "validation-00000-of-00001.parquet"
    columns = pq.read_table(path).to_pydict()
    columns["sentence"] = ["AGAIN"] * len(columns["sentence"])
    datasets.Dataset.from_dict(columns, features=glue_features(spec)).to_parquet(str(path))
    assert load_split(spec, "validation", data_dir=folder)[0]["sentence"] == "AGAIN"
