"""Timing several forwards fairly: interleaved rounds, so drift of the machine hits every one alike. Shared by
`bortzoo bench`, `bortzoo.optimize`'s engine choice and the search's latency constraint."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping

from bortzoo.errors import BortzooError

__all__ = ["time_interleaved"]


SETTLE_S = 0.05  # long enough for a runtime's spinning worker threads to go to sleep


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def time_interleaved(
    forwards: Mapping[str, Callable[[], object]],
    warmup: int = 3,
    repeats: int = 20,
    *,
    on_timed: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    lead_in: bool = False,
) -> dict[str, list[float]]:
    """Seconds taken by each call, over `repeats` rounds that each call every forward once, in order.

    Interleaving spreads drift over all models alike; `warmup` untimed calls of each first let
    lazy initialisation, the allocator and kernel caches settle. The garbage collector is paused
    while timing (as `timeit` does). `on_timed(name)` runs after each timed call, outside the
    timed span (a progress bar); `clock` is injectable for tests.

    lead_in: before each timed call, a SETTLE_S pause (the last runtime's spinning worker threads go to
    sleep) and one untimed call of the same forward (its own threads wake): each is timed as it runs back
    to back on its own. Without it, an engine timed right after ONNX Runtime shares the cores with ORT's
    still-spinning workers (torch at 2 threads ran 1.6x slower so).
    """
    if _not_int(warmup) or warmup < 0 or _not_int(repeats) or repeats < 1:
        raise BortzooError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup!r}, repeats={repeats!r}")
    for forward in forwards.values():
        for _ in range(warmup):
            forward()
    times: dict[str, list[float]] = {name: [] for name in forwards}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, forward in forwards.items():
                if lead_in:
                    time.sleep(SETTLE_S)
                    forward()
                start = clock()
                forward()
                times[name].append(clock() - start)
                if on_timed is not None:
                    on_timed(name)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times
