"""The accuracy panel: BERT-large against Bort per leaderboard column, every number labelled by its source.

Three sources, never mixed in one cell:
- **reported by the authors**: the alexa/bort README's test-server scores (`bortzoo.tasks.reported`);
- **measured by a zoo run**: a run's `results.json` (dev, best epoch), or the model-index of a published
  model card found locally (a folder, or the Hugging Face cache: nothing is downloaded for this);
- **evaluated now**: the demo's "evaluate now" on a sample of the dev split.
Bort's losses are rows like any other, with the verdict spelled out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from bortzoo.demo import SIDES
from bortzoo.errors import BortzooError
from bortzoo.files import RESULTS_FILE
from bortzoo.tasks import reported as published

REPORTED = "reported by the authors (test server)"
ZOO_RUN = "measured by a zoo run (dev)"
NOW = "evaluated now (dev sample)"
KIND_ORDER = (REPORTED, ZOO_RUN, NOW)
BENCHMARKS = {"glue": "GLUE", "superglue": "SuperGLUE", "race": "RACE"}
HEADERS = ("benchmark", "task", "metrics", "BERT-large", "Bort", "Bort − BERT-large", "verdict", "source")
TIE = 0.05  # points: closer than this is reported as a tie


@dataclass(frozen=True)
class Score:
    """One side's numbers on one leaderboard column, as percentages, with where they come from."""

    benchmark: str
    board: str
    side: str
    metrics: tuple[str, ...]
    values: tuple[float, ...]
    kind: str  # REPORTED, ZOO_RUN or NOW
    where: str  # the file, card or sample the numbers come from

    @property
    def score(self) -> float:
        """The column's score: the mean of its metrics (how leaderboards rank a column)."""
        return sum(self.values) / len(self.values)


def reported_scores() -> list[Score]:
    """The authors' published numbers for both models, and the overall GLUE / SuperGLUE scores."""
    out = []
    for benchmark, table in published.TABLES.items():
        for side in SIDES:
            for board, values in table[side].items():
                out.append(Score(benchmark, board, side, published.metric_names(benchmark, board), tuple(values),
                                 REPORTED, published.SOURCE))
            score = published.SCORES[benchmark][side]
            out.append(Score(benchmark, f"{BENCHMARKS[benchmark]} score", side, ("score",), (score,), REPORTED,
                             published.SOURCE))
    return out


# -- measured numbers found locally ----------------------------------------------------------------
def results_scores(path: "str | Path", side: str) -> list[Score]:
    """The dev numbers (best epoch) of a fine-tune's `results.json` (a file, or a folder holding one); for an
    Agora run, the held-out part's (its best epoch was scored on the Agora dev part, which fed training)."""
    from bortzoo.tasks import get_task

    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        return []
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        spec = get_task(data["task"])
        splits = data["best"]["splits"]
        agora = data.get("agora")
        if agora:
            splits = {next(iter(splits), spec.validation[0].board): agora["held_out"]["metrics"]}
    except (OSError, ValueError, KeyError, TypeError, BortzooError) as err:
        raise BortzooError(f"{file}: not a bortzoo results.json ({type(err).__name__}: {err})") from None
    out = []
    for board, metrics in splits.items():
        names = tuple(metrics)
        out.append(Score(spec.benchmark, board, side, names, tuple(100 * float(metrics[n]) for n in names),
                         ZOO_RUN, str(file)))
    return out


def card_scores(readme: "str | Path", side: str) -> list[Score]:
    """Dev numbers from a model card's model-index (bortzoo's cards: dataset "GLUE RTE", fractions)."""
    from huggingface_hub import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from bortzoo.publish.cards import HUB_METRICS

    try:
        metadata = metadata_load(readme) or {}
        _, results = model_index_to_eval_results(metadata["model-index"])
    except (KeyError, TypeError, ValueError, OSError):
        return []  # a card without (valid) model-index has no numbers to show
    names = {hub: ours for ours, hub in HUB_METRICS.items()}
    columns: dict[tuple[str, str], dict[str, float]] = {}
    for result in results:
        parts = str(result.dataset_name or "").split(" ", 1)
        benchmark = parts[0].lower()
        if len(parts) != 2 or benchmark not in BENCHMARKS or result.metric_type not in names:
            continue
        value = float(result.metric_value)
        metrics = columns.setdefault((benchmark, parts[1]), {})
        metrics.setdefault(names[result.metric_type], 100 * value if value <= 1.0 else value)  # first = best epoch
    return [Score(benchmark, board, side, tuple(m), tuple(m.values()), ZOO_RUN, f"model card {readme}")
            for (benchmark, board), m in columns.items()]


def local_scores(ref: str, side: str) -> list[Score]:
    """What a checkpoint reference already says about itself, without any download: a folder's
    `results.json` (or card), or the card of a Hub repo that is in the local cache."""
    path = Path(ref).expanduser()
    if path.is_dir():
        found = results_scores(path, side)
        return found or (card_scores(path / "README.md", side) if (path / "README.md").is_file() else [])
    from bortzoo.zoo import model_ref

    repo = model_ref(ref).source
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "README.md")
    except Exception:  # not a valid repo id, no cache: nothing known locally
        return []
    return card_scores(cached, side) if isinstance(cached, str) and os.path.isfile(cached) else []


