"""Merge a search's per-candidate files into its outputs: candidates.csv, report.md, pareto.png, best.yaml.

Untrained members of an ε-partition take their representative's error. The ranking is by the
score chosen in the recipe (the W-coefficient by default); the full Pareto front of
(parameters, inference cost, error) is always reported beside it, since the score is our choice.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from bortzoo.arch import Arch
from bortzoo.errors import BortzooError
from bortzoo.extract.records import candidate_key, read_checked
from bortzoo.extract.scoring import (
    Measures,
    describe_score,
    pareto_front,
    rank,
    score_function,
)
from bortzoo.files import atomic_path, write_text

BORT_SHAPE = (4, 8, 1024, 768)


def load_plan(run: Path) -> dict:
    """The search plan every shard wrote; shards that ran with different settings cannot be merged."""
    plans = sorted(run.glob("search-*-of-*.json"))
    if not plans:
        raise BortzooError(f"{run} holds no search (no search-k-of-N.json): run `bortzoo extract --config ...` first")
    bodies = []
    for path in plans:
        raw = json.loads(path.read_text())
        body = read_checked(path, raw.get("settings"))
        if body is None:
            raise BortzooError(f"search plan {path} is corrupt: run that shard again")
        bodies.append(body)
    first = bodies[0]
    for path, body in zip(plans[1:], bodies[1:]):
        for key in ("settings", "space", "groups", "score", "weights", "use_latency", "latency_settings"):
            if body[key] != first[key]:
                raise BortzooError(f"{path.name} and {plans[0].name} ran with different '{key}': shards of one "
                                   "search must share one recipe")
    return first


def gather(run: Path, plan: dict) -> tuple[list[Arch], list[Measures], list[dict]]:
    """Every candidate's measures; representatives' errors shared with their partition."""
    archs = [Arch(**a) for a in plan["space"]]
    seq_len = int(plan["result_settings"]["data"].get("seq_len", 512))
    missing, error_of, rows = [], {}, []
    for group in plan["groups"]:
        rep = archs[group[0]]
        result = read_checked(run / "results" / f"{candidate_key(rep)}.json", plan["settings"])
        if result is None:
            missing.append(rep.short())
            continue
        for member in group:
            error_of[member] = (result["error"], group[0])
    latency_of = {}
    if plan["latency"]["enabled"]:
        for index, arch in enumerate(archs):
            result = read_checked(run / "latency" / f"{candidate_key(arch)}.json", plan["latency_settings"])
            if result is None:
                missing.append(f"{arch.short()} (latency)")
            else:
                latency_of[index] = result["latency_ms"]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise BortzooError(f"{len(missing)} result(s) missing in {run}: {shown}. Finish (or resume) every shard first")
    measures = []
    for index, arch in enumerate(archs):
        error, rep = error_of[index]
        measures.append(Measures(arch.total_params(), arch.encoder_flops(seq_len), latency_of.get(index), error))
        rows.append({"representative": candidate_key(archs[rep]), "trained": rep == index})
    return archs, measures, rows


def report(out: str, top: int = 10) -> dict[str, Any]:
    """Merge the search in `out` (all shards) and write its report files.

    Args:
        out: The search's run folder.
        top: Rows of the top-k table in report.md.
    """
    run = Path(out)
    plan = load_plan(run)
    archs, measures, rows = gather(run, plan)
    use_latency, weights = plan["use_latency"], plan["weights"]
    reference = measures[plan["maximum_point"]]
    score = score_function(plan["score"])
    scores = [score(m, reference, weights, use_latency) for m in measures]
    front = pareto_front([(m.params, m.cost(use_latency), m.error) for m in measures])
    order = rank(scores, [(m.params, m.flops) for m in measures])
    position = {index: place + 1 for place, index in enumerate(order)}

    table = []
    for index in order:
        arch, m = archs[index], measures[index]
        table.append({"rank": position[index], "D": arch.depth, "A": arch.heads, "H": arch.hidden,
                      "I": arch.intermediate, "params": m.params, "flops": m.flops,
                      "latency_ms": "" if m.latency_ms is None else round(m.latency_ms, 3),
                      "error": round(m.error, 5), "score": round(scores[index], 6), "pareto": front[index],
                      "trained": rows[index]["trained"], "representative": rows[index]["representative"]})
    with atomic_path(run / "candidates.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)

    best = archs[order[0]]
    write_text(run / "best.yaml",
        f"# The search's winner by {plan['score']} ({describe_score(weights, use_latency, archs[plan['maximum_point']].short())}).\n"
        "# Feed it to the pretraining recipe: model.init_args.arch\n"
        + "".join(f"{key}: {value}\n" for key, value in best.as_dict().items()))
    write_markdown(run, plan, archs, measures, scores, front, order, position, top)
    plot(run, archs, measures, front, use_latency)
    summary = {"best": best.short(), "top": [archs[i].short() for i in order[:5]],
               "pareto": [archs[i].short() for i, on in enumerate(front) if on]}
    print(f"best {summary['best']}; top 5: {', '.join(summary['top'])}; wrote candidates.csv, report.md, "
          f"pareto.png, best.yaml in {run}")
    return summary


def write_markdown(run: Path, plan: dict, archs: list[Arch], measures: list[Measures], scores: list[float],
                   front: list[bool], order: list[int], position: dict[int, int], top: int) -> None:
    use_latency = plan["use_latency"]
    cost = "latency ms" if use_latency else "GFLOPs"

    def row(i: int) -> str:
        m = measures[i]
        latency = "" if m.latency_ms is None else f"{m.latency_ms:.2f}"
        return (f"| {position[i]} | {archs[i].short()} | {m.params / 1e6:.2f} M | {m.flops / 1e9:.3f} | {latency} | "
                f"{m.error:.4f} | {scores[i]:.4f} | {'yes' if front[i] else ''} |")

    header = "| rank | ⟨D,A,H,I⟩ | params | GFLOPs | latency ms | error | score | Pareto |\n|---|---|---|---|---|---|---|---|"
    bort = next((i for i, a in enumerate(archs) if (a.depth, a.heads, a.hidden, a.intermediate) == BORT_SHAPE), None)
    if bort is None:
        bort_line = "Bort's ⟨4,8,1024,768⟩ is not in this search space."
    else:
        bort_line = (f"Bort's ⟨4,8,1024,768⟩ ranks **{position[bort]} of {len(archs)}** (score {scores[bort]:.4f}, "
                     f"error {measures[bort].error:.4f}){' and is on the Pareto front' if front[bort] else ''}.")
    settings = plan["result_settings"]
    trained = len(plan["groups"])
    lines = [
        "# Optimal subarchitecture extraction: report", "",
        f"Score: {plan['score']}: {describe_score(plan['weights'], use_latency, archs[plan['maximum_point']].short())}.",
        "The exact W-coefficient of the papers is unpublished; this is bortzoo's documented default.", "",
        f"{len(archs)} candidates; ε = {plan['epsilon']}, s = {plan['s']}: {trained} trained (one per partition, "
        f"the maximum point always), {settings['steps']} steps each, {len(settings['hparams'])} hyperparameter "
        f"set(s); teacher {settings['teacher']} (top-{settings['top_k']} logits cached); error = held-out "
        f"distillation loss on {settings['eval_batches']} batches.", "",
        bort_line, "", f"## Top {min(top, len(archs))} (ranked by score; cost axis: {cost})", "", header,
        *(row(i) for i in order[:top]), "", "## Pareto front of (params, cost, error)", "", header,
        *(row(i) for i in order if front[i]), "", "## Settings", "", "```json",
        json.dumps({k: plan[k] for k in ("result_settings", "epsilon", "s", "score", "weights", "use_latency",
                                         "latency")}, indent=2, default=str), "```", ""]
    write_text(run / "report.md", "\n".join(lines))


def plot(run: Path, archs: list[Arch], measures: list[Measures], front: list[bool], use_latency: bool) -> None:
    """Error against parameters and against inference cost, the Pareto front and Bort marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_latency = all(m.latency_ms is not None for m in measures)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = [("parameters (M)", [m.params / 1e6 for m in measures]),
              ("CPU latency (ms)" if has_latency else "GFLOPs",
               [m.latency_ms if has_latency else m.flops / 1e9 for m in measures])]
    errors = [m.error for m in measures]
    bort = [i for i, a in enumerate(archs) if (a.depth, a.heads, a.hidden, a.intermediate) == BORT_SHAPE]
    for axis, (label, xs) in zip(axes, panels):
        axis.scatter(xs, errors, s=14, c="#9aa5b1", label="candidates")
        on = [i for i, f in enumerate(front) if f]
        axis.scatter([xs[i] for i in on], [errors[i] for i in on], s=26, c="#d1495b", label="Pareto front (p, i, e)")
        for i in bort:
            axis.scatter([xs[i]], [errors[i]], s=140, marker="*", c="#edae49", edgecolors="black", label="Bort")
        axis.set_xlabel(label)
        axis.set_ylabel("surrogate error (held-out distillation loss)")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    figure.suptitle("Optimal subarchitecture extraction")
    figure.tight_layout()
    figure.savefig(run / "pareto.png", dpi=110)
    plt.close(figure)
