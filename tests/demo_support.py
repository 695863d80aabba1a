"""Shared by the demo's tests: tiny checkpoints for both sides, settings that use them, and a running app.

The checkpoints are tiny random task models saved as `bortzoo publish` would (transformers folder +
tokenizer with its pair template), named `tiny-random-*` so a screenshot cannot pass them off as real.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from bortzoo.data.tiny_tasks import TINY_TASKS_DIR
from bortzoo.demo.settings import build_settings

TASKS = ("sst2", "rte", "stsb", "race-all")
TINY_LATENCY = {"BERT-large": "2,2,32,64", "Bort": "1,2,32,64"}
GLUE_FIXTURES = str(Path(TINY_TASKS_DIR) / "glue")
RACE_FIXTURES = str(Path(TINY_TASKS_DIR) / "race")


def make_demo_folders(root: Path) -> dict[str, dict[str, str]]:
    """side → task → folder of a tiny random fine-tune (different seeds, so the two sides disagree)."""
    from test_convert import save_task_folder, tiny

    out: dict[str, dict[str, str]] = {"BERT-large": {}, "Bort": {}}
    for side, slug, head, seed in (("BERT-large", "bert-large", "pooler", 0), ("Bort", "bort", "bort", 1)):
        for task in TASKS:
            folder = root / f"tiny-random-{slug}-{task}"
            if not folder.exists():
                save_task_folder(tiny(task, head, seed=seed), folder, pair_encoding="tokenizer")
            out[side][task] = str(folder)
    return out


def demo_settings(folders: dict[str, dict[str, str]], latency_archs=None, **kwargs):
    """Settings serving the tiny folders only (no zoo: nothing that needs the Hub), with fixture data."""
    kwargs.setdefault("data", {"sst2": GLUE_FIXTURES, "rte": GLUE_FIXTURES, "stsb": GLUE_FIXTURES,
                               "race-all": RACE_FIXTURES})
    return build_settings(bert_large=folders["BERT-large"], bort=folders["Bort"], zoo=False,
                          latency_archs=TINY_LATENCY if latency_archs is None else latency_archs, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_demo(handlers, concurrency: int = 4):
    """The demo served on a free port of 127.0.0.1 in this process; closed afterwards."""
    from bortzoo.demo.app import launch

    page, url = launch(handlers, host="127.0.0.1", port=free_port(), concurrency=concurrency, block=False,
                       quiet=True)
    try:
        yield url
    finally:
        page.close()
        handlers.pool.close()
