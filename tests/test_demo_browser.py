"""The demo page in a real browser (Debian's chromium driven by Playwright), the way a visitor uses it.

Predictions come from tiny random task models (`tiny-random-*`); the latency panel times the real
BERT-large and Bort architectures (random weights: latency depends only on the shapes). The test types its
own sentence, predicts with both models, runs the latency benchmark, evaluates the task now, and ends with a
full-page screenshot in tests/artifacts/demo.png showing all of it (tests/artifacts/demo-failure.png when a
step fails). Chromium is the system's (`.ci/run` installs it): Playwright's own download needs the internet.
"""

import os
import re
import struct
from pathlib import Path

import pytest
from demo_support import demo_settings, running_demo

from bortzoo.demo.handlers import Handlers
from bortzoo.demo.latency import angled

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
REAL_ARCHS = {"BERT-large": "bert-large", "Bort": "bort"}
SIDES = {"BERT-large": "bertlarge", "Bort": "bort"}  # side → elem_id slug
TASK = "sst2"
TEXT = "A gripping, beautifully acted film."
SEQS = (32, 64, 128)
MIN_SPEEDUP = 3.0  # Bort over BERT-large; the FLOP ratio is ~13×, timing noise on a busy CPU is not that large
NOTE = re.compile(r"forward ([\d.]+) ms \(tokenise ([\d.]+) ms\), (\d+) tokens, (\d+) threads?")
SPEEDUP = re.compile(r"seq (\d+): ([\d.]+)×")


def browser_api():
    """Playwright's sync API and the system chromium; missing either fails the test (a skip would hide it)."""
    if not os.path.isfile(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the browser test drives Debian's chromium. `.ci/run` installs it "
                    f"(apt-get install --no-install-recommends chromium); Playwright's own browser download is "
                    f"not used.", pytrace=False)
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as err:
        pytest.fail(f"playwright is not installed ({err}): pip install -e '.[dev]'", pytrace=False)
    return sync_playwright, expect


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
def test_demo_in_a_browser_predicts_times_and_scores_both_models(demo_folders):
    sync_playwright, expect = browser_api()
    ARTIFACTS.mkdir(exist_ok=True)
    shot, failure_shot = ARTIFACTS / "demo.png", ARTIFACTS / "demo-failure.png"
    for old in (shot, failure_shot):
        old.unlink(missing_ok=True)
    threads = min(2, os.cpu_count() or 1)
    handlers = Handlers(demo_settings(demo_folders, latency_archs=REAL_ARCHS, threads=threads))
    errors: list[str] = []

    with running_demo(handlers) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda err: errors.append(str(err)))
            try:
                page.goto(url)
                # -- both task models load in the background; the status line says when they are ready
                for side in SIDES:
                    expect(page.locator("#status")).to_contain_text(re.compile(rf"{side} · {TASK}: ready"),
                                                                    timeout=120_000)
                expect(page.locator("#task input")).to_have_value(TASK)

                # -- side by side: our own sentence, both predictions and both latency notes
                box = page.locator("#input-first textarea")
                box.fill(TEXT)
                expect(box).to_have_value(TEXT)
                page.locator("#predict").click()
                shown = {}
                for side, slug in SIDES.items():
                    note = page.locator(f"#note-{slug}")
                    expect(note).to_contain_text(NOTE, timeout=60_000)
                    forward_ms, tokenise_ms, tokens, used_threads = NOTE.search(note.inner_text()).groups()
                    assert float(forward_ms) > 0 and float(tokenise_ms) >= 0, note.inner_text()
                    assert int(used_threads) == threads
                    label = page.locator(f"#label-{slug}")
                    top = label.get_by_test_id("label-output-value")
                    expect(top).to_be_visible()
                    classes = {label.locator("dt").nth(i).inner_text().strip():
                               float(label.locator("dd").nth(i).inner_text().strip().rstrip("%"))
                               for i in range(label.locator("dt").count())}
                    shown[side] = (top.inner_text().strip(), classes, int(tokens))
                # the page shows what the models say about *our* sentence (its token count, its classes)
                direct = handlers.predict(TASK, TEXT)
                for index, side in enumerate(SIDES):
                    top, classes, tokens = shown[side]
                    probabilities, note = direct[2 * index], direct[2 * index + 1]
                    assert set(classes) == set(probabilities) == {"negative", "positive"}, (side, classes)
                    assert top == max(probabilities, key=probabilities.get), (side, top, probabilities)
                    for name, percent in classes.items():
                        assert abs(percent - 100 * probabilities[name]) <= 1.0, (side, name, percent, probabilities)
                    assert f", {tokens} tokens," in note, (side, tokens, note)

                # -- latency: the real architectures at seq 32/64/128, three timed rounds
                for seq in (16, 32, 64, 128, 256, 512):
                    expect(page.locator(f"#seqs input[name='{seq}']")).to_be_checked(checked=seq in SEQS)
                rounds = page.locator("#repeats input[type=number]")
                rounds.fill("3")
                rounds.press("Enter")
                expect(page.locator("#repeats input[type=range]")).to_have_value("3")
                page.locator("#run-benchmark").click()
                summary = page.locator("#latency-summary")
                expect(summary).to_contain_text("Bort is faster than BERT-large by", timeout=180_000)
                expect(summary).to_contain_text("3 interleaved rounds")
                text = summary.inner_text()
                print(text)  # the measured speed-ups, shown when the test fails (or with -s)
                speedups = {int(seq): float(ratio) for seq, ratio in SPEEDUP.findall(text)}
                assert set(speedups) == set(SEQS), text
                assert all(ratio > MIN_SPEEDUP for ratio in speedups.values()), text
                table = page.locator("#latency-table")
                for arch in handlers.settings.latency_archs.values():
                    expect(table).to_contain_text(angled(arch.short()))  # the real shapes were timed
                expect(page.locator("#latency-plot img")).to_be_visible()

                # -- accuracy: Bort's known loss on QQP is shown plainly
                qqp = page.locator("#accuracy-table [role=row]", has_text="QQP")
                expect(qqp).to_have_count(1)
                expect(qqp).to_contain_text("LOSS")

                # -- evaluate now (default sample size; the fixtures have 96 dev rows): a new table row
                page.locator("#evaluate").click()
                evaluation = page.locator("#evaluation")
                for side in SIDES:
                    expect(evaluation).to_contain_text(re.compile(rf"{side} on SST-2: accuracy [\d.]+"),
                                                       timeout=120_000)
                now = page.locator("#accuracy-table [role=row]", has_text="evaluated now")
                expect(now).to_have_count(1, timeout=30_000)
                expect(now).to_contain_text("SST-2")
                expect(page.locator("#accuracy-plot img")).to_be_visible()

                page.screenshot(path=str(shot), full_page=True)
            except Exception:
                try:  # what the page looked like when the step failed
                    page.screenshot(path=str(failure_shot), full_page=True)
                except Exception as err:
                    print(f"no failure screenshot: {err}")
                raise
        finally:
            browser.close()

    width, height = png_size(shot)
    assert width == 1280 and height > 1500, (width, height)  # the whole page, not one viewport
    assert shot.stat().st_size > 100_000, shot.stat().st_size
    assert not errors, f"uncaught errors in the page: {errors}"
