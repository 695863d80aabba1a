"""The pretraining corpus: every kind of source, the mix, streaming, determinism, resume and DDP slices."""

import json

import pytest
import torch
from conftest import TINY_CORPUS

from bortzoo.data.corpus import Corpus, pack_blocks
from bortzoo.data.sources import Source, as_sources
from bortzoo.data.stream import BlockStream
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR
from bortzoo.errors import BortzooError

LINES = TINY_CORPUS.read_text().splitlines()


def corpus(sources, **kwargs):
    settings = dict(seq_len=32, batch_size=8, max_predictions=5, val_fraction=0.05, seed=0)
    settings.update(kwargs)
    data = Corpus(TINY_TOKENIZER_DIR, sources, **settings)
    data.setup()
    return data


def first_batch(data):
    return next(iter(data.train_dataloader()))


def test_pack_frames_blocks_and_drops_the_remainder():
    assert list(pack_blocks([[5, 6, 7], [8, 9]], bos=0, eos=2, seq_len=4)) == [[0, 5, 6, 2], [0, 7, 8, 2]]


def test_text_file_blocks_and_batches():
    data = corpus([Source(str(TINY_CORPUS))])
    batch = first_batch(data)
    assert batch["input_ids"].shape == (8, 32)
    assert (batch["labels"] != -100).sum(1).tolist() == [4] * 8  # round(0.15·30) = round(4.5) = 4 (half to even)
    assert len(data.val_set) > 0 and len(data.train_blocks) > 10 * len(data.val_set)


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def wikipedia_like(tmp_path_factory):
    """A folder in the layout of the Hub repo wikimedia/wikipedia: configs declared in README.md."""
    root = tmp_path_factory.mktemp("wikipedia")
    rows = [{"id": str(i), "url": f"https://x/{i}", "title": f"t{i}", "text": line} for i, line in enumerate(LINES)]
    write_parquet(root / "20231101.en" / "train-00000-of-00002.parquet", rows[:300])
    write_parquet(root / "20231101.en" / "train-00001-of-00002.parquet", rows[300:])
    write_parquet(root / "20231101.fr" / "train-00000-of-00001.parquet", rows[:10])
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: 20231101.en\n  data_files:\n  - split: train\n    path: 20231101.en/train-*\n"
        "- config_name: 20231101.fr\n  data_files:\n  - split: train\n    path: 20231101.fr/train-*\n---\n")
    return root


def test_hub_layout_folder_loads_through_the_hub_code_path(wikipedia_like):
    english = corpus([Source(str(wikipedia_like), name="20231101.en")])
    plain = corpus([Source(str(TINY_CORPUS))])
    assert len(english.train_blocks) + len(english.val_set) == len(plain.train_blocks) + len(plain.val_set)


def test_data_files_select_files_of_a_repo(wikipedia_like):
    part = corpus([Source(str(wikipedia_like), data_files=["20231101.en/train-00001-*"])], val_fraction=0.1)
    whole = corpus([Source(str(wikipedia_like), name="20231101.en")], val_fraction=0.1)
    assert len(part.train_blocks) < 0.6 * len(whole.train_blocks)


def test_jsonl_and_parquet_files_with_a_text_column(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"body": line, "n": i}) for i, line in enumerate(LINES)))
    write_parquet(tmp_path / "p" / "a.parquet", [{"content": line} for line in LINES[:300]])
    write_parquet(tmp_path / "p" / "b.parquet", [{"content": line} for line in LINES[300:]])
    from_json = corpus([Source(str(jsonl), text_column="body")])
    from_parquet = corpus([Source(str(tmp_path / "p" / "*.parquet"), text_column="content")])
    assert torch.equal(first_batch(from_json)["input_ids"], first_batch(from_parquet)["input_ids"])


def test_mixing_weights(tmp_path):
    red, blue = tmp_path / "red.txt", tmp_path / "blue.txt"
    red.write_text("\n".join(["red apple red apple red apple red apple"] * 400))
    blue.write_text("\n".join(["blue sky blue sky blue sky blue sky"] * 400))
    val = Source(str(TINY_CORPUS))
    data = corpus([Source(str(red), weight=3.0), Source(str(blue), weight=1.0)], val_sources=[val])
    from transformers import AutoTokenizer

    red_id = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)("red", add_special_tokens=False)["input_ids"][0]
    head = data.train_blocks[:200]["input_ids"]
    share = (head == red_id).any(dim=1).float().mean().item()
    assert 0.65 < share < 0.85  # 3:1 → 75% of the first blocks come from red


