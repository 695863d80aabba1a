"""Pretraining text: local text files → tokens → packed blocks → dynamic masking.

Tokenising goes through `datasets` so it is cached and can use several processes. Blocks are
`<s> … </s>` of exactly `seq_len` tokens cut from the concatenated text (RoBERTa's
full-sentences packing). Masking happens in the collator, anew each epoch (dynamic masking),
from a seeded generator.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader

from bortzoo.errors import BortzooError
from bortzoo.hub import load_tokenizer


class TextCorpus(L.LightningDataModule):
    """A masked-LM corpus from local text files (one document or paragraph per line).

    Args:
        tokenizer: Hub id or folder of the tokenizer (the student's vocabulary).
        train_files: Text files to train on.
        val_files: Text files to validate on; if empty, `val_fraction` of the blocks is held out.
        val_fraction: Share of blocks held out for validation when no `val_files` are given.
        seq_len: Tokens per block, <s> and </s> included.
        batch_size: Blocks per batch (per device).
        mlm_probability: Share of tokens selected for prediction (80% <mask>, 10% random, 10% kept).
        num_workers: DataLoader worker processes.
        num_proc: Processes for tokenising (None: one).
        seed: Seed of the hold-out split, the shuffling and the masking.
    """

    def __init__(
        self,
        tokenizer: str,
        train_files: list[str],
        val_files: Optional[list[str]] = None,
        val_fraction: float = 0.05,
        seq_len: int = 128,
        batch_size: int = 32,
        mlm_probability: float = 0.15,
        num_workers: int = 0,
        num_proc: Optional[int] = None,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if not train_files:
            raise BortzooError("TextCorpus needs at least one file in train_files")
        if seq_len < 4:
            raise BortzooError(f"seq_len must be at least 4 tokens, got {seq_len}")
        if not 0.0 < mlm_probability < 1.0:
            raise BortzooError(f"mlm_probability must be within (0, 1), got {mlm_probability}")
        for path in [*train_files, *(val_files or [])]:
            if not os.path.isfile(path):
                raise BortzooError(f"corpus file {path!r} does not exist")
        self.tokenizer = load_tokenizer(tokenizer)
        self.train_set = self.val_set = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        train = self._blocks(self.hparams.train_files)
        if self.hparams.val_files:
            self.train_set, self.val_set = train, self._blocks(self.hparams.val_files)
        else:
            if len(train) < 2:
                raise BortzooError(f"only {len(train)} block(s) of {self.hparams.seq_len} tokens in "
                                   f"{self.hparams.train_files}: too little text to hold out a validation part")
            split = train.train_test_split(test_size=self.hparams.val_fraction, seed=self.hparams.seed)
            self.train_set, self.val_set = split["train"], split["test"]

    def _blocks(self, files: list[str]):
        """Tokenise `files` and cut the token stream into `<s> … </s>` blocks of `seq_len`."""
        from datasets import load_dataset

        tokenizer, seq_len = self.tokenizer, self.hparams.seq_len
        body = seq_len - 2
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        if bos is None or eos is None:
            bos, eos = tokenizer.cls_token_id, tokenizer.sep_token_id

        def tokenise(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
            texts = [t for t in batch["text"] if t.strip()]
            return {"ids": tokenizer(texts, add_special_tokens=False)["input_ids"]}

        def pack(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
            stream = [token for ids in batch["ids"] for token in ids]
            usable = len(stream) // body * body
            return {"input_ids": [[bos, *stream[i:i + body], eos] for i in range(0, usable, body)]}

        raw = load_dataset("text", data_files={"train": list(files)}, split="train")
        if len(raw) == 0 or not any(t.strip() for t in raw["text"]):
            raise BortzooError(f"the corpus {list(files)} is empty")
        tokens = raw.map(tokenise, batched=True, remove_columns=["text"], num_proc=self.hparams.num_proc,
                         desc="tokenising")
        blocks = tokens.map(pack, batched=True, batch_size=1000, remove_columns=["ids"], desc="packing")
        if len(blocks) == 0:
            total = sum(len(ids) for ids in tokens["ids"])
            raise BortzooError(f"the corpus {list(files)} has {total} tokens, fewer than one block of "
                               f"seq_len={seq_len}: lower seq_len or add text")
        return blocks.with_format("torch")

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self._collator(examples)

    @property
    def _collator(self):
        if not hasattr(self, "_mlm_collator"):
            from transformers import DataCollatorForLanguageModeling

            self._mlm_collator = DataCollatorForLanguageModeling(
                self.tokenizer, mlm_probability=self.hparams.mlm_probability, seed=self.hparams.seed)
        return self._mlm_collator

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, generator=generator,
                          collate_fn=self.collate, num_workers=self.hparams.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, collate_fn=self.collate,
                          num_workers=self.hparams.num_workers)

    test_dataloader = val_dataloader
