"""Per-run `results.json` and the mean ± std over seeds: the numbers model cards and the demo read.

A fine-tune writes `results.json` at the end of `fit` (the dev metrics of the final model and of the best
epoch), `results-validate.json` / `results-test.json` after those verbs. Values are fractions (0.912, not
91.2), keyed by the leaderboard column (``MNLI-m``) and the task spec's metric names.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol, runtime_checkable

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from bortzoo.errors import BortzooError
from bortzoo.files import RESULTS_FILE, write_json

VOLATILE_KEYS = ("seed_everything", "ckpt_path", "config")




def config_hash(config: dict, root: Optional[str] = None) -> str:
    """SHA-256 of a resolved recipe without what differs between seeds of one recipe: the seed, the
    checkpoint to resume, and the output folder `root` (paths under it are compared relative to it)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in sorted(value.items()) if k not in VOLATILE_KEYS}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if root and isinstance(value, str) and value.startswith(str(root)):
            return "<root>" + value[len(str(root)):]
        return value

    data = clean(config)
    trainer = data.get("trainer")
    if isinstance(trainer, dict):
        trainer.pop("default_root_dir", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@runtime_checkable
class TaskRun(Protocol):
    """What `TaskResults` reads from the module it records (`bortzoo.modules.TaskModel` is one); a data module
    with `run_facts` (`bortzoo.data.TaskData`) adds its own."""

    spec: Any  # bortzoo.tasks.spec.TaskSpec
    last_results: dict

    def run_facts(self) -> dict: ...


def saved_recipe_hash(trainer: L.Trainer) -> Optional[str]:
    """`config_hash` of the resolved recipe Lightning's CLI saved for this run (`<log_dir>/config.yaml`), so runs
    of one recipe can be grouped; None for a run started outside the CLI."""
    import yaml

    path = Path(trainer.log_dir or trainer.default_root_dir) / "config.yaml"
    if not path.is_file():
        return None
    return config_hash(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, trainer.default_root_dir)


class TaskResults(Callback):
    """Writes a `TaskModel` run's metrics as JSON next to its checkpoints.

    Args:
        dirpath: Folder for the files; by default the trainer's `default_root_dir`.
    """

    def __init__(self, dirpath: Optional[str] = None):
        self.dirpath = dirpath
        self.history: list[dict] = []

    def _folder(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, TaskRun):
            raise BortzooError(f"TaskResults records a task model's evaluations (spec, last_results, run_facts); "
                               f"{type(pl_module).__name__} has none: remove the callback from the recipe")

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Optional[dict]:
        results = pl_module.last_results
        if not results:
            return None
        return {"epoch": trainer.current_epoch, "step": trainer.global_step, **results}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the module's epoch-end hook has computed the metrics (callbacks' epoch-end hooks run first)."""
        if trainer.sanity_checking:
            return
        if trainer.state.fn == "fit":
            entry = self._record(trainer, pl_module)
            if entry is not None:
                self.history.append(entry)
        elif trainer.state.fn == "validate" and trainer.is_global_zero:
            self._write_eval(trainer, pl_module, "validate")

    def _base(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict:
        spec = pl_module.spec
        datamodule = getattr(trainer, "datamodule", None)
        data_facts = datamodule.run_facts() if callable(getattr(datamodule, "run_facts", None)) else {}
        return {
            "task": spec.name, "benchmark": spec.benchmark, "stage": stage, **pl_module.run_facts(),
            "seed": _seed(), "config_sha256": saved_recipe_hash(trainer),
            "metrics_are": "fractions", "metrics": list(spec.metrics),
            "truncated": {}, "noted": {}, **data_facts,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.history:
            return
        final = self.history[-1]
        best = max(self.history, key=lambda e: e["score"])
        checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        data = self._base(trainer, pl_module, "fit")
        data.update(split="dev", final=final, best=best, epochs=len(self.history),
                    best_checkpoint=checkpoint.best_model_path if checkpoint else None,
                    last_checkpoint=checkpoint.last_model_path if checkpoint else None)
        write_json(self._folder(trainer) / RESULTS_FILE, data)

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_eval(trainer, pl_module, "test")

    def _write_eval(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        entry = self._record(trainer, pl_module)
        if entry is None:
            return
        spec = pl_module.spec
        data = self._base(trainer, pl_module, stage)
        data.update(split="test" if stage == "test" and spec.test_labels else "dev",
                    checkpoint=getattr(trainer, "ckpt_path", None), **{"final": entry})
        write_json(self._folder(trainer) / f"results-{stage}.json", data)


def _seed() -> Optional[int]:
    value = os.environ.get("PL_GLOBAL_SEED")
    return int(value) if value not in (None, "") else None


# -- seeds ---------------------------------------------------------------------------------------------
def summarise_seeds(results: Iterable[dict]) -> dict:
    """Mean and sample standard deviation over runs of one recipe, per leaderboard column and metric."""
    runs = list(results)
    if not runs:
        raise BortzooError("no results to summarise")
    hashes = {r.get("config_sha256") for r in runs}
    if len(hashes) > 1:
        raise BortzooError(f"the runs come from different recipes (config hashes {sorted(map(str, hashes))})")
    values: dict[str, dict[str, list[float]]] = {}
    scores = []
    for run in runs:
        final = run["final"]
        scores.append(final["score"])
        for board, metrics in final["splits"].items():
            for name, value in metrics.items():
                values.setdefault(board, {}).setdefault(name, []).append(value)
    first = runs[0]
    return {
        "task": first["task"], "benchmark": first["benchmark"], "model": first["model"],
        "config_sha256": first.get("config_sha256"), "seeds": [r.get("seed") for r in runs], "split": "dev",
        "std": "sample (n-1)",
        "splits": {board: {name: _mean_std(v) for name, v in metrics.items()} for board, metrics in values.items()},
        "score": _mean_std(scores),
    }


def _mean_std(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values), "values": values}


def format_summary(summary: dict) -> str:
    """A table of mean ± std (×100) per column and metric, for the terminal and the README."""
    lines = [f"{summary['task']} ({summary['model']}), dev, {len(summary['seeds'])} seeds {summary['seeds']}:",
             f"{'split':<10} {'metric':<10} {'mean':>7} {'± std':>7}"]
    for board, metrics in summary["splits"].items():
        for name, stats in metrics.items():
            lines.append(f"{board:<10} {name:<10} {100 * stats['mean']:>7.2f} {100 * stats['std']:>7.2f}")
    score = summary["score"]
    lines.append(f"{'score':<21} {100 * score['mean']:>7.2f} {100 * score['std']:>7.2f}")
    return "\n".join(lines)
