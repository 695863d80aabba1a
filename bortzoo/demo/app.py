"""The Gradio page: predictions side by side, live CPU latency, and accuracy with sources.

    bortzoo demo                                        # zoo checkpoints; offline it still serves latency and accuracy
    bortzoo demo --bort sst2=runs/finetune/glue/sst2-bort/hub   # a Bort fine-tune for SST-2 from `bortzoo publish`
    bortzoo demo --config demo.yaml                     # the same options in a YAML file

Binds 127.0.0.1 unless told otherwise; Gradio analytics are off.
"""

from __future__ import annotations

import os
import threading
from typing import Optional, Union

from bortzoo.demo import SIDES
from bortzoo.demo.accuracy import BENCHMARKS
from bortzoo.demo.accuracy import HEADERS as ACCURACY_HEADERS
from bortzoo.demo.handlers import Handlers
from bortzoo.demo.latency import SEQ_CHOICES
from bortzoo.demo.latency import TABLE_HEADERS as LATENCY_HEADERS
from bortzoo.demo.settings import build_settings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

INTRO = """# bortzoo: BERT-large vs Bort
Bort (de Wynter & Perry, [arXiv 2010.10499](https://arxiv.org/abs/2010.10499)) is a 4-layer BERT,
⟨D,A,H,I⟩ = ⟨4,8,1024,768⟩, extracted from BERT-large and distilled from RoBERTa-large. Below: both models
on the same input, both timed live on this CPU, and both scored, with every number's source named."""


def build_app(handlers: Handlers):
    """The page for `handlers` (not launched)."""
    import gradio as gr

    tasks = handlers.tasks
    first_task = tasks[0] if tasks else None
    cpus = os.cpu_count() or 1
    with gr.Blocks(title="bortzoo: BERT-large vs Bort") as page:
        gr.Markdown(INTRO)
        status = gr.Markdown(handlers.status(first_task), elem_id="status")
        timer = gr.Timer(1.0)

        # -- 1. side by side ------------------------------------------------------------------------
        gr.Markdown("## Side by side")
        start = handlers.task_inputs(first_task) if first_task else None
        with gr.Row():
            task = gr.Dropdown(tasks, value=first_task, label="task (tasks with a checkpoint on either side)",
                               elem_id="task", scale=1)
        boxes = []
        for index, elem in enumerate(("first", "second", "options")):
            boxes.append(gr.Textbox(label=start["labels"][index] if start else elem,
                                    value=start["values"][index] if start else "",
                                    visible=start["visible"][index] if start else index == 0,
                                    lines=4 if elem == "options" else 2, max_lines=12, elem_id=f"input-{elem}"))
        predict = gr.Button("Predict with both", variant="primary", elem_id="predict")
        outputs = []
        with gr.Row():
            headings = []
            for index, side in enumerate(SIDES):
                slug = side.lower().replace("-", "")
                with gr.Column():
                    headings.append(gr.Markdown(start["headings"][index] if start else f"### {side}",
                                                elem_id=f"heading-{slug}"))
                    outputs.append(gr.Label(label=f"{side} prediction", num_top_classes=5, elem_id=f"label-{slug}"))
                    outputs.append(gr.Markdown(elem_id=f"note-{slug}"))

        # -- 2. latency ---------------------------------------------------------------------------------
        gr.Markdown("## CPU latency, measured now\nBoth architectures, random weights (latency depends only on "
                    "the shapes), timed interleaved with `bortzoo bench`'s code.")
        with gr.Row():
            batch = gr.Dropdown([1, 2, 4, 8], value=1, label="batch size", elem_id="batch")
            seqs = gr.CheckboxGroup(list(SEQ_CHOICES), value=[32, 64, 128], label="sequence lengths",
                                    elem_id="seqs")
            threads = gr.Slider(1, cpus, value=min(handlers.settings.threads, cpus), step=1, label="threads",
                                elem_id="threads")
        with gr.Row():
            warmup = gr.Slider(0, 5, value=2, step=1, label="warm-up forwards")
            repeats = gr.Slider(1, 30, value=5, step=1, label="timed rounds (median, p90)", elem_id="repeats")
            int8 = gr.Checkbox(False, label="also optimised Bort (bortzoo.optimize picks the engine)")
        run_bench = gr.Button("Run benchmark", elem_id="run-benchmark")
        bench_summary = gr.Markdown(elem_id="latency-summary")
        bench_table = gr.Dataframe(headers=list(LATENCY_HEADERS), interactive=False, elem_id="latency-table")
        bench_plot = gr.Plot(label="latency against sequence length", elem_id="latency-plot")

        # -- 3. accuracy --------------------------------------------------------------------------------
        gr.Markdown("## Accuracy")
        benchmark = gr.Dropdown(list(BENCHMARKS.values()), value="GLUE", label="benchmark", elem_id="benchmark")
        accuracy_notes = gr.Markdown(elem_id="accuracy-notes")
        accuracy_table = gr.Dataframe(headers=list(ACCURACY_HEADERS), interactive=False, wrap=True,
                                      max_height=1200, datatype=["str"] * 7 + ["markdown"],
                                      column_widths=["9%", "9%", "12%", "9%", "9%", "7%", "13%", "32%"],
                                      elem_id="accuracy-table")
        accuracy_plot = gr.Plot(label="BERT-large vs Bort", elem_id="accuracy-plot")
        with gr.Row():
            examples = gr.Slider(10, 2000, value=200, step=10, label="dev examples to sample", elem_id="examples")
            evaluate = gr.Button("Evaluate now (selected task)", elem_id="evaluate")
        evaluation = gr.Markdown(elem_id="evaluation")

        # -- events -------------------------------------------------------------------------------------
        def on_task(name):
            if not name:
                return [gr.update()] * 5 + [None, "", None, ""]
            info = handlers.task_inputs(name)
            updated = [gr.update(label=label, visible=visible, value=value)
                       for label, visible, value in zip(info["labels"], info["visible"], info["values"])]
            return updated + list(info["headings"]) + [None, "", None, ""]

        def on_predict(name, first, second, options):
            if not name:
                return [None, "no task has a checkpoint"] * 2
            return handlers.predict(name, first, second, options)

        def on_benchmark(batch_size, seq_lengths, n_threads, n_warmup, n_repeats, with_int8,
                         progress=gr.Progress(track_tqdm=True)):
            try:
                return handlers.benchmark(batch_size, seq_lengths, n_threads, n_warmup, n_repeats, with_int8,
                                          progress=True)
            except Exception as err:  # bad settings: say so in the panel
                return f"⚠ {err}", None, None

        def on_accuracy(name):
            return handlers.accuracy(name)

        def on_evaluate(name, count, progress=gr.Progress()):
            if not name:
                return "no task has a checkpoint"
            return handlers.evaluate(name, count, progress=lambda fraction, text: progress(fraction, desc=text))

        task.change(on_task, task, [*boxes, *headings, *outputs], api_name="task_inputs")
        predict_event = dict(fn=on_predict, inputs=[task, *boxes], outputs=outputs)  # the queue's default limit (--concurrency)
        predict.click(api_name="predict", **predict_event)
        boxes[0].submit(api_name=False, **predict_event)
        run_bench.click(on_benchmark, [batch, seqs, threads, warmup, repeats, int8],
                        [bench_summary, bench_table, bench_plot], api_name="benchmark", concurrency_limit=1,
                        concurrency_id="cpu-heavy")
        benchmark.change(on_accuracy, benchmark, [accuracy_table, accuracy_plot, accuracy_notes],
                         api_name="accuracy")
        evaluate.click(on_evaluate, [task, examples], evaluation, api_name="evaluate", concurrency_limit=1,
                       concurrency_id="cpu-heavy").then(on_accuracy, benchmark,
                                                       [accuracy_table, accuracy_plot, accuracy_notes], api_name=False)
        timer.tick(handlers.status, task, status, api_name=False, show_progress="hidden")
        page.load(on_accuracy, benchmark, [accuracy_table, accuracy_plot, accuracy_notes], api_name=False)
    return page


