"""Training batches as an endless, seeded stream addressed by global batch position.

Batch `p` is a pure function of (seed, p, rank): its epoch is p // batches_per_epoch, its blocks
come from that epoch's seeded permutation, its masking from a generator seeded by (seed, p, rank).
A run resumed at step s therefore starts at position s · accumulate_grad_batches and sees exactly
the batches the uninterrupted run would have seen (Lightning's own resume restarts the order).
Under DDP each rank takes its slice of every global batch.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import IterableDataset, get_worker_info

from bortzoo.data.masking import seeded_generator
from bortzoo.errors import BortzooError

Masker = Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]]


class BlockStream(IterableDataset):
    """Masked batches over packed blocks held in a `datasets` table (memory-mapped, any size)."""

    def __init__(self, blocks, batch_size: int, masker: Masker, seed: int = 0, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.blocks, self.batch_size, self.masker = blocks, batch_size, masker
        self.seed, self.start, self.rank, self.world_size = seed, start, rank, world_size
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = len(blocks) // self.global_batch
        if self.batches_per_epoch == 0:
            raise BortzooError(f"the corpus has {len(blocks)} blocks, fewer than one global batch "
                               f"({batch_size} per device × {world_size} devices): add text or lower batch_size")
        self._epoch, self._order = -1, None

    def order(self, epoch: int) -> torch.Tensor:
        """The seeded permutation of the blocks for `epoch` (kept for the current epoch only)."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = torch.randperm(len(self.blocks), generator=seeded_generator(self.seed, epoch))
        return self._order

    def indices(self, position: int) -> list[int]:
        """The blocks of this rank's part of global batch `position`."""
        epoch, within = divmod(position, self.batches_per_epoch)
        first = within * self.global_batch + self.rank * self.batch_size
        return self.order(epoch)[first:first + self.batch_size].tolist()

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        ids = self.blocks[self.indices(position)]["input_ids"]
        return self.masker(torch.as_tensor(ids), seeded_generator(self.seed, position, self.rank))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        # workers take positions round-robin; the DataLoader returns them round-robin, so in order
        for position in itertools.count(self.start + worker_id, workers):
            yield self.batch(position)


class TextStream(IterableDataset):
    """Masked batches tokenised on the fly from a streamed text dataset (no full download)."""

    def __init__(self, texts, to_blocks: Callable[[Iterator[str]], Iterator[list[int]]], batch_size: int,
                 masker: Masker, seed: int = 0, start: int = 0, rank: int = 0, world_size: int = 1,
                 skip_blocks: int = 0, max_epochs: Optional[int] = None):
        self.texts, self.to_blocks, self.batch_size, self.masker = texts, to_blocks, batch_size, masker
        self.seed, self.start, self.rank, self.world_size = seed, start, rank, world_size
        self.skip_blocks, self.max_epochs = skip_blocks, max_epochs

    def global_batches(self) -> Iterator[list[list[int]]]:
        """Global batches of blocks, epoch after epoch; the first `skip_blocks` blocks (validation) excluded."""
        size = self.batch_size * self.world_size
        for epoch in itertools.count():
            if self.max_epochs is not None and epoch >= self.max_epochs:
                return
            if hasattr(self.texts, "set_epoch"):
                self.texts.set_epoch(epoch)
            blocks = self.to_blocks(row["text"] for row in self.texts)
            batch, produced = [], False
            for block in itertools.islice(blocks, self.skip_blocks, None):
                batch.append(block)
                if len(batch) == size:
                    produced = True
                    yield batch
                    batch = []
            if not produced:
                raise BortzooError(f"the streamed corpus holds less than one global batch of {size} blocks "
                                   f"after the {self.skip_blocks} validation blocks")

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if get_worker_info() is not None and get_worker_info().num_workers > 1:
            raise BortzooError("a streamed corpus is read in one process: set data num_workers to 0 or 1")
        batches = itertools.islice(self.global_batches(), self.start, None)
        for position, blocks in enumerate(batches, start=self.start):
            mine = blocks[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            yield self.masker(torch.tensor(mine), seeded_generator(self.seed, position, self.rank))
