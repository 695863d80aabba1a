"""Agora's trials: one ordinary `bortzoo fit` per hyperparameter set, side by side when there are devices.

A trial is a folder holding the recipe it runs (`recipe.yaml`: the fine-tune recipe with the set's values,
the iteration's data folder and the trial's own output paths) and, once finished, `trial.json` (its best
Agora-dev score and checkpoint). A folder with `trial.json` is done and never re-run; one without it but
with `checkpoints/last.ckpt` was interrupted and resumes from there. Trials run in this process one after
the other, or with `parallel > 1` as subprocesses (`python -m bortzoo.agora.trials FOLDER`), each pinned to
one GPU of `gpus` through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from bortzoo.errors import BortzooError
from bortzoo.files import write_text

TRIAL_FILE = "trial.json"
# keys of a set that are not TaskModel arguments: the run's seed and the training batch size
RUN_KEYS = ("seed", "batch_size")


def expand_sets(grid: Optional[dict[str, list]], sets: Optional[list[dict]], sample: Optional[int],
                seed: int) -> list[dict[str, Any]]:
    """The hyperparameter sets: `sets` as given, or every combination of `grid` (keys in the grid's order),
    optionally a seeded random `sample` of them. Each set is checked against TaskModel's arguments."""
    from bortzoo.modules.task_model import TaskModel

    if (grid is None) == (sets is None):
        raise BortzooError("give exactly one of grid (values per hyperparameter) and sets (a list of sets)")
    if grid is not None:
        empty = [key for key, values in grid.items() if not values]
        if empty or not grid:
            raise BortzooError(f"the grid has no values for {empty or 'any hyperparameter'}")
        keys = list(grid)
        expanded = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    else:
        expanded = [dict(s) for s in sets]
    if not expanded:
        raise BortzooError("no hyperparameter sets: give at least one")
    if sample is not None:
        if sample < 1:
            raise BortzooError(f"sample must be at least 1, got {sample}")
        if sample < len(expanded):
            chosen = sorted(random.Random(seed).sample(range(len(expanded)), sample))
            expanded = [expanded[i] for i in chosen]
    allowed = set(inspect.signature(TaskModel.__init__).parameters) - {"self", "task", "model", "arch", "tokenizer"}
    for index, item in enumerate(expanded):
        unknown = sorted(set(item) - allowed - set(RUN_KEYS))
        if unknown:
            raise BortzooError(f"hyperparameter set {index} ({item}): unknown key(s) {unknown}; a set takes "
                               f"{', '.join(RUN_KEYS)} and TaskModel's {', '.join(sorted(allowed))}")
    return expanded


def set_name(index: int) -> str:
    return f"set-{index:03d}"


def trial_config(base: dict, values: dict[str, Any], folder: Path, data_dir: Path) -> dict:
    """The fine-tune recipe `base` as one trial: the set's values, the iteration's data, the trial's folders.

    The trial validates on the Agora dev split only (the data folder's `validation`); leaderboard writers are
    removed (Agora's trials predict nothing) and `train_limit` is cleared (the folder already holds exactly the
    rows to train on, new examples included)."""
    config = copy.deepcopy(base)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    logger = trainer.get("logger")
    if isinstance(logger, dict):
        logger.setdefault("init_args", {})["save_dir"] = str(folder)
    callbacks = []
    for callback in trainer.get("callbacks") or []:
        path = callback.get("class_path", "") if isinstance(callback, dict) else ""
        if path.endswith("SubmissionWriter"):
            continue
        if path.endswith("ModelCheckpoint"):
            callback = copy.deepcopy(callback)
            args = callback.setdefault("init_args", {})
            args.update(dirpath=str(folder / "checkpoints"), monitor="val/score", mode="max", filename="best",
                        save_last=True)
        callbacks.append(callback)
    if not any(isinstance(c, dict) and c.get("class_path", "").endswith("ModelCheckpoint") for c in callbacks):
        raise BortzooError("the fine-tune recipe has no ModelCheckpoint callback; Agora needs each trial's best "
                           "checkpoint (monitor val/score)")
    trainer["callbacks"] = callbacks
    model_args = config.setdefault("model", {}).setdefault("init_args", {})
    data_args = config.setdefault("data", {}).setdefault("init_args", {})
    data_args["data_dir"] = str(data_dir)
    data_args.pop("train_limit", None)
    for key, value in values.items():
        if key == "seed":
            config["seed_everything"] = value
        elif key == "batch_size":
            data_args["batch_size"] = value
        else:
            model_args[key] = value
    return config


def prepare_trial(folder: Path, config: dict, values: dict[str, Any]) -> Path:
    """Write the trial's recipe (kept as is when present: a resumed trial runs what it started with)."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "recipe.yaml"
    if not recipe.exists():
        header = f"# Agora trial: the fine-tune recipe with {json.dumps(values)}\n"
        write_text(recipe, header + yaml.safe_dump(config, sort_keys=False))
    return folder


def read_trial(folder: Path) -> Optional[dict]:
    path = folder / TRIAL_FILE
    return json.loads(path.read_text()) if path.exists() else None


def run_trial(folder: Path) -> dict:
    """Fit the trial's recipe (resuming from its last checkpoint when one exists); write `trial.json`."""
    from bortzoo.recipe import lightning_cli

    folder = Path(folder)
    done = read_trial(folder)
    if done is not None:
        return done
    args = ["fit", "--config", str(folder / "recipe.yaml")]
    last = folder / "checkpoints" / "last.ckpt"
    if last.exists():
        args += ["--ckpt_path", str(last)]
    started = time.time()
    cli = lightning_cli(args)
    callback = cli.trainer.checkpoint_callback
    if callback is None or callback.best_model_score is None:
        raise BortzooError(f"trial {folder} finished without a scored checkpoint (no validation ran?)")
    result = {"score": float(callback.best_model_score), "checkpoint": str(callback.best_model_path),
              "epochs": int(cli.trainer.current_epoch), "seconds": round(time.time() - started, 1),
              "resumed": last.exists() and "--ckpt_path" in args}
    from bortzoo.files import write_json

    write_json(folder / TRIAL_FILE, result)  # atomic: a trial killed while writing is simply not done
    return result


def run_trials(folders: list[Path], parallel: int = 1, gpus: Optional[list[int]] = None,
               progress: Callable[[str], None] = print) -> list[dict]:
    """Run every trial not yet done: here, one after the other, or `parallel` at a time as subprocesses."""
    pending = [f for f in folders if read_trial(f) is None]
    if len(pending) < len(folders):
        progress(f"{len(folders) - len(pending)} of {len(folders)} trials already done; running the others")
    if parallel <= 1:
        for number, folder in enumerate(pending, 1):
            progress(f"trial {number}/{len(pending)}: {folder}")
            run_trial(folder)
    else:
        _run_subprocesses(pending, parallel, gpus, progress)
    return [read_trial(f) for f in folders]


def _run_subprocesses(folders: list[Path], parallel: int, gpus: Optional[list[int]],
                      progress: Callable[[str], None]) -> None:
    slots = list(gpus) if gpus else [None] * parallel
    if len(slots) < parallel:
        raise BortzooError(f"parallel is {parallel} but only {len(slots)} gpus are listed: {gpus}")
    slots = slots[:parallel]
    queue, running, failed = list(folders), {}, []
    threads = max(1, (os.cpu_count() or 1) // parallel)
    while queue or running:
        free = [s for s in range(parallel) if s not in running]
        while queue and free:
            slot, folder = free.pop(0), queue.pop(0)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            if slots[slot] is not None:
                env["CUDA_VISIBLE_DEVICES"] = str(slots[slot])
            log = open(folder / "trial.log", "ab")
            process = subprocess.Popen([sys.executable, "-m", "bortzoo.agora.trials", str(folder)], env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
            running[slot] = (process, folder, log)
            where = f"GPU {slots[slot]}" if slots[slot] is not None else f"slot {slot}"
            progress(f"trial started on {where}: {folder}")
        time.sleep(0.5)
        for slot, (process, folder, log) in list(running.items()):
            if process.poll() is not None:
                log.close()
                del running[slot]
                if process.returncode != 0 or read_trial(folder) is None:
                    failed.append(f"{folder} (exit {process.returncode}; see {folder / 'trial.log'})")
                else:
                    progress(f"trial done: {folder}")
    if failed:
        raise BortzooError("trials failed: " + "; ".join(failed) + ". Finished trials are kept; run agora again "
                           "to resume")


def main(argv: Optional[list[str]] = None) -> None:
    """`python -m bortzoo.agora.trials FOLDER`: run one prepared trial (what parallel trials launch)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bortzoo.agora.trials TRIAL_FOLDER", file=sys.stderr)
        sys.exit(2)
    run_trial(Path(args[0]))


if __name__ == "__main__":
    main()
