"""The card of an Agora run: the held-out numbers first in the model-index (the ones the demo shows), the Agora
dev ones labelled optimistic, and an Agora section with both parts' scores; runs without Agora are unchanged."""

import copy
import json
from pathlib import Path

import pytest

from bortzoo.publish.build import build_folder
from bortzoo.publish.run_folder import read_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def agora_run(agora_tiny_run) -> Path:
    """The tiny RTE Agora run (conftest: one per session)."""
    return agora_tiny_run["out"]


@pytest.fixture(scope="module")
def report(agora_run) -> dict:
    return json.loads((agora_run / "agora.json").read_text())


@pytest.fixture(scope="module")
def published(agora_run, tmp_path_factory) -> Path:
    return build_folder(read_run(agora_run), tmp_path_factory.mktemp("hub") / "rte-agora", repo_id="tester/rte-agora")


def card_of(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


def test_model_index_lists_the_held_out_results_first_then_agora_dev_labelled_optimistic(published, report):
    results = card_of(published).data.eval_results
    held, dev = report["final"]["held_out"], report["final"]["agora_dev"]
    total = held["rows"] + dev["rows"]
    assert len(results) == len(held["metrics"]) + len(dev["metrics"])  # no plain "dev, best epoch" entry
    first, rest = results[:len(held["metrics"])], results[len(held["metrics"]):]
    for result, (name, value) in zip(first, held["metrics"].items()):
        assert result.metric_value == pytest.approx(value, abs=1e-6)
        assert result.metric_name.startswith(f"{name} (held-out {held['rows']} of {total} dev rows, after Agora")
    for result, (name, value) in zip(rest, dev["metrics"].items()):
        assert result.metric_value == pytest.approx(value, abs=1e-6)
        assert result.metric_name.startswith(f"{name} (Agora dev part, {dev['rows']} of {total} dev rows")
        assert "optimistic" in result.metric_name
    for result in results:
        assert "best epoch" not in result.metric_name
        assert (result.task_type, result.dataset_name, result.dataset_config, result.dataset_split,
                result.metric_type) == ("text-classification", "GLUE RTE", "rte", "validation", "accuracy")


def test_the_card_has_an_agora_section_with_both_parts_of_the_final_and_weak_models(published, report):
    text = card_of(published).text
    section = text[text.index("### Agora"):text.index("### Best epoch, on the Agora dev part")]
    held, dev = report["final"]["held_out"], report["final"]["agora_dev"]
    weak = report["weak_model"]
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    assert (f"| this model | accuracy | {pct(held['metrics']['accuracy'])} | {pct(dev['metrics']['accuracy'])} |"
            in section)
    assert (f"| weak model | accuracy | {pct(weak['held_out']['metrics']['accuracy'])} | "
            f"{pct(weak['agora_dev']['metrics']['accuracy'])} |" in section)
    assert f"held-out, {held['rows']} rows" in section
    assert f"Agora dev, {dev['rows']} rows (×100, optimistic)" in section
    assert f"- iterations: {len(report['iterations'])}" in section
    added = sum(len(item["added"]) for item in report["iterations"])
    assert f"- examples added to the training data: {added}" in section
    best = report["best"]
    values = ", ".join(f"{k}: {v}" for k, v in best["values"].items())
    assert f"- winning set: `{best['set']}` of iteration {best['iteration']} ({values})" in section
    assert "The held-out numbers are the honest ones" in section and "`agora.json`" in section
    # the best-epoch table that follows is the Agora dev part's, and says so
    assert "| split | metric | Agora dev part (×100, optimistic) |" in text
    assert "Dev set, best epoch" not in text
    assert text.index("### Agora") < text.index("### Best epoch") < text.index("### Reported by the authors")


def test_the_demo_reads_the_held_out_number_from_the_card(published, report, agora_run, tmp_path):
    from bortzoo.demo import accuracy
    from bortzoo.publish.cards import render

    [score] = accuracy.card_scores(published / "README.md", "Bort")
    assert (score.benchmark, score.board, score.metrics) == ("glue", "RTE", ("accuracy",))
    assert score.values == pytest.approx((100 * report["final"]["held_out"]["metrics"]["accuracy"],))
    # held-out and Agora dev apart, so the check cannot pass by the two being equal; a folder holding only the
    # card is what the demo finds in the Hugging Face cache
    run = read_run(agora_run)
    run.results = copy.deepcopy(run.results)
    run.results["agora"]["held_out"]["metrics"]["accuracy"] = 0.625
    run.results["agora"]["agora_dev"]["metrics"]["accuracy"] = 0.875
    run.results["best"]["splits"]["RTE"]["accuracy"] = 0.875
    card = tmp_path / "card"
    card.mkdir()
    (card / "README.md").write_text(str(render(run, "rte-agora", repo_id="tester/rte-agora")) + "\n")
    [score] = accuracy.local_scores(str(card), "Bort")
    assert score.values == pytest.approx((62.5,)) and score.kind == accuracy.ZOO_RUN


def test_a_run_without_agora_keeps_the_plain_card(agora_run, tmp_path):
    from bortzoo.publish.cards import render, task_eval_results

    run = read_run(agora_run)
    run.results = {k: v for k, v in run.results.items() if k != "agora"}
    best = run.results["best"]
    [result] = task_eval_results(run)
    assert result.metric_name == f"accuracy (dev, best epoch {best['epoch'] + 1}, seed {run.results['seed']})"
    assert result.metric_value == pytest.approx(best["splits"]["RTE"]["accuracy"], abs=1e-6)
    text = str(render(run, "plain", repo_id="tester/plain"))
    assert "Agora" not in text.split("## Results (this run)")[1].split("## Architecture")[0]
    assert (f"## Results (this run)\n\nDev set, best epoch ({best['epoch'] + 1} of {run.results['epochs']}, chosen "
            f"on this same dev set), seed {run.results['seed']}:\n\n| split | metric | dev (×100) |") in text


def test_the_demo_reads_the_held_out_number_from_a_local_results_file(published, tmp_path):
    """A published folder (or the run folder) holds results.json, which the demo reads before the card."""
    from bortzoo.demo import accuracy

    results = json.loads((published / "results.json").read_text())
    assert (published / "agora.json").is_file() and (published / "agora.png").is_file()
    results["agora"]["held_out"]["metrics"]["accuracy"] = 0.625
    results["best"]["splits"]["RTE"]["accuracy"] = 0.875  # the best epoch, scored on the Agora dev part
    (tmp_path / "results.json").write_text(json.dumps(results))
    [score] = accuracy.results_scores(tmp_path, "Bort")
    assert score.board == "RTE" and score.values == pytest.approx((62.5,))
