"""What each control of the page does, as plain functions of plain values (tested without a browser).

`Handlers` ties the settings, the model pool, the latency panel and the evaluations together; the Gradio
layer (`bortzoo.demo.app`) only passes values in and shows what comes back.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Sequence

from bortzoo.demo import SIDES, accuracy, latency
from bortzoo.demo.accuracy import BENCHMARKS, Score
from bortzoo.demo.models import READY, ModelPool, describe
from bortzoo.demo.predict import example_texts, field_labels, layout, run_model
from bortzoo.demo.settings import DemoSettings
from bortzoo.errors import BortzooError
from bortzoo.tasks import get_task

Progress = Callable[[float, str], None]


class Handlers:
    def __init__(self, settings: DemoSettings, pool: Optional[ModelPool] = None,
                 panel: Optional[latency.LatencyPanel] = None):
        self.settings = settings
        self.pool = pool or ModelPool(settings)
        self.panel = panel or latency.LatencyPanel(settings.latency_archs)
        self.evaluated: list[Score] = []  # "evaluate now" results of this session
        self._evaluated_lock = threading.Lock()

    @property
    def tasks(self) -> list[str]:
        return self.settings.tasks()

    def start(self) -> None:
        """Begin loading the first task's checkpoints in the background."""
        if self.tasks:
            self.pool.request(self.tasks[0])

    def prepare_latency(self) -> None:
        """Build the latency panel's models, holding the compute lock so no prediction is timed meanwhile."""
        with self.pool.compute:
            self.panel.prepare()

    # -- task and inputs -----------------------------------------------------------------------------
    def task_inputs(self, task: str) -> dict:
        """The input boxes for `task`: labels, which are shown, and an example to start from."""
        spec = get_task(task)
        self.pool.request(spec.name)
        first, second, options = field_labels(spec)
        texts = example_texts(spec.name)
        shape = layout(spec)
        return {"labels": (first, second, options), "visible": (True, shape != "single", shape == "choice"),
                "values": texts, "headings": tuple(self.heading(side, spec.name) for side in SIDES)}

    def heading(self, side: str, task: str) -> str:
        ref = self.settings.checkpoint(side, task)
        return f"### {side}\n`{ref}`" if ref else f"### {side}\nno checkpoint for {task}"

    def status(self, task: Optional[str]) -> str:
        return self.pool.status(task or (self.tasks[0] if self.tasks else None))

    # -- predictions ---------------------------------------------------------------------------------
    def predict(self, task: str, first: str, second: str = "", options: str = "") -> list:
        """[label, note] for BERT-large then Bort; a side that cannot answer says why, the other still answers."""
        import torch

        spec = get_task(task)
        self.pool.wait(spec.name, timeout=self.settings.load_wait)  # a click during loading waits for it
        out: list = []
        for side in SIDES:
            slot = self.pool.slot(side, spec.name)
            if slot.state != READY:
                out += [None, describe(slot) if slot.ref else slot.message]
                continue
            asked = time.perf_counter()
            try:
                with self.pool.compute:
                    waited = time.perf_counter() - asked
                    torch.set_num_threads(self.settings.threads)
                    prediction = run_model(slot.loaded, spec, (first, second, options))
            except BortzooError as err:
                out += [None, f"⚠ {err}"]
                continue
            except Exception as err:  # one side breaking must not take the other down
                out += [None, f"⚠ {side} failed on this input: {type(err).__name__}: {err}"]
                continue
            note = prediction.latency_text(self.settings.threads)
            if slot.loaded.engine:
                note += f"  \noptimised Bort: engine **{slot.loaded.engine}** (`bortzoo.optimize`, chosen on this CPU)"
            if waited > 0.05:
                note += f"  \n(waited {waited * 1e3:.0f} ms for another request first; not counted above)"
            out += [prediction.label_value(), note]
        return out

    # -- latency -------------------------------------------------------------------------------------
    def benchmark(self, batch: int, seqs: Sequence[int], threads: int, warmup: int = 2, repeats: int = 5,
                  int8: bool = False, progress: bool = False) -> tuple[str, list[list], object]:
        """(summary, table rows, chart): both architectures timed interleaved at each sequence length."""
        if not seqs:
            raise BortzooError("choose at least one sequence length")
        plan = self.panel.plan(int(batch), [int(s) for s in seqs], int(threads), int(warmup), int(repeats),
                               bool(int8))
        with self.pool.compute:
            rows = self.panel.run(plan, progress=progress)
        return latency.summary(rows, plan), latency.table(rows), latency.chart(rows)

    # -- accuracy ------------------------------------------------------------------------------------
    def accuracy(self, benchmark: str = "glue") -> tuple[list[list], object, str]:
        """(table rows, chart, notes) for one benchmark, from every source the demo can read."""
        key = _benchmark_key(benchmark)
        with self._evaluated_lock:
            now = list(self.evaluated)
        scores, problems = accuracy.collect(self.settings, now)
        notes = ["Sources: *reported* numbers are the authors' test-server scores (alexa/bort README); *zoo run* "
                 "numbers are dev-set results of runs found locally; *now* numbers come from the button below."]
        notes += [f"⚠ {p}" for p in problems]
        return accuracy.table_rows(scores, key), accuracy.chart(scores, key), "  \n".join(notes)

    def evaluate(self, task: str, examples: int, progress: Optional[Progress] = None) -> str:
        """Run both models on a dev sample; the scores join the accuracy table as "evaluated now"."""
        scores, notes = _evaluate(self.pool, task, int(examples), progress)
        with self._evaluated_lock:
            self.evaluated += scores
        lines = [f"**{s.side}** on {s.board}: " + " / ".join(f"{m} {v:.1f}" for m, v in zip(s.metrics, s.values))
                 + f" ({s.where})" for s in scores]
        return "  \n".join(lines + [f"⚠ {n}" for n in notes]) or "nothing to evaluate"


def _evaluate(pool, task, examples, progress):
    from bortzoo.demo.evaluate import evaluate_now

    return evaluate_now(pool, task, examples, progress=progress)


def _benchmark_key(name: str) -> str:
    for key, label in BENCHMARKS.items():
        if name in (key, label):
            return key
    raise BortzooError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS.values())}")
