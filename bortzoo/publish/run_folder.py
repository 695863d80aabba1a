"""What a finished run folder holds, read back for publishing: its kind, recipe, numbers and weights.

Three kinds of run make a publishable model:
- ``task``: a fine-tune (`results.json` written by `TaskResults`), or a `--seeds` sweep (`seeds.json`
  and `seed-<n>/` folders), published from the best epoch's checkpoint of one seed;
- ``pretrained``: a pretraining run (`Student` checkpoints, the exported `model/` folder, `metrics.csv`);
- ``candidate``: an extraction run (`search-*.json`), published as one candidate and its surrogate weights.
Every missing file is named in the error, before anything is built.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from bortzoo.arch import Arch, get_arch
from bortzoo.errors import BortzooError
from bortzoo.files import RESULTS_FILE, SUMMARY_FILE

KINDS = ("pretrained", "task", "candidate")


@dataclass
class Run:
    """A run folder, read: enough to build its Hub folder and card without guessing."""

    kind: str
    folder: Path
    recipe: Path  # the resolved recipe (Lightning's config.yaml, or the search settings)
    config: dict
    arch: Arch
    results: dict  # what the card reports, as the run wrote it
    checkpoint: Optional[Path] = None
    model_folder: Optional[Path] = None  # a transformers folder the run exported (pretraining)
    seeds: Optional[dict] = None  # seeds.json of a sweep
    extra: dict[str, Any] = field(default_factory=dict)

    def model_args(self) -> dict:
        return ((self.config.get("model") or {}).get("init_args")) or {}

    def data_args(self) -> dict:
        return ((self.config.get("data") or {}).get("init_args")) or {}


def read_run(path: str | Path, seed: Optional[int] = None, candidate: Optional[str] = None) -> Run:
    """Read the run at `path`; `seed` picks one seed of a sweep (default: the best dev score), `candidate`
    one architecture of a search ("D,A,H,I"; default: the winner)."""
    if not str(path).strip():
        raise BortzooError("empty run folder: give the folder a run wrote (e.g. runs/finetune/glue/rte-bort)")
    folder = Path(path)
    if not folder.is_dir():
        raise BortzooError(f"run folder {str(folder)!r} does not exist")
    if (folder / SUMMARY_FILE).is_file():
        return _read_sweep(folder, seed)
    if seed is not None:
        raise BortzooError(f"--seed {seed} given but {folder} is not a seed sweep (no seeds.json)")
    if sorted(folder.glob("search-*.json")):
        return _read_search(folder, candidate)
    if candidate is not None:
        raise BortzooError(f"--candidate given but {folder} is not an extraction run (no search-*.json)")
    if (folder / RESULTS_FILE).is_file():
        return _read_finetune(folder)
    if (folder / "checkpoints").is_dir() or (folder / "model" / "config.json").is_file():
        return _read_pretrain(folder)
    raise BortzooError(f"{folder} is not a run folder: expected results.json (a fine-tune), seeds.json (a seed sweep), "
                       "search-*.json (an extraction) or checkpoints/ (a pretraining)")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BortzooError(f"missing run file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BortzooError(f"run file {path} is not valid JSON: {err}") from None


def resolved_recipe(folder: Path) -> Path:
    """Lightning's `config.yaml` of the newest `version_<n>/` (what `bortzoo fit` really ran)."""
    versions = sorted(folder.glob("version_*/config.yaml"), key=lambda p: _number(p.parent.name))
    if versions:
        return versions[-1]
    if (folder / "config.yaml").is_file():
        return folder / "config.yaml"
    raise BortzooError(f"missing run file: {folder} has no version_<n>/config.yaml (the resolved recipe Lightning "
                       "saves at the start of `bortzoo fit`)")


