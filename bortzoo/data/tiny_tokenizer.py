"""Byte-level BPE tokenizers in the RoBERTa layout, trained locally with `tokenizers`.

Bort uses RoBERTa's BPE (50,265 tokens). Tests and tiny recipes need the same kind of tokenizer
without a download, so the project trains its own on text it generates (`bortzoo.data.tiny_corpus`).
The special tokens take RoBERTa's ids: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.

    python -m bortzoo.data.tiny_tokenizer OUT_DIR [--vocab-size 512]  # regenerates bortzoo/assets/tiny-tokenizer
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Iterable

from bortzoo.resources import ASSETS

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TINY_TOKENIZER_DIR = str(ASSETS / "tiny-tokenizer")


def train_byte_level_bpe(texts: Iterable[str], out_dir: str, vocab_size: int = 512, max_length: int = 512) -> str:
    """Train a byte-level BPE on `texts` and save it where `AutoTokenizer.from_pretrained` finds it.

    Writes vocab.json and merges.txt (the files of `amazon/bort` and `roberta-large`) plus a
    tokenizer_config.json that names the RoBERTa tokenizer class.
    """
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=ROBERTA_SPECIALS, show_progress=False)
    os.makedirs(out_dir, exist_ok=True)
    bpe.save_model(out_dir)
    config = {
        "tokenizer_class": "RobertaTokenizer",
        "model_max_length": max_length,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "add_prefix_space": False,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return out_dir


def make_tiny_tokenizer(out_dir: str = TINY_TOKENIZER_DIR, vocab_size: int = 512) -> str:
    """The project's tiny tokenizer: trained on the toy grammar's text with seed 0."""
    from bortzoo.data.tiny_corpus import paragraphs

    return train_byte_level_bpe(paragraphs(2000, seed=0), out_dir, vocab_size=vocab_size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the project's tiny byte-level BPE tokenizer.")
    parser.add_argument("out_dir", nargs="?", default=TINY_TOKENIZER_DIR)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args(argv)
    print(make_tiny_tokenizer(args.out_dir, args.vocab_size))


if __name__ == "__main__":
    main()
