"""`bortzoo agora --config recipes/agora/rte-bort.yaml`: the Agora fine-tuning loop (arXiv 2010.07990).

Inputs: a fine-tune recipe (the model to fine-tune, its data and trainer), a weak "ok-ish" model already
fine-tuned on the task, a transformation, and hyperparameter sets. Each step is a named function:

1. `split_dev`: the dev split cut into an Agora dev part and a held-out part (seeded, stratified).
2. `prepare_weak_model`: the weak model's checkpoint (fitted first when given as a recipe), scored on both parts.
3. Per iteration, while sets remain: `fine_tune_sets` (one trial per alive set, on the original training
   rows plus every new row so far, scored on Agora dev); `pick_best`; `collect_mistakes` of the best on
   Agora dev; `generate_examples` from them; `label_with` the weak model; the rows join the training data;
   `prune` sorts the sets by score and drops the tail.
4. `replay` (optional): the sets alive at one iteration trained again on the final training data.
5. The best trial over all iterations is the result: its checkpoint, scored on both parts.

The held-out part never enters training and never chooses anything; it only reports, so its number is
the honest one. Every step's result goes to `state.json` as it finishes, and trials keep their own files,
so an interrupted run started again resumes at the step it stopped in. `agora.json` is the report (every
iteration: sets alive, scores, examples added and their source mistakes), `agora.png` its plot.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from bortzoo.agora.dev_split import check_task, next_id, select_ids, split_dev, with_rows, write_task_folder
from bortzoo.agora.examples import (
    Encoding,
    collect_mistakes,
    generate_examples,
    label_with,
    load_task_model,
    predict_rows,
)
from bortzoo.agora.transforms import Transform, get_transform
from bortzoo.agora.trials import expand_sets, prepare_trial, run_trials, set_name, trial_config
from bortzoo.errors import BortzooError
from bortzoo.files import atomic_path, write_text
from bortzoo.recipe import apply_overrides
from bortzoo.resources import resolve_recipe
from bortzoo.tasks import get_task

REPORT_FILE, STATE_FILE, PLOT_FILE = "agora.json", "state.json", "agora.png"
REPORT_FORMAT = 1
OK_ISH = 2 / 3  # the weak model should be right on more than two thirds of the rows (the author's "ok-ish")


def log(message: str) -> None:
    print(f"[agora] {message}", flush=True)


# -- state ----------------------------------------------------------------------------------------------
class State:
    """Finished steps by name, saved atomically after each; refuses a folder made with other settings."""

    def __init__(self, folder: Path, settings: dict):
        self.path = folder / STATE_FILE
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.steps: dict[str, Any] = {}
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved.get("settings") != self.key:
                raise BortzooError(f"{folder} holds an Agora run with other settings (state key {saved.get('settings')}, "
                                   f"this recipe {self.key}); use another out folder or delete that one")
            self.steps = saved["steps"]
            log(f"resuming {folder}: {len(self.steps)} steps already done")

    def get(self, name: str) -> Any:
        return self.steps.get(name)

    def put(self, name: str, value: Any) -> Any:
        self.steps[name] = value
        from bortzoo.files import write_json

        write_json(self.path, {"settings": self.key, "steps": self.steps})
        return value


# -- scoring --------------------------------------------------------------------------------------------
def score_rows(model, spec, data, encoding: Encoding) -> dict[str, Any]:
    """The task's metrics of `model` on `data` (as `bortzoo validate` would log them) and their score."""
    import torch

    from bortzoo.tasks.metrics import split_score, task_metrics

    predicted = predict_rows(model, spec, data, encoding)
    ids, labels = data[spec.id_column], data["label"]
    metrics = task_metrics(spec)
    metrics.update(torch.tensor([predicted[i] for i in ids]), torch.tensor(labels))
    values = {name: float(value) for name, value in metrics.compute().items()}
    return {"metrics": values, "score": split_score(values), "rows": len(ids)}


def score_checkpoint(checkpoint: str, spec, parts: dict[str, Any], encoding: Encoding) -> dict[str, Any]:
    model = load_task_model(checkpoint, spec)
    return {name: score_rows(model, spec, data, encoding) for name, data in parts.items()}


