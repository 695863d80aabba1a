"""The demo's checkpoints: loaded once, in the background, warmed, and reported in one status line.

Each (side, task) is a slot: missing (no checkpoint configured: the message says what to fetch), waiting,
loading, ready, or failed (the error, one line). One slot failing never touches the other side. Only the
last `keep_tasks` tasks stay in memory. All model work (loading, warming, predicting, timing) goes through
`compute`, one lock, so that a latency is never measured while another model runs on the same cores.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

from bortzoo.demo import SIDES
from bortzoo.demo.settings import DemoSettings, how_to_get
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task

MISSING, WAITING, LOADING, READY, FAILED = "missing", "waiting", "loading", "ready", "failed"


@dataclass
class Loaded:
    """A ready checkpoint: the model, its tokenizer and how its inputs are laid out."""

    ref: str
    model: Any
    tokenizer: Any
    template: Any  # bortzoo.data.task_data.Template
    max_length: int
    load_s: float
    warm_ms: float
    dtype: str = "float32"  # what it runs in (bortzoo.load's default)
    stored_dtype: str = "unknown"  # what its weight files hold (amazon/bort: float16)
    engine: Optional[str] = None  # the bortzoo.optimize engine serving it (None: the transformers model as loaded)


@dataclass
class Slot:
    side: str
    task: str
    ref: Optional[str]
    state: str
    message: str = ""
    loaded: Optional[Loaded] = None
    future: Optional[Future] = None


def load_checkpoint(ref: str, task: str, settings: DemoSettings) -> Loaded:
    """`bortzoo.load(ref)`, checked to be a model fine-tuned for `task`, with its pair template read off
    its tokenizer (published bortzoo models carry Bort's template there)."""
    from bortzoo.data.encoding import Template
    from bortzoo.hub import stored_dtype
    from bortzoo.serve.task_guard import check_head
    from bortzoo.zoo import load, model_ref

    start = time.perf_counter()
    model, tokenizer = load(ref, dtype="float32")
    check_head(model, get_task(task), ref)
    positions = int(getattr(model.config, "max_position_embeddings", settings.max_length))
    max_length = min(settings.max_length, positions)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return Loaded(ref, model, tokenizer, Template.of(tokenizer), max_length, time.perf_counter() - start, 0.0,
                  dtype=dtype, stored_dtype=stored_dtype(model_ref(ref).folder()))


def optimize_loaded(loaded: Loaded, threads: int) -> None:
    """Serve `loaded` through `bortzoo.optimize(engine="auto")`, chosen at one request of the demo's lengths."""
    from bortzoo.serve.optimize import optimize

    shapes = sorted({(1, min(32, loaded.max_length)), (1, loaded.max_length)})
    loaded.model = optimize(loaded.model, engine="auto", threads=threads, shapes=shapes)
    loaded.engine = loaded.model.bortzoo_report.chosen


class ModelPool:
    """Background loading of the demo's checkpoints (one loader thread: two 1.3 GB reads at once help no one).

    Args:
        settings: Which checkpoint each side uses per task.
        loader: `(ref, task, settings) -> Loaded`; replaced in tests.
        warm: Run one forward after loading (lazy kernels, allocator), so the first request is not slow.
    """

    def __init__(self, settings: DemoSettings, loader: Callable[..., Loaded] = load_checkpoint, warm: bool = True):
        self.settings = settings
        self.compute = threading.RLock()
        self._loader = loader
        self._warm = warm
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], Slot] = {}
        self._recent: list[str] = []  # tasks, most recent last
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bortzoo-demo-load")

    # -- requests ------------------------------------------------------------------------------------
    def request(self, task: str) -> None:
        """Start loading both sides of `task` (no-op for slots already loading or loaded); evict old tasks."""
        task = get_task(task).name
        with self._lock:
            if task in self._recent:
                self._recent.remove(task)
            self._recent.append(task)
            for old in self._recent[:-self.settings.keep_tasks]:
                self._evict(old)
            self._recent = self._recent[-self.settings.keep_tasks:]
            for side in ("Bort", "BERT-large"):  # Bort first: it is ready in a fraction of the time
                key = (side, task)
                if key in self._slots and self._slots[key].state != FAILED:
                    continue
                ref = self.settings.checkpoint(side, task)
                if ref is None:
                    message = f"No {side} checkpoint for {task}. {how_to_get(side, task)}"
                    self._slots[key] = Slot(side, task, None, MISSING, message)
                    continue
                slot = Slot(side, task, ref, WAITING)
                self._slots[key] = slot
                slot.future = self._executor.submit(self._load, slot)

    def _evict(self, task: str) -> None:
        for side in SIDES:
            slot = self._slots.pop((side, task), None)
            if slot is not None and slot.future is not None:
                slot.future.cancel()

    def _load(self, slot: Slot) -> None:
        slot.state = LOADING
        try:
            with self.compute:  # reading 1.3 GB would disturb a prediction being timed on the other side
                loaded = self._loader(slot.ref, slot.task, self.settings)
                if slot.side == "Bort" and self.settings.optimized_bort:
                    optimize_loaded(loaded, self.settings.threads)
                if self._warm:
                    loaded.warm_ms = self._warm_up(loaded, slot.task)
        except BortzooError as err:
            slot.state, slot.message = FAILED, str(err) + fetch_hint(slot.ref)
        except Exception as err:  # a broken checkpoint must not take the demo (or the other side) down
            slot.state, slot.message = FAILED, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        else:
            slot.loaded, slot.state = loaded, READY

    def _warm_up(self, loaded: Loaded, task: str) -> float:
        from bortzoo.demo.predict import example_texts, run_model

        with self.compute:
            return run_model(loaded, get_task(task), example_texts(task)).forward_ms

    # -- reading -------------------------------------------------------------------------------------
    def slot(self, side: str, task: str) -> Slot:
        """The slot of (side, task), requesting the task if it was never asked for (or evicted)."""
        task = get_task(task).name
        if (side, task) not in self._slots:
            self.request(task)
        return self._slots[(side, task)]

    def wait(self, task: str, timeout: Optional[float] = None) -> bool:
        """Block until both sides of `task` are loaded or failed; False if `timeout` seconds ran out first."""
        from concurrent.futures import TimeoutError as FutureTimeout

        self.request(task)
        deadline = None if timeout is None else time.monotonic() + timeout
        for side in SIDES:
            slot = self._slots.get((side, get_task(task).name))
            if slot is not None and slot.future is not None:
                try:
                    slot.future.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
                except FutureTimeout:
                    return False
        return True

    def status(self, task: Optional[str] = None) -> str:
        """One line per side: what the demo can do right now."""
        if task is None:
            return "No task has a checkpoint configured."
        lines = []
        for side in SIDES:
            slot = self.slot(side, task)
            lines.append(f"**{side}** · {task}: {describe(slot)}")
        return "  \n".join(lines)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def fetch_hint(ref: str) -> str:
    """For a Hub checkpoint that could not be loaded: the command that fetches it."""
    import os

    from bortzoo.hub import is_hub_id
    from bortzoo.zoo import model_ref

    if os.path.isdir(os.path.expanduser(ref)):
        return ""
    repo = model_ref(ref).source
    return f" (fetch it with `hf download {repo}` while online)" if is_hub_id(repo) else ""


def describe(slot: Slot) -> str:
    if slot.state == READY:
        loaded = slot.loaded
        stored = "" if loaded.stored_dtype in (loaded.dtype, "unknown") else f", stored as {loaded.stored_dtype}"
        engine = f" served by {loaded.engine} (bortzoo.optimize)" if loaded.engine else ""
        return (f"ready (`{slot.ref}`, runs in {loaded.dtype}{stored}{engine}, loaded in {loaded.load_s:.1f} s, "
                f"warm forward {loaded.warm_ms:.0f} ms)")
    if slot.state == LOADING:
        return f"loading `{slot.ref}`…"
    if slot.state == WAITING:
        return f"queued to load `{slot.ref}`"
    if slot.state == FAILED:
        return f"failed to load `{slot.ref}`: {slot.message}"
    return "no checkpoint (see the prediction box)"
