"""The project's own text and tokenizer: generated, never downloaded."""

import filecmp

from conftest import TINY_CORPUS

from bortzoo.data.tiny_corpus import paragraphs
from bortzoo.data.tiny_tokenizer import TINY_TOKENIZER_DIR, make_tiny_tokenizer
from bortzoo.hub import load_tokenizer


def write_corpus(path: str, n: int = 2000, seed: int = 0) -> str:
    """Write a corpus file of `n` paragraphs, one per line."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(paragraphs(n, seed)) + "\n")
    return path


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