def _number(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise BortzooError(f"run file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise BortzooError(f"run file {path} does not hold a recipe mapping")
    return data


# -- fine-tunes ------------------------------------------------------------------------------------
def _read_finetune(folder: Path) -> Run:
    results = read_json(folder / RESULTS_FILE)
    if results.get("stage") != "fit" or "best" not in results:
        raise BortzooError(f"{folder / 'results.json'} is not the results of a finished fine-tune (stage 'fit' with "
                           "'best' metrics); validate/test results alone cannot be published")
    recipe = resolved_recipe(folder)
    config = _load_yaml(recipe)
    checkpoint = _find_checkpoint(folder, results.get("best_checkpoint"), "best.ckpt")
    return Run("task", folder, recipe, config, _task_arch(results, config), results, checkpoint=checkpoint)


def _task_arch(results: dict, config: dict) -> Arch:
    """The encoder's shape as the run recorded it in results.json; runs from before it did are read through the
    model reference of their recipe."""
    if results.get("arch") is not None:
        return get_arch(results["arch"])
    from bortzoo.zoo import model_ref

    args = (config.get("model") or {}).get("init_args") or {}
    return model_ref(args.get("model"), args.get("revision"), args.get("arch")).arch()


def _find_checkpoint(folder: Path, recorded: Optional[str], default_name: str) -> Path:
    """The checkpoint results.json names, as written or moved along with the run folder."""
    candidates = []
    if recorded:
        candidates += [Path(recorded), folder / "checkpoints" / Path(recorded).name]
    candidates.append(folder / "checkpoints" / default_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BortzooError(f"missing run file: checkpoint {recorded or default_name} (looked for "
                       f"{', '.join(str(c) for c in candidates)})")


def _read_sweep(folder: Path, seed: Optional[int]) -> Run:
    summary = read_json(folder / SUMMARY_FILE)
    runs = {}
    for path in sorted(folder.glob(f"seed-*/{RESULTS_FILE}")):
        runs[_number(path.parent.name)] = read_json(path)
    if not runs:
        raise BortzooError(f"missing run files: {folder} has seeds.json but no seed-<n>/results.json")
    if seed is None:
        seed = max(runs, key=lambda s: (runs[s].get("best") or {}).get("score", float("-inf")))
    elif seed not in runs:
        raise BortzooError(f"{folder} has no finished seed {seed}; finished seeds: {sorted(runs)}")
    run = _read_finetune(folder / f"seed-{seed}")
    run.seeds = summary
    run.extra["sweep_folder"] = folder
    return run


# -- pretraining -----------------------------------------------------------------------------------
def _read_pretrain(folder: Path) -> Run:
    recipe = resolved_recipe(folder)
    config = _load_yaml(recipe)
    model = config.get("model") or {}
    if not str(model.get("class_path", "")).endswith("Student"):
        raise BortzooError(f"{recipe}: model is {model.get('class_path')!r}, not a bortzoo Student; only pretraining "
                           "runs, fine-tunes and extractions can be published")
    arch = get_arch(model["init_args"]["arch"])
    exported = _export_folder(folder, config)
    checkpoint = None
    if exported is None:
        checkpoint = _find_checkpoint(folder, None, "last.ckpt")
    results = {"kind": "pretrained", "arch": arch.as_dict(), **_last_validation(recipe.parent)}
    return Run("pretrained", folder, recipe, config, arch, results, checkpoint=checkpoint, model_folder=exported)


def _export_folder(folder: Path, config: dict) -> Optional[Path]:
    """The transformers folder `ExportTransformers` wrote at the end of the run, if it did."""
    for callback in (config.get("trainer") or {}).get("callbacks") or []:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("ExportTransformers"):
            path = Path(callback["init_args"]["dirpath"])
            for candidate in (path, folder / path.name):
                if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
                    return candidate
    default = folder / "model"
    return default if (default / "model.safetensors").is_file() else None


def _last_validation(version_folder: Path) -> dict:
    """The last validation row the CSV logger wrote: the pretraining run's own held-out numbers."""
    path = version_folder / "metrics.csv"
    if not path.is_file():
        return {"validation": None, "metrics_file": None}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if any(k.startswith("val/") and v for k, v in r.items())]
    if not rows:
        return {"validation": None, "metrics_file": path.name}
    last = rows[-1]
    metrics = {k[len("val/"):]: float(v) for k, v in last.items() if k.startswith("val/") and v}
    return {"validation": {"step": int(last["step"]), "metrics": metrics}, "metrics_file": path.name}


# -- extraction ------------------------------------------------------------------------------------
def _read_search(folder: Path, candidate: Optional[str]) -> Run:
    search_file = sorted(folder.glob("search-*.json"))[0]
    search = read_json(search_file)
    table = folder / "candidates.csv"
    if not table.is_file():
        raise BortzooError(f"missing run file {table}: run `bortzoo extract report --out {folder}` first")
    with table.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if candidate is None:
        row = min(rows, key=lambda r: int(r["rank"]))
    else:
        wanted = get_arch(candidate)
        key = (wanted.depth, wanted.heads, wanted.hidden, wanted.intermediate)
        matches = [r for r in rows if tuple(int(r[c]) for c in "DAHI") == key]
        if not matches:
            raise BortzooError(f"candidate {wanted.short()} is not in {table}")
        row = matches[0]
    if row.get("trained") != "True":
        raise BortzooError(f"candidate <{row['D']},{row['A']},{row['H']},{row['I']}> was not trained in this search "
                           f"(its partition's representative was {row['representative']}); publish that one")
    key = row["representative"]
    result = read_json(folder / "results" / f"{key}.json")
    arch = get_arch(result["arch"])
    weights = folder / "weights" / key
    if not (weights / "model.safetensors").is_file():
        raise BortzooError(f"missing run file {weights}: this search kept no surrogate weights (run it with "
                           "save_weights: true)")
    settings = search.get("result_settings", {})
    results = {"kind": "candidate", "arch": arch.as_dict(), "rank": int(row["rank"]), "of": len(rows),
               "params": int(row["params"]), "flops": int(row["flops"]),
               "latency_ms": float(row["latency_ms"]) if row.get("latency_ms") else None,
               "error": result["error"], "score": float(row["score"]), "pareto": row["pareto"] == "True",
               "score_function": search.get("score"), "weights": search.get("weights"),
               "best_theta": result.get("best_theta"), "steps": settings.get("steps"),
               "teacher": settings.get("teacher"), "maximum_point": search.get("maximum_point")}
    return Run("candidate", folder, search_file, search, arch, results, model_folder=weights,
               extra={"tokenizer": settings.get("tokenizer") or settings.get("teacher")})
