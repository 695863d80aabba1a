"""The demo served for real: on a free port of 127.0.0.1, driven through its API with gradio_client, and the
`bortzoo demo` command started offline with nothing downloaded."""

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from demo_support import demo_settings, free_port, running_demo

from bortzoo.demo.handlers import Handlers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(demo_folders):
    handlers = Handlers(demo_settings(demo_folders, threads=1, max_length=32))
    with running_demo(handlers, concurrency=2) as url:
        from gradio_client import Client

        assert handlers.pool.wait("sst2", timeout=120)
        yield handlers, Client(url, verbose=False), url


def test_binds_loopback_and_lists_the_api(served):
    _, client, url = served
    assert url.startswith("http://127.0.0.1:")
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/predict", "/benchmark", "/accuracy", "/evaluate", "/task_inputs"} <= endpoints


def test_predict_through_the_api(served):
    _, client, _ = served
    bl, bl_note, bort, bort_note = client.predict("sst2", "a gripping film", "", "", api_name="/predict")
    assert {c["label"] for c in bl["confidences"]} == {"negative", "positive"}
    assert bort["label"] in ("negative", "positive")
    assert re.search(r"forward \*\*[\d.]+ ms\*\*", bl_note) and re.search(r"forward \*\*[\d.]+ ms\*\*", bort_note)


def test_task_change_reshapes_the_inputs(served):
    _, client, _ = served
    first, second, options, heading_bl, heading_bort, *_ = client.predict("race-all", api_name="/task_inputs")
    assert "umbrella" in options["value"] and "Tom" in first["value"]  # updates: label, visibility and value
    assert options["visible"] and options["label"].startswith("options") and second["label"] == "question"
    assert "tiny-random-bert-large-race-all" in heading_bl and "tiny-random-bort-race-all" in heading_bort


def test_many_requests_at_once_are_queued_and_all_answered(served, monkeypatch):
    handlers, client, _ = served
    running, most, lock = [0], [0], threading.Lock()
    original = handlers.predict

    def counting(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)  # long enough for the queue to have to hold requests back
        try:
            return original(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(handlers, "predict", counting)
    jobs = [client.submit("sst2", f"request number {i}", "", "", api_name="/predict") for i in range(12)]
    results = [job.result(timeout=120) for job in jobs]
    assert all(r[0]["label"] in ("negative", "positive") and r[2]["label"] in ("negative", "positive")
               for r in results)
    assert all("ms" in r[1] and "ms" in r[3] for r in results)
    assert most[0] == 2  # the queue's concurrency limit (running_demo(..., concurrency=2)), never more


def test_benchmark_accuracy_and_evaluate_through_the_api(served):
    _, client, _ = served
    summary, table, plot = client.predict(1, [16, 32], 1, 1, 3, False, api_name="/benchmark")
    assert "random weights" in summary and "seq 32: **" in summary
    assert [row[0] for row in table["data"]] == ["BERT-large", "Bort", "BERT-large", "Bort"]
    assert plot["type"] == "matplotlib"
    message = client.predict("rte", 30, api_name="/evaluate")
    assert "**BERT-large** on RTE" in message and "**Bort** on RTE" in message
    table, plot, notes = client.predict("GLUE", api_name="/accuracy")
    rows = table["data"]
    assert any(r[1] == "QQP" and r[6].startswith("LOSS") for r in rows)
    assert any(r[1] == "RTE" and r[7].startswith("evaluated now") for r in rows)


def test_bad_benchmark_settings_are_shown_in_the_panel(served):
    _, client, _ = served
    summary, _, _ = client.predict(1, [], 1, 1, 3, False, api_name="/benchmark")
    assert summary == "⚠ choose at least one sequence length"


def test_bortzoo_demo_starts_offline_with_nothing_downloaded(tmp_path):
    """The README's first command: no checkpoint anywhere, no network; the page serves and explains."""
    port, log = free_port(), tmp_path / "demo.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "demo/app.py", "--port", str(port), "--threads", "1"],
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the demo did not answer within 120 s")
        from gradio_client import Client

        client = Client(url, verbose=False)
        bl, bl_note, bort, bort_note = client.predict("cola", "The book was written.", "", "", api_name="/predict")
        assert not bl and "not in the local Hugging Face cache" in bl_note
        assert "fetch it with `hf download yoshitomo-matsubara/bert-large-uncased-cola` while online" in bl_note
        assert not bort and "recipes/finetune/glue/cola-bort.yaml" in bort_note
        table, _, _ = client.predict("SuperGLUE", api_name="/accuracy")
        assert any(r[1] == "ReCoRD" and r[6].startswith("LOSS") for r in table["data"])
    finally:
        process.terminate()
        process.wait(30)
