"""agora.png: the score per iteration, every trial as a dot, the best trial on Agora dev and held out."""

from __future__ import annotations

from pathlib import Path

from bortzoo.files import atomic_path


def plot_report(report: dict, path: Path) -> Path:
    """Draw the report's iterations (and the replay, as one more column) into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [(str(it["iteration"]), it) for it in report["iterations"]]
    if report.get("replay"):
        columns.append((f"replay {report['replay']['iteration']}", report["replay"]))
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    best_dev, best_held = [], []
    for x, (_, item) in enumerate(columns):
        scores = [100 * t["score"] for t in item["trials"].values()]
        axes.scatter([x] * len(scores), scores, color="0.65", s=14, zorder=2,
                     label="trials (Agora dev)" if x == 0 else None)
        if "best_score" in item:
            best_dev.append((x, 100 * item["best_score"]))
            best_held.append((x, 100 * item["best_held_out"]["score"]))
    if best_dev:
        axes.plot(*zip(*best_dev), marker="o", color="tab:blue", label="best trial, Agora dev (optimistic)")
        axes.plot(*zip(*best_held), marker="s", color="tab:orange", label="best trial, held out")
    axes.set_xticks(range(len(columns)), [name for name, _ in columns])
    axes.set_xlabel("iteration")
    axes.set_ylabel(f"score ({' / '.join(report['metrics'])}, %)")
    axes.set_title(f"Agora on {report['task']}: final {100 * report['final']['held_out']['score']:.1f} held out")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path