# -- steps ----------------------------------------------------------------------------------------------
def prune(alive: list[int], scores: dict[int, float], drop: float) -> tuple[list[int], list[int]]:
    """Sort the alive sets by score (best first; a tie keeps the lower set number first) and drop the tail:
    ceil(drop × alive) sets, at least one, so the loop always ends. Returns (kept, dropped)."""
    ranked = sorted(alive, key=lambda s: (-scores[s], s))
    cut = max(1, math.ceil(drop * len(ranked)))
    return ranked[:len(ranked) - cut], ranked[len(ranked) - cut:]


def pick_best(trials: dict[int, dict]) -> int:
    """The set whose trial scored highest on Agora dev (a tie: the lower set number)."""
    return min(trials, key=lambda s: (-trials[s]["score"], s))


def fine_tune_sets(folder: Path, base: dict, sets: list[dict], alive: list[int], data_dir: Path, parallel: int,
                   gpus: Optional[list[int]]) -> dict[int, dict]:
    """One trial per alive set under `folder/trials/set-NNN`, on the data folder `data_dir`."""
    folders = []
    for index in alive:
        trial = folder / "trials" / set_name(index)
        prepare_trial(trial, trial_config(base, sets[index], trial, data_dir), sets[index])
        folders.append(trial)
    results = run_trials(folders, parallel=parallel, gpus=gpus, progress=log)
    return dict(zip(alive, results))


def prepare_weak_model(reference: str, out: Path, state: State, overrides: Optional[dict] = None) -> str:
    """The weak model's checkpoint: `reference` itself (a .ckpt), or the best checkpoint of fitting it (a
    fine-tune recipe .yaml, run once into `out/weak`)."""
    done = state.get("weak_fit")
    if done:
        return done["checkpoint"]
    path = Path(reference)
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise BortzooError(f"weak_model {reference} does not exist (a fine-tuned .ckpt, or a fine-tune recipe "
                               ".yaml Agora fits first)")
        return str(path)
    path = Path(resolve_recipe(reference, "weak_model"))  # a path, or a packaged recipe's name
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise BortzooError(f"weak_model must be a fine-tuned .ckpt or a fine-tune recipe .yaml, got {reference!r}")
    from bortzoo.agora.trials import run_trial

    folder = out / "weak"
    recipe = apply_overrides(yaml.safe_load(path.read_text()), overrides, "weak_overrides")
    config = trial_config(recipe, {}, folder, Path("unused"))
    original = (recipe.get("data") or {}).get("init_args", {})
    config["data"]["init_args"]["data_dir"] = original.get("data_dir")  # the weak model trains on the task's own data
    if original.get("train_limit"):
        config["data"]["init_args"]["train_limit"] = original["train_limit"]
    log(f"fitting the weak model from {reference} into {folder}")
    prepare_trial(folder, config, {"recipe": str(reference)})
    result = run_trial(folder)
    return state.put("weak_fit", {"checkpoint": result["checkpoint"], "recipe": str(reference)})["checkpoint"]


