"""`bortzoo fit --config RECIPE --seeds 0,1,2,3,4`: one recipe over several seeds, then mean ± std on dev.

Each seed runs in `<default_root_dir>/seed-<n>/` from its own copy of the resolved recipe (`recipe.yaml`,
every path under the recipe's output folder moved into the seed's), so the runs never share a checkpoint.
A seed whose `results.json` exists is not run again: an interrupted sweep resumes where it stopped.
The summary goes to `<default_root_dir>/seeds.json` and the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from bortzoo.errors import BortzooError
from bortzoo.files import RESULTS_FILE, SUMMARY_FILE, write_json, write_text
from bortzoo.results import format_summary, summarise_seeds


def pop_seeds(args: list[str]) -> tuple[list[str], Optional[list[int]]]:
    """Remove `--seeds 0,1,2` (or `--seeds=0,1,2`, or `--seeds 0 1 2`) from `args`; return the rest and the seeds."""
    rest, values, index = [], None, 0
    while index < len(args):
        token = args[index]
        if token == "--seeds" or token.startswith("--seeds="):
            values = [token.split("=", 1)[1]] if "=" in token else []
            index += 1
            while "=" not in token and index < len(args) and not args[index].startswith("--"):
                values.append(args[index])
                index += 1
            continue
        rest.append(token)
        index += 1
    if values is None:
        return rest, None
    seeds = []
    for item in ",".join(values).replace("[", "").replace("]", "").split(","):
        if item.strip():
            try:
                seeds.append(int(item))
            except ValueError:
                raise BortzooError(f"--seeds takes integers such as 0,1,2; got {item!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise BortzooError(f"--seeds needs distinct integers, got {values}")
    return rest, seeds


def move_paths(value: Any, old_root: str, new_root: str) -> Any:
    """`value` with every string under `old_root` moved under `new_root`."""
    if isinstance(value, dict):
        return {k: move_paths(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, list):
        return [move_paths(v, old_root, new_root) for v in value]
    if isinstance(value, str) and (value == old_root or value.startswith(old_root.rstrip("/") + "/")):
        return new_root + value[len(old_root):]
    return value


def run_seeds(args: list[str], seeds: list[int]) -> dict:
    """Fit the recipe in `args` once per seed, then summarise the seeds' dev results."""
    import yaml

    from bortzoo.recipe import lightning_cli, resolved_config

    config = resolved_config(lightning_cli(args, run=False, parse_only=True))
    root = (config.get("trainer") or {}).get("default_root_dir")
    if not root or root in (".", "./"):
        raise BortzooError("--seeds needs trainer.default_root_dir: each seed writes into <default_root_dir>/seed-<n>")
    root = str(root).rstrip("/")
    runs = []
    for seed in seeds:
        folder = Path(f"{root}/seed-{seed}")
        done = folder / RESULTS_FILE
        if done.is_file():
            print(f"seed {seed}: {done} exists, not run again")
        else:
            recipe = move_paths(config, root, str(folder))
            recipe["seed_everything"] = seed
            recipe["trainer"]["default_root_dir"] = str(folder)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "recipe.yaml"
            write_text(path, yaml.safe_dump(recipe, sort_keys=False))
            print(f"seed {seed}: bortzoo fit --config {path}")
            lightning_cli(["fit", "--config", str(path)])
            if not done.is_file():
                raise BortzooError(f"seed {seed} wrote no {done}: the recipe needs a bortzoo.results.TaskResults "
                                   "callback (and a validation split) for --seeds to report")
        runs.append(json.loads(done.read_text()))
    summary = summarise_seeds(runs)
    write_json(Path(root) / SUMMARY_FILE, summary)
    print(format_summary(summary))
    print(f"wrote {Path(root) / SUMMARY_FILE}")
    return summary
