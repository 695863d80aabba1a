"""The one set of file writers, and the names of the files a run leaves for others to read.

Every file bortzoo writes appears whole or not at all.
A run killed mid-write leaves the previous file (or none), never half of one: each writer writes a temporary
file beside the target and renames it over the target (`os.replace`, atomic on one filesystem). Folders are
replaced the same way by `bortzoo.export.replacing_folder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

RESULTS_FILE = "results.json"  # a fine-tune's numbers (bortzoo.results.TaskResults), read by publish and the demo
SUMMARY_FILE = "seeds.json"  # mean ± std over a --seeds sweep (bortzoo.seed_sweep)


@contextlib.contextmanager
def atomic_path(path: "str | Path") -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends without error,
    removed when it raises. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: "str | Path", text: str) -> Path:
    """`text` as UTF-8 with the newlines given (no translation), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return Path(path)


def write_json(path: "str | Path", data: Any, sort_keys: bool = False) -> Path:
    """`data` as indented JSON ending in a newline, atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