def new_rows_path(folder: Path) -> Path:
    return folder / "new-rows.jsonl"


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_rows(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def make_examples(spec, best_checkpoint: str, weak, agora_dev, transform: Transform, variants: int,
                  max_new: Optional[int], seed: int, first_id: int, encoding: Encoding) -> dict[str, Any]:
    """collect_mistakes → generate_examples → label_with, for one iteration."""
    model = load_task_model(best_checkpoint, spec)
    mistakes = collect_mistakes(spec, agora_dev, predict_rows(model, spec, agora_dev, encoding))
    rows, provenance, unchanged = generate_examples(spec, mistakes, transform, variants, seed, first_id)
    capped = 0
    if max_new is not None and len(rows) > max_new:
        capped = len(rows) - max_new
        rows, provenance = rows[:max_new], provenance[:max_new]
    if rows:
        from datasets import Dataset

        labelled_by = predict_rows(weak, spec, Dataset.from_list(rows, features=agora_dev.features), encoding)
        rows = label_with(spec, rows, provenance, labelled_by)
    return {"mistakes": [m[spec.id_column] for m in mistakes], "rows": rows, "provenance": provenance,
            "unchanged": unchanged, "capped": capped}


# -- the verb -------------------------------------------------------------------------------------------
def agora(
    finetune: str,
    weak_model: str,
    out: str,
    finetune_overrides: Optional[dict[str, Any]] = None,
    weak_overrides: Optional[dict[str, Any]] = None,
    grid: Optional[dict[str, list]] = None,
    sets: Optional[list[dict]] = None,
    sample: Optional[int] = None,
    drop: float = 0.5,
    max_iterations: Optional[int] = None,
    transform: Union[str, Transform] = "masked_lm",
    variants: int = 2,
    max_new: Optional[int] = None,
    agora_fraction: float = 0.5,
    seed: int = 0,
    replay: Optional[int] = None,
    parallel: int = 1,
    gpus: Optional[list[int]] = None,
) -> dict:
    """Agora: fine-tune per hyperparameter set, learn from the best model's dev mistakes, prune, repeat.

    Args:
        finetune: The fine-tune recipe (YAML) every trial runs: model, data (task, data_dir, encoding) and
            trainer; Agora changes only the set's values, the data folder and the output paths.
        weak_model: The weaker, already fine-tuned "ok-ish" model that labels new examples: a .ckpt, or a
            fine-tune recipe (.yaml) fitted first into OUT/weak.
        out: Output folder: state.json (resume), agora.json (report), agora.png, checkpoints/best.ckpt.
        finetune_overrides: Dotted keys replaced in the fine-tune recipe (``trainer.max_epochs: 60``).
        weak_overrides: Dotted keys replaced in the weak model's recipe (when it is one).
        grid: Values per hyperparameter (seed, lr, weight_decay, warmup_ratio, batch_size, any TaskModel
            argument); every combination is a set.
        sets: An explicit list of sets instead of a grid.
        sample: Use a seeded random sample of this many sets of the grid.
        drop: Share of the alive sets dropped after each iteration (at least one), worst scores first.
        max_iterations: Stop after this many iterations even if sets remain (None: until none remain).
        transform: How a mistake becomes new rows (a `bortzoo.agora.transforms.Transform`: `masked_lm`,
            `token_edit`, or class_path/init_args of your own).
        variants: New rows made from each mistake per iteration.
        max_new: At most this many new rows per iteration (None: no cap).
        agora_fraction: Share of the dev split (per label) that Agora may use; the rest is held out.
        seed: Seed of the dev split, the set sample and the transformation.
        replay: Train the sets alive at this iteration (1-based) again on the final training data.
        parallel: Trials run at once (subprocesses; one per GPU of `gpus` when given).
        gpus: GPU indices for parallel trials.
    """
    started = time.time()
    for name, value in (("finetune", finetune), ("weak_model", weak_model), ("out", out)):
        if not str(value).strip():  # an empty out would write the run into the current folder
            raise BortzooError(f"{name} is empty: give a path (see bortzoo agora --help)")
    recipe_path = Path(resolve_recipe(finetune, "finetune recipe"))  # a path, or a packaged recipe's name
    if not recipe_path.is_file():
        raise BortzooError(f"finetune recipe {finetune} is not a file")
    base = apply_overrides(yaml.safe_load(recipe_path.read_text()), finetune_overrides, "finetune_overrides")
    data_args = (base.get("data") or {}).get("init_args") or {}
    if "task" not in data_args:
        raise BortzooError(f"{finetune}: data.init_args.task is missing; Agora needs a fine-tune recipe (TaskData)")
    spec = get_task(data_args["task"])
    check_task(spec)
    transform = get_transform(transform)
    if variants < 1:
        raise BortzooError(f"variants must be at least 1, got {variants}")
    if not 0.0 < drop <= 1.0:
        raise BortzooError(f"drop must be within (0, 1], got {drop}")
    all_sets = expand_sets(grid, sets, sample, seed)
    if replay is not None and replay < 1:
        raise BortzooError(f"replay names an iteration from 1, got {replay}")
    encoding = Encoding(max_length=data_args.get("max_length", 128),
                        pair_encoding=data_args.get("pair_encoding", "tokenizer"),
                        batch_size=data_args.get("eval_batch_size") or data_args.get("batch_size", 32))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"finetune": base, "weak_model": weak_model, "weak_overrides": weak_overrides, "sets": all_sets, "drop": drop,
                "max_iterations": max_iterations, "transform": {k: v for k, v in vars(transform).items() if not k.startswith("_")}, "transform_class":
                type(transform).__qualname__, "variants": variants, "max_new": max_new,
                "agora_fraction": agora_fraction, "seed": seed, "replay": replay}
    state = State(folder, settings)

    # 1. the dev split, cut in two
    from bortzoo.data.rows import load_split

    train = load_split(spec, spec.train, data_args.get("data_dir"), data_args.get("dataset_revision"))
    if data_args.get("train_limit"):
        train = train.select(range(min(int(data_args["train_limit"]), len(train))))
    dev = load_split(spec, spec.validation[0].split, data_args.get("data_dir"), data_args.get("dataset_revision"))
    split = state.get("split") or state.put("split", dict(zip(
        ("agora_dev", "held_out"), split_dev(dev["label"], dev[spec.id_column], agora_fraction, seed))))
    agora_dev, held_out = select_ids(dev, spec, split["agora_dev"]), select_ids(dev, spec, split["held_out"])
    parts = {"agora_dev": agora_dev, "held_out": held_out}
    log(f"{spec.name}: {len(train)} training rows; dev {len(dev)} rows = {len(agora_dev)} Agora dev + "
        f"{len(held_out)} held out; {len(all_sets)} hyperparameter sets")

    # 2. the weak model
    weak_checkpoint = prepare_weak_model(weak_model, folder, state, weak_overrides)
    weak_scores = state.get("weak_scores") or state.put(
        "weak_scores", score_checkpoint(weak_checkpoint, spec, parts, encoding))
    weak_accuracy = weak_scores["agora_dev"]["metrics"].get("accuracy", weak_scores["agora_dev"]["score"])
    if weak_accuracy <= OK_ISH:
        log(f"warning: the weak model is right on {100 * weak_accuracy:.1f}% of Agora dev, not more than two thirds "
            "(the author's 'ok-ish'): its labels for new examples will be noisy")
    weak = load_task_model(weak_checkpoint, spec)

    # 3. the iterations
    alive, added, iterations = list(range(len(all_sets))), [], []
    number = 0
    while alive and (max_iterations is None or number < max_iterations):
        number += 1
        iteration_dir = folder / f"iter-{number}"
        record = state.get(f"iter-{number}")
        if record is None:
            data_dir = iteration_dir / "data"
            if not (data_dir / "README.md").exists():
                write_task_folder(data_dir, spec, {"train": with_rows(train, added), "validation": agora_dev})
            log(f"iteration {number}: {len(alive)} sets, {len(train) + len(added)} training rows "
                f"({len(added)} from Agora)")
            trials = fine_tune_sets(iteration_dir, base, all_sets, alive, data_dir, parallel, gpus)
            best = pick_best(trials)
            kept, dropped = prune(alive, {s: t["score"] for s, t in trials.items()}, drop)
            held_out_best = score_checkpoint(trials[best]["checkpoint"], spec, {"held_out": held_out}, encoding)
            examples = {"mistakes": [], "rows": [], "provenance": [], "unchanged": 0, "capped": 0}
            if kept and (max_iterations is None or number < max_iterations):
                examples = make_examples(spec, trials[best]["checkpoint"], weak, agora_dev, transform, variants,
                                         max_new, seed * 1000 + number, next_id(train, spec, [r[spec.id_column] for r in added]),
                                         encoding)
            write_rows(new_rows_path(iteration_dir), examples["rows"])
            record = state.put(f"iter-{number}", {
                "iteration": number, "alive": [set_name(s) for s in alive], "train_rows": len(train) + len(added),
                "trials": {set_name(s): {"values": all_sets[s], **t} for s, t in trials.items()},
                "best": set_name(best), "best_score": trials[best]["score"],
                "best_held_out": held_out_best["held_out"], "kept": [set_name(s) for s in kept],
                "dropped": [set_name(s) for s in dropped], "mistakes": examples["mistakes"],
                "added": examples["provenance"], "unchanged": examples["unchanged"], "capped": examples["capped"]})
            log(f"iteration {number}: best {record['best']} scores {100 * record['best_score']:.2f} on Agora dev "
                f"({100 * held_out_best['held_out']['score']:.2f} held out); {len(examples['mistakes'])} mistakes → "
                f"{len(examples['rows'])} new rows; dropped {record['dropped']}")
        added += read_rows(new_rows_path(iteration_dir))
        iterations.append(record)
        alive = [int(name.split("-")[1]) for name in record["kept"]]

    # 4. replay
    replayed = None
    if replay is not None:
        if replay > len(iterations):
            raise BortzooError(f"replay names iteration {replay}, but the run had {len(iterations)}")
        replayed = state.get("replay")
        if replayed is None:
            replay_dir = folder / "replay"
            data_dir = replay_dir / "data"
            if not (data_dir / "README.md").exists():
                write_task_folder(data_dir, spec, {"train": with_rows(train, added), "validation": agora_dev})
            sets_then = [int(name.split("-")[1]) for name in iterations[replay - 1]["alive"]]
            log(f"replay of iteration {replay}: {len(sets_then)} sets on {len(train) + len(added)} training rows")
            trials = fine_tune_sets(replay_dir, base, all_sets, sets_then, data_dir, parallel, gpus)
            replayed = state.put("replay", {"iteration": replay, "train_rows": len(train) + len(added),
                                            "trials": {set_name(s): {"values": all_sets[s], **t}
                                                       for s, t in trials.items()}})

    # 5. the result
    report = finish(folder, spec, iterations, replayed, parts, encoding, weak_checkpoint, weak_scores, split,
                    settings, transform, started)
    return {"best": report["best"], "agora_dev": report["final"]["agora_dev"]["score"],
            "held_out": report["final"]["held_out"]["score"]}


