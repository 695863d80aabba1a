"""Plain fine-tuning over the hyperparameter sets vs Agora, scored on the held-out part of dev, mean over seeds.

    python bench/agora_ablation.py [--recipe recipes/agora/rte-bort-tiny.yaml] [--seeds 0 1 2] [--out DIR]

Both arms read the same Agora recipe, the same dev split (cut by the seed) and the same sets. *Plain* is one
iteration and nothing more: every set fine-tuned on the training rows, the best on Agora dev kept. *Agora*
is the whole loop (new rows from the best model's Agora-dev mistakes, labelled by the weak model, pruning).
The number that counts is the held-out score: the Agora-dev score is printed beside it to show how
optimistic it is. Each (arm, seed) is its own resumable Agora folder under --out. The table goes to stdout
and, as CSV, to bench/results/agora-ablation-<task>-<host>.csv.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ARMS = ("plain", "agora")


def run_arm(recipe: dict, arm: str, seed: int, out: Path) -> dict:
    """One Agora run of `recipe` with `seed` (the dev split's and the sets' seeds), plain = one iteration."""
    from bortzoo.agora.loop import agora

    args = dict(recipe)
    args.update(out=str(out / f"{arm}-seed{seed}"), seed=seed)
    if args.get("sets"):  # the training seeds follow the ablation seed too, so seeds differ in more than the split
        args["sets"] = [{**s, "seed": s.get("seed", 0) + 100 * seed} for s in args["sets"]]
    if arm == "plain":
        args["max_iterations"] = 1
    started = time.time()
    result = agora(**args)
    report = yaml.safe_load((Path(args["out"]) / "agora.json").read_text())
    added = sum(len(it["added"]) for it in report["iterations"])
    return {"arm": arm, "seed": seed, "held_out": result["held_out"], "agora_dev": result["agora_dev"],
            "iterations": len(report["iterations"]), "added": added, "seconds": round(time.time() - started, 1)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        held = [r["held_out"] for r in mine]
        dev = [r["agora_dev"] for r in mine]
        out.append({"arm": arm, "seeds": len(mine), "held_out_mean": statistics.mean(held),
                    "held_out_std": statistics.stdev(held) if len(held) > 1 else 0.0,
                    "agora_dev_mean": statistics.mean(dev), "added_mean": statistics.mean(r["added"] for r in mine),
                    "seconds_mean": statistics.mean(r["seconds"] for r in mine)})
    return out


def table(rows: list[dict], summary: list[dict]) -> str:
    lines = ["| arm | seed | held-out score | Agora-dev score (optimistic) | iterations | rows added | s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arm']} | {r['seed']} | {100 * r['held_out']:.2f} | {100 * r['agora_dev']:.2f} | "
                     f"{r['iterations']} | {r['added']} | {r['seconds']:.1f} |")
    lines += ["", "| arm | seeds | held-out mean ± std | Agora-dev mean | rows added (mean) | s (mean) |",
              "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['arm']} | {s['seeds']} | {100 * s['held_out_mean']:.2f} ± {100 * s['held_out_std']:.2f} | "
                     f"{100 * s['agora_dev_mean']:.2f} | {s['added_mean']:.1f} | {s['seconds_mean']:.1f} |")
    plain, agora_ = summary
    lines.append(f"\nAgora − plain on held-out: {100 * (agora_['held_out_mean'] - plain['held_out_mean']):+.2f} points "
                 f"(mean over {plain['seeds']} seeds)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/agora/rte-bort-tiny.yaml", help="an Agora recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="ablation seeds")
    parser.add_argument("--out", default="runs/bench/agora-ablation", help="folder of the runs (resumable)")
    parser.add_argument("--csv", default=None, help="CSV path (default bench/results/agora-ablation-<task>-<host>.csv)")
    args = parser.parse_args(argv)
    recipe = yaml.safe_load(Path(args.recipe).read_text())
    out = Path(args.out) / Path(args.recipe).stem
    rows = []
    for seed in args.seeds:
        for arm in ARMS:
            rows.append(run_arm(recipe, arm, seed, out))
            weak = out / f"{arm}-seed{seed}" / "weak" / "checkpoints" / "best.ckpt"
            if str(recipe["weak_model"]).endswith((".yaml", ".yml")) and weak.is_file():
                recipe = {**recipe, "weak_model": str(weak)}  # one weak model for every run: fitted once
    summary = summarise(rows)
    print(table(rows, summary))
    task = (yaml.safe_load(Path(recipe["finetune"]).read_text())["data"]["init_args"]["task"])
    path = Path(args.csv or REPO / "bench" / "results" / f"agora-ablation-{task}-{platform.node() or 'host'}.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwritten {path}")
    return rows


if __name__ == "__main__":
    main()
