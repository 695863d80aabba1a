"""The demo: BERT-large and Bort side by side, on predictions, live CPU latency and accuracy.

The handlers live in small modules that know nothing of Gradio (`settings`, `models`, `predict`,
`latency`, `accuracy`, `evaluate`), so they are tested directly; `bortzoo.demo.app` only lays them out
in a Gradio page. Start it with `bortzoo demo` (or `python demo/app.py`).
"""

SIDES = ("BERT-large", "Bort")
