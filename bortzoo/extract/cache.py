"""The teacher, run once for the whole search: its top-k logits per surrogate batch, on disk.

Every candidate trains on the same batches against the same teacher, so the teacher's forward
passes are done once and stored (one safetensors file per batch: the masked batch itself and the
teacher's k largest logits at each masked position) instead of once per candidate. Each file
carries the key of the settings that made it; a file from other settings is refused, and an
unreadable one is reported and rebuilt, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from bortzoo.errors import BortzooError
from bortzoo.files import atomic_path

CACHE_FORMAT = 1


def cache_key(settings: dict) -> str:
    """A short hash of everything that determines the cached batches and teacher outputs."""
    text = json.dumps({"format": CACHE_FORMAT, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TeacherCache:
    """Cached (batch, teacher top-k) files `train-000000.safetensors`, `eval-000000.safetensors`, ... in `folder`."""

    def __init__(self, folder: str | os.PathLike, key: str, top_k: int):
        self.folder, self.key, self.top_k = Path(folder), key, top_k
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rebuilt: list[str] = []

    def path(self, split: str, index: int) -> Path:
        return self.folder / f"{split}-{index:06d}.safetensors"

    def load(self, split: str, index: int) -> Optional[dict[str, torch.Tensor]]:
        """The cached batch, or None when missing or unreadable (reported, then rebuilt by `fill`)."""
        from safetensors import safe_open

        path = self.path(split, index)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                key = (handle.metadata() or {}).get("key")
                if key != self.key:
                    raise BortzooError(
                        f"teacher cache file {path} was built with other settings (key {key}, this search {self.key}); "
                        "use another output folder or delete the cache folder")
                return {name: handle.get_tensor(name) for name in handle.keys()}
        except BortzooError:
            raise
        except Exception as err:  # truncated or corrupt file: say so and rebuild it
            print(f"teacher cache file {path} is unreadable ({type(err).__name__}); rebuilding it")
            self.rebuilt.append(str(path))
            path.unlink(missing_ok=True)
            return None

    def save(self, split: str, index: int, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        path = self.path(split, index)
        with atomic_path(path) as tmp:  # concurrent shards write identical content; the last rename wins
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"key": self.key})

    def fill(self, split: str, batches: Callable[[], Iterator[dict[str, torch.Tensor]]], count: int,
             teacher_topk: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Compute the missing files of `split` (the first `count` batches); returns how many were computed."""
        missing = [i for i in range(count) if self.load(split, i) is None]
        if not missing:
            return 0
        wanted = set(missing)
        for index, batch in enumerate(batches()):
            if index >= count:
                break
            if index in wanted:
                values, indices = teacher_topk(batch)
                self.save(split, index, {"input_ids": batch["input_ids"].to(torch.int32),
                                         "labels": batch["labels"].to(torch.int32),
                                         "teacher_values": values.float().cpu(),
                                         "teacher_indices": indices.to(torch.int32).cpu()})
        return len(missing)

    def batches(self, split: str, count: int) -> list[dict[str, torch.Tensor]]:
        """The cached batches, ready for the Student (int64 ids, attention mask of ones)."""
        result = []
        for index in range(count):
            cached = self.load(split, index)
            if cached is None:
                raise BortzooError(f"teacher cache {self.folder} lacks {split} batch {index}: run the search again "
                                   "to rebuild it")
            ids = cached["input_ids"].long()
            result.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": cached["labels"].long(),
                           "teacher_values": cached["teacher_values"],
                           "teacher_indices": cached["teacher_indices"].long()})
        return result