def test_same_seed_same_batches_other_seed_other_batches():
    a = first_batch(corpus([Source(str(TINY_CORPUS))]))
    b = first_batch(corpus([Source(str(TINY_CORPUS))]))
    c = first_batch(corpus([Source(str(TINY_CORPUS))], seed=1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], c["input_ids"])


def test_stream_resumes_at_any_position_and_crosses_epochs():
    data = corpus([Source(str(TINY_CORPUS))])
    full = BlockStream(data.train_blocks, 8, data.mask, seed=0)
    per_epoch = full.batches_per_epoch
    iterator = iter(full)
    reference = [next(iterator) for _ in range(per_epoch + 3)]
    resumed = iter(BlockStream(data.train_blocks, 8, data.mask, seed=0, start=per_epoch - 2))
    for position in range(per_epoch - 2, per_epoch + 3):
        batch = next(resumed)
        assert all(torch.equal(batch[k], reference[position][k]) for k in batch), position
    assert not torch.equal(reference[0]["input_ids"], reference[per_epoch]["input_ids"])  # new epoch, new order


def test_ddp_ranks_split_each_global_batch():
    data = corpus([Source(str(TINY_CORPUS))])
    whole = BlockStream(data.train_blocks, 8, data.mask, seed=0)
    ranks = [BlockStream(data.train_blocks, 4, data.mask, seed=0, rank=r, world_size=2) for r in (0, 1)]
    assert ranks[0].indices(3) + ranks[1].indices(3) == whole.indices(3)
    assert not set(ranks[0].indices(3)) & set(ranks[1].indices(3))


def test_validation_batches_are_fixed():
    data = corpus([Source(str(TINY_CORPUS))])
    one, two = next(iter(data.val_dataloader())), next(iter(data.val_dataloader()))
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_streaming_source(tmp_path):
    data = corpus([Source(str(TINY_CORPUS), streaming=True)], val_blocks=8)
    batch = first_batch(data)
    assert batch["input_ids"].shape == (8, 32) and len(data.val_set) == 8
    val_ids = {tuple(v.tolist()) for v in data.val_set.blocks}
    assert not any(tuple(row.tolist()) in val_ids for row in batch["labels"].where(batch["labels"] != -100,
                                                                                  batch["input_ids"]))
    again = first_batch(corpus([Source(str(TINY_CORPUS), streaming=True)], val_blocks=8))
    assert torch.equal(batch["labels"], again["labels"])


def test_bad_corpora(tmp_path):
    with pytest.raises(BortzooError, match="neither an existing file"):
        corpus([Source(str(tmp_path / "missing.txt"))])
    binary = tmp_path / "weights.txt"
    binary.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(BortzooError, match="not UTF-8 text|not text"):
        corpus([Source(str(binary))])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(BortzooError, match="fewer than one block|is empty"):
        corpus([Source(str(empty))])
    short = tmp_path / "short.txt"
    short.write_text("the cat sat.\n")
    with pytest.raises(BortzooError, match=r"fewer than one block of seq_len=32"):
        corpus([Source(str(short))])
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(json.dumps({"body": "x"}))
    with pytest.raises(BortzooError, match=r"no column 'text'.*\['body'\]"):
        corpus([Source(str(jsonl))])
    with pytest.raises(BortzooError, match="cannot read files ending in"):
        (tmp_path / "x.csv").write_text("a")
        corpus([Source(str(tmp_path / "x.csv"))])
    with pytest.raises(BortzooError, match="streamed and cached"):
        corpus([Source(str(TINY_CORPUS), streaming=True), Source(str(TINY_CORPUS))])
    with pytest.raises(BortzooError, match=r"sources\[0\] has unknown key\(s\) \['wieght'\]"):
        as_sources([{"path": "a.txt", "wieght": 2}])
    with pytest.raises(BortzooError, match="weight must be positive"):
        Source("a.txt", weight=0)
    with pytest.raises(BortzooError, match="no sources"):
        Corpus(TINY_TOKENIZER_DIR, [])
    with pytest.raises(BortzooError, match="fewer than one global batch"):
        corpus([Source(str(TINY_CORPUS))], batch_size=4096).train_dataloader()