def collect(settings, now: Iterable[Score] = ()) -> tuple[list[Score], list[str]]:
    """Every score the demo can show, and one line per source that could not be read (shown, not hidden)."""
    scores, problems = reported_scores(), []
    for side in SIDES:
        refs = list(settings.checkpoints.get(side, {}).values())
        for ref in refs:
            try:
                scores += local_scores(ref, side)
            except BortzooError as err:
                problems.append(f"{side}: {err}")
        for path in settings.results.get(side, ()):
            try:
                scores += results_scores(path, side)
            except BortzooError as err:
                problems.append(f"{side}: {err}")
    scores += list(now)
    return _dedupe(scores), problems


def _dedupe(scores: Sequence[Score]) -> list[Score]:
    """One score per (benchmark, column, side, kind): the latest given wins (a fresh evaluation replaces the last)."""
    keyed = {}
    for score in scores:
        keyed[(score.benchmark, score.board, score.side, score.kind)] = score
    return list(keyed.values())


# -- the table and the chart ---------------------------------------------------------------------------
def paired(scores: Sequence[Score], benchmark: Optional[str] = None) -> list[dict]:
    """Rows of BERT-large and Bort on the same column and source kind, in the published column order."""
    order = {}
    for table_name, table in published.TABLES.items():
        for index, board in enumerate([*table["Bort"], f"{BENCHMARKS[table_name]} score"]):
            order[(table_name, board)] = index
    rows: dict[tuple[str, str, str], dict] = {}
    for score in scores:
        if benchmark is not None and score.benchmark != benchmark:
            continue
        row = rows.setdefault((score.benchmark, score.board, score.kind),
                              {"benchmark": score.benchmark, "board": score.board, "kind": score.kind})
        row[score.side] = score
    return sorted(rows.values(), key=lambda r: (list(BENCHMARKS).index(r["benchmark"]),
                                                 KIND_ORDER.index(r["kind"]),
                                                 order.get((r["benchmark"], r["board"]), 99), r["board"]))


def verdict(row: dict) -> tuple[Optional[float], str]:
    """Bort's score minus BERT-large's, and the verdict in words; a loss is called a loss."""
    if "Bort" not in row or "BERT-large" not in row:
        return None, "—"
    delta = row["Bort"].score - row["BERT-large"].score
    if abs(delta) < TIE:
        return delta, "tie"
    return delta, "Bort better" if delta > 0 else "LOSS: BERT-large better"


def _cell(score: Optional[Score]) -> str:
    return " / ".join(f"{v:.1f}" for v in score.values) if score else "—"


def table_rows(scores: Sequence[Score], benchmark: Optional[str] = None) -> list[list[str]]:
    """The accuracy table as text cells (HEADERS)."""
    out = []
    for row in paired(scores, benchmark):
        delta, words = verdict(row)
        sides = [row[s] for s in SIDES if s in row]
        metrics = " / ".join(sides[0].metrics)
        wheres = sorted({s.where for s in sides})
        source = row["kind"] + ("" if row["kind"] == REPORTED else ": " + "; ".join(wheres))
        out.append([BENCHMARKS[row["benchmark"]], row["board"], metrics, _cell(row.get("BERT-large")),
                    _cell(row.get("Bort")), "—" if delta is None else f"{delta:+.1f}", words, source])
    return out


def chart(scores: Sequence[Score], benchmark: str):
    """Grouped bars of BERT-large and Bort per column (the mean of its metrics), losses marked in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in paired(scores, benchmark) if not r["board"].endswith(" score")]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.75 * len(rows) + 2), 3.8), dpi=100)
    if not rows:
        axes.text(0.5, 0.5, f"no {BENCHMARKS.get(benchmark, benchmark)} numbers yet", ha="center", va="center")
        axes.set_axis_off()
        plt.close(figure)
        return figure
    colors = {"BERT-large": "#d62728", "Bort": "#1f77b4"}
    width = 0.38
    for offset, side in ((-width / 2, "BERT-large"), (width / 2, "Bort")):
        xs = [i + offset for i, r in enumerate(rows) if side in r]
        ys = [r[side].score for r in rows if side in r]
        axes.bar(xs, ys, width, label=side, color=colors[side])
    for i, row in enumerate(rows):
        delta, words = verdict(row)
        if delta is not None and words.startswith("LOSS"):
            top = max(row["Bort"].score, row["BERT-large"].score)
            axes.annotate(f"loss {delta:+.1f}", (i, top), ha="center", va="bottom", color="#b00000", fontsize=8,
                          fontweight="bold")
    labels = [r["board"] + ("" if r["kind"] == REPORTED else "\n(dev, " + ("zoo" if r["kind"] == ZOO_RUN else "now")
                            + ")") for r in rows]
    axes.set_xticks(range(len(rows)), labels, rotation=0, fontsize=8)
    axes.set_ylabel("score (mean of the column's metrics)")
    axes.set_title(f"{BENCHMARKS[benchmark]}: BERT-large vs Bort (bars without a note: authors' test-server numbers)",
                   fontsize=9)
    axes.set_ylim(0, 115)  # the legend sits in the band above 100, over no bar
    axes.set_yticks(range(0, 101, 20))
    axes.legend(loc="upper right", ncol=2, fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    plt.close(figure)
    return figure