def finish(folder: Path, spec, iterations: list[dict], replayed: Optional[dict], parts: dict, encoding: Encoding,
           weak_checkpoint: str, weak_scores: dict, split: dict, settings: dict, transform: Transform,
           started: float) -> dict:
    """The best trial over all iterations (and the replay): its checkpoint copied to checkpoints/best.ckpt,
    scored on both parts; agora.json, agora.png and a results.json that `bortzoo publish OUT` reads."""
    candidates = [(it["iteration"], name, trial) for it in iterations for name, trial in it["trials"].items()]
    if replayed:
        candidates += [("replay", name, trial) for name, trial in replayed["trials"].items()]
    iteration, name, trial = max(candidates, key=lambda c: c[2]["score"])  # first best wins a tie
    checkpoints = folder / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    best_copy = checkpoints / "best.ckpt"
    with atomic_path(best_copy) as tmp:
        shutil.copyfile(trial["checkpoint"], tmp)
    final = score_checkpoint(str(best_copy), spec, parts, encoding)
    report = {
        "format": REPORT_FORMAT, "task": spec.name, "benchmark": spec.benchmark, "metrics": list(spec.metrics),
        "metrics_are": "fractions",
        "best": {"iteration": iteration, "set": name, "values": trial["values"], "trial_checkpoint": trial["checkpoint"],
                 "checkpoint": str(best_copy)},
        "final": final,
        "split": {"agora_fraction": settings["agora_fraction"], "seed": settings["seed"],
                  "agora_dev_ids": split["agora_dev"], "held_out_ids": split["held_out"]},
        "weak_model": {"checkpoint": weak_checkpoint, **weak_scores},
        "transform": {"class": settings["transform_class"], "name": getattr(transform, "name", None)},
        "drop": settings["drop"], "variants": settings["variants"],
        "iterations": iterations, "replay": replayed,
        "seconds": round(time.time() - started, 1),
        "note": "agora_dev scores are optimistic: that part chose the sets and its mistakes became training rows; "
                "held_out never entered training nor chose anything.",
    }
    from bortzoo.files import write_json

    write_json(folder / REPORT_FILE, report)
    from bortzoo.agora.plot import plot_report

    plot_report(report, folder / PLOT_FILE)
    publishable_run(folder, report, Path(trial["checkpoint"]))
    log(f"best: {name} of iteration {iteration}: {100 * final['agora_dev']['score']:.2f} on Agora dev, "
        f"{100 * final['held_out']['score']:.2f} held out → {best_copy}")
    return report


def publishable_run(folder: Path, report: dict, trial_checkpoint: Path) -> None:
    """OUT as a fine-tune run folder (results.json, config.yaml, checkpoints/best.ckpt) for `bortzoo publish`,
    whose card then reports the held-out score and the Agora summary."""
    from bortzoo.files import RESULTS_FILE, write_json
    from bortzoo.publish.run_folder import resolved_recipe

    trial_folder = trial_checkpoint.parent.parent
    shutil.copyfile(resolved_recipe(trial_folder), folder / "config.yaml")
    results = json.loads((trial_folder / RESULTS_FILE).read_text())
    results["best_checkpoint"] = str(folder / "checkpoints" / "best.ckpt")
    results["agora"] = {"held_out": report["final"]["held_out"], "agora_dev": report["final"]["agora_dev"],
                        "iterations": len(report["iterations"]), "best": report["best"],
                        "weak_model": {k: v for k, v in report["weak_model"].items() if k != "checkpoint"},
                        "added": sum(len(it["added"]) for it in report["iterations"])}
    write_json(folder / RESULTS_FILE, results)
