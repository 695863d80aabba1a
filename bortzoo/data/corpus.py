"""The pretraining corpus: sources → tokens → packed blocks → a weighted mix → masked batches.

Blocks are `<s> … </s>` of exactly `seq_len` tokens cut from each source's concatenated text
(RoBERTa's full-sentences packing). Cached sources are tokenised once by `datasets` (several
processes, cached on disk); streamed ones on the fly. Training batches come from an endless
seeded stream (`bortzoo.data.stream`), so runs are deterministic under `seed` and resume exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from typing import Iterable, Iterator, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from bortzoo.data.masking import mask_tokens, seeded_generator
from bortzoo.data.sources import Source, as_sources, load_source
from bortzoo.data.stream import BlockStream, TextStream
from bortzoo.errors import BortzooError
from bortzoo.hub import load_tokenizer


def pack_blocks(token_lists: Iterable[list[int]], bos: int, eos: int, seq_len: int) -> Iterator[list[int]]:
    """`<s> … </s>` blocks of exactly seq_len from the concatenated token lists; the remainder is dropped."""
    body = seq_len - 2
    buffer: list[int] = []
    for ids in token_lists:
        buffer.extend(ids)
        while len(buffer) >= body:
            yield [bos, *buffer[:body], eos]
            del buffer[:body]


class Corpus(L.LightningDataModule):
    """A masked-LM corpus mixed from several sources.

    Args:
        tokenizer: Hub id or folder of the tokenizer (the student's vocabulary).
        sources: Training sources and their mixing weights.
        val_sources: Validation sources; if none, `val_fraction` of the blocks is held out
            (or, when streaming, the first `val_blocks` blocks of the stream).
        val_fraction: Share of blocks held out for validation (cached sources).
        val_blocks: Most validation blocks to keep (default: all held out; 64 when streaming).
        seq_len: Tokens per block, <s> and </s> included.
        batch_size: Blocks per batch per device.
        mlm_probability: Share of a block's tokens that are predicted (80% <mask>, 10% random, 10% kept).
        max_predictions: Most predicted tokens per block (BERT and Bort: 80 at length 512).
        num_workers: DataLoader worker processes (one for streamed corpora).
        num_proc: Processes for tokenising cached sources.
        seed: Seed of the mix, the hold-out split, the block order and the masking.
    """

    def __init__(
        self,
        tokenizer: str,
        sources: list[Source],
        val_sources: Optional[list[Source]] = None,
        val_fraction: float = 0.01,
        val_blocks: Optional[int] = None,
        seq_len: int = 512,
        batch_size: int = 32,
        mlm_probability: float = 0.15,
        max_predictions: Optional[int] = 80,
        num_workers: int = 0,
        num_proc: Optional[int] = None,
        seed: int = 0,
    ):
        super().__init__()
        # Sources live on their own attributes; hparams keep plain dicts, so checkpoints stay loadable
        # with torch.load(weights_only=True) (LightningCLI refills hparams with the YAML's dicts anyway).
        self.sources, self.val_sources = as_sources(sources, "sources"), as_sources(val_sources, "val_sources")
        self.save_hyperparameters(ignore=["sources", "val_sources"])
        self.hparams["sources"] = [asdict(s) for s in self.sources]
        self.hparams["val_sources"] = [asdict(s) for s in self.val_sources]
        sources = self.sources
        if not sources:
            raise BortzooError("the corpus has no sources: list at least one under data.init_args.sources")
        if seq_len < 4:
            raise BortzooError(f"seq_len must be at least 4 tokens, got {seq_len}")
        if not 0.0 < mlm_probability < 1.0:
            raise BortzooError(f"mlm_probability must be within (0, 1), got {mlm_probability}")
        if max_predictions is not None and max_predictions < 1:
            raise BortzooError(f"max_predictions must be positive or null, got {max_predictions}")
        if not 0.0 < val_fraction < 1.0:
            raise BortzooError(f"val_fraction must be within (0, 1), got {val_fraction}")
        self.streaming = any(s.streaming for s in sources)
        if self.streaming and not all(s.streaming for s in sources):
            raise BortzooError("mix of streamed and cached training sources: set streaming the same for all")
        self.tokenizer = load_tokenizer(tokenizer)
        self.special_ids = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))
        self.train_blocks = self.val_set = self.train_texts = None

    # -- text → blocks ---------------------------------------------------------------------------
    @property
    def bos_eos(self) -> tuple[int, int]:
        tok = self.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        return bos, eos

    def texts_to_blocks(self, texts: Iterable[str], chunk: int = 256) -> Iterator[list[int]]:
        """Tokenise lazily in chunks (streaming) and pack."""
        def token_lists() -> Iterator[list[int]]:
            iterator = iter(texts)
            while chunk_texts := list(itertools.islice(iterator, chunk)):
                kept = [t for t in chunk_texts if t and t.strip()]
                if kept:  # a chunk of blank lines is skipped, not taken for the end of the stream
                    yield from self.tokenizer(kept, add_special_tokens=False)["input_ids"]
        return pack_blocks(token_lists(), *self.bos_eos, self.hparams.seq_len)

    def blocks_of(self, source: Source):
        """A cached source as a table of blocks (tokenised by `datasets`, cached on disk)."""
        tokenizer, (bos, eos), seq_len = self.tokenizer, self.bos_eos, self.hparams.seq_len
        data = load_source(source)
        if len(data) == 0:
            raise BortzooError(f"corpus source {source.describe()} is empty")

        def tokenise(batch):
            kept = [t for t in batch["text"] if t and t.strip()]
            return {"ids": tokenizer(kept, add_special_tokens=False)["input_ids"] if kept else []}

        def pack(batch):  # closes over plain values only, so `datasets` can fingerprint and cache it
            return {"input_ids": list(pack_blocks(batch["ids"], bos, eos, seq_len))}

        tokens = data.map(tokenise, batched=True, remove_columns=["text"], num_proc=self.hparams.num_proc,
                          desc=f"tokenising {source.path}")
        if len(tokens) == 0:
            raise BortzooError(f"corpus source {source.describe()} is empty: it holds only blank lines")
        blocks = tokens.map(pack, batched=True, batch_size=1000, remove_columns=["ids"], desc="packing")
        if len(blocks) == 0:
            total = sum(len(ids) for ids in tokens["ids"])
            raise BortzooError(f"corpus source {source.describe()} has {total} tokens, fewer than one block of "
                               f"seq_len={self.hparams.seq_len}: lower seq_len or add text")
        return blocks

    def mix(self, parts: list, sources: list[Source]):
        """Interleave sources by weight (seeded); every source is used up at least once."""
        if len(parts) == 1:
            return parts[0]
        from datasets import interleave_datasets

        total = sum(s.weight for s in sources)
        return interleave_datasets(parts, probabilities=[s.weight / total for s in sources], seed=self.hparams.seed,
                                   stopping_strategy="all_exhausted")

    # -- Lightning hooks ---------------------------------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        if self.val_set is not None:
            return
        hp = self.hparams
        if self.streaming:
            self.train_texts = self.mix([load_source(s) for s in self.sources], self.sources)
            if self.val_sources:
                self.val_set = self._val_from_sources(self.val_sources)
            else:
                count = hp.val_blocks or 64
                held = list(itertools.islice(self.texts_to_blocks(r["text"] for r in self.train_texts), count))
                if not held:
                    raise BortzooError(f"the streamed corpus {[s.describe() for s in self.sources]} yields no block "
                                       f"of seq_len={hp.seq_len}")
                self.val_set = MaskedBlocks(torch.tensor(held), self.mask, hp.seed)
            return
        train = self.mix([self.blocks_of(s) for s in self.sources], self.sources)
        if self.val_sources:
            self.train_blocks, self.val_set = train.with_format("torch"), self._val_from_sources(self.val_sources)
            return
        if len(train) < 2:
            raise BortzooError(f"only {len(train)} block(s) of {hp.seq_len} tokens: too little text to hold out "
                               "a validation part; add text or give val_sources")
        held = max(1, round(hp.val_fraction * len(train)))
        if hp.val_blocks:
            held = min(held, hp.val_blocks)
        split = train.train_test_split(test_size=held, seed=hp.seed)
        self.train_blocks = split["train"].with_format("torch")
        self.val_set = MaskedBlocks(split["test"].with_format("torch")["input_ids"], self.mask, hp.seed)

    def _val_from_sources(self, sources: list[Source]) -> "MaskedBlocks":
        blocks = []
        for source in sources:
            if source.streaming:
                data = load_source(source)
                limit = self.hparams.val_blocks or 64
                blocks += list(itertools.islice(self.texts_to_blocks(r["text"] for r in data), limit))
            else:
                blocks += self.blocks_of(source)["input_ids"]
        if self.hparams.val_blocks:
            blocks = blocks[: self.hparams.val_blocks]
        return MaskedBlocks(torch.tensor(blocks), self.mask, self.hparams.seed)

    def mask(self, input_ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        hp = self.hparams
        return mask_tokens(input_ids, self.special_ids, self.tokenizer.mask_token_id, len(self.tokenizer),
                           generator, hp.mlm_probability, hp.max_predictions)

    def _position_and_rank(self) -> tuple[int, int, int]:
        """Where the training stream starts (after a resume: the batches already trained on) and this rank."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 0, 1
        return trainer.global_step * trainer.accumulate_grad_batches, trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        start, rank, world = self._position_and_rank()
        if self.streaming:
            if hp.num_workers > 1:
                raise BortzooError("a streamed corpus is read in one process: set data num_workers to 0 or 1")
            skip = 0 if self.val_sources else len(self.val_set)
            stream = TextStream(self.train_texts, self.texts_to_blocks, hp.batch_size, self.mask, hp.seed, start,
                                rank, world, skip_blocks=skip)
        else:
            stream = BlockStream(self.train_blocks, hp.batch_size, self.mask, hp.seed, start, rank, world)
        return DataLoader(stream, batch_size=None, num_workers=hp.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)

    test_dataloader = val_dataloader


class MaskedBlocks(Dataset):
    """Fixed blocks with fixed masking (seeded by index): the same validation batches every time."""

    def __init__(self, blocks: torch.Tensor, masker, seed: int):
        self.blocks, self.masker, self.seed = blocks, masker, seed

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        masked = self.masker(self.blocks[index].unsqueeze(0), seeded_generator(self.seed, -1, index))
        return {key: value[0] for key, value in masked.items()}


__all__ = ["Corpus", "MaskedBlocks", "Source", "pack_blocks"]
