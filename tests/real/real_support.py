"""How the real-weights suite runs a fine-tune: the tiny SST-2 recipe, its model and data replaced, through the
CLI, with a training probe."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from bortzoo.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "finetune" / "glue" / "sst2-bort-tiny.yaml"
EPOCHS, STEPS = 1, 30  # 480 training rows in batches of 16


def write_recipe(tmp: Path, name: str, model: dict, data_dir: Path) -> Path:
    """The tiny SST-2 recipe with its model replaced, its data the sentiment rows, a training probe, and every
    output under `tmp/name`."""
    config = yaml.safe_load(TINY_RECIPE.read_text())
    out = tmp / name
    text = yaml.safe_dump(config).replace("runs/finetune/glue/sst2-bort-tiny", str(out)).replace(
        "runs/finetune/glue/submission-tiny", str(out / "submission"))
    config = yaml.safe_load(text)
    config["trainer"].update(max_epochs=EPOCHS, log_every_n_steps=10)
    config["trainer"]["callbacks"].append({"class_path": "real.probes.TrainingProbe",
                                           "init_args": {"out": str(out / "probe.json")}})
    config["model"]["init_args"] = {"task": "sst2", "head": "bort", "lr": 1e-4, "weight_decay": 0.01,
                                    "warmup_ratio": 0.1, **model}
    config["data"]["init_args"].update(data_dir=str(data_dir), max_length=32, batch_size=16)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def fit(recipe: Path) -> tuple[dict, list[dict], Path]:
    main(["fit", "--config", str(recipe)])
    out = Path(yaml.safe_load(recipe.read_text())["trainer"]["default_root_dir"])
    return json.loads((out / "results.json").read_text()), json.loads((out / "probe.json").read_text()), out