def theme():
    """Gradio's default look with the machine's own fonts: the default theme fetches Google Fonts, which an
    offline machine cannot reach."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch(handlers: Handlers, host: str = "127.0.0.1", port: Optional[int] = 7860, concurrency: int = 4,
           block: bool = True, quiet: bool = False):
    """Build and serve the page; with `block=False` return (page, url) with the server running in a thread."""
    page = build_app(handlers)
    page.queue(default_concurrency_limit=concurrency, max_size=64)
    handlers.start()
    threading.Thread(target=handlers.prepare_latency, name="bortzoo-demo-latency-models", daemon=True).start()
    _, url, _ = page.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet,
                            theme=theme(), footer_links=[], show_error=True)
    return page, url


Assignments = Union[dict[str, str], list[str], str, None]


def demo(bert_large: Assignments = None, bort: Assignments = None, data: Assignments = None,
         results: Optional[dict[str, list[str]]] = None, zoo: bool = True, threads: Optional[int] = None,
         max_length: int = 128, keep_tasks: int = 2, host: str = "127.0.0.1", port: int = 7860,
         concurrency: int = 4, latency_archs: Optional[dict[str, str]] = None, optimized_bort: bool = False) -> None:
    """Serve the demo: BERT-large and Bort side by side (predictions, live CPU latency, accuracy).

    Works offline: with no checkpoint downloaded, latency is measured on random weights of the real
    architectures, accuracy shows the authors' numbers and any local results, and each prediction box
    says what to fetch.

    Args:
        bert_large: BERT-large checkpoints per task, TASK=REF (zoo name, Hub id or folder), e.g.
            --bert_large rte=runs/finetune/glue/rte-bert-large/hub; they replace the zoo's.
        bort: Bort checkpoints per task, TASK=REF, e.g. --bort sst2=runs/finetune/glue/sst2-bort/hub.
        data: Local copies of task datasets for "evaluate now", TASK=FOLDER (laid out like the Hub dataset).
        results: Extra dev results to show, per side: {Bort: [runs/finetune/glue/sst2-bort/results.json],
            BERT-large: [...]}.
        zoo: Offer the zoo registry's task checkpoints (false: only the ones given here).
        threads: Torch threads for predictions (default: all CPUs).
        max_length: Tokens per input; longer input is truncated and the page says by how much.
        keep_tasks: Tasks whose two models stay loaded (BERT-large takes 1.3 GB per task).
        host: Address to bind; 127.0.0.1 keeps the demo on this machine.
        port: Port to serve on (0 or null: a free one).
        concurrency: Requests served at once per event (the queue holds the rest; model compute is one at a time).
        latency_archs: Architectures timed in the latency panel per side (default: the bert-large and bort presets).
        optimized_bort: Serve Bort's predictions through `bortzoo.optimize(engine="auto")`, the fastest engine that
            holds its check on this CPU (built once per checkpoint, then cached); Bort's box names the engine.
    """
    settings = build_settings(bert_large=bert_large, bort=bort, data=data, results=results, zoo=zoo,
                              threads=threads, max_length=max_length, keep_tasks=keep_tasks,
                              latency_archs=latency_archs, optimized_bort=optimized_bort)
    launch(Handlers(settings), host=host, port=port or None, concurrency=concurrency, block=True)
