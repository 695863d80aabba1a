"""The project's own text and tokenizer, and the masked-LM corpus built from them."""

import filecmp

import pytest
import torch

from bortzoo.data.corpus import TextCorpus
from bortzoo.data.synthetic import paragraphs, write_corpus
from bortzoo.errors import BortzooError
from bortzoo.hub import load_tokenizer
from bortzoo.tokenizer import TINY_TOKENIZER_DIR, make_tiny_tokenizer
from conftest import TINY_CORPUS


def test_shipped_tokenizer_is_what_the_project_generates(tmp_path):
    make_tiny_tokenizer(str(tmp_path))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert filecmp.cmp(tmp_path / name, f"{TINY_TOKENIZER_DIR}/{name}", shallow=False), name


def test_shipped_corpus_is_what_the_project_generates(tmp_path):
    write_corpus(str(tmp_path / "corpus.txt"), 600, seed=0)
    assert filecmp.cmp(tmp_path / "corpus.txt", TINY_CORPUS, shallow=False)
    assert paragraphs(5, seed=1) == paragraphs(5, seed=1) != paragraphs(5, seed=2)


def test_tiny_tokenizer_has_roberta_special_ids():
    tokenizer = load_tokenizer(TINY_TOKENIZER_DIR)
    specials = [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id,
                tokenizer.unk_token_id, tokenizer.mask_token_id]
    assert specials == [0, 1, 2, 3, 4]
    text = "the quick fox sees a small dog near the river."
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def corpus(tmp_path, text=None, **kwargs):
    files = [str(TINY_CORPUS)]
    if text is not None:
        path = tmp_path / "corpus.txt"
        path.write_text(text)
        files = [str(path)]
    defaults = dict(tokenizer=TINY_TOKENIZER_DIR, train_files=files, seq_len=32, batch_size=8, seed=0)
    defaults.update(kwargs)
    return TextCorpus(**defaults)


def test_blocks_are_packed_and_framed(tmp_path):
    data = corpus(tmp_path)
    data.setup()
    ids = data.train_set[0]["input_ids"]
    assert ids.shape == (32,)
    assert ids[0].item() == 0 and ids[-1].item() == 2
    assert (ids[1:-1] > 4).all()  # packed text, no padding inside a block
    assert len(data.val_set) > 0 and len(data.train_set) > 10 * len(data.val_set)


def test_masking_statistics_and_determinism(tmp_path):
    data = corpus(tmp_path, batch_size=64)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    selected = batch["labels"] != -100
    assert 0.12 < selected.float().mean().item() < 0.18
    masked = batch["input_ids"][selected] == 4
    assert 0.7 < masked.float().mean().item() < 0.9
    again = corpus(tmp_path, batch_size=64)
    again.setup()
    assert torch.equal(next(iter(again.train_dataloader()))["labels"], batch["labels"])


def test_bad_corpora(tmp_path):
    with pytest.raises(BortzooError, match="does not exist"):
        TextCorpus(tokenizer=TINY_TOKENIZER_DIR, train_files=[str(tmp_path / "missing.txt")])
    with pytest.raises(BortzooError, match="is empty"):
        corpus(tmp_path, text="\n\n  \n").setup()
    with pytest.raises(BortzooError, match=r"fewer than one block of seq_len=32"):
        corpus(tmp_path, text="the cat sat.\n").setup()
    with pytest.raises(BortzooError, match="mlm_probability"):
        corpus(tmp_path, mlm_probability=1.5)
